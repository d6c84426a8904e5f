package unet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// The two oracle models: the DreamShaper layout (DownBlock2D first, conv projections, 8 heads)
// and the SDXS 0.9 layout (three cross-attention blocks, linear projections, only_cross_attention
// in the first block, float16 weights).
var oracleModels = []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"}

// Bounds.
//
// The trace is stored as float16: rounding to nearest keeps every normal value within a relative
// 2⁻¹¹ ≈ 4.9e-4 of the float32 value it stores, so ‖ref − exact‖ ≤ 4.9e-4·‖exact‖ for any
// tensor (subnormals add at most 3e-8 absolute, negligible). Our float32 arithmetic in another
// order adds about 1e-5 through the whole UNet. 1e-3 is twice the worst case of the storage
// rounding alone, and far below what a wrong layer (relative errors of order 1) gives.
const (
	traceRelL2   = 1e-3
	outputRelL2  = 1e-4 // oracle README: unet_output
	timeProjAbs  = 5e-4 // sin/cos in [-1, 1] stored as float16: at most 2⁻¹² off
	oracleTimest = 999.0
)

type caseSpec struct {
	Height int `json:"height"`
	Width  int `json:"width"`
}

// case0 returns the latent size of an oracle model's first case (height/8 × width/8).
func case0(t *testing.T, model string) (h, w int) {
	t.Helper()
	data, err := os.ReadFile(oracle.Path(t, model, "cases.json"))
	require.NoError(t, err)
	var cases []caseSpec
	require.NoError(t, json.Unmarshal(data, &cases))
	require.NotEmpty(t, cases)
	return cases[0].Height / 8, cases[0].Width / 8
}

// loadUNet returns the UNet of an oracle model and its weights (closed at the end of the test).
func loadUNet(t *testing.T, model string) (*Model, *weights.Set) {
	t.Helper()
	dir := oracle.Path(t, model, "model", "unet")
	cfg, err := weights.LoadUNetConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	src := oracle.OpenComponent(t, dir)
	m, err := New(cfg, src)
	require.NoError(t, err)
	return m, src
}

// caseInputs returns case 0's unet_input [4, h, w] and text_embeddings [77, D], with their
// shapes checked.
func caseInputs(t *testing.T, model string, cfg *weights.UNetConfig, h, w int) (sample, text, want []float32) {
	t.Helper()
	ref := oracle.Tensors(t, model, "reference.safetensors")
	sample, shape := oracle.Float32(t, ref, "case0.unet_input")
	require.Equal(t, []int{1, cfg.InChannels, h, w}, shape, "case0.unet_input")
	text, shape = oracle.Float32(t, ref, "case0.text_embeddings")
	require.Equal(t, []int{1, textLen, cfg.CrossAttentionDim}, shape, "case0.text_embeddings")
	want, shape = oracle.Float32(t, ref, "case0.unet_output")
	require.Equal(t, []int{1, cfg.OutChannels, h, w}, shape, "case0.unet_output")
	return sample, text, want
}

// expectedTraceNames lists the module paths that both diffusers' trace and our Trace must
// have for a config: conv_in, time_embedding, every down / up block with its resnets
// (norm1, conv1, norm2, conv2) and attentions (proj_in, proj_out, and in each transformer block
// norm1, attn1, norm2, attn2, ff), the mid block when present, and conv_norm_out.
func expectedTraceNames(cfg *weights.UNetConfig) []string {
	names := []string{"conv_in", "time_embedding", "conv_norm_out"}
	layers := cfg.LayersPerBlock()
	tl := cfg.TransformerLayers()
	resnet := func(p string) {
		for _, s := range []string{"norm1", "conv1", "norm2", "conv2"} {
			names = append(names, p+"."+s)
		}
	}
	attn := func(p string, depth int) {
		names = append(names, p+".proj_in", p+".proj_out")
		for l := 0; l < depth; l++ {
			for _, s := range []string{"norm1", "attn1", "norm2", "attn2", "ff"} {
				names = append(names, fmt.Sprintf("%s.transformer_blocks.%d.%s", p, l, s))
			}
		}
	}
	for i, typ := range cfg.DownBlockTypes {
		names = append(names, fmt.Sprintf("down_blocks.%d", i))
		for j := 0; j < layers[i]; j++ {
			resnet(fmt.Sprintf("down_blocks.%d.resnets.%d", i, j))
			if typ == weights.CrossAttnDownBlock2D {
				attn(fmt.Sprintf("down_blocks.%d.attentions.%d", i, j), tl[i])
			}
		}
	}
	if cfg.HasMidBlock() {
		last := len(cfg.BlockOutChannels) - 1
		names = append(names, "mid_block")
		resnet("mid_block.resnets.0")
		resnet("mid_block.resnets.1")
		attn("mid_block.attentions.0", tl[last])
	}
	n := len(cfg.BlockOutChannels)
	for i, typ := range cfg.UpBlockTypes {
		rb := n - 1 - i
		names = append(names, fmt.Sprintf("up_blocks.%d", i))
		for j := 0; j < layers[rb]+1; j++ {
			resnet(fmt.Sprintf("up_blocks.%d.resnets.%d", i, j))
			if typ == weights.CrossAttnUpBlock2D {
				attn(fmt.Sprintf("up_blocks.%d.attentions.%d", i, j), tl[rb])
			}
		}
	}
	sort.Strings(names)
	return names
}

// isGroupNormTap reports whether a module path names a GroupNorm that our graph fuses with the
// SiLU after it: the resnets' norm1 and norm2, and conv_norm_out.
func isGroupNormTap(name string) bool {
	return name == "conv_norm_out" ||
		strings.Contains(name, ".resnets.") && (strings.HasSuffix(name, ".norm1") || strings.HasSuffix(name, ".norm2"))
}

// traceCase0 runs case 0 of an oracle model through Trace and returns our outputs (with
// "conv_out" for the final output), the oracle trace, the config and the reference output.
func traceCase0(t *testing.T, model string) (map[string][]float32, *weights.File, *weights.UNetConfig, []float32) {
	t.Helper()
	m, _ := loadUNet(t, model)
	cfg := m.Config()
	h, w := case0(t, model)
	sample, text, want := caseInputs(t, model, cfg, h, w)
	got, err := m.Trace(context.Background(), sample, h, w, oracleTimest, text, nil)
	require.NoError(t, err)
	require.Contains(t, got, "out")
	require.NotContains(t, got, "conv_out")
	got["conv_out"] = got["out"]

	// Forward (the cached, non-trace program) computes the same output.
	out, err := m.Forward(context.Background(), sample, h, w, oracleTimest, text, nil)
	require.NoError(t, err)
	oracle.AssertRelL2(t, "unet_output (Forward)", out, want, outputRelL2)
	// Forward fuses biases, residuals and activations into its convolutions, so it sums in
	// another order than Trace: equal to float32 rounding, not bit for bit.
	oracle.AssertRelL2(t, "Forward vs Trace", out, got["out"], 1e-5)
	return got, oracle.Tensors(t, model, "trace.safetensors"), cfg, want
}

// TestTraceMatchesDiffusers runs case 0 of each oracle model through Trace and compares every
// module output that diffusers' trace and ours both have (but the GroupNorm outputs, see
// TestTraceGroupNormOutputs), then the final output.
func TestTraceMatchesDiffusers(t *testing.T) {
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			got, trace, cfg, want := traceCase0(t, model)

			matched := map[string]bool{}
			var skipped []string
			worst := 0.0
			for _, full := range trace.Names() {
				name, ok := strings.CutPrefix(full, "unet.")
				if !ok || isGroupNormTap(name) {
					continue
				}
				ref, shape := oracle.Float32(t, trace, full)
				if name == "time_proj" {
					// The sinusoidal embedding is an input of our graph: check the function.
					require.Equal(t, []int{1, cfg.BlockOutChannels[0]}, shape)
					tp := timestepEmbedding(oracleTimest, cfg.BlockOutChannels[0], cfg.FlipSinToCos, cfg.FreqShift)
					oracle.AssertMaxAbs(t, full, tp, ref, timeProjAbs)
					matched[name] = true
					continue
				}
				ours, ok := got[name]
				if !ok {
					skipped = append(skipped, fmt.Sprintf("%s%v", full, shape))
					continue
				}
				require.Equal(t, 1, shape[0], "%s: batch", full)
				require.Equal(t, prod(shape[1:]), len(ours), "%s: trace shape %v, our Trace has %d values", full, shape, len(ours))
				oracle.AssertRelL2(t, full, ours, ref, traceRelL2)
				worst = max(worst, oracle.RelL2(ours, ref))
				matched[name] = true
			}
			t.Logf("compared %d trace entries, worst relative L2 error %.3g; skipped (not produced by our Trace): %s",
				len(matched), worst, strings.Join(skipped, ", "))

			var missing []string
			for _, name := range append(expectedTraceNames(cfg), "conv_out", "time_proj") {
				if !matched[name] && !isGroupNormTap(name) {
					missing = append(missing, name)
				}
			}
			assert.Empty(t, missing, "module outputs not compared (absent from the trace or from our Trace)")
			// Both models have 3 down and 3 up blocks with resnets and attentions.
			assert.GreaterOrEqual(t, len(matched), 60)

			oracle.AssertRelL2(t, "unet_output (Trace)", got["out"], want, outputRelL2)
		})
	}
}

// TestTraceGroupNormOutputs compares the outputs of the resnets' norm1 / norm2 and of
// conv_norm_out, which diffusers' trace records before the SiLU that follows them.
func TestTraceGroupNormOutputs(t *testing.T) {
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			got, trace, cfg, _ := traceCase0(t, model)
			n := 0
			for _, name := range expectedTraceNames(cfg) {
				if !isGroupNormTap(name) {
					continue
				}
				n++
				full := "unet." + name
				ref, shape := oracle.Float32(t, trace, full)
				ours, ok := got[name]
				if !assert.True(t, ok, "our Trace has no %s", name) {
					continue
				}
				require.Equal(t, prod(shape[1:]), len(ours), "%s: trace shape %v", full, shape)
				if e := oracle.RelL2(ours, ref); e <= traceRelL2 {
					t.Logf("%s: relative L2 error %.3g (bound %.3g)", full, e, traceRelL2)
					continue
				}
				// Diagnose the known way of getting it wrong: reporting the fused GroupNorm+SiLU.
				act := make([]float32, len(ref))
				for i, v := range ref {
					act[i] = float32(float64(v) / (1 + math.Exp(-float64(v))))
				}
				if e := oracle.RelL2(ours, act); e <= traceRelL2 {
					t.Errorf("%s: our Trace reports SiLU(%s) (the GroupNorm fused with the SiLU after it), not the module's output: relative L2 error %.3g against the reference, %.3g against SiLU(reference)",
						full, name, oracle.RelL2(ours, ref), e)
					continue
				}
				oracle.AssertRelL2(t, full, ours, ref, traceRelL2)
			}
			// Per resnet norm1 and norm2, plus conv_norm_out.
			assert.GreaterOrEqual(t, n, 2*len(cfg.DownBlockTypes)+1)
		})
	}
}

func TestResidualShapes(t *testing.T) {
	m, _ := loadUNet(t, "sdxs-dreamshaper-tiny")
	cfg := m.Config()
	require.Equal(t, []int{32, 64, 64}, cfg.BlockOutChannels)
	require.Equal(t, []int{1, 1, 1}, cfg.LayersPerBlock())

	// conv_in, then per block its resnet (or resnet + attention) and, but for the last block,
	// its downsampler.
	assert.Equal(t, [][3]int{
		{32, 32, 32},
		{32, 32, 32}, {32, 16, 16},
		{64, 16, 16}, {64, 8, 8},
		{64, 8, 8},
	}, DownResidualShapes(cfg, 32, 32))
	assert.Equal(t, [3]int{64, 8, 8}, MidResidualShape(cfg, 32, 32))

	// Odd sizes: a 3×3, stride-2, padding-1 convolution gives ⌈n/2⌉.
	assert.Equal(t, [][3]int{
		{32, 5, 7},
		{32, 5, 7}, {32, 3, 4},
		{64, 3, 4}, {64, 2, 2},
		{64, 2, 2},
	}, DownResidualShapes(cfg, 5, 7))
	assert.Equal(t, [3]int{64, 2, 2}, MidResidualShape(cfg, 5, 7))
	assert.Equal(t, [3]int{64, 3, 3}, MidResidualShape(cfg, 9, 11))
	assert.Equal(t, [3]int{64, 1, 1}, MidResidualShape(cfg, 1, 1))

	m09, _ := loadUNet(t, "sdxs-09-tiny")
	assert.Equal(t, [][3]int{
		{32, 9, 11},
		{32, 9, 11}, {32, 5, 6},
		{64, 5, 6}, {64, 3, 3},
		{96, 3, 3},
	}, DownResidualShapes(m09.Config(), 9, 11))
	assert.Equal(t, [3]int{96, 3, 3}, MidResidualShape(m09.Config(), 9, 11))

	// The shapes are the graph's: the Trace's down block outputs are the last skip of each
	// block (and its downsampler output when it has one).
	for _, mm := range []*Model{m, m09} {
		c := mm.Config()
		text := make([]float32, textLen*c.CrossAttentionDim)
		out, err := mm.Trace(context.Background(), make([]float32, c.InChannels*9*11), 9, 11, 999, text, nil)
		require.NoError(t, err)
		shapes := DownResidualShapes(c, 9, 11)
		k := 0
		for i := range c.DownBlockTypes {
			k += c.LayersPerBlock()[i]
			if i < len(c.BlockOutChannels)-1 {
				k++
			}
			s := shapes[k]
			assert.Len(t, out[fmt.Sprintf("down_blocks.%d", i)], s[0]*s[1]*s[2], "down_blocks.%d", i)
		}
	}
}

// TestOddLatentSizes runs latents whose sides are not multiples of the total down factor (4):
// the up path must upsample to each skip connection's size.
func TestOddLatentSizes(t *testing.T) {
	for _, model := range oracleModels {
		m, _ := loadUNet(t, model)
		cfg := m.Config()
		for _, hw := range [][2]int{{5, 7}, {9, 11}, {1, 1}, {3, 8}} {
			h, w := hw[0], hw[1]
			t.Run(fmt.Sprintf("%s/%dx%d", model, h, w), func(t *testing.T) {
				sample := make([]float32, cfg.InChannels*h*w)
				for i := range sample {
					sample[i] = float32(i%7) - 3
				}
				text := make([]float32, textLen*cfg.CrossAttentionDim)
				for i := range text {
					text[i] = float32(i%5)/5 - 0.4
				}
				out, err := m.Forward(context.Background(), sample, h, w, 999, text, nil)
				require.NoError(t, err)
				require.Len(t, out, cfg.OutChannels*h*w)
				for i, v := range out {
					require.False(t, v != v, "NaN at %d", i)
				}

				// Zero ControlNet residuals of the advertised shapes change nothing.
				res := &Residuals{}
				for _, s := range DownResidualShapes(cfg, h, w) {
					res.Down = append(res.Down, make([]float32, s[0]*s[1]*s[2]))
				}
				ms := MidResidualShape(cfg, h, w)
				res.Mid = make([]float32, ms[0]*ms[1]*ms[2])
				outRes, err := m.Forward(context.Background(), sample, h, w, 999, text, res)
				require.NoError(t, err)
				assert.Equal(t, out, outRes)
			})
		}
	}
}

// filterSource hides some tensors of a source.
type filterSource struct {
	nn.Source
	hide map[string]bool
}

func (f filterSource) Float32(name string) ([]float32, []int, error) {
	if f.hide[name] {
		return nil, nil, fmt.Errorf("filtered source: %w: %q", weights.ErrNotFound, name)
	}
	return f.Source.Float32(name)
}

func (f filterSource) Names() []string {
	var out []string
	for _, n := range f.Source.Names() {
		if !f.hide[n] {
			out = append(out, n)
		}
	}
	return out
}

func TestMissingTensor(t *testing.T) {
	const name = "down_blocks.1.attentions.0.proj_in.weight"
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			full, src := loadUNet(t, model)
			require.True(t, src.Has(name))
			m, err := New(full.Config(), filterSource{Source: src, hide: map[string]bool{name: true}})
			require.NoError(t, err)

			err = m.Prepare(context.Background(), 32, 32, false)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
			var me *nn.MissingError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, name, me.Name)
			assert.ErrorIs(t, err, weights.ErrNotFound)

			cfg := full.Config()
			_, err = m.Forward(context.Background(), make([]float32, cfg.InChannels*8*8), 8, 8, 999,
				make([]float32, textLen*cfg.CrossAttentionDim), nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
		})
	}
}

// memCopy loads every tensor of src into a MemSource.
func memCopy(t *testing.T, src weights.Source) *weights.MemSource {
	t.Helper()
	mem := weights.NewMemSource()
	for _, n := range src.Names() {
		v, shape, err := src.Float32(n)
		require.NoError(t, err, n)
		require.NoError(t, mem.Add(n, shape, v))
	}
	return mem
}

func TestWrongTensorShape(t *testing.T) {
	full, src := loadUNet(t, "sdxs-dreamshaper-tiny")
	cfg := full.Config()
	mem := memCopy(t, src)

	// Sanity: the in-memory copy is a working UNet.
	good, err := New(cfg, mem)
	require.NoError(t, err)
	require.NoError(t, good.Prepare(context.Background(), 8, 8, false))
	assert.Empty(t, good.Unused())

	cases := []struct {
		name  string
		shape []int // replaces the tensor's shape (same number of elements or not)
	}{
		{"down_blocks.1.resnets.0.conv1.weight", []int{64, 32, 9, 1}},                        // [64 32 3 3]
		{"down_blocks.2.attentions.0.transformer_blocks.0.attn2.to_k.weight", []int{64, 16}}, // [64 32]
		{"conv_out.bias", []int{5}}, // [4]
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := memCopy(t, src)
			info, ok := src.Info(c.name)
			require.True(t, ok)
			n := 1
			for _, d := range c.shape {
				n *= d
			}
			bad.Add(c.name, c.shape, make([]float32, n))
			m, err := New(cfg, bad)
			require.NoError(t, err)
			err = m.Prepare(context.Background(), 8, 8, false)
			require.Error(t, err)
			msg := err.Error()
			assert.Contains(t, msg, c.name)
			assert.Contains(t, msg, fmt.Sprint(c.shape), "the shape found")
			assert.Contains(t, msg, fmt.Sprint(info.Shape), "the shape the config implies")
			var se *nn.ShapeError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, c.shape, se.Got)
			assert.Equal(t, info.Shape, se.Want)
		})
	}
}

func TestForwardInputErrors(t *testing.T) {
	m, _ := loadUNet(t, "sdxs-09-tiny")
	cfg := m.Config()
	ctx := context.Background()
	const h, w = 8, 8
	sample := make([]float32, cfg.InChannels*h*w)
	text := make([]float32, textLen*cfg.CrossAttentionDim)

	_, err := m.Forward(ctx, sample, h, w, 999, text, nil)
	require.NoError(t, err)

	cases := []struct {
		name   string
		sample []float32
		h, w   int
		text   []float32
		substr string
	}{
		{"short sample", sample[:len(sample)-1], h, w, text, "sample"},
		{"long sample", append(slices.Clone(sample), 0), h, w, text, "sample"},
		{"sample for another size", sample, h, w + 1, text, "sample"},
		{"zero height", sample, 0, w, text, "not positive"},
		{"negative width", sample, h, -8, text, "not positive"},
		{"nil sample", nil, h, w, text, "sample"},
		{"text not a multiple of the width", sample, h, w, text[:len(text)-1], "cross_attention_dim"},
		{"76 tokens", sample, h, w, text[:76*cfg.CrossAttentionDim], "tokens"},
		{"78 tokens", sample, h, w, make([]float32, 78*cfg.CrossAttentionDim), "tokens"},
		{"no text", sample, h, w, nil, "text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := m.Forward(ctx, c.sample, c.h, c.w, 999, c.text, nil)
			require.Error(t, err)
			assert.Nil(t, out)
			assert.Contains(t, err.Error(), c.substr)
			_, err = m.Trace(ctx, c.sample, c.h, c.w, 999, c.text, nil)
			require.Error(t, err)
		})
	}

	t.Run("residual count", func(t *testing.T) {
		shapes := DownResidualShapes(cfg, h, w)
		res := &Residuals{Mid: make([]float32, 96*2*2)}
		for _, s := range shapes[1:] {
			res.Down = append(res.Down, make([]float32, s[0]*s[1]*s[2]))
		}
		_, err := m.Forward(ctx, sample, h, w, 999, text, res)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "residuals")
	})

	t.Run("nil config", func(t *testing.T) {
		_, err := New(nil, weights.NewMemSource())
		require.Error(t, err)
		_, err = New(cfg, nil)
		require.ErrorContains(t, err, "nil weight source")
		bad := *cfg
		bad.ClassName = "Nope"
		_, err = New(&bad, weights.NewMemSource())
		require.ErrorContains(t, err, "_class_name")
	})

	t.Run("size", func(t *testing.T) {
		require.ErrorContains(t, m.Prepare(ctx, 0, 8, false), "not positive")
		_, _, err := m.MACs(ctx, 8, -8)
		require.ErrorContains(t, err, "not positive")
		assert.Nil(t, DownResidualShapes(nil, 8, 8))
		assert.Equal(t, [3]int{}, MidResidualShape(nil, 8, 8))
		assert.Nil(t, DownResidualShapes(&weights.UNetConfig{}, 8, 8))
	})
}

func TestForwardCancelled(t *testing.T) {
	m, _ := loadUNet(t, "sdxs-dreamshaper-tiny")
	cfg := m.Config()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sample := make([]float32, cfg.InChannels*16*16)
	text := make([]float32, textLen*cfg.CrossAttentionDim)
	out, err := m.Forward(ctx, sample, 16, 16, 999, text, nil)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "got %v", err)
	assert.Nil(t, out)
	_, err = m.Trace(ctx, sample, 16, 16, 999, text, nil)
	assert.ErrorIs(t, err, context.Canceled)

	// The model still works afterwards.
	_, err = m.Forward(context.Background(), sample, 16, 16, 999, text, nil)
	require.NoError(t, err)
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}
