package sampler

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Beta schedules, prediction types, timestep spacings and final-sigma types accepted in Config.
const (
	BetaLinear       = "linear"            // betas linear from BetaStart to BetaEnd
	BetaScaledLinear = "scaled_linear"     // sqrt(betas) linear (Stable Diffusion)
	BetaSquaredCos   = "squaredcos_cap_v2" // Glide cosine schedule

	PredictEpsilon = "epsilon"      // the model predicts the noise ε
	PredictV       = "v_prediction" // the model predicts v (SD 2.x 768 models)
	PredictSample  = "sample"       // the model predicts x₀ directly

	SpacingLinspace = "linspace" // timesteps evenly spread over [0, N−1], both ends included
	SpacingLeading  = "leading"  // multiples of N/n from 0, plus StepsOffset (SD 1.x)
	SpacingTrailing = "trailing" // multiples of N/n counted down from N, minus 1 (SDXS, SDXL)

	FinalSigmaZero     = "zero"      // the last step goes to σ = 0 (diffusers' default)
	FinalSigmaSigmaMin = "sigma_min" // the last step goes to the smallest training σ
)

// Config is the part of a diffusers EulerDiscreteScheduler configuration this package
// implements. Empty string fields take diffusers' defaults (see DefaultConfig).
type Config struct {
	// NumTrainTimesteps is the length of the training noise schedule (num_train_timesteps).
	NumTrainTimesteps int
	// BetaStart and BetaEnd bound the beta schedule (beta_start, beta_end).
	BetaStart, BetaEnd float64
	// BetaSchedule is "linear", "scaled_linear" or "squaredcos_cap_v2" (beta_schedule).
	BetaSchedule string
	// PredictionType is "epsilon", "v_prediction" or "sample" (prediction_type).
	PredictionType string
	// TimestepSpacing is "linspace", "leading" or "trailing" (timestep_spacing).
	TimestepSpacing string
	// StepsOffset is added to the timesteps of the "leading" spacing (steps_offset).
	StepsOffset int
	// FinalSigmasType is "zero" or "sigma_min" (final_sigmas_type).
	FinalSigmasType string
}

// DefaultConfig returns diffusers' defaults for EulerDiscreteScheduler: 1000 training steps,
// linear betas from 0.0001 to 0.02, epsilon prediction, linspace spacing, no offset, final σ 0.
func DefaultConfig() Config {
	return Config{
		NumTrainTimesteps: 1000,
		BetaStart:         0.0001,
		BetaEnd:           0.02,
		BetaSchedule:      BetaLinear,
		PredictionType:    PredictEpsilon,
		TimestepSpacing:   SpacingLinspace,
		StepsOffset:       0,
		FinalSigmasType:   FinalSigmaZero,
	}
}

// withDefaults fills empty string fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BetaSchedule == "" {
		c.BetaSchedule = d.BetaSchedule
	}
	if c.PredictionType == "" {
		c.PredictionType = d.PredictionType
	}
	if c.TimestepSpacing == "" {
		c.TimestepSpacing = d.TimestepSpacing
	}
	if c.FinalSigmasType == "" {
		c.FinalSigmasType = d.FinalSigmasType
	}
	return c
}

// validate checks the configuration (after withDefaults).
func (c Config) validate() error {
	if c.NumTrainTimesteps < 1 {
		return fmt.Errorf("sampler: num_train_timesteps must be at least 1, got %d", c.NumTrainTimesteps)
	}
	switch c.BetaSchedule {
	case BetaLinear, BetaScaledLinear:
		for _, b := range []struct {
			name string
			v    float64
		}{{"beta_start", c.BetaStart}, {"beta_end", c.BetaEnd}} {
			if math.IsNaN(b.v) || b.v < 0 || b.v >= 1 {
				return fmt.Errorf("sampler: %s must be in [0, 1), got %v", b.name, b.v)
			}
		}
	case BetaSquaredCos:
	default:
		return fmt.Errorf("sampler: beta_schedule %q is not supported (want %q, %q or %q)",
			c.BetaSchedule, BetaLinear, BetaScaledLinear, BetaSquaredCos)
	}
	switch c.PredictionType {
	case PredictEpsilon, PredictV, PredictSample:
	default:
		return fmt.Errorf("sampler: prediction_type %q is not supported (want %q, %q or %q)",
			c.PredictionType, PredictEpsilon, PredictV, PredictSample)
	}
	switch c.TimestepSpacing {
	case SpacingLinspace, SpacingLeading, SpacingTrailing:
	default:
		return fmt.Errorf("sampler: timestep_spacing %q is not supported (want %q, %q or %q)",
			c.TimestepSpacing, SpacingLinspace, SpacingLeading, SpacingTrailing)
	}
	if c.StepsOffset < 0 {
		return fmt.Errorf("sampler: steps_offset must not be negative, got %d", c.StepsOffset)
	}
	switch c.FinalSigmasType {
	case FinalSigmaZero, FinalSigmaSigmaMin:
	default:
		return fmt.Errorf("sampler: final_sigmas_type %q is not supported (want %q or %q)",
			c.FinalSigmasType, FinalSigmaZero, FinalSigmaSigmaMin)
	}
	return nil
}

// Euler is diffusers' EulerDiscreteScheduler without stochastic churn (s_churn = 0, the setting
// every Stable Diffusion pipeline uses), reproducing its float32 arithmetic.
//
// Usage: New, SetTimesteps(n), multiply the initial noise by InitNoiseSigma (InitLatents), then
// for each step i: the UNet sees ScaleModelInput(x, i) at timestep Timesteps()[i], and
// Step(ε̂, x, i) gives the next x and the predicted x₀.
//
// An Euler is not safe for concurrent use while SetTimesteps runs; its other methods only read
// it. Step takes the step index explicitly, so one schedule can serve many requests.
type Euler struct {
	cfg Config
	// alphasCumprod[t] and trainSigmas[t] = sqrt((1-ᾱ)/ᾱ) for training timestep t, float32 as
	// diffusers keeps them.
	alphasCumprod []float32
	trainSigmas   []float32
	timesteps     []float32 // current schedule
	sigmas        []float32 // len(timesteps)+1, ending with the final sigma
}

// New builds the scheduler's training noise schedule. Before SetTimesteps the schedule is the
// full training schedule (timesteps N−1 … 0), as in diffusers.
func New(cfg Config) (*Euler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := cfg.NumTrainTimesteps
	var betas []float32
	switch cfg.BetaSchedule {
	case BetaLinear:
		betas = torchLinspaceFloat32(float32(cfg.BetaStart), float32(cfg.BetaEnd), n)
	case BetaScaledLinear:
		betas = torchLinspaceFloat32(float32(math.Sqrt(cfg.BetaStart)), float32(math.Sqrt(cfg.BetaEnd)), n)
		for i, b := range betas {
			betas[i] = mul32(b, b)
		}
	case BetaSquaredCos:
		betas = squaredCosBetas(n)
	}
	e := &Euler{cfg: cfg, alphasCumprod: make([]float32, n), trainSigmas: make([]float32, n)}
	// torch.cumprod on CPU accumulates in double and stores each partial product as float.
	acc := 1.0
	for t, b := range betas {
		acc *= float64(1 - b)
		e.alphasCumprod[t] = float32(acc)
	}
	for t, a := range e.alphasCumprod {
		if !(a > 0) {
			return nil, fmt.Errorf("sampler: the beta schedule drives the cumulative alpha to %v at timestep %d", a, t)
		}
		s := float32(math.Sqrt(float64((1 - a) / a)))
		if math.IsInf(float64(s), 0) || math.IsNaN(float64(s)) {
			return nil, fmt.Errorf("sampler: the beta schedule gives sigma %v at timestep %d", s, t)
		}
		e.trainSigmas[t] = s
	}
	e.timesteps = make([]float32, n)
	e.sigmas = make([]float32, n+1)
	for i := range n {
		e.timesteps[i] = float32(n - 1 - i)
		e.sigmas[i] = e.trainSigmas[n-1-i]
	}
	return e, nil
}

// Config returns the configuration the scheduler was built with, defaults filled in.
func (e *Euler) Config() Config { return e.cfg }

// SetTimesteps chooses n inference steps (1 ≤ n ≤ NumTrainTimesteps) with the configured
// spacing, computing timesteps and sigmas exactly as diffusers' set_timesteps does:
//
//   - "linspace": np.linspace(0, N−1, n) reversed (fractional timesteps interpolate the sigmas;
//     n = 1 gives timestep 0, as numpy does);
//   - "leading": k·(N/n) (integer division) reversed, plus StepsOffset;
//   - "trailing": round(np.arange(N, 0, −N/n)) − 1.
//
// diffusers' quirks are kept: for a few n (61, 103, 121, … of 1000) numpy's floating-point
// arange in "trailing" yields one extra final timestep −1 (whose sigma is the smallest training
// sigma), so NumSteps can be n+1; loop over NumSteps, not n.
func (e *Euler) SetTimesteps(n int) error {
	N := e.cfg.NumTrainTimesteps
	if n < 1 || n > N {
		return fmt.Errorf("sampler: number of inference steps must be in [1, %d], got %d", N, n)
	}
	var ts []float64 // numpy's float64 values before the cast to float32
	switch e.cfg.TimestepSpacing {
	case SpacingLinspace:
		// np.linspace(0, N-1, n)[::-1]; with n == 1 numpy returns [0].
		ts = make([]float64, n)
		if n > 1 {
			step := float64(N-1) / float64(n-1)
			for i := range n {
				ts[i] = float64(i) * step
			}
			ts[n-1] = float64(N - 1)
		}
		slices.Reverse(ts)
	case SpacingLeading:
		// (np.arange(0, n) * (N // n)).round()[::-1] + steps_offset
		ratio := N / n
		ts = make([]float64, n)
		for i := range n {
			ts[n-1-i] = float64(i * ratio)
		}
	case SpacingTrailing:
		// np.arange(N, 0, -N/n).round() - 1
		ts = numpyArange(float64(N), 0, -float64(N)/float64(n))
		for i, v := range ts {
			ts[i] = math.RoundToEven(v)
		}
	}
	timesteps := make([]float32, len(ts))
	for i, v := range ts {
		t := float32(v)
		switch e.cfg.TimestepSpacing {
		case SpacingLeading:
			t += float32(e.cfg.StepsOffset)
		case SpacingTrailing:
			t--
		}
		timesteps[i] = t
	}
	if len(timesteps) == 0 {
		return errors.New("sampler: the timestep spacing produced no timesteps")
	}
	// np.interp(timesteps, arange(N), sigmas) in float64, then float32.
	fp := make([]float64, N)
	for i, s := range e.trainSigmas {
		fp[i] = float64(s)
	}
	sigmas := make([]float32, len(timesteps)+1)
	for i, t := range timesteps {
		sigmas[i] = float32(interpIntGrid(float64(t), fp))
	}
	if e.cfg.FinalSigmasType == FinalSigmaSigmaMin {
		a := e.alphasCumprod[0]
		sigmas[len(timesteps)] = float32(math.Sqrt(float64((1 - a) / a)))
	}
	e.timesteps, e.sigmas = timesteps, sigmas
	return nil
}

// NumSteps returns the number of steps of the current schedule.
func (e *Euler) NumSteps() int { return len(e.timesteps) }

// Timesteps returns a copy of the current timesteps (the value to feed the UNet at each step),
// as float32 values widened to float64.
func (e *Euler) Timesteps() []float64 {
	out := make([]float64, len(e.timesteps))
	for i, t := range e.timesteps {
		out[i] = float64(t)
	}
	return out
}

// Sigmas returns a copy of the current sigmas: one per step plus the final sigma (0 by
// default), float32 values widened to float64.
func (e *Euler) Sigmas() []float64 {
	out := make([]float64, len(e.sigmas))
	for i, s := range e.sigmas {
		out[i] = float64(s)
	}
	return out
}

// InitNoiseSigma is the standard deviation of the initial noise (diffusers' init_noise_sigma):
// the largest sigma for "linspace" and "trailing" spacing, sqrt(σ_max² + 1) for "leading",
// computed in float32.
func (e *Euler) InitNoiseSigma() float64 {
	return float64(e.initNoiseSigma32())
}

func (e *Euler) initNoiseSigma32() float32 {
	if len(e.sigmas) == 0 { // a zero Euler, not made by New
		return 0
	}
	m := slices.Max(e.sigmas)
	if e.cfg.TimestepSpacing == SpacingLinspace || e.cfg.TimestepSpacing == SpacingTrailing {
		return m
	}
	return float32(math.Sqrt(float64(mul32(m, m) + 1)))
}

// InitLatents multiplies noise in place by InitNoiseSigma (in float32, as the pipeline's
// latents * scheduler.init_noise_sigma) and returns it.
func (e *Euler) InitLatents(noise []float32) []float32 {
	s := e.initNoiseSigma32()
	for i, v := range noise {
		noise[i] = mul32(v, s)
	}
	return noise
}

// sigmaAt returns σ for a step index, or an error for an index outside the schedule.
func (e *Euler) sigmaAt(step int) (float32, error) {
	if step < 0 || step >= len(e.timesteps) || step+1 >= len(e.sigmas) {
		return 0, fmt.Errorf("sampler: step %d is outside the schedule of %d steps", step, len(e.timesteps))
	}
	return e.sigmas[step], nil
}

// ScaleModelInput divides sample in place by sqrt(σ²+1) for the given step index (the UNet's
// input scaling, diffusers' scale_model_input) and returns it. It returns an error when step is
// outside [0, NumSteps()).
func (e *Euler) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	sigma, err := e.sigmaAt(step)
	if err != nil {
		return nil, err
	}
	d := float32(math.Sqrt(float64(mul32(sigma, sigma) + 1)))
	for i, v := range sample {
		sample[i] = v / d
	}
	return sample, nil
}

// Step performs one Euler step from step index step: given the model output for the scaled
// sample and the unscaled sample x at σ = Sigmas()[step], it returns the sample at the next
// sigma and the predicted clean sample x₀ (diffusers' prev_sample and pred_original_sample),
// both newly allocated. The pipeline continues with (and finally decodes) prevSample; after the
// last step, where the next sigma is 0, it equals x₀ up to float32 rounding. x₀ is x − σ·ε for "epsilon", ε·(−σ/√(σ²+1)) + x/(σ²+1) for
// "v_prediction", and the model output for "sample"; the step is x + (x − x₀)/σ · (σ_next − σ).
// It returns an error when the slices differ in length or step is outside [0, NumSteps()).
func (e *Euler) Step(modelOutput, sample []float32, step int) (prevSample, predOriginal []float32, err error) {
	if len(modelOutput) != len(sample) {
		return nil, nil, fmt.Errorf("sampler: model output has %d values, sample %d", len(modelOutput), len(sample))
	}
	sigma, err := e.sigmaAt(step)
	if err != nil {
		return nil, nil, err
	}
	next := e.sigmas[step+1]
	predOriginal = make([]float32, len(sample))
	switch e.cfg.PredictionType {
	case PredictEpsilon:
		for i, x := range sample {
			predOriginal[i] = x - mul32(sigma, modelOutput[i])
		}
	case PredictV:
		s2p1 := mul32(sigma, sigma) + 1
		cOut := -sigma / float32(math.Sqrt(float64(s2p1)))
		for i, x := range sample {
			predOriginal[i] = mul32(modelOutput[i], cOut) + x/s2p1
		}
	case PredictSample:
		copy(predOriginal, modelOutput)
	}
	dt := next - sigma
	prevSample = make([]float32, len(sample))
	for i, x := range sample {
		derivative := (x - predOriginal[i]) / sigma
		prevSample[i] = x + mul32(derivative, dt)
	}
	return prevSample, predOriginal, nil
}

// torchLinspaceFloat32 is torch.linspace(start, end, steps, dtype=torch.float32) on the CPU of
// PyTorch 1.13 with AVX2 kernels: the step is a float; the first half of the values count up
// from start and the second half down from end; the vectorised loop computes blocks of eight
// from the block's first value (base + k·step), deciding the half once per block, and the
// compiler fuses each multiply–add. (This reproduces diffusers' sigma_max 14.614645 for the
// SDXS schedule exactly; libm-style rounding gives 14.614647.)
func torchLinspaceFloat32(start, end float32, steps int) []float32 {
	out := make([]float32, steps)
	if steps == 0 {
		return out
	}
	if steps == 1 {
		out[0] = start
		return out
	}
	const lanes = 8
	step := (end - start) / float32(steps-1)
	halfway := steps / 2
	scalarAt := func(idx int) float32 {
		if idx < halfway {
			return fma32(step, float32(idx), start)
		}
		return fma32(-step, float32(steps-idx-1), end)
	}
	i := 0
	for ; i+2*lanes <= steps; i += 2 * lanes {
		for _, blk := range [2]int{i, i + lanes} {
			base := scalarAt(blk)
			for k := range lanes {
				out[blk+k] = fma32(float32(k), step, base)
			}
		}
	}
	for ; i < steps; i++ {
		out[i] = scalarAt(i)
	}
	return out
}

// squaredCosBetas is diffusers' betas_for_alpha_bar with the cosine alpha-bar function and
// max_beta 0.999, computed in float64 and stored as float32.
func squaredCosBetas(n int) []float32 {
	alphaBar := func(t float64) float64 {
		c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	betas := make([]float32, n)
	for i := range n {
		t1 := float64(i) / float64(n)
		t2 := float64(i+1) / float64(n)
		betas[i] = float32(min(1-alphaBar(t2)/alphaBar(t1), 0.999))
	}
	return betas
}

// numpyArange reproduces np.arange(start, stop, step) for float64 arguments: the length is
// ceil((stop−start)/step), and the values are start, start+step, then start + i·delta with
// delta = (start+step) − start, as numpy's fill does.
func numpyArange(start, stop, step float64) []float64 {
	l := math.Ceil((stop - start) / step)
	if !(l > 0) {
		return nil
	}
	n := int(l)
	out := make([]float64, n)
	out[0] = start
	if n > 1 {
		out[1] = start + step
		delta := out[1] - start
		for i := 2; i < n; i++ {
			out[i] = start + float64(float64(i)*delta)
		}
	}
	return out
}

// interpIntGrid is np.interp(x, arange(len(fp)), fp): linear interpolation on the integer grid,
// clamped to the end values.
func interpIntGrid(x float64, fp []float64) float64 {
	n := len(fp)
	switch {
	case math.IsNaN(x):
		return x
	case x <= 0:
		return fp[0]
	case x >= float64(n-1):
		return fp[n-1]
	}
	j := int(math.Floor(x))
	xj := float64(j)
	if xj == x {
		return fp[j]
	}
	slope := (fp[j+1] - fp[j]) / (float64(j+1) - xj)
	return float64(slope*(x-xj)) + fp[j]
}
