package sampler

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// sdxsConfig is the scheduler configuration of both SDXS releases.
func sdxsConfig() Config {
	return Config{
		NumTrainTimesteps: 1000,
		BetaStart:         0.00085,
		BetaEnd:           0.012,
		BetaSchedule:      BetaScaledLinear,
		PredictionType:    PredictEpsilon,
		TimestepSpacing:   SpacingTrailing,
		StepsOffset:       1,
	}
}

// TestEulerOracle reproduces, for every reference case of both tiny models, the noise, the
// initial latents' UNet input and the x₀ after the single Euler step.
func TestEulerOracle(t *testing.T) {
	for _, model := range []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"} {
		t.Run(model, func(t *testing.T) {
			dir := oracle.Path(t, model)
			data, err := os.ReadFile(filepath.Join(dir, "model", "scheduler", "scheduler_config.json"))
			require.NoError(t, err)
			cfg, err := ParseConfig(data)
			require.NoError(t, err)
			assert.Equal(t, sdxsConfig().withDefaults(), cfg)

			raw, err := os.ReadFile(filepath.Join(dir, "cases.json"))
			require.NoError(t, err)
			var cases []struct {
				Seed           uint64  `json:"seed"`
				Height         int     `json:"height"`
				Width          int     `json:"width"`
				Timestep       float64 `json:"timestep"`
				InitNoiseSigma float64 `json:"init_noise_sigma"`
			}
			require.NoError(t, json.Unmarshal(raw, &cases))
			require.NotEmpty(t, cases)
			ref := oracle.Tensors(t, model, "reference.safetensors")

			s, err := New(cfg)
			require.NoError(t, err)
			require.NoError(t, s.SetTimesteps(1))
			for i, c := range cases {
				name := func(x string) string { return fmt.Sprintf("case%d.%s", i, x) }
				assert.Equal(t, []float64{c.Timestep}, s.Timesteps(), "case %d timestep", i)
				assert.Equal(t, float32(c.InitNoiseSigma), float32(s.InitNoiseSigma()), "case %d init_noise_sigma", i)

				// 3. noise
				shape := []int{1, 4, c.Height / 8, c.Width / 8}
				noise := NewGenerator(c.Seed).Randn(shape...)
				wantNoise, noiseShape := oracle.Float32(t, ref, name("noise"))
				require.Equal(t, shape, noiseShape)
				d := oracle.MaxAbs(noise, wantNoise)
				t.Logf("case %d: noise max abs err %.3g (%d values not bit-identical)", i, d, countBitDiffs(noise, wantNoise))
				assert.LessOrEqual(t, d, 1e-5, "case %d noise", i)

				// 4. latents and UNet input, from the reference noise.
				latents := s.InitLatents(slices.Clone(wantNoise))
				unetIn, err := s.ScaleModelInput(slices.Clone(latents), 0)
				require.NoError(t, err)
				wantIn, _ := oracle.Float32(t, ref, name("unet_input"))
				r := maxRelDiff(unetIn, wantIn, 1e-3)
				t.Logf("case %d: unet_input max rel err %.3g (%d values not bit-identical)", i, r, countBitDiffs(unetIn, wantIn))
				assert.LessOrEqual(t, r, 1e-5, "case %d unet_input", i)

				// 6. The step from the reference UNet output. The pipeline's result (the file's
				// "latents") is the scheduler's prev_sample, which for a final sigma of 0 equals
				// x₀ = x − σ·ε̂ up to rounding.
				eps, _ := oracle.Float32(t, ref, name("unet_output"))
				prev, x0, err := s.Step(eps, latents, 0)
				require.NoError(t, err)
				wantLatents, _ := oracle.Float32(t, ref, name("latents"))
				d = oracle.MaxAbs(prev, wantLatents)
				t.Logf("case %d: prev_sample max abs err %.3g (%d values not bit-identical)", i, d, countBitDiffs(prev, wantLatents))
				assert.LessOrEqual(t, d, 2e-3, "case %d latents", i)
				assert.LessOrEqual(t, countBitDiffs(prev, wantLatents), len(prev)/100, "case %d latents: too many last-bit differences", i)
				d = oracle.MaxAbs(x0, wantLatents)
				t.Logf("case %d: pred_original_sample max abs err %.3g", i, d)
				assert.LessOrEqual(t, d, 2e-3, "case %d x0", i)
			}
		})
	}
}

func TestSDXSOneStep(t *testing.T) {
	s, err := New(sdxsConfig())
	require.NoError(t, err)
	require.NoError(t, s.SetTimesteps(1))
	assert.Equal(t, []float64{999}, s.Timesteps())
	assert.Equal(t, float32(14.614645004272461), float32(s.InitNoiseSigma()))
	sig := s.Sigmas()
	require.Len(t, sig, 2)
	assert.Equal(t, s.InitNoiseSigma(), sig[0])
	assert.Equal(t, 0.0, sig[1])
	assert.Equal(t, 1, s.NumSteps())
}

// trainSigmas64 computes the training sigmas in float64, independently of the float32 path.
func trainSigmas64(cfg Config) []float64 {
	n := cfg.NumTrainTimesteps
	out := make([]float64, n)
	acp := 1.0
	for i := range n {
		f := float64(i) / float64(n-1)
		var beta float64
		switch cfg.BetaSchedule {
		case BetaLinear:
			beta = cfg.BetaStart + f*(cfg.BetaEnd-cfg.BetaStart)
		case BetaScaledLinear:
			r := math.Sqrt(cfg.BetaStart) + f*(math.Sqrt(cfg.BetaEnd)-math.Sqrt(cfg.BetaStart))
			beta = r * r
		}
		acp *= 1 - beta
		out[i] = math.Sqrt((1 - acp) / acp)
	}
	return out
}

func TestTimestepSchedules(t *testing.T) {
	base := sdxsConfig()
	sig64 := trainSigmas64(base)
	for _, tc := range []struct {
		spacing string
		offset  int
		n       int
		want    []float64
	}{
		{SpacingTrailing, 1, 4, []float64{999, 749, 499, 249}},
		{SpacingTrailing, 0, 1, []float64{999}},
		{SpacingTrailing, 0, 2, []float64{999, 499}},
		{SpacingTrailing, 0, 3, []float64{999, 666, 332}},
		{SpacingLeading, 1, 4, []float64{751, 501, 251, 1}},
		{SpacingLeading, 0, 4, []float64{750, 500, 250, 0}},
		{SpacingLeading, 1, 1, []float64{1}},
		{SpacingLeading, 1, 3, []float64{667, 334, 1}},
		{SpacingLinspace, 0, 4, []float64{999, 666, 333, 0}},
		{SpacingLinspace, 0, 3, []float64{999, 499.5, 0}},
		{SpacingLinspace, 0, 1, []float64{0}}, // numpy's linspace with one point is the start
		{SpacingLinspace, 0, 2, []float64{999, 0}},
	} {
		t.Run(fmt.Sprintf("%s-offset%d-%d", tc.spacing, tc.offset, tc.n), func(t *testing.T) {
			cfg := base
			cfg.TimestepSpacing, cfg.StepsOffset = tc.spacing, tc.offset
			s, err := New(cfg)
			require.NoError(t, err)
			require.NoError(t, s.SetTimesteps(tc.n))
			assert.Equal(t, tc.want, s.Timesteps())
			sig := s.Sigmas()
			require.Len(t, sig, tc.n+1)
			assert.Equal(t, 0.0, sig[tc.n])
			for i, ts := range tc.want {
				// Linear interpolation of the float64 sigmas at the timestep.
				lo := int(math.Floor(ts))
				want := sig64[lo]
				if f := ts - float64(lo); f > 0 {
					want += f * (sig64[lo+1] - sig64[lo])
				}
				assert.InEpsilon(t, want, sig[i], 2e-5, "sigma %d at t=%v", i, ts)
			}
			maxSigma := slices.Max(sig)
			if tc.spacing == SpacingLeading {
				assert.InEpsilon(t, math.Sqrt(maxSigma*maxSigma+1), s.InitNoiseSigma(), 1e-7)
			} else {
				assert.Equal(t, maxSigma, s.InitNoiseSigma())
			}
		})
	}
}

// TestScheduleLengths checks every schedule of a 1000-step model: n decreasing timesteps within
// [0, 999] (plus offset), except where numpy's float arange, which "trailing" uses, overshoots by
// one element: diffusers then gets an extra final timestep −1, and so does this package.
func TestScheduleLengths(t *testing.T) {
	var overshoots []int
	for _, spacing := range []string{SpacingTrailing, SpacingLeading, SpacingLinspace} {
		cfg := sdxsConfig()
		cfg.TimestepSpacing = spacing
		s, err := New(cfg)
		require.NoError(t, err)
		for n := 1; n <= 1000; n++ {
			require.NoError(t, s.SetTimesteps(n))
			ts := s.Timesteps()
			require.Len(t, s.Sigmas(), len(ts)+1)
			if spacing == SpacingTrailing && len(ts) == n+1 {
				require.Equal(t, -1.0, ts[n], "n=%d", n)
				overshoots = append(overshoots, n)
				ts = ts[:n]
			}
			require.Len(t, ts, n, "%s n=%d", spacing, n)
			for i := 1; i < n; i++ {
				require.Less(t, ts[i], ts[i-1], "%s n=%d", spacing, n)
			}
			require.GreaterOrEqual(t, ts[n-1], 0.0)
			require.LessOrEqual(t, ts[0], 1000.0)
		}
	}
	t.Logf("trailing schedules with numpy's extra element: n = %v", overshoots)
	assert.Contains(t, overshoots, 61)
}

// TestKnownDiffusersValues holds values printed by diffusers for Stable Diffusion 1.5's
// scheduler settings.
func TestKnownDiffusersValues(t *testing.T) {
	cfg := sdxsConfig()
	cfg.TimestepSpacing = SpacingLeading
	s, err := New(cfg)
	require.NoError(t, err)
	// Before set_timesteps the schedule is the training schedule.
	assert.Equal(t, 1000, s.NumSteps())
	assert.Equal(t, 999.0, s.Timesteps()[0])
	assert.InDelta(t, 14.6146, s.Sigmas()[0], 1e-4)
	assert.InDelta(t, 0.0292, s.Sigmas()[999], 1e-4)
	assert.InDelta(t, 14.6488, s.InitNoiseSigma(), 1e-4)
	require.NoError(t, s.SetTimesteps(50))
	ts := s.Timesteps()
	assert.Equal(t, 981.0, ts[0])
	assert.Equal(t, 1.0, ts[49])
}

func TestTorchLinspace(t *testing.T) {
	for _, n := range []int{1, 2, 3, 15, 16, 17, 31, 32, 33, 1000, 1001} {
		start, end := float32(math.Sqrt(0.00085)), float32(math.Sqrt(0.012))
		got := torchLinspaceFloat32(start, end, n)
		require.Len(t, got, n)
		assert.Equal(t, start, got[0])
		if n > 1 {
			assert.Equal(t, end, got[n-1], "n=%d: the second half counts down from end", n)
		}
		for i, v := range got {
			want := float64(start)
			if n > 1 {
				want += float64(i) * (float64(end) - float64(start)) / float64(n-1)
			}
			assert.InDelta(t, want, float64(v), 4e-8, "n=%d i=%d", n, i)
		}
	}
}

func TestStepFormulas(t *testing.T) {
	sample := []float32{1.5, -0.25, 3, 0}
	out := []float32{0.5, 2, -1, 0.125}
	for _, pred := range []string{PredictEpsilon, PredictV, PredictSample} {
		t.Run(pred, func(t *testing.T) {
			cfg := sdxsConfig()
			cfg.PredictionType = pred
			s, err := New(cfg)
			require.NoError(t, err)
			require.NoError(t, s.SetTimesteps(4))
			sig := s.Sigmas()
			for step := range 4 {
				σ, σn := sig[step], sig[step+1]
				prev, x0, err := s.Step(out, sample, step)
				require.NoError(t, err)
				for i := range sample {
					x, m := float64(sample[i]), float64(out[i])
					var wantX0 float64
					switch pred {
					case PredictEpsilon:
						wantX0 = x - σ*m
					case PredictV:
						wantX0 = m*(-σ/math.Sqrt(σ*σ+1)) + x/(σ*σ+1)
					case PredictSample:
						wantX0 = m
					}
					wantPrev := x + (x-wantX0)/σ*(σn-σ)
					assert.InDelta(t, wantX0, float64(x0[i]), 1e-5*max(1, math.Abs(wantX0)), "step %d x0[%d]", step, i)
					assert.InDelta(t, wantPrev, float64(prev[i]), 1e-5*max(1, math.Abs(wantPrev)), "step %d prev[%d]", step, i)
				}
				in, err := s.ScaleModelInput(slices.Clone(sample), step)
				require.NoError(t, err)
				for i := range sample {
					want := float64(sample[i]) / math.Sqrt(σ*σ+1)
					assert.InDelta(t, want, float64(in[i]), 1e-6*max(1e-3, math.Abs(want)))
				}
			}
			// The inputs are not modified by Step.
			assert.Equal(t, []float32{1.5, -0.25, 3, 0}, sample)
		})
	}
}

func TestFinalSigmaMin(t *testing.T) {
	cfg := sdxsConfig()
	cfg.FinalSigmasType = FinalSigmaSigmaMin
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.SetTimesteps(2))
	sig := s.Sigmas()
	assert.Equal(t, float64(s.trainSigmas[0]), sig[2])
	assert.InDelta(t, 0.0292, sig[2], 1e-4)
}

func TestInitLatents(t *testing.T) {
	s, err := New(sdxsConfig())
	require.NoError(t, err)
	require.NoError(t, s.SetTimesteps(1))
	x := []float32{1, -2, 0.5}
	got := s.InitLatents(x)
	σ := float32(s.InitNoiseSigma())
	assert.Equal(t, []float32{σ, -2 * σ, 0.5 * σ}, got)
}

// TestSquaredCos checks "squaredcos_cap_v2" against the definition diffusers 0.31 uses
// (betas_for_alpha_bar): β_i = min(1 − ᾱ((i+1)/N)/ᾱ(i/N), 0.999) with
// ᾱ(t) = cos²((t + 0.008)/1.008 · π/2). The betas telescope: the cumulative product of (1 − β)
// up to step k is ᾱ((k+1)/N)/ᾱ(0) until the cap binds (only at the very end). At the middle of
// the schedule that is cos²(0.508/1.008·π/2)/cos²(0.008/1.008·π/2) = 0.4938436 (evaluated
// separately, in Python's float64 math, from Nichol & Dhariwal's cosine schedule).
func TestSquaredCos(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing"}`))
	require.NoError(t, err)
	require.Equal(t, BetaSquaredCos, cfg.BetaSchedule)
	s, err := New(cfg)
	require.NoError(t, err)
	n := cfg.NumTrainTimesteps
	alphaBar := func(t float64) float64 {
		c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	capped := 0
	for k := 0; k < n; k++ {
		want := alphaBar(float64(k+1)/float64(n)) / alphaBar(0)
		got := float64(s.alphasCumprod[k])
		if 1-alphaBar(float64(k+1)/float64(n))/alphaBar(float64(k)/float64(n)) > 0.999 {
			capped++
			continue
		}
		require.InDelta(t, want, got, 1e-5*want+1e-9, "alphas_cumprod[%d]", k)
	}
	assert.Equal(t, 1, capped, "only the last beta reaches the 0.999 cap")
	assert.InDelta(t, 0.4938436, float64(s.alphasCumprod[n/2-1]), 2e-6)
	// The last beta is the cap: ᾱ(1) = 0.
	last := float64(s.alphasCumprod[n-1]) / float64(s.alphasCumprod[n-2])
	assert.InDelta(t, 1-0.999, last, 1e-6)
	sig := s.Sigmas()
	for i := 1; i < len(sig)-1; i++ {
		require.Less(t, sig[i], sig[i-1])
	}
	require.NoError(t, s.SetTimesteps(10))
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "scheduler_config.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample"}`), 0o644))
	cfg, err := LoadConfig(p)
	require.NoError(t, err)
	assert.Equal(t, BetaSquaredCos, cfg.BetaSchedule)
	assert.Equal(t, PredictSample, cfg.PredictionType)
	require.NoError(t, os.WriteFile(p, []byte(`{"beta_schedule": "cosine"}`), 0o644))
	_, err = LoadConfig(p)
	assert.ErrorContains(t, err, p)
	assert.ErrorContains(t, err, "beta_schedule")
	_, err = LoadConfig(filepath.Join(dir, "nope.json"))
	assert.ErrorContains(t, err, "nope.json")
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{}`))
	require.NoError(t, err)
	assert.Equal(t, DefaultConfig(), cfg)
	cfg, err = ParseConfig([]byte(`{"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000.0,
		"prediction_type": "v_prediction", "timestep_spacing": "leading", "steps_offset": 1,
		"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "trained_betas": null,
		"use_karras_sigmas": false, "timestep_type": "discrete", "final_sigmas_type": "zero",
		"interpolation_type": "linear", "sigma_min": null, "clip_sample": false, "rescale_betas_zero_snr": false}`))
	require.NoError(t, err)
	assert.Equal(t, Config{1000, 0.00085, 0.012, BetaScaledLinear, PredictV, SpacingLeading, 1, FinalSigmaZero}, cfg)
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"_class_name": "DDIMScheduler"}`, "_class_name"},
		{`{"use_karras_sigmas": true}`, "use_karras_sigmas"},
		{`{"use_exponential_sigmas": true}`, "use_exponential_sigmas"},
		{`{"use_beta_sigmas": true}`, "use_beta_sigmas"},
		{`{"rescale_betas_zero_snr": true}`, "rescale_betas_zero_snr"},
		{`{"trained_betas": [0.1, 0.2]}`, "trained_betas"},
		{`{"interpolation_type": "log_linear"}`, "interpolation_type"},
		{`{"beta_schedule": "sigmoid"}`, "beta_schedule"},
		{`{"prediction_type": "flow"}`, "prediction_type"},
		{`{"timestep_spacing": "karras"}`, "timestep_spacing"},
		{`{"final_sigmas_type": "one"}`, "final_sigmas_type"},
		{`{"timestep_type": "continuous", "prediction_type": "v_prediction"}`, "timestep_type"},
		{`{"num_train_timesteps": "many"}`, "num_train_timesteps"},
		{`{"num_train_timesteps": 10.5}`, "num_train_timesteps"},
		{`{"num_train_timesteps": 0}`, "num_train_timesteps"},
		{`{"beta_end": 1.5}`, "beta_end"},
		{`{"steps_offset": -1}`, "steps_offset"},
		{`{"use_karras_sigmas": "yes"}`, "use_karras_sigmas"},
		{`[1, 2]`, "scheduler config"},
		{`{`, "scheduler config"},
	} {
		_, err := ParseConfig([]byte(tc.json))
		if assert.Error(t, err, tc.json) {
			assert.Contains(t, err.Error(), tc.want, tc.json)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.NumTrainTimesteps = 0 },
		func(c *Config) { c.BetaSchedule = "cosine" },
		func(c *Config) { c.PredictionType = "x" },
		func(c *Config) { c.TimestepSpacing = "x" },
		func(c *Config) { c.BetaStart = math.NaN() },
		func(c *Config) { c.BetaEnd = 1 },
		func(c *Config) { c.FinalSigmasType = "x" },
	} {
		cfg := sdxsConfig()
		mod(&cfg)
		_, err := New(cfg)
		assert.Error(t, err, "%+v", cfg)
	}
	// A schedule whose first beta is 0 gives sigma 0 at t=0, which is allowed.
	cfg := DefaultConfig()
	cfg.BetaStart = 0
	_, err := New(cfg)
	assert.NoError(t, err)
	// Empty strings take the defaults.
	s, err := New(Config{NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02})
	require.NoError(t, err)
	assert.Equal(t, DefaultConfig(), s.Config())
}

func TestSetTimestepsErrors(t *testing.T) {
	s, err := New(sdxsConfig())
	require.NoError(t, err)
	for _, n := range []int{0, -1, 1001} {
		err := s.SetTimesteps(n)
		if assert.Error(t, err) {
			assert.True(t, strings.Contains(err.Error(), "steps"), err.Error())
		}
	}
	require.NoError(t, s.SetTimesteps(1000))
	assert.Len(t, s.Timesteps(), 1000)
}

// TestStepErrors checks that a step outside the schedule or mismatched slices give an error,
// not a panic.
func TestStepErrors(t *testing.T) {
	s, err := New(sdxsConfig())
	require.NoError(t, err)
	require.NoError(t, s.SetTimesteps(2))
	x := make([]float32, 4)
	for _, step := range []int{2, -1, 1 << 40} {
		prev, x0, err := s.Step(x, x, step)
		assert.ErrorContains(t, err, fmt.Sprintf("step %d is outside the schedule of 2 steps", step))
		assert.Nil(t, prev)
		assert.Nil(t, x0)
		in, err := s.ScaleModelInput(x, step)
		assert.ErrorContains(t, err, "outside the schedule")
		assert.Nil(t, in)
	}
	_, _, err = s.Step(x[:3], x, 0)
	assert.ErrorContains(t, err, "model output has 3 values, sample 4")
	_, _, err = s.Step(x, x, 1)
	assert.NoError(t, err)

	// A zero Euler (not made by New) has no schedule: errors, not panics.
	var z Euler
	_, _, err = z.Step(x, x, 0)
	assert.Error(t, err)
	_, err = z.ScaleModelInput(x, 0)
	assert.Error(t, err)
	assert.NotPanics(t, func() { z.InitLatents(x); _ = z.InitNoiseSigma() })
}

func BenchmarkEulerStep1x4x64x64(b *testing.B) {
	s, err := New(sdxsConfig())
	require.NoError(b, err)
	require.NoError(b, s.SetTimesteps(1))
	x := NewGenerator(1).Randn(1, 4, 64, 64)
	eps := NewGenerator(2).Randn(1, 4, 64, 64)
	for b.Loop() {
		if _, _, err := s.Step(eps, x, 0); err != nil {
			b.Fatal(err)
		}
	}
}
