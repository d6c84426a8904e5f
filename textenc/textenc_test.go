package textenc

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

// The two oracle models: quick_gelu with float32 weights (DreamShaper layout) and gelu with
// float16 weights plus an int64 position_ids buffer (SDXS 0.9 layout).
var oracleModels = []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"}

const (
	// The trace is stored as float16, which keeps each value within a relative 2⁻¹¹ ≈ 4.9e-4
	// of the float32 value: the relative L2 error of a whole tensor is at most that, plus about
	// 1e-6 of float32 arithmetic in another order. 1e-3 leaves a factor two.
	traceRelL2 = 1e-3
	// Oracle README: text_embeddings, max abs error.
	outputMaxAbs = 1e-4
)

// loadEncoder returns the text encoder of an oracle model and its weights.
func loadEncoder(t *testing.T, model string) (*Model, *weights.Set) {
	t.Helper()
	dir := oracle.Path(t, model, "model", "text_encoder")
	cfg, err := weights.LoadCLIPTextConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	src := oracle.OpenComponent(t, dir)
	m, err := New(cfg, src)
	require.NoError(t, err)
	return m, src
}

// case0IDs returns case 0's input_ids [77].
func case0IDs(t *testing.T, model string) []int64 {
	t.Helper()
	ref := oracle.Tensors(t, model, "reference.safetensors")
	ids, shape := oracle.Int64(t, ref, "case0.input_ids")
	require.Equal(t, []int{1, 77}, shape)
	return ids
}

func TestTraceMatchesReference(t *testing.T) {
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			m, _ := loadEncoder(t, model)
			cfg := m.Config()
			require.Equal(t, 77, m.SeqLen())
			ids := case0IDs(t, model)
			got, err := m.Trace(context.Background(), ids)
			require.NoError(t, err)

			trace := oracle.Tensors(t, model, "trace.safetensors")
			names := []string{"embeddings"}
			for i := 0; i < cfg.NumHiddenLayers; i++ {
				names = append(names, fmt.Sprintf("layers.%d", i))
			}
			var traced []string
			for _, n := range trace.Names() {
				if s, ok := strings.CutPrefix(n, "text."); ok {
					traced = append(traced, s)
				}
			}
			assert.ElementsMatch(t, names, traced, "trace entries of the text encoder")
			for _, name := range names {
				ref, shape := oracle.Float32(t, trace, "text."+name)
				require.Equal(t, []int{1, m.SeqLen(), cfg.HiddenSize}, shape, name)
				require.Contains(t, got, name)
				oracle.AssertRelL2(t, "text."+name, got[name], ref, traceRelL2)
			}

			ref := oracle.Tensors(t, model, "reference.safetensors")
			want, shape := oracle.Float32(t, ref, "case0.text_embeddings")
			require.Equal(t, []int{1, m.SeqLen(), cfg.HiddenSize}, shape)
			oracle.AssertMaxAbs(t, "text_embeddings (Trace)", got["out"], want, outputMaxAbs)

			out, err := m.Encode(context.Background(), ids)
			require.NoError(t, err)
			oracle.AssertMaxAbs(t, "text_embeddings (Encode)", out, want, outputMaxAbs)
			oracle.AssertRelL2(t, "Encode vs Trace (fused residuals sum in another order)", out, got["out"], 1e-5)
		})
	}
}

func TestUnused(t *testing.T) {
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			m, src := loadEncoder(t, model)
			names := src.Names()

			// Before any graph is built every weight is unused, but position_ids is never listed.
			before := m.Unused()
			hasPos := src.Has("text_model.embeddings.position_ids")
			assert.NotContains(t, before, "text_model.embeddings.position_ids")
			want := len(names)
			if hasPos {
				want--
			}
			assert.Len(t, before, want)

			require.NoError(t, m.Prepare(context.Background()))
			assert.Empty(t, m.Unused(), "weights the encoder does not use")
		})
	}

	// sdxs-09-tiny's text encoder really holds the int64 buffer (so the check above means
	// something).
	_, src := loadEncoder(t, "sdxs-09-tiny")
	info, ok := src.Info("text_model.embeddings.position_ids")
	require.True(t, ok)
	assert.Equal(t, weights.I64, info.DType)
	assert.Equal(t, []int{1, 77}, info.Shape)
}

func TestEncodeInputErrors(t *testing.T) {
	m, _ := loadEncoder(t, "sdxs-dreamshaper-tiny")
	cfg := m.Config()
	ctx := context.Background()
	ids := case0IDs(t, "sdxs-dreamshaper-tiny")

	for _, c := range []struct {
		name   string
		ids    []int64
		substr string
	}{
		{"vocab size", set(ids, 5, int64(cfg.VocabSize)), "vocabulary"},
		{"huge", set(ids, 76, 1<<40), "vocabulary"},
		{"negative", set(ids, 0, -1), "vocabulary"},
		{"76 ids", ids[:76], "token ids"},
		{"78 ids", append(slices.Clone(ids), 49407), "token ids"},
		{"none", nil, "token ids"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := m.Encode(ctx, c.ids)
			require.Error(t, err)
			assert.Nil(t, out)
			assert.Contains(t, err.Error(), c.substr)
			_, err = m.Trace(ctx, c.ids)
			require.Error(t, err)
		})
	}

	// The largest id is fine.
	_, err := m.Encode(ctx, set(ids, 5, int64(cfg.VocabSize-1)))
	require.NoError(t, err)

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := m.Encode(cctx, ids)
		assert.ErrorIs(t, err, context.Canceled)
	})

	t.Run("nil config", func(t *testing.T) {
		_, err := New(nil, weights.NewMemSource())
		require.Error(t, err)
		_, err = New(m.Config(), nil)
		require.ErrorContains(t, err, "nil weight source")
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
	const name = "text_model.encoder.layers.1.mlp.fc2.weight"
	full, src := loadEncoder(t, "sdxs-09-tiny")
	require.True(t, src.Has(name))
	m, err := New(full.Config(), hideSource{Source: src, hide: name})
	require.NoError(t, err)
	err = m.Prepare(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), name)
	_, err = m.Encode(context.Background(), case0IDs(t, "sdxs-09-tiny"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), name)
}

func set(ids []int64, i int, v int64) []int64 {
	out := slices.Clone(ids)
	out[i] = v
	return out
}
