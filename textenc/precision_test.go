package textenc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/kernels"
	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
)

// bf16Layers is how many times the rounding error of the float32 reference rounded to bf16
// (which no bf16 representation can beat) the bf16 encoder's output may be from the reference,
// per transformer layer. Each layer adds to the residual stream the errors of six products, each
// with its input and weight rounded to bf16 (relative error ~2⁻⁹ apiece), and its attention and
// MLP pass earlier layers' errors on. Measured on every oracle case: 1.75–2.14× the rounding
// error with 2 layers (sdxs-dreamshaper-tiny: relative L2 3.0–3.4e-3 against 1.6–1.8e-3) and
// 2.7–4.0× with 3 (sdxs-09-tiny, gelu: 4.4–6.4e-3 against 1.6–1.8e-3), about one rounding's
// worth per layer and never more than 1.33; 2 per layer leaves a margin of 1.5 on the worst
// case. The noasm build's plain-Go products give the same numbers.
const bf16Layers = 2

// TestBF16MatchesReference runs every oracle case's prompt through a bf16 encoder of each
// oracle model and holds its output to the float32 reference text_embeddings within
// bf16Layers × layers × the relative L2 error of the reference rounded to bf16; an fp32 encoder
// over the same weights file, used before and after it, keeps the oracle's bound and gives
// exactly the same output both times. The bf16 encoder holds every linear weight as bf16 (its
// parameters take exactly the fp32 bytes less the float32 linear weights plus their bf16 form)
// and nothing else changes.
func TestBF16MatchesReference(t *testing.T) {
	ctx := context.Background()
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			m32, src := loadEncoder(t, model)
			cfg := m32.Config()
			ref := oracle.Tensors(t, model, "reference.safetensors")
			type refCase struct {
				ids  []int64
				want []float32
			}
			var cases []refCase
			var before [][]float32
			for i := 0; ; i++ {
				name := fmt.Sprintf("case%d.text_embeddings", i)
				if _, ok := ref.Info(name); !ok {
					break
				}
				want, _ := oracle.Float32(t, ref, name)
				ids, _ := oracle.Int64(t, ref, fmt.Sprintf("case%d.input_ids", i))
				cases = append(cases, refCase{ids, want})
				out, err := m32.Encode(ctx, ids)
				require.NoError(t, err)
				before = append(before, out)
			}
			require.NotEmpty(t, cases)

			m16, err := New(cfg, src)
			require.NoError(t, err)
			m16.Params().SetPrecision(nn.BF16)
			require.Equal(t, nn.FP32, m32.Params().Precision())
			for i, c := range cases {
				got, err := m16.Encode(ctx, c.ids)
				require.NoError(t, err)
				rounded := make([]float32, len(c.want))
				for j, v := range c.want {
					rounded[j] = kernels.FromBF16(kernels.ToBF16(v))
				}
				floor := oracle.RelL2(rounded, c.want)
				rel := oracle.RelL2(got, c.want)
				bound := bf16Layers * float64(cfg.NumHiddenLayers) * floor
				t.Logf("case %d: bf16 text_embeddings rel L2 %.3g (%.2f× the reference rounded to bf16, %.3g; bound %.3g), max abs %.3g",
					i, rel, rel/floor, floor, bound, oracle.MaxAbs(got, c.want))
				require.LessOrEqual(t, rel, bound, "case %d: bf16 text_embeddings rel L2", i)
				require.Greater(t, rel, 1e-4, "case %d: the bf16 encoder gave the float32 result", i)

				out, err := m32.Encode(ctx, c.ids)
				require.NoError(t, err)
				oracle.AssertMaxAbs(t, fmt.Sprintf("case %d fp32 text_embeddings", i), out, c.want, outputMaxAbs)
				require.Equal(t, before[i], out, "case %d: the fp32 encoder's output changed beside a bf16 one", i)
			}

			// Memory: every linear weight of every layer as bf16, no float32 copy kept.
			d, f := cfg.HiddenSize, cfg.IntermediateSize
			var f32, b16 int64
			for _, s := range [][2]int{{d, d}, {d, d}, {d, d}, {d, d}, {f, d}, {d, f}} { // q, k, v, out, fc1, fc2: [out, in]
				f32 += int64(s[0]*s[1]) * 4
				b16 += kernels.NewBF16Right(make([]float32, s[0]*s[1]), s[0], s[1]).Bytes()
			}
			layers := int64(cfg.NumHiddenLayers)
			t.Logf("parameter bytes: fp32 %d, bf16 %d", m32.Params().Bytes(), m16.Params().Bytes())
			require.Equal(t, m32.Params().Bytes()-layers*(f32-b16), m16.Params().Bytes())
		})
	}
}

// TestBF16Overlay replaces a weight of a bf16 encoder (as a merged LoRA does): the overlay
// holds the replacement in bf16 too. Replacing it by its own values gives exactly the bf16
// encoder's output; doubling it gives what an fp32 encoder with the same replacement gives,
// within the bf16 bound, and so does an unfused low-rank update of the same layer (as an
// unfused LoRA runs); the base encoder is unchanged afterwards.
func TestBF16Overlay(t *testing.T) {
	const model = "sdxs-09-tiny"
	const name = "text_model.encoder.layers.1.mlp.fc1.weight"
	ctx := context.Background()
	m32, src := loadEncoder(t, model)
	m16, err := New(m32.Config(), src)
	require.NoError(t, err)
	m16.Params().SetPrecision(nn.BF16)
	ids := case0IDs(t, model)
	base, err := m16.Encode(ctx, ids)
	require.NoError(t, err)

	same := m16.WithWeights([]string{name}, func(_ string, _ []int, w []float32) ([]float32, error) { return w, nil })
	got, err := same.Encode(ctx, ids)
	require.NoError(t, err)
	require.Equal(t, base, got, "an overlay of the same values")
	cfg := m16.Config()
	fc1 := kernels.NewBF16Right(make([]float32, cfg.IntermediateSize*cfg.HiddenSize), cfg.IntermediateSize, cfg.HiddenSize)
	require.Equal(t, fc1.Bytes(), same.Params().Bytes(), "the overlay holds one bf16 weight")

	double := func(_ string, _ []int, w []float32) ([]float32, error) {
		out := make([]float32, len(w))
		for i, v := range w {
			out[i] = 2 * v
		}
		return out, nil
	}
	got, err = m16.WithWeights([]string{name}, double).Encode(ctx, ids)
	require.NoError(t, err)
	want, err := m32.WithWeights([]string{name}, double).Encode(ctx, ids)
	require.NoError(t, err)
	require.Greater(t, oracle.RelL2(got, base), 1e-2, "doubling fc1 changed nothing")
	rounded := make([]float32, len(want))
	for j, v := range want {
		rounded[j] = kernels.FromBF16(kernels.ToBF16(v))
	}
	bound := bf16Layers * float64(cfg.NumHiddenLayers) * oracle.RelL2(rounded, want)
	oracle.AssertRelL2(t, "bf16 overlay vs fp32 overlay", got, want, bound)

	// The same layer with an unfused low-rank update: its bf16 product plus a float32 branch.
	d, f := cfg.HiddenSize, cfg.IntermediateSize
	rng := rand.New(rand.NewPCG(1, 2))
	lr := nn.LowRank{Rank: 2, A: make([]float32, 2*d), B: make([]float32, f*2), Scale: 1}
	for i := range lr.A {
		lr.A[i] = float32(rng.NormFloat64())
	}
	for i := range lr.B {
		lr.B[i] = float32(rng.NormFloat64())
	}
	branches := map[string][]nn.LowRank{strings.TrimSuffix(name, ".weight"): {lr}}
	got, err = m16.WithLowRank(branches).Encode(ctx, ids)
	require.NoError(t, err)
	want, err = m32.WithLowRank(branches).Encode(ctx, ids)
	require.NoError(t, err)
	require.Greater(t, oracle.RelL2(got, base), 1e-2, "the low-rank branch changed nothing")
	for j, v := range want {
		rounded[j] = kernels.FromBF16(kernels.ToBF16(v))
	}
	bound = bf16Layers * float64(cfg.NumHiddenLayers) * oracle.RelL2(rounded, want)
	oracle.AssertRelL2(t, "bf16 low-rank vs fp32 low-rank", got, want, bound)

	again, err := m16.Encode(ctx, ids)
	require.NoError(t, err)
	require.Equal(t, base, again, "the base encoder changed")
}
