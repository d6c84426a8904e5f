package nn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/conv"
	"github.com/sdxs-go/sdxs/internal/kernels"
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
	ref.lazyOff = true
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
	require.Equal(t, 3*extra, def.WinogradBytes(), "fp32 default budget (these small layers cannot run lazily)")

	bf := NewParams(src)
	bf.SetPrecision(BF16)
	run(bf)
	require.Zero(t, bf.WinogradBytes(), "bf16 default budget")
}

// BenchmarkWinogradLevels times the DreamShaper UNet's 3×3 convolutions at the 32×32 and 16×16
// levels of a 512² picture as im2col + SGEMM (budget 0), as Winograd (unlimited budget) and as bf16
// im2col, and as lazy Winograd (float32 and bf16 taps), for the Winograd policy's choice of
// which layers to grant.
func BenchmarkWinogradLevels(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct{ cin, cout, hw int }{
		{320, 640, 32}, {640, 640, 32}, {960, 640, 32}, {1920, 640, 32}, {1280, 1280, 32},
		{640, 1280, 16}, {1280, 1280, 16}, {2560, 1280, 16},
	} {
		for _, mode := range []string{"im2col", "winograd", "bf16", "lazy", "lazy-bf16"} {
			b.Run(fmt.Sprintf("conv%dx%d_%dx%d/%s", tc.cin, tc.cout, tc.hw, tc.hw, mode), func(b *testing.B) {
				src := memSource{}
				src.add(r, "c.weight", tc.cout, tc.cin, 3, 3)
				src.add(r, "c.bias", tc.cout)
				params := NewParams(src)
				params.SetWinogradBudget(0)
				params.lazyOff = mode != "lazy" && mode != "lazy-bf16"
				if mode == "lazy-bf16" {
					params.SetPrecision(BF16)
				}
				if mode == "bf16" {
					params.SetPrecision(BF16)
				}
				if mode == "winograd" {
					params.SetWinogradBudget(1 << 40)
				}
				prog, err := Build(params, func(bd *Builder) map[string]*Node {
					return map[string]*Node{"y": bd.ConvLayer("c", bd.Input("x", tc.cin, tc.hw, tc.hw), tc.cout, 3, 1, 1, true)}
				})
				if err != nil {
					b.Fatal(err)
				}
				if (params.WinogradBytes() > 0) != (mode == "winograd") {
					b.Fatalf("winograd bytes %d in mode %s", params.WinogradBytes(), mode)
				}
				x := randn(r, tc.cin*tc.hw*tc.hw)
				y := make([]float32, tc.cout*tc.hw*tc.hw)
				in, out := map[string][]float32{"x": x}, map[string][]float32{"y": y}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := prog.Run(context.Background(), in, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/op")
			})
		}
	}
}

// TestLazyWinograd checks the lazy Winograd mode in graphs: where the CPU runs it, a 3×3 layer
// at 32×32 that the budget does not grant runs lazily, holds its weight as 9 taps a pair
// (float32, or bf16 in bf16 mode) and nothing more, and gives the im2col result of the float32
// weight (of the weight rounded to bf16 in bf16 mode).
func TestLazyWinograd(t *testing.T) {
	if !conv.LazyFast() {
		t.Skip("the lazy Winograd mode does not run on kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(9, 9))
	const cin, cout, hw = 170, 180, 32
	src := memSource{}
	w := src.add(r, "c.weight", cout, cin, 3, 3)
	src.add(r, "c.bias", cout)
	rounded := memSource{}
	for name, v := range src {
		rounded[name] = v
	}
	wr := make([]float32, len(w))
	for i, v := range w {
		wr[i] = kernels.FromBF16(kernels.ToBF16(v))
	}
	rounded["c.weight"] = struct {
		d []float32
		s []int
	}{wr, []int{cout, cin, 3, 3}}
	x := randn(r, cin*hw*hw)
	run := func(params *Params) []float32 {
		t.Helper()
		prog, err := Build(params, func(b *Builder) map[string]*Node {
			return map[string]*Node{"y": b.ConvLayer("c", b.Input("x", cin, hw, hw), cout, 3, 1, 1, true)}
		})
		require.NoError(t, err)
		y := make([]float32, cout*hw*hw)
		require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"y": y}))
		return y
	}
	for _, pr := range []Precision{FP32, BF16} {
		t.Run(pr.String(), func(t *testing.T) {
			ref := NewParams(src)
			if pr == BF16 {
				ref = NewParams(rounded)
			}
			ref.SetWinogradBudget(0)
			ref.lazyOff = true
			want := run(ref)

			p := NewParams(src)
			p.SetPrecision(pr)
			p.SetWinogradBudget(0)
			got := run(p)
			require.Zero(t, p.WinogradBytes())
			taps := int64(24*8) * cin * 9 * 4 // cout padded to 192 rows
			if pr == BF16 {
				taps /= 2
			}
			require.Equal(t, taps+cout*4, p.Bytes(), "taps and bias only")
			require.Less(t, relL2(got, want), 1e-5)

			// The default budget does not grant a layer that can run lazily.
			d := NewParams(src)
			d.SetPrecision(pr)
			run(d)
			require.Zero(t, d.WinogradBytes())
			require.Equal(t, taps+cout*4, d.Bytes())
		})
	}
}
