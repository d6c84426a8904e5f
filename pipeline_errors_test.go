package sdxs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// errorsModel is the oracle model these tests load and break.
const errorsModel = "sdxs-dreamshaper-tiny"

// linkModelCopy makes a copy of an oracle model folder in a fresh temporary folder and returns
// its path: files are symbolic links to the originals, folders (the components) are real
// folders, so that any file can be removed or replaced. The folder's path is neutral (it does not
// contain the test's name), so that error messages can be searched for component names.
func linkModelCopy(t *testing.T, model string) string {
	t.Helper()
	src := oracle.Path(t, model, "model")
	root, err := os.MkdirTemp("", "sdxs-errors-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	dst := filepath.Join(root, "m")
	var link func(src, dst string)
	link = func(src, dst string) {
		require.NoError(t, os.Mkdir(dst, 0o755))
		entries, err := os.ReadDir(src)
		require.NoError(t, err)
		for _, e := range entries {
			s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
			if e.IsDir() {
				link(s, d)
			} else {
				require.NoError(t, os.Symlink(s, d))
			}
		}
	}
	link(src, dst)
	return dst
}

// replaceFile replaces the link at path by a regular file holding data.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

// loadErr loads dir, which must fail, and returns the error message with dir replaced by
// "<dir>".
func loadErr(t *testing.T, dir string) (error, string) {
	t.Helper()
	p, err := Load(dir)
	if err == nil {
		p.Close()
		t.Fatalf("Load succeeded")
	}
	assert.Nil(t, p)
	return err, strings.ReplaceAll(err.Error(), dir, "<dir>")
}

func TestLoadErrorsMissingComponent(t *testing.T) {
	// Sanity: the linked copy loads.
	dir := linkModelCopy(t, errorsModel)
	p, err := Load(dir)
	require.NoError(t, err)
	require.NoError(t, p.Close())

	for _, comp := range []string{"vae", "unet", "text_encoder", "tokenizer", "scheduler"} {
		t.Run(comp, func(t *testing.T) {
			// model_index.json lists the component.
			dir := linkModelCopy(t, errorsModel)
			require.NoError(t, os.RemoveAll(filepath.Join(dir, comp)))
			_, msg := loadErr(t, dir)
			t.Log(msg)
			assert.Contains(t, msg, comp)

			// Without model_index.json the components are discovered, and one is missing.
			require.NoError(t, os.Remove(filepath.Join(dir, "model_index.json")))
			_, msg = loadErr(t, dir)
			t.Log(msg)
			assert.Contains(t, msg, comp)
			assert.NotContains(t, msg, "no component folders")
		})
	}

	t.Run("empty component folder", func(t *testing.T) {
		dir := linkModelCopy(t, errorsModel)
		require.NoError(t, os.RemoveAll(filepath.Join(dir, "vae")))
		require.NoError(t, os.Mkdir(filepath.Join(dir, "vae"), 0o755))
		_, msg := loadErr(t, dir)
		t.Log(msg)
		assert.Contains(t, msg, "vae")
	})

	t.Run("component weights missing", func(t *testing.T) {
		dir := linkModelCopy(t, errorsModel)
		require.NoError(t, os.Remove(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors")))
		_, msg := loadErr(t, dir)
		t.Log(msg)
		assert.Contains(t, msg, "unet")
	})
}

// editConfig sets fields of a component's JSON config file.
func editConfig(t *testing.T, dir, comp, file string, set map[string]any) {
	t.Helper()
	path := filepath.Join(dir, comp, file)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	for k, v := range set {
		m[k] = v
	}
	out, err := json.MarshalIndent(m, "", "  ")
	require.NoError(t, err)
	replaceFile(t, path, out)
}

func TestLoadErrorsUnsupportedConfig(t *testing.T) {
	cases := []struct {
		comp, file, field string
		value             any
	}{
		{"unet", "config.json", "resnet_time_scale_shift", "scale_shift"},
		{"unet", "config.json", "act_fn", "gelu"},
		{"unet", "config.json", "time_cond_proj_dim", 256},
		{"unet", "config.json", "class_embed_type", "timestep"},
		{"unet", "config.json", "block_out_channels", []int{}},
		{"text_encoder", "config.json", "hidden_act", "relu"},
		{"vae", "config.json", "latent_channels", 8},
	}
	for _, c := range cases {
		t.Run(c.comp+"."+c.field, func(t *testing.T) {
			dir := linkModelCopy(t, errorsModel)
			editConfig(t, dir, c.comp, c.file, map[string]any{c.field: c.value})
			err, msg := loadErr(t, dir)
			t.Log(msg)
			assert.Contains(t, msg, c.field)
			var ce *weights.ConfigError
			if c.field != "latent_channels" { // a mismatch between components, not a config error
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, c.field, ce.Field)
			}
		})
	}
}

func TestLoadErrorsTruncatedWeights(t *testing.T) {
	for _, comp := range []struct{ name, file string }{
		{"unet", "diffusion_pytorch_model.safetensors"},
		{"vae", "diffusion_pytorch_model.safetensors"},
		{"text_encoder", "model.safetensors"},
	} {
		data, err := os.ReadFile(oracle.Path(t, errorsModel, "model", comp.name, comp.file))
		require.NoError(t, err)
		for _, n := range []int{len(data) - 1, len(data) / 2, 200, 9, 4, 0} {
			t.Run(fmt.Sprintf("%s/%d", comp.name, n), func(t *testing.T) {
				dir := linkModelCopy(t, errorsModel)
				replaceFile(t, filepath.Join(dir, comp.name, comp.file), data[:n])
				p, err := Load(dir)
				if err == nil {
					// Weights are memory-mapped and read on first use: Warm must then fail.
					defer p.Close()
					err = p.Warm(context.Background(), 256, 256)
				}
				require.Error(t, err, "neither Load nor Warm failed")
				t.Log(strings.ReplaceAll(err.Error(), dir, "<dir>"))
			})
		}
	}
}

func TestGenerateErrorsBadSize(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()

	for _, c := range []struct {
		w, h  int
		field string
	}{
		{100, 256, "width"},   // not a multiple of 8
		{256, 100, "height"},  // not a multiple of 8
		{4096, 256, "width"},  // too large
		{256, 4096, "height"}, // too large
		{2056, 256, "width"},  // a multiple of 8 above MaxSize
		{56, 256, "width"},    // a multiple of 8 below MinSize
		{256, 8, "height"},
		{-8, 256, "width"},
		{256, -64, "height"},
		{516, 512, "width"},
		{64, 63, "height"},
	} {
		t.Run(fmt.Sprintf("%dx%d", c.w, c.h), func(t *testing.T) {
			res, err := p.Generate(ctx, Request{Prompt: "x", Width: c.w, Height: c.h})
			require.Error(t, err)
			assert.Nil(t, res)
			assert.Contains(t, err.Error(), c.field)
			err = p.Warm(context.Background(), c.w, c.h)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.field)
		})
	}

	// The limits themselves are fine, and 0 stands for the default size (sample_size × 8).
	require.NoError(t, p.Warm(context.Background(), MinSize, MinSize))
	assert.Equal(t, 256, p.DefaultSize())
	res, err := p.Generate(ctx, Request{Prompt: "x", Width: 64, Height: 0})
	require.NoError(t, err)
	assert.Equal(t, 64, res.Width)
	assert.Equal(t, p.DefaultSize(), res.Height)
	assert.Equal(t, image.Pt(64, p.DefaultSize()), res.Image.Rect.Size())
	assert.Len(t, res.Decoded, 3*64*p.DefaultSize())
}

func TestGenerateCancel(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	req := Request{Prompt: "a lighthouse", Seed: 1, Width: 64, Height: 64}

	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stages []Stage
		r := req
		r.Progress = func(s Stage, _ time.Duration) { stages = append(stages, s) }
		res, err := p.Generate(ctx, r)
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.Canceled), "got %v", err)
		assert.Nil(t, res)
		assert.Empty(t, stages)
	})

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		_, err := p.Generate(ctx, req)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})

	// Cancelling during a stage stops the generation before the next one.
	for _, at := range []Stage{StageTokenize, StageTextEncoder, StageNoise, StageUNet} {
		t.Run("after "+string(at), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stages []Stage
			r := req
			r.Progress = func(s Stage, _ time.Duration) {
				stages = append(stages, s)
				if s == at {
					cancel()
				}
			}
			res, err := p.Generate(ctx, r)
			assert.ErrorIs(t, err, context.Canceled)
			assert.Nil(t, res)
			require.NotEmpty(t, stages)
			assert.Equal(t, at, stages[len(stages)-1], "stages run after the cancellation")
		})
	}

	// The pipeline still works afterwards.
	_, err = p.Generate(context.Background(), req)
	require.NoError(t, err)
}

func TestGenerateProgress(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	var stages []Stage
	took := map[Stage]time.Duration{}
	res, err := p.Generate(context.Background(), Request{
		Prompt: "a lighthouse", Seed: 3, Width: 64, Height: 128,
		Progress: func(s Stage, d time.Duration) {
			stages = append(stages, s)
			took[s] = d
		},
	})
	require.NoError(t, err)
	assert.Equal(t, []Stage{StageTokenize, StageTextEncoder, StageNoise, StageUNet, StageVAEDecoder}, stages)
	assert.Equal(t, took, res.Timings)
	for s, d := range took {
		assert.GreaterOrEqual(t, d, time.Duration(0), s)
	}
	assert.Equal(t, image.Pt(64, 128), res.Image.Rect.Size())
}

func TestGenerateConcurrent(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	req := Request{Prompt: "portrait photo of a girl, golden hour", Seed: 7, Width: 96, Height: 64}
	want, err := p.Generate(context.Background(), req)
	require.NoError(t, err)

	const n = 4
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = p.Generate(context.Background(), req)
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		require.NoError(t, errs[i], "goroutine %d", i)
		assert.Equal(t, want.Image.Pix, results[i].Image.Pix, "goroutine %d: image", i)
		assert.Equal(t, want.Decoded, results[i].Decoded, "goroutine %d: decoded", i)
		assert.Equal(t, want.UNetOutput, results[i].UNetOutput, "goroutine %d: unet output", i)
	}

	// Different sizes and seeds at the same time, each as it is alone.
	reqs := []Request{
		{Prompt: "a", Seed: 1, Width: 64, Height: 64},
		{Prompt: "b", Seed: 2, Width: 128, Height: 64},
		{Prompt: "a", Seed: 1, Width: 64, Height: 64},
		{Prompt: "c", Seed: 3, Width: 64, Height: 128},
	}
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = p.Generate(context.Background(), r)
		}()
	}
	wg.Wait()
	for i, r := range reqs {
		require.NoError(t, errs[i])
		alone, err := p.Generate(context.Background(), r)
		require.NoError(t, err)
		assert.Equal(t, alone.Image.Pix, results[i].Image.Pix, "request %d", i)
	}
}

func TestGenerateSeed(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	req := Request{Prompt: "a lighthouse at dusk", Seed: 1 << 63, Width: 64, Height: 64}
	a, err := p.Generate(ctx, req)
	require.NoError(t, err)
	b, err := p.Generate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<63), a.Seed)
	assert.Equal(t, a.Noise, b.Noise)
	assert.Equal(t, a.Decoded, b.Decoded)
	assert.Equal(t, a.Image.Pix, b.Image.Pix)

	// A freshly loaded pipeline gives the same picture.
	p2, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p2.Close()
	c, err := p2.Generate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, a.Image.Pix, c.Image.Pix)

	// Another seed gives other noise and another picture.
	req.Seed++
	d, err := p.Generate(ctx, req)
	require.NoError(t, err)
	assert.NotEqual(t, a.Noise, d.Noise)
	assert.NotEqual(t, a.Image.Pix, d.Image.Pix)
}
