package sampler

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

func TestStrengthStart(t *testing.T) {
	for _, c := range []struct {
		steps    int
		strength float64
		start    int
	}{
		{1, 1, 0},
		{2, 0.5, 1},
		{2, 1, 0},
		{4, 1, 0},
		{4, 0.5, 2},
		{4, 0.3, 3},
		{5, 0.8, 1},
		{3, 0.7, 1},    // 3 × 0.7 = 2.0999999999999996: int() gives 2
		{10, 0.3, 7},   // 10 × 0.3 = 3.0000000000000004: 3
		{50, 0.75, 13}, // 37.5: 37
		{4, 0.25, 3},
		{1000, 1e-3, 999},
	} {
		got, err := StrengthStart(c.steps, c.strength)
		require.NoError(t, err, "%d steps, strength %v", c.steps, c.strength)
		assert.Equal(t, c.start, got, "%d steps, strength %v", c.steps, c.strength)
	}
	for _, c := range []struct {
		steps    int
		strength float64
		substr   string
	}{
		{1, 0.5, "runs no step"},
		{4, 0.2, "runs no step"},
		{2, 0, "strength must be in (0, 1]"},
		{2, -0.5, "strength must be in (0, 1]"},
		{2, 1.0000001, "strength must be in (0, 1]"},
		{2, math.NaN(), "strength must be in (0, 1]"},
		{2, math.Inf(1), "strength must be in (0, 1]"},
		{0, 0.5, "at least 1"},
		{-3, 1, "at least 1"},
	} {
		_, err := StrengthStart(c.steps, c.strength)
		require.Error(t, err, "%d steps, strength %v", c.steps, c.strength)
		assert.Contains(t, err.Error(), c.substr)
	}
}

// TestImg2ImgOracle reproduces the scheduler's part of both image-to-image references: the
// timesteps run, the noise, the noisy latents (add_noise at the first step run), the first
// UNet input, and for the one-step case the final latents from the reference UNet output.
func TestImg2ImgOracle(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	raw, err := os.ReadFile(oracle.Path(t, model, "img2img", "cases.json"))
	require.NoError(t, err)
	var cases []struct {
		Seed      uint64    `json:"seed"`
		Width     int       `json:"width"`
		Height    int       `json:"height"`
		Strength  float64   `json:"strength"`
		Steps     int       `json:"steps"`
		Timesteps []float64 `json:"timesteps"`
	}
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.Len(t, cases, 2)
	ref := oracle.Tensors(t, model, "img2img", "reference.safetensors")
	for i, c := range cases {
		t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
			name := func(x string) string { return fmt.Sprintf("case%d.%s", i, x) }
			want := func(x string) []float32 { v, _ := oracle.Float32(t, ref, name(x)); return v }
			s, err := New(sdxsConfig())
			require.NoError(t, err)
			require.NoError(t, s.SetTimesteps(c.Steps))
			start, err := StrengthStart(c.Steps, c.Strength)
			require.NoError(t, err)
			run := s.Timesteps()[start:]
			assert.Equal(t, c.Timesteps, run)
			ts32 := make([]float64, 0)
			for _, v := range want("timesteps") {
				ts32 = append(ts32, float64(v))
			}
			assert.Equal(t, ts32, run, "the file's timesteps")

			noise := NewGenerator(c.Seed).Randn(1, 4, c.Height/8, c.Width/8)
			oracle.AssertMaxAbs(t, "noise", noise, want("noise"), 1e-5)

			noisy, err := s.AddNoise(want("init_latents"), want("noise"), start)
			require.NoError(t, err)
			oracle.AssertMaxAbs(t, "noisy_latents", noisy, want("noisy_latents"), 2e-3)
			assert.LessOrEqual(t, countBitDiffs(noisy, want("noisy_latents")), len(noisy)/100, "noisy_latents: too many last-bit differences")

			in, err := s.ScaleModelInput(slices.Clone(noisy), start)
			require.NoError(t, err)
			r := maxRelDiff(in, want("unet_input"), 1e-3)
			assert.LessOrEqual(t, r, 1e-5, "unet_input max rel err")

			if len(run) == 1 {
				prev, _, err := s.Step(want("unet_output"), noisy, start)
				require.NoError(t, err)
				oracle.AssertMaxAbs(t, "latents", prev, want("latents"), 2e-3)
			}
		})
	}
}

func TestAddNoise(t *testing.T) {
	s, err := New(sdxsConfig())
	require.NoError(t, err)
	require.NoError(t, s.SetTimesteps(4))
	sig := s.Sigmas()
	orig := []float32{1, -2, 0.5}
	noise := []float32{0.25, 1, -3}
	for step := 0; step < 4; step++ {
		got, err := s.AddNoise(orig, noise, step)
		require.NoError(t, err)
		for i := range orig {
			want := float32(float64(orig[i]) + float64(noise[i])*sig[step])
			assert.InDelta(t, want, got[i], 1e-6*math.Abs(float64(want))+1e-7, "step %d value %d", step, i)
		}
	}
	// The inputs are not modified.
	assert.Equal(t, []float32{1, -2, 0.5}, orig)
	for _, c := range []struct {
		noise []float32
		step  int
		want  string
	}{
		{noise[:2], 0, "original samples have 3 values, noise 2"},
		{noise, 4, "step 4 is outside the schedule of 4 steps"},
		{noise, -1, "step -1 is outside"},
	} {
		out, err := s.AddNoise(orig, c.noise, c.step)
		require.ErrorContains(t, err, c.want)
		assert.Nil(t, out)
	}
}
