package sampler

import (
	"fmt"
	"math"
)

// StrengthStart is the image-to-image pipelines' get_timesteps for a first-order scheduler such
// as Euler: of a schedule built for numInferenceSteps, strength keeps the last
// min(int(numInferenceSteps·strength), numInferenceSteps) steps, so the run starts at step index
// numInferenceSteps − that (diffusers' t_start, which it also passes to set_begin_index). The
// steps run are Timesteps()[start:], and AddNoise noises the init latents to Sigmas()[start].
//
// Strength 1 runs the whole schedule from the largest σ; strength 0.5 with 2 steps runs the
// second step only (t = 499 with trailing spacing). It is an error when strength is outside
// (0, 1] or so small that no step would run.
func StrengthStart(numInferenceSteps int, strength float64) (int, error) {
	if numInferenceSteps < 1 {
		return 0, fmt.Errorf("sampler: number of inference steps must be at least 1, got %d", numInferenceSteps)
	}
	if !(strength > 0 && strength <= 1) {
		return 0, fmt.Errorf("sampler: strength must be in (0, 1], got %v", strength)
	}
	// Python's int(float) truncates; the product is the same IEEE double as in Python.
	init := min(int(math.Trunc(float64(numInferenceSteps)*strength)), numInferenceSteps)
	if init < 1 {
		return 0, fmt.Errorf("sampler: strength %v of %d steps runs no step (int(%d × %v) = 0); raise the steps or the strength",
			strength, numInferenceSteps, numInferenceSteps, strength)
	}
	return numInferenceSteps - init, nil
}

// AddNoise returns original + noise·σ, newly allocated, with σ = Sigmas()[step] in float32 as
// diffusers' EulerDiscreteScheduler.add_noise computes it in an image-to-image pipeline, where
// set_begin_index(t_start) makes it use the sigma at the first step run (pass
// StrengthStart's result). It returns an error when the slices differ in length or step is
// outside [0, NumSteps()).
func (e *Euler) AddNoise(original, noise []float32, step int) ([]float32, error) {
	if len(original) != len(noise) {
		return nil, fmt.Errorf("sampler: original samples have %d values, noise %d", len(original), len(noise))
	}
	sigma, err := e.sigmaAt(step)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(original))
	for i, x := range original {
		out[i] = x + mul32(noise[i], sigma)
	}
	return out, nil
}
