package vae

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// Both oracle models ship a TAESD decoder: num_decoder_blocks [2, 2, 1, 1] (DreamShaper) and
// [1, 2, 2, 1] (SDXS 0.9).
var oracleModels = []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"}

const (
	// The trace is stored as float16 (each value within a relative 2⁻¹¹ ≈ 4.9e-4 of the
	// float32 one): a relative L2 error of 1e-3 is twice the worst case of that rounding.
	traceRelL2 = 1e-3
	// Oracle README: decoded, max abs error.
	decodedMaxAbs = 2e-3
)

// loadTiny returns the TAESD decoder (vae/) of an oracle model and its weights.
func loadTiny(t *testing.T, model string) (*Tiny, *weights.Set) {
	t.Helper()
	dir := oracle.Path(t, model, "model", "vae")
	cfg, err := weights.LoadTinyVAEConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	src := oracle.OpenComponent(t, dir)
	d, err := NewTiny(cfg, src)
	require.NoError(t, err)
	return d, src
}

// badInput is an input a decoder or encoder must refuse, with a part of the error it gives.
type badInput struct {
	name   string
	in     []float32
	h, w   int
	substr string
}

// assertBadInputs runs call on each input in a subtest named prefix+name: it must fail with an
// error containing substr and return nil. extra, if not nil, then checks more in the subtest.
func assertBadInputs(t *testing.T, prefix string, cases []badInput,
	call func(context.Context, []float32, int, int) ([]float32, error), extra func(*testing.T, badInput)) {
	t.Helper()
	for _, c := range cases {
		t.Run(prefix+c.name, func(t *testing.T) {
			out, err := call(context.Background(), c.in, c.h, c.w)
			require.Error(t, err)
			assert.Nil(t, out)
			assert.Contains(t, err.Error(), c.substr)
			if extra != nil {
				extra(t, c)
			}
		})
	}
}

// case0Latents returns case 0's x₀ divided by the scaling factor, and its latent size.
func case0Latents(t *testing.T, model string, d *Tiny) (z []float32, h, w int) {
	t.Helper()
	ref := oracle.Tensors(t, model, "reference.safetensors")
	x0, shape := oracle.Float32(t, ref, "case0.latents")
	require.Len(t, shape, 4)
	require.Equal(t, []int{1, d.Config().LatentChannels}, shape[:2])
	sf := float32(d.ScalingFactor())
	require.Equal(t, float32(1), sf, "the oracle models' TAESD scaling factor")
	z = make([]float32, len(x0))
	for i, v := range x0 {
		z[i] = v / sf
	}
	return z, shape[2], shape[3]
}

func TestTraceMatchesDiffusers(t *testing.T) {
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			d, _ := loadTiny(t, model)
			z, h, w := case0Latents(t, model, d)
			got, err := d.Trace(context.Background(), z, h, w)
			require.NoError(t, err)

			trace := oracle.Tensors(t, model, "trace.safetensors")
			var skipped []string
			compared := 0
			for _, full := range trace.Names() {
				name, ok := strings.CutPrefix(full, "vae.decoder.")
				if !ok {
					continue
				}
				ref, shape := oracle.Float32(t, trace, full)
				ours, ok := got[name]
				// The activation module is shared by every layer in diffusers, so its trace entry
				// holds its last call; "layers" is the whole Sequential (our last layer).
				if !ok || len(ours) != len(ref) {
					skipped = append(skipped, fmt.Sprintf("%s%v (ours: %d values)", full, shape, len(ours)))
					continue
				}
				oracle.AssertRelL2(t, full, ours, ref, traceRelL2)
				compared++
			}
			t.Logf("compared %d trace entries; skipped: %s", compared, strings.Join(skipped, ", "))
			// Every layer but the shared activation (layers.1): 14 of the 15.
			var layers int
			for k := range got {
				if strings.HasPrefix(k, "layers.") {
					layers++
				}
			}
			assert.Equal(t, 15, layers)
			assert.Equal(t, layers-1, compared)

			ref := oracle.Tensors(t, model, "reference.safetensors")
			want, shape := oracle.Float32(t, ref, "case0.decoded")
			f := d.UpscaleFactor()
			require.Equal(t, []int{1, d.Config().OutChannels, h * f, w * f}, shape)
			oracle.AssertMaxAbs(t, "decoded (Trace)", got["out"], want, decodedMaxAbs)

			out, err := d.Decode(context.Background(), z, h, w)
			require.NoError(t, err)
			oracle.AssertMaxAbs(t, "decoded (Decode)", out, want, decodedMaxAbs)
			oracle.AssertRelL2(t, "Decode vs Trace (fused activations and residuals)", out, got["out"], 1e-5)
		})
	}
}

func TestUpscaleFactor(t *testing.T) {
	for _, model := range oracleModels {
		d, _ := loadTiny(t, model)
		assert.Equal(t, 8, d.UpscaleFactor(), model)
		assert.Equal(t, 1.0, d.ScalingFactor(), model)
		require.NoError(t, d.Prepare(context.Background(), 3, 5))
		assert.Empty(t, d.Unused(), model)

		// Any latent size decodes to 8× its size.
		out, err := d.Decode(context.Background(), make([]float32, 4*3*5), 3, 5)
		require.NoError(t, err)
		assert.Len(t, out, 3*24*40)
	}
}

func TestDecodeInputErrors(t *testing.T) {
	d, _ := loadTiny(t, "sdxs-dreamshaper-tiny")
	ctx := context.Background()
	z := make([]float32, 4*4*4)
	_, err := d.Decode(ctx, z, 4, 4)
	require.NoError(t, err)

	assertBadInputs(t, "", []badInput{
		{"short", z[:len(z)-1], 4, 4, "latents have"},
		{"long", append(slices.Clone(z), 0), 4, 4, "latents have"},
		{"three channels", z[:3*4*4], 4, 4, "latents have"},
		{"other size", z, 4, 5, "latents have"},
		{"nil", nil, 4, 4, "latents have"},
		{"zero size", nil, 0, 0, "not positive"},
		{"negative", z, -4, -4, "not positive"},
	}, d.Decode, func(t *testing.T, c badInput) {
		_, err := d.Trace(ctx, c.in, c.h, c.w)
		require.Error(t, err)
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := d.Decode(cctx, z, 4, 4)
		assert.ErrorIs(t, err, context.Canceled)
	})

	t.Run("nil config", func(t *testing.T) {
		_, err := NewTiny(nil, weights.NewMemSource())
		require.Error(t, err)
		_, err = NewTiny(d.Config(), nil)
		require.ErrorContains(t, err, "nil weight source")
	})

	t.Run("size", func(t *testing.T) {
		require.ErrorContains(t, d.Prepare(ctx, -1, 8), "not positive")
		_, err := d.MACs(ctx, 8, 0)
		require.ErrorContains(t, err, "not positive")
	})
}

// hideSource hides one tensor of a source.
type hideSource struct {
	nn.Source
	hide string
}

func (h hideSource) Float32(name string) ([]float32, []int, error) {
	if name == h.hide {
		return nil, nil, fmt.Errorf("hidden: %w: %q", weights.ErrNotFound, name)
	}
	return h.Source.Float32(name)
}

func (h hideSource) Names() []string {
	return slices.DeleteFunc(h.Source.Names(), func(n string) bool { return n == h.hide })
}

func TestMissingTensor(t *testing.T) {
	full, src := loadTiny(t, "sdxs-09-tiny")
	for _, name := range []string{"decoder.layers.0.weight", "decoder.layers.5.conv.2.bias", "decoder.layers.14.bias"} {
		t.Run(name, func(t *testing.T) {
			require.True(t, src.Has(name))
			d, err := NewTiny(full.Config(), hideSource{Source: src, hide: name})
			require.NoError(t, err)
			err = d.Prepare(context.Background(), 4, 4)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
			var me *nn.MissingError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, name, me.Name)
			_, err = d.Decode(context.Background(), make([]float32, 4*4*4), 4, 4)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
		})
	}
}
