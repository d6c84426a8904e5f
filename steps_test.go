package sdxs

import (
	"context"
	"fmt"
	"image"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/vae"
)

// handSigmas computes, in float64 and from the definitions alone, the σ of integer training
// timesteps for the SDXS scheduler config (scaled_linear betas from 0.00085 to 0.012 over 1000
// steps): β_i = (√0.00085 + i/999·(√0.012 − √0.00085))², ᾱ_t = ∏_{i≤t}(1 − β_i),
// σ_t = √((1 − ᾱ_t)/ᾱ_t).
func handSigmas() []float64 {
	out := make([]float64, 1000)
	acp := 1.0
	a, b := math.Sqrt(0.00085), math.Sqrt(0.012)
	for i := range out {
		r := a + float64(i)/999*(b-a)
		acp *= 1 - r*r
		out[i] = math.Sqrt((1 - acp) / acp)
	}
	return out
}

// TestTxt2ImgSteps runs text to image with several Euler steps on the tiny model and checks the
// loop against one written here from diffusers' formulas, with the trailing timesteps and their
// σ computed by hand: x = noise·σ₀; per step, the UNet sees x/√(σ²+1) at t, and
// x ← x + ε̂·(σ_next − σ) (the Euler step for epsilon prediction), σ after the last step 0.
// There is no multi-step text-to-image reference; the UNet itself is held to the oracle elsewhere.
func TestTxt2ImgSteps(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	sig := handSigmas()
	for _, c := range []struct {
		steps     int
		timesteps []float64 // trailing: round(arange(1000, 0, −1000/n)) − 1
	}{
		{2, []float64{999, 499}},
		{3, []float64{999, 666, 332}}, // 1000, 666.67, 333.33 rounded, − 1
		{4, []float64{999, 749, 499, 249}},
	} {
		req := Request{Prompt: "a lighthouse at dusk", Seed: 11, Width: 64, Height: 96, Steps: c.steps}
		var stages []Stage
		req.Progress = func(s Stage, _ time.Duration) { stages = append(stages, s) }
		res, err := p.Generate(ctx, req)
		require.NoError(t, err)
		assert.Equal(t, c.timesteps, res.Timesteps)
		want := []Stage{StageTokenize, StageTextEncoder, StageNoise}
		for range c.steps {
			want = append(want, StageUNet)
		}
		assert.Equal(t, append(want, StageVAEDecoder), stages)

		// The loop by hand, in float64 between UNet calls.
		lh, lw := 96/8, 64/8
		noise := sampler.NewGenerator(11).Randn(1, 4, lh, lw)
		assert.Equal(t, noise, res.Noise)
		x := make([]float64, len(noise))
		for i, v := range noise {
			x[i] = float64(v) * sig[999]
		}
		in := make([]float32, len(x))
		for k, ts := range c.timesteps {
			s := sig[int(ts)]
			next := 0.0
			if k+1 < len(c.timesteps) {
				next = sig[int(c.timesteps[k+1])]
			}
			for i, v := range x {
				in[i] = float32(v / math.Sqrt(s*s+1))
			}
			if k == 0 {
				oracle.AssertRelL2(t, "unet_input of the first step", res.UNetInput, in, 1e-5)
			}
			eps, err := p.unet.Forward(ctx, in, lh, lw, ts, res.TextEmbeddings, nil)
			require.NoError(t, err)
			if k == 0 {
				oracle.AssertRelL2(t, "unet_output of the first step", res.UNetOutput, eps, 1e-4)
			}
			for i := range x {
				x[i] += float64(eps[i]) * (next - s)
			}
		}
		final := make([]float32, len(x))
		for i, v := range x {
			final[i] = float32(v)
		}
		oracle.AssertMaxAbs(t, "latents after the last step", res.Latents, final, 2e-3)
		oracle.AssertRelL2(t, "latents after the last step", res.Latents, final, 1e-4)
	}

	// Steps 0 and 1 are the one-step pipeline.
	a, err := p.Generate(ctx, Request{Prompt: "x", Seed: 5, Width: 64, Height: 64})
	require.NoError(t, err)
	b, err := p.Generate(ctx, Request{Prompt: "x", Seed: 5, Width: 64, Height: 64, Steps: 1})
	require.NoError(t, err)
	assert.Equal(t, []float64{999}, a.Timesteps)
	assert.Equal(t, a.Image.Pix, b.Image.Pix)
	// More steps give another picture.
	c, err := p.Generate(ctx, Request{Prompt: "x", Seed: 5, Width: 64, Height: 64, Steps: 2})
	require.NoError(t, err)
	assert.NotEqual(t, a.Latents, c.Latents)
}

// solid is a w×h picture of one colour.
func solid(w, h int) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = 200, 100, 50, 255
	}
	return img
}

func TestGenerateErrorsImg2Img(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	init := solid(64, 64)
	for _, c := range []struct {
		name   string
		req    Request
		substr string
	}{
		{"strength 0", Request{Init: init, Steps: 2}, "strength 0: must be in (0, 1]"},
		{"strength negative", Request{Init: init, Steps: 2, Strength: -0.5}, "strength -0.5: must be in (0, 1]"},
		{"strength above 1", Request{Init: init, Steps: 2, Strength: 1.5}, "strength 1.5: must be in (0, 1]"},
		{"strength NaN", Request{Init: init, Steps: 2, Strength: math.NaN()}, "strength NaN: must be in (0, 1]"},
		{"strength without init", Request{Strength: 0.5}, "without an init picture"},
		{"steps negative", Request{Init: init, Steps: -1, Strength: 1}, "steps -1: must be between 1 and 1000"},
		{"steps negative txt2img", Request{Steps: -2}, "steps -2: must be between 1 and 1000"},
		{"steps too many", Request{Steps: 1001}, "steps 1001: must be between 1 and 1000"},
		{"no step runs", Request{Init: init, Steps: 1, Strength: 0.5}, "runs no step"},
		{"no step runs 4", Request{Init: init, Steps: 4, Strength: 0.2}, "runs no step"},
		{"picture too small", Request{Init: solid(56, 200), Steps: 1, Strength: 1}, "init picture 56×200 gives a 56×200 picture: the minimum is 64×64"},
		{"picture too small after rounding", Request{Init: solid(100, 63), Steps: 1, Strength: 1}, "init picture 100×63 gives a 96×56 picture"},
		{"empty picture", Request{Init: image.NewNRGBA(image.Rect(0, 0, 0, 0)), Steps: 1, Strength: 1}, "init picture is empty"},
		{"bad width", Request{Init: init, Width: 100, Steps: 1, Strength: 1}, "width 100"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stages []Stage
			c.req.Progress = func(s Stage, _ time.Duration) { stages = append(stages, s) }
			res, err := p.Generate(ctx, c.req)
			require.Error(t, err)
			assert.Nil(t, res)
			assert.Contains(t, err.Error(), c.substr)
			assert.True(t, strings.HasPrefix(err.Error(), "sdxs: "), err.Error())
			assert.Empty(t, stages, "stages ran before the request was checked")
		})
	}

	// The size comes from the picture, rounded down to multiples of 8.
	res, err := p.Generate(ctx, Request{Prompt: "x", Init: solid(64, 72), Steps: 2, Strength: 0.5})
	require.NoError(t, err)
	assert.Equal(t, image.Pt(64, 72), res.Image.Rect.Size())
	assert.Equal(t, []float64{499}, res.Timesteps)
	// Strength 1 runs every step, from t = 999, noised with the largest σ.
	res, err = p.Generate(ctx, Request{Prompt: "x", Init: init, Steps: 2, Strength: 1})
	require.NoError(t, err)
	assert.Equal(t, []float64{999, 499}, res.Timesteps)
	sig := handSigmas()[999]
	for i := range res.NoisyLatents {
		require.InDelta(t, float64(res.InitLatents[i])+float64(res.Noise[i])*sig, res.NoisyLatents[i], 1e-4)
	}
	// A picture whose size is not a multiple of 8 is resized (Lanczos) to its size rounded
	// down, as diffusers' image processor does; Width and Height resize it to another size.
	odd := image.NewNRGBA(image.Rect(0, 0, 101, 75))
	for i := range odd.Pix {
		odd.Pix[i] = uint8(i * 7)
	}
	res, err = p.Generate(ctx, Request{Prompt: "x", Init: odd, Steps: 1, Strength: 1})
	require.NoError(t, err)
	assert.Equal(t, image.Pt(96, 72), res.Image.Rect.Size())
	assert.Equal(t, imageproc.InitTensor(odd, 96, 72), res.InitImage)
	res, err = p.Generate(ctx, Request{Prompt: "x", Init: odd, Width: 64, Height: 128, Steps: 1, Strength: 1})
	require.NoError(t, err)
	assert.Equal(t, image.Pt(64, 128), res.Image.Rect.Size())
	assert.Equal(t, imageproc.InitTensor(odd, 64, 128), res.InitImage)
	assert.Len(t, res.InitLatents, 4*16*8)
}

// TestImg2ImgCancel cancels an image-to-image run of several steps after each stage: the run
// stops there, and between the UNet steps.
func TestImg2ImgCancel(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	req := Request{Prompt: "x", Seed: 1, Init: solid(64, 64), Steps: 4, Strength: 1}
	for _, c := range []struct {
		at    Stage
		count int // cancel at the count-th report of the stage
	}{{StageTextEncoder, 1}, {StageVAEEncoder, 1}, {StageNoise, 1}, {StageUNet, 1}, {StageUNet, 3}} {
		t.Run(fmt.Sprintf("%s %d", c.at, c.count), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stages []Stage
			seen := 0
			r := req
			r.Progress = func(s Stage, _ time.Duration) {
				stages = append(stages, s)
				if s == c.at {
					if seen++; seen == c.count {
						cancel()
					}
				}
			}
			res, err := p.Generate(ctx, r)
			assert.ErrorIs(t, err, context.Canceled)
			assert.Nil(t, res)
			require.NotEmpty(t, stages)
			assert.Equal(t, c.at, stages[len(stages)-1], "stages run after the cancellation")
			assert.Equal(t, c.count, seen)
		})
	}
}

// TestImg2ImgConcurrent runs image-to-image and multi-step requests of several sizes at once:
// each gives what it gives alone.
func TestImg2ImgConcurrent(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	reqs := []Request{
		{Prompt: "a", Seed: 1, Init: solid(64, 64), Steps: 2, Strength: 0.5},
		{Prompt: "b", Seed: 2, Init: solid(72, 64), Steps: 3, Strength: 1},
		{Prompt: "c", Seed: 3, Width: 64, Height: 64, Steps: 2},
		{Prompt: "a", Seed: 1, Init: solid(64, 64), Steps: 2, Strength: 0.5},
	}
	want := make([]*Result, len(reqs))
	for i, r := range reqs {
		want[i], err = p.Generate(ctx, r)
		require.NoError(t, err)
	}
	got := make([]*Result, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = p.Generate(ctx, r)
		}()
	}
	wg.Wait()
	for i := range reqs {
		require.NoError(t, errs[i], "request %d", i)
		assert.Equal(t, want[i].Image.Pix, got[i].Image.Pix, "request %d", i)
		assert.Equal(t, want[i].Timesteps, got[i].Timesteps, "request %d", i)
	}
	// A batch of image-to-image pictures: seeds Seed, Seed+1, each as it is alone.
	batch, err := p.GenerateBatch(ctx, reqs[0], 2)
	require.NoError(t, err)
	require.Len(t, batch, 2)
	assert.Equal(t, want[0].Image.Pix, batch[0].Image.Pix)
	r := reqs[0]
	r.Seed++
	alone, err := p.Generate(ctx, r)
	require.NoError(t, err)
	assert.Equal(t, alone.Image.Pix, batch[1].Image.Pix)
	assert.Equal(t, want[0].InitLatents, batch[1].InitLatents, "the same init picture")
	assert.NotEqual(t, want[0].Noise, batch[1].Noise)
}

func TestWarmEncoder(t *testing.T) {
	ctx := context.Background()
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.WarmEncoder(ctx, 64, 96))
	m, err := p.EncoderMACs(ctx, 64, 96)
	require.NoError(t, err)
	want, err := p.vae.(*vae.Tiny).EncoderMACs(ctx, 96, 64)
	require.NoError(t, err)
	assert.Equal(t, want, m)
	assert.Positive(t, m)
	require.ErrorContains(t, p.WarmEncoder(ctx, 60, 64), "width 60")
	_, err = p.EncoderMACs(ctx, 64, 4096)
	require.ErrorContains(t, err, "height 4096")
	var zero *Pipeline
	require.ErrorContains(t, zero.WarmEncoder(ctx, 64, 64), "not made by Load or New")
	_, err = zero.EncoderMACs(ctx, 64, 64)
	require.ErrorContains(t, err, "not made by Load or New")
	require.NoError(t, p.Close())
	require.ErrorIs(t, p.WarmEncoder(ctx, 64, 64), ErrClosed)
}
