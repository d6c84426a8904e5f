package nn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWinogradBudget checks the Winograd policy below the 64×64 level: layers at 32×32 are
// granted in build order while the budget lasts, a grant is charged once across builds, bf16
// mode has no budget by default, and every layer gives the im2col result.
func TestWinogradBudget(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const c, hw, layers = 32, 32, 3
	src := memSource{}
	for i := 0; i < layers; i++ {
		src.add(r, fmt.Sprintf("c%d.weight", i), c, c, 3, 3)
		src.add(r, fmt.Sprintf("c%d.bias", i), c)
	}
	x := randn(r, c*hw*hw)
	extra := int64(36*4-9*4) * c * c
	run := func(params *Params) [][]float32 {
		t.Helper()
		prog, err := Build(params, func(b *Builder) map[string]*Node {
			in := b.Input("x", c, hw, hw)
			out := map[string]*Node{}
			for i := 0; i < layers; i++ {
				out[fmt.Sprint(i)] = b.ConvLayer(fmt.Sprintf("c%d", i), in, c, 3, 1, 1, true)
			}
			return out
		})
		require.NoError(t, err)
		outs := map[string][]float32{}
		var res [][]float32
		for i := 0; i < layers; i++ {
			y := make([]float32, c*hw*hw)
			outs[fmt.Sprint(i)] = y
			res = append(res, y)
		}
		require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, outs))
		return res
	}

	ref := NewParams(src)
	ref.SetWinogradBudget(0)
	want := run(ref)
	require.Zero(t, ref.WinogradBytes())

	p := NewParams(src)
	p.SetWinogradBudget(2*extra + extra/2) // two layers, not three
	got := run(p)
	require.Equal(t, 2*extra, p.WinogradBytes())
	run(p) // a second build charges nothing more
	require.Equal(t, 2*extra, p.WinogradBytes())
	for i := range want {
		require.Less(t, relL2(got[i], want[i]), 1e-5, "layer %d", i)
	}
	require.True(t, p.winoGrants["c0"] && p.winoGrants["c1"] && !p.winoGrants["c2"], "grants %v", p.winoGrants)

	def := NewParams(src)
	run(def)
	require.Equal(t, 3*extra, def.WinogradBytes(), "fp32 default budget")

	bf := NewParams(src)
	bf.SetPrecision(BF16)
	run(bf)
	require.Zero(t, bf.WinogradBytes(), "bf16 default budget")
}
