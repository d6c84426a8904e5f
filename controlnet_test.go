package sdxs

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

const controlModel = "sdxs-dreamshaper-tiny"

// controlCase returns the index and the entry of the oracle's ControlNet case.
func controlCase(t *testing.T) (int, oracleCase) {
	t.Helper()
	for i, c := range loadCases(t, controlModel) {
		if c.ControlImage {
			return i, c
		}
	}
	t.Fatal("the oracle has no ControlNet case")
	return 0, oracleCase{}
}

// readPNG decodes a PNG file.
func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	return img
}

// controlRequest is the oracle's ControlNet case as a Request.
func controlRequest(t *testing.T) (int, Request) {
	i, c := controlCase(t)
	img := readPNG(t, oracle.Path(t, controlModel, fmt.Sprintf("case%d_control.png", i)))
	return i, Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height, Control: img, ControlScale: c.ControlScale}
}

// TestControlNetMatchesDiffusers runs the oracle's ControlNet case through the public API and
// holds every tensor (control_cond, control_down.*, control_mid, unet_output, ..., image) to the
// oracle README's bounds.
func TestControlNetMatchesDiffusers(t *testing.T) {
	p, err := Load(oracle.Path(t, controlModel, "model"), WithControlNet(oracle.Path(t, controlModel, "controlnet")))
	require.NoError(t, err)
	defer p.Close()
	require.True(t, p.HasControlNet())
	i, req := controlRequest(t)
	var stages []Stage
	req.Progress = func(s Stage, _ time.Duration) { stages = append(stages, s) }
	res, err := p.Generate(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, []Stage{StageTokenize, StageTextEncoder, StageNoise, StageControlNet, StageUNet, StageVAEDecoder}, stages)
	assert.Contains(t, res.Timings, StageControlNet)
	ref := oracle.Tensors(t, controlModel, "reference.safetensors")
	tensors := mustTensors(t, res)
	require.True(t, oracle.AssertCase(t, ref, i, tensors))
	assert.Len(t, tensors, 8+3+len(res.ControlDown)-1)

	// The default scale is 0.8, the case's.
	require.Equal(t, DefaultControlScale, req.ControlScale)
	req.ControlScale = 0
	res0, err := p.Generate(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, res.UNetOutput, res0.UNetOutput)

	// A generation without a control image ignores the loaded ControlNet.
	plain, err := p.Generate(context.Background(), Request{Prompt: req.Prompt, Seed: req.Seed, Width: req.Width, Height: req.Height})
	require.NoError(t, err)
	assert.Nil(t, plain.ControlCond)
	assert.Len(t, mustTensors(t, plain), 8)
	assert.Greater(t, oracle.RelL2(plain.UNetOutput, res.UNetOutput), 1e-3)
}

// TestControlInvert checks through the API that an inverted control image with ControlInvert
// gives the reference's control tensor, and without it does not.
func TestControlInvert(t *testing.T) {
	p, err := Load(oracle.Path(t, controlModel, "model"), WithControlNet(oracle.Path(t, controlModel, "controlnet")))
	require.NoError(t, err)
	defer p.Close()
	i, req := controlRequest(t)
	b := req.Control.Bounds()
	inv := image.NewNRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(req.Control.At(x, y)).(color.NRGBA)
			inv.SetNRGBA(x, y, color.NRGBA{255 - c.R, 255 - c.G, 255 - c.B, 255})
		}
	}
	ref := oracle.Tensors(t, controlModel, "reference.safetensors")
	cond, _ := oracle.Float32(t, ref, fmt.Sprintf("case%d.control_cond", i))
	want, _ := oracle.Float32(t, ref, fmt.Sprintf("case%d.unet_output", i))
	req.Control, req.ControlInvert = inv, true
	res, err := p.Generate(context.Background(), req)
	require.NoError(t, err)
	oracle.AssertMaxAbs(t, "control_cond of the inverted image, inverted", res.ControlCond, cond, oracle.BoundControlCond)
	oracle.AssertRelL2(t, "unet_output", res.UNetOutput, want, oracle.BoundUNetOutput)
	req.ControlInvert = false
	res, err = p.Generate(context.Background(), req)
	require.NoError(t, err)
	assert.Greater(t, oracle.MaxAbs(res.ControlCond, cond), 0.5)

	// Result.Tensors on a result whose ControlNet tensors do not fit: errors, not panics.
	ts, err := res.Tensors()
	require.NoError(t, err)
	require.NotEmpty(t, ts)
	for name, edit := range map[string]func(r *Result){
		"short control_cond": func(r *Result) { r.ControlCond = r.ControlCond[:9] },
		"no shapes":          func(r *Result) { r.controlShapes = nil },
		"extra down":         func(r *Result) { r.ControlDown = append(r.ControlDown, nil) },
		"short down":         func(r *Result) { r.ControlDown = append([][]float32{r.ControlDown[0][:1]}, r.ControlDown[1:]...) },
		"no mid":             func(r *Result) { r.ControlMid = nil },
	} {
		r := *res
		edit(&r)
		ts, err := r.Tensors()
		require.Error(t, err, name)
		require.Nil(t, ts, name)
	}
	outside := Result{Width: res.Width, Height: res.Height, ControlCond: res.ControlCond}
	_, err = outside.Tensors()
	require.Error(t, err)
}

// TestControlResize gives the control image at another size than the picture's: the
// ControlNet sees it resized as imageproc.ControlTensor (Pillow's Lanczos) resizes it.
func TestControlResize(t *testing.T) {
	p, err := Load(oracle.Path(t, controlModel, "model"), WithControlNet(oracle.Path(t, controlModel, "controlnet")))
	require.NoError(t, err)
	defer p.Close()
	_, req := controlRequest(t)
	req.Width, req.Height = 128, 192
	res, err := p.Generate(context.Background(), req)
	require.NoError(t, err)
	require.Len(t, res.ControlCond, 3*128*192)
	assert.Equal(t, imageproc.ControlTensor(req.Control, 128, 192, false), res.ControlCond)
	for _, tn := range mustTensors(t, res) {
		if tn.Name == "control_mid" {
			assert.Equal(t, []int{1, 64, 6, 4}, tn.Shape)
		}
	}
}

// TestControlCanny drives the ControlNet with the Canny edges of the oracle's photo-like
// pictures: the control tensor must be OpenCV's edges (/255) on at least 99.5% of the pixels.
func TestControlCanny(t *testing.T) {
	p, err := Load(oracle.Path(t, controlModel, "model"), WithControlNet(oracle.Path(t, controlModel, "controlnet")))
	require.NoError(t, err)
	defer p.Close()
	data, err := os.ReadFile(oracle.Path(t, "canny", "cases.json"))
	require.NoError(t, err)
	var cases []struct {
		Input      string  `json:"input"`
		Low        float64 `json:"low"`
		High       float64 `json:"high"`
		L2Gradient bool    `json:"l2gradient"`
		EdgesRGB   string  `json:"edges_from_rgb"`
	}
	require.NoError(t, json.Unmarshal(data, &cases))
	require.NotEmpty(t, cases)
	for _, c := range cases {
		t.Run(c.Input, func(t *testing.T) {
			img := readPNG(t, oracle.Path(t, "canny", c.Input))
			edges := readPNG(t, oracle.Path(t, "canny", c.EdgesRGB)).(*image.Gray)
			b := img.Bounds()
			res, err := p.Generate(context.Background(), Request{Prompt: "a photo", Seed: 1, Width: b.Dx(), Height: b.Dy(), Control: img,
				ControlCanny: &imageproc.CannyOptions{Low: c.Low, High: c.High, L2Gradient: c.L2Gradient}})
			require.NoError(t, err)
			plane := b.Dx() * b.Dy()
			agree, edgePixels := 0, 0
			for y := 0; y < b.Dy(); y++ {
				for x := 0; x < b.Dx(); x++ {
					want := float32(edges.GrayAt(x, y).Y) / 255
					k := y*b.Dx() + x
					if want > 0 {
						edgePixels++
					}
					if res.ControlCond[k] == want && res.ControlCond[plane+k] == want && res.ControlCond[2*plane+k] == want {
						agree++
					}
				}
			}
			frac := float64(agree) / float64(plane)
			t.Logf("%s: %d edge pixels, %.4f%% of the pixels agree with OpenCV", c.Input, edgePixels, 100*frac)
			assert.GreaterOrEqual(t, frac, 0.995)
			assert.Positive(t, edgePixels)
		})
	}
	// Bad options are an error naming them.
	_, req := controlRequest(t)
	req.ControlCanny = &imageproc.CannyOptions{Low: -1}
	_, err = p.Generate(context.Background(), req)
	assert.ErrorContains(t, err, "Canny threshold Low = -1")
}

// controlNetCopy writes a copy of the oracle's ControlNet folder with some config fields
// changed (the weights file is a link to the original) and returns its path.
func controlNetCopy(t *testing.T, set map[string]any) string {
	t.Helper()
	src := oracle.Path(t, controlModel, "controlnet")
	dir := filepath.Join(t.TempDir(), "controlnet")
	require.NoError(t, os.Mkdir(dir, 0o755))
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(data, &cfg))
	for k, v := range set {
		cfg[k] = v
	}
	data, err = json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644))
	require.NoError(t, os.Symlink(filepath.Join(src, "diffusion_pytorch_model.safetensors"), filepath.Join(dir, "diffusion_pytorch_model.safetensors")))
	return dir
}

func TestControlNetErrors(t *testing.T) {
	p, err := Load(oracle.Path(t, controlModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	_, req := controlRequest(t)
	ctx := context.Background()

	// A control image with no ControlNet.
	require.False(t, p.HasControlNet())
	_, err = p.Generate(ctx, req)
	require.ErrorContains(t, err, "the request has a control image but no ControlNet is loaded")

	// ControlNets that do not fit the UNet: the error names the field and both values.
	for _, tc := range []struct {
		set  map[string]any
		want string
	}{
		{map[string]any{"block_out_channels": []int{32, 64, 128}}, "block_out_channels is [32 64 128] but the unet's is [32 64 64]"},
		{map[string]any{"in_channels": 8}, "in_channels is 8 but the unet's is 4"},
		{map[string]any{"cross_attention_dim": 64}, "cross_attention_dim is 64 but the unet's is 32"},
		{map[string]any{"layers_per_block": 2}, "layers_per_block is [2 2 2] but the unet's is [1 1 1]"},
		{map[string]any{"conditioning_channels": 1}, "conditioning_channels is 1, but control images are RGB (3 channels)"},
		{map[string]any{"conditioning_embedding_out_channels": []int{8, 16, 32}}, "downsamples the control image by 4, but the VAE upsamples latents by 8"},
		// The config fits, the weights do not: the tensor and both shapes.
		{map[string]any{"conditioning_embedding_out_channels": []int{8, 16, 16, 64}}, `tensor "controlnet_cond_embedding.blocks.5.bias" has shape [32], the config implies [64]`},
	} {
		dir := controlNetCopy(t, tc.set)
		err := p.LoadControlNet(dir)
		require.Error(t, err, "%v", tc.set)
		assert.Contains(t, err.Error(), tc.want)
		assert.Contains(t, err.Error(), dir, "the error names the folder")
		assert.False(t, p.HasControlNet())
	}

	// A folder holding the ControlNet in its controlnet/ subfolder.
	parent := filepath.Dir(controlNetCopy(t, nil))
	require.NoError(t, p.LoadControlNet(parent))
	require.True(t, p.HasControlNet())
	p.UnloadControlNet()

	// A folder that is not a ControlNet.
	err = p.LoadControlNet(oracle.Path(t, controlModel, "model", "unet"))
	assert.ErrorContains(t, err, `"_class_name"`)
	err = p.LoadControlNet(filepath.Join(t.TempDir(), "nowhere"))
	assert.ErrorContains(t, err, "nowhere")
	_, err = Load(oracle.Path(t, controlModel, "model"), WithControlNet(controlNetCopy(t, map[string]any{"in_channels": 8})))
	assert.ErrorContains(t, err, "in_channels is 8 but the unet's is 4")

	// Load, unload: the control image is an error again; bad scales and empty images.
	require.NoError(t, p.LoadControlNet(oracle.Path(t, controlModel, "controlnet")))
	require.True(t, p.HasControlNet())
	bad := req
	bad.Control = image.NewRGBA(image.Rect(0, 0, 0, 0))
	_, err = p.Generate(ctx, bad)
	assert.ErrorContains(t, err, "the control image is empty")
	p.UnloadControlNet()
	require.False(t, p.HasControlNet())
	p.UnloadControlNet() // twice is fine
	_, err = p.Generate(ctx, req)
	require.ErrorContains(t, err, "no ControlNet is loaded")
}

// TestControlNetConcurrentLoadUnload generates with the ControlNet while other goroutines load
// and unload it: every generation either fails because none was loaded when it started, or
// finishes with the ControlNet it started with and gives the reference output. Run with -race.
func TestControlNetConcurrentLoadUnload(t *testing.T) {
	cnDir := oracle.Path(t, controlModel, "controlnet")
	p, err := Load(oracle.Path(t, controlModel, "model"), WithControlNet(cnDir))
	require.NoError(t, err)
	i, req := controlRequest(t)
	ref := oracle.Tensors(t, controlModel, "reference.safetensors")
	want, _ := oracle.Float32(t, ref, fmt.Sprintf("case%d.unet_output", i))
	// Unloading during a generation (here between its noise and ControlNet stages): the
	// generation finishes with the ControlNet it started with, whose weights stay open until then.
	unloadReq := req
	unloadReq.Progress = func(s Stage, _ time.Duration) {
		if s == StageNoise {
			p.UnloadControlNet()
		}
	}
	res, err := p.Generate(context.Background(), unloadReq)
	require.NoError(t, err)
	require.False(t, p.HasControlNet())
	require.True(t, oracle.AssertCase(t, ref, i, mustTensors(t, res)))
	require.NoError(t, p.LoadControlNet(cnDir))

	// Smaller pictures make more rounds; the reference output is only checked at full size.
	small := req
	small.Width, small.Height = 64, 64
	small.Control = req.Control.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(image.Rect(100, 100, 164, 164))

	var loader, gens sync.WaitGroup
	stop := make(chan struct{})
	var loaderErr error
	loader.Add(1)
	go func() {
		defer loader.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			if k%2 == 0 {
				time.Sleep(2 * time.Millisecond)
				p.UnloadControlNet()
			} else if err := p.LoadControlNet(cnDir); err != nil {
				loaderErr = err
				return
			}
		}
	}()
	var mu sync.Mutex
	ok, refused := 0, 0
	for g := 0; g < 3; g++ {
		gens.Add(1)
		go func() {
			defer gens.Done()
			for k := 0; k < 6; k++ {
				r := small
				if k == 0 {
					r = req
				}
				res, err := p.Generate(context.Background(), r)
				mu.Lock()
				if err != nil {
					assert.ErrorContains(t, err, "no ControlNet is loaded")
					refused++
				} else {
					ok++
					assert.NotNil(t, res.ControlCond)
					if k == 0 {
						oracle.AssertRelL2(t, "unet_output", res.UNetOutput, want, oracle.BoundUNetOutput)
					}
				}
				mu.Unlock()
			}
		}()
	}
	gens.Wait()
	close(stop)
	loader.Wait()
	require.NoError(t, loaderErr)
	t.Logf("%d generations with the ControlNet, %d refused without one", ok, refused)
	assert.Equal(t, 18, ok+refused)
	require.NoError(t, p.Close())
	assert.False(t, p.HasControlNet())
}

// mustTensors returns r.Tensors(), failing the test on error.
func mustTensors(t *testing.T, r *Result) []weights.Tensor {
	t.Helper()
	ts, err := r.Tensors()
	require.NoError(t, err)
	return ts
}

// TestControlNetCacheAndClose checks that the ControlNet keeps its graphs in the pipeline's
// bounded cache (counted by CacheBytes, dropped when it is unloaded) and that a closed pipeline
// refuses to load one.
func TestControlNetCacheAndClose(t *testing.T) {
	cnDir := oracle.Path(t, controlModel, "controlnet")
	p, err := Load(oracle.Path(t, controlModel, "model"), WithControlNet(cnDir))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, p.Warm(ctx, 64, 64))
	with, _ := p.CacheBytes()
	macs, err := p.MACs(ctx, 64, 64)
	require.NoError(t, err)
	assert.Positive(t, macs[StageControlNet])
	p.UnloadControlNet()
	without, _ := p.CacheBytes()
	assert.Less(t, without, with, "unloading drops the ControlNet's graphs from the pipeline's cache")
	macs, err = p.MACs(ctx, 64, 64)
	require.NoError(t, err)
	assert.NotContains(t, macs, StageControlNet)

	require.NoError(t, p.LoadControlNet(cnDir))
	require.NoError(t, p.Close())
	assert.False(t, p.HasControlNet())
	assert.ErrorIs(t, p.LoadControlNet(cnDir), ErrClosed)
	p.UnloadControlNet() // does nothing
}

// TestControlNetSteps runs the ControlNet case with two Euler steps: the ControlNet runs at each
// step, and the first step (t = 999 with trailing spacing, the same input as the one-step case)
// gives the reference's residuals.
func TestControlNetSteps(t *testing.T) {
	p, err := Load(oracle.Path(t, controlModel, "model"), WithControlNet(oracle.Path(t, controlModel, "controlnet")))
	require.NoError(t, err)
	defer p.Close()
	i, req := controlRequest(t)
	req.Steps = 2
	n := 0
	req.Progress = func(s Stage, _ time.Duration) {
		if s == StageControlNet {
			n++
		}
	}
	res, err := p.Generate(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, []float64{999, 499}, res.Timesteps)
	assert.Equal(t, 2, n, "the ControlNet runs at every step")
	ref := oracle.Tensors(t, controlModel, "reference.safetensors")
	want := func(name string) []float32 {
		v, _ := oracle.Float32(t, ref, fmt.Sprintf("case%d.%s", i, name))
		return v
	}
	oracle.AssertMaxAbs(t, "control_cond", res.ControlCond, want("control_cond"), oracle.BoundControlCond)
	for j, d := range res.ControlDown {
		oracle.AssertRelL2(t, fmt.Sprintf("control_down.%d (first step)", j), d, want(fmt.Sprintf("control_down.%d", j)), oracle.BoundUNetOutput)
	}
	oracle.AssertRelL2(t, "control_mid (first step)", res.ControlMid, want("control_mid"), oracle.BoundUNetOutput)
	oracle.AssertRelL2(t, "unet_output (first step)", res.UNetOutput, want("unet_output"), oracle.BoundUNetOutput)
}
