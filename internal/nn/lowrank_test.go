package nn

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/weights"
)

// TestLowRankMatchesMerged: a graph with unfused low-rank branches (two updates on one layer)
// computes what the same graph computes over weights with the updates merged, for a linear
// layer, a 1×1 convolution and a 3×3 convolution large enough for Winograd with a ResNet's
// channel bias and residual.
func TestLowRankMatchesMerged(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	randn := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.NormFloat64()) * 0.2
		}
		return out
	}
	const c, h, w, n = 8, 64, 64, 16
	src := weights.NewMemSource()
	src.Add("lin.weight", []int{c, c}, randn(c*c))
	src.Add("lin.bias", []int{c}, randn(c))
	src.Add("pw.weight", []int{c, c, 1, 1}, randn(c*c))
	src.Add("conv.weight", []int{c, c, 3, 3}, randn(c*c*9))
	src.Add("conv.bias", []int{c}, randn(c))
	base := NewParams(src)

	updates := map[string][]LowRank{}
	for name, in := range map[string]int{"lin": c, "pw": c, "conv": c * 9} {
		updates[name] = []LowRank{
			{Rank: 2, A: randn(2 * in), B: randn(c * 2), Scale: 0.7},
			{Rank: 3, A: randn(3 * in), B: randn(c * 3), Scale: -1.3},
		}
	}
	merged := base.Overlay([]string{"lin.weight", "pw.weight", "conv.weight"}, func(name string, shape []int, v []float32) ([]float32, error) {
		lrs := updates[name[:len(name)-len(".weight")]]
		out := append([]float32(nil), v...)
		in := len(v) / shape[0]
		for _, lr := range lrs {
			for o := 0; o < shape[0]; o++ {
				for i := 0; i < in; i++ {
					var d float64
					for k := 0; k < lr.Rank; k++ {
						d += float64(lr.B[o*lr.Rank+k]) * float64(lr.A[k*in+i])
					}
					out[o*in+i] += lr.Scale * float32(d)
				}
			}
		}
		return out, nil
	})
	branched := base.WithLowRank(updates)

	graph := func(b *Builder) map[string]*Node {
		x := b.Input("x", c, h, w)
		tok := b.Input("tok", n, c)
		cb := b.Input("chan", c)
		y := b.ConvLayerOpts("conv", x, c, 3, 1, 1, true, ConvOpts{ChannelBias: cb, Residual: x})
		y = b.ConvLayer("pw", y, c, 1, 1, 0, false)
		return map[string]*Node{"img": y, "tok": b.LinearResidual("lin", tok, c, true, tok)}
	}
	in := map[string][]float32{"x": randn(c * h * w), "tok": randn(n * c), "chan": randn(c)}
	run := func(p *Params) (map[string][]float32, int) {
		prog, err := Build(p, graph)
		require.NoError(t, err)
		outs := map[string][]float32{"img": make([]float32, c*h*w), "tok": make([]float32, n*c)}
		require.NoError(t, prog.Run(context.Background(), in, outs))
		return outs, prog.Steps()
	}
	plain, plainSteps := run(base)
	want, mergedSteps := run(merged)
	got, branchSteps := run(branched)
	require.Equal(t, plainSteps, mergedSteps)
	require.Equal(t, plainSteps+6, branchSteps, "two products per branched layer")
	for _, k := range []string{"img", "tok"} {
		var num, den, moved float64
		for i := range want[k] {
			d := float64(got[k][i] - want[k][i])
			num += d * d
			den += float64(want[k][i]) * float64(want[k][i])
			moved += float64(plain[k][i]-want[k][i]) * float64(plain[k][i]-want[k][i])
		}
		require.Less(t, num/den, 1e-10, k)
		require.Greater(t, moved/den, 1e-3, "%s: the updates change the output", k)
	}
}
