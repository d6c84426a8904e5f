package conv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sdxs-go/sdxs/internal/kernels"
)

// roundBF16 returns w with every value rounded to bfloat16.
func roundBF16(w []float32) []float32 {
	r := make([]float32, len(w))
	for i, v := range w {
		r[i] = kernels.FromBF16(kernels.ToBF16(v))
	}
	return r
}

// TestLazyMatchesDirect runs lazy plans (float32 and bfloat16 taps) of odd and even sizes, with
// and without padding, groups of output channels cut short and blocks of input channels past
// gemmKB, against a float64 direct convolution; a bf16 plan against the convolution of the
// weights rounded to bfloat16. It runs the assembly kernels where the CPU has them and the
// plain-Go twins in every case.
func TestLazyMatchesDirect(t *testing.T) {
	type shape struct{ cin, cout, h, w, pad int }
	shapes := []shape{{170, 170, 9, 11, 1}, {300, 50, 16, 16, 1}, {258, 31, 13, 7, 0}, {520, 200, 8, 8, 1}, {640, 96, 32, 32, 1}, {96, 40, 60, 60, 1}, {130, 200, 40, 38, 0}, {64, 30, 1, 500, 1}}
	rng := rand.New(rand.NewPCG(21, 22))
	for _, s := range shapes {
		for _, bf16 := range []bool{false, true} {
			for _, asm := range []bool{true, false} {
				if asm && !LazyFast() {
					continue
				}
				t.Run(fmt.Sprintf("%d→%d_%dx%d_pad%d_bf16=%v_asm=%v", s.cin, s.cout, s.h, s.w, s.pad, bf16, asm), func(t *testing.T) {
					saved := useAVX512
					defer func() { useAVX512 = saved }()
					useAVX512 = asm
					x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, true)
					// Shared chunks of 16 to 48 tiles, so that small images take several.
					var p *Winograd
					withKnobs(false, 16, 48, func() { p = NewWinogradLazy(s.cin, s.cout, s.h, s.w, s.pad, bf16) })
					if !p.Lazy() {
						t.Fatalf("plan is not lazy")
					}
					// 16 to 48 tiles a chunk: a few chunks transform per chunk, three or more once
					// per run (cached).
					if want := ceilDiv(p.tiles, p.chunk) >= lazyCacheMinChunks; p.cached != want {
						t.Fatalf("%d chunks, cached %v", ceilDiv(p.tiles, p.chunk), p.cached)
					}
					t.Logf("%d tiles in chunks of %d, cached %v", p.tiles, p.chunk, p.cached)
					ref := wt
					if bf16 {
						ref = roundBF16(wt)
					}
					want := directConv64(x, ref, bias, s.cin, s.cout, s.h, s.w, s.pad)
					pw := p.PrepareWeights(wt)
					if len(pw) != p.WeightsSize() {
						t.Fatalf("PrepareWeights gave %d floats, WeightsSize %d", len(pw), p.WeightsSize())
					}
					if bf16 && 2*len(pw) > s.cout*s.cin*9+padRows(s.cout)*s.cin*9 {
						t.Fatalf("bf16 taps take %d floats for %d weights", len(pw), s.cout*s.cin*9)
					}
					out := make([]float32, s.cout*p.OutH()*p.OutW())
					for i := range out {
						out[i] = float32(math.NaN())
					}
					p.Run(out, x, pw, bias, make([]float32, p.ScratchSize()))
					rel, maxAbs := errors(out, want)
					if !(rel <= 1e-5) {
						t.Errorf("relative L2 error %.3g (max abs %.3g) > 1e-5", rel, maxAbs)
					}
				})
			}
		}
	}
}

// TestWeightPairsTwins checks the assembly weight transforms against their plain-Go twins, bit
// for bit, on random taps (float32 and bfloat16) and plane strides.
func TestWeightPairsTwins(t *testing.T) {
	if !LazyFast() {
		t.Skip("no assembly weight transforms on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(23, 24))
	for iter := 0; iter < 50; iter++ {
		n := 1 + rng.IntN(40)
		ldp := 16*n + rng.IntN(50)
		src := make([]float32, n*9*16)
		src16 := make([]uint16, len(src))
		for i := range src {
			src[i] = float32(rng.NormFloat64() * math.Exp(4*rng.NormFloat64()))
			src16[i] = kernels.ToBF16(src[i])
		}
		for _, bf16 := range []bool{false, true} {
			got := make([]float32, nXi*ldp)
			want := make([]float32, nXi*ldp)
			for i := range got {
				got[i] = float32(i)
				want[i] = float32(i)
			}
			if bf16 {
				weightPairsBF16Go(want, ldp, src16, n)
				weightPairsBF16AVX512(&got[0], ldp, &src16[0], n)
			} else {
				weightPairsGo(want, ldp, src, n)
				weightPairsAVX512(&got[0], ldp, &src[0], n)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n %d ldp %d bf16 %v: dst[%d] = %v, Go twin %v", n, ldp, bf16, i, got[i], want[i])
				}
			}
		}
	}
}

// TestLazyTransformMatchesTransformWeights checks the lazy transform of one weight against
// TransformWeights (computed in float64), to float32 rounding.
func TestLazyTransformMatchesTransformWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	p := NewWinograd(1, 1, 4, 4)
	saved := p.packed
	p.packed = false
	defer func() { p.packed = saved }()
	for iter := 0; iter < 200; iter++ {
		var g [9]float32
		for i := range g {
			g[i] = float32(rng.NormFloat64())
		}
		want := p.TransformWeights(g[:])
		got := make([]float32, nXi)
		weightLane(got, 1, &g)
		for xi := range got {
			if d := math.Abs(float64(got[xi] - want[xi])); d > 4e-7*(1+math.Abs(float64(want[xi]))) {
				t.Fatalf("ξ %d: %v, TransformWeights %v", xi, got[xi], want[xi])
			}
		}
	}
}

// TestLazyOnlyForSharedPlans checks which plans go lazy: not the small ones (private chunks)
// nor those with an odd number of input channels, which keep transformed weights.
func TestLazyOnlyForSharedPlans(t *testing.T) {
	for _, c := range []struct {
		cin, cout int
		lazy      bool
		kind      string
	}{
		{64, 64, false, "winograd4x4"},
		{321, 320, false, "winograd4x4"},
		{320, 320, true, "winograd-taps"},
	} {
		p := NewWinogradLazy(c.cin, c.cout, 32, 32, 1, false)
		if p.Lazy() != c.lazy || p.WeightsKind() != c.kind {
			t.Errorf("%d→%d: lazy %v kind %q, want %v %q", c.cin, c.cout, p.Lazy(), p.WeightsKind(), c.lazy, c.kind)
		}
		if !c.lazy && p.WeightsSize() != p.TransformedSize() {
			t.Errorf("%d→%d: WeightsSize %d, TransformedSize %d", c.cin, c.cout, p.WeightsSize(), p.TransformedSize())
		}
	}
	if k := NewWinogradLazy(320, 320, 32, 32, 1, true).WeightsKind(); k != "winograd-taps-bf16" {
		t.Errorf("bf16 kind %q", k)
	}
}

// TestLazyRunDoesNotAllocate checks that a lazy run allocates nothing.
func TestLazyRunDoesNotAllocate(t *testing.T) {
	x, wt, bias := randomProblem(rand.New(rand.NewPCG(27, 28)), 320, 64, 40, 40, true)
	for _, maxChunk := range []int{512, 8} { // one chunk; 13 (cached)
		var p *Winograd
		withKnobs(false, 4, maxChunk, func() { p = NewWinogradLazy(320, 64, 40, 40, 1, true) })
		if p.cached != (maxChunk == 8) {
			t.Fatalf("max chunk %d: cached %v", maxChunk, p.cached)
		}
		pw := p.PrepareWeights(wt)
		out := make([]float32, 64*40*40)
		s := make([]float32, p.ScratchSize())
		p.Run(out, x, pw, bias, s)
		if n := testing.AllocsPerRun(10, func() { p.Run(out, x, pw, bias, s) }); n != 0 {
			t.Errorf("lazy Run (cached %v) allocates %v times", p.cached, n)
		}
	}
}

// BenchmarkLazy times the DreamShaper UNet's large 3×3 convolutions at the 32×32 and 16×16
// levels of a 512² picture with transformed weights held in memory (winograd), with the taps
// transformed on every run (lazy, lazy-bf16), and as im2col + Sgemm.
func BenchmarkLazy(b *testing.B) {
	shapes := []struct{ cin, cout, h, w int }{
		{640, 640, 32, 32}, {1920, 640, 32, 32}, {1280, 1280, 32, 32}, {1280, 1280, 16, 16}, {2560, 1280, 16, 16},
	}
	for _, s := range shapes {
		rng := rand.New(rand.NewPCG(7, 8))
		x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, true)
		out := make([]float32, s.cout*s.h*s.w)
		name := fmt.Sprintf("%dx%d_%dx%d", s.cin, s.cout, s.h, s.w)
		for _, mode := range []string{"winograd", "lazy", "lazy-bf16", "im2col", "lazy-24x256", "lazy-96x64", "lazy-48x64", "lazy-72x64", "lazy-96x32"} {
			b.Run(name+"/"+mode, func(b *testing.B) {
				var run func()
				switch mode {
				case "im2col":
					q := newIm2col(s.cin, s.cout, s.h, s.w)
					scratch := make([]float32, q.scratchSize())
					run = func() { q.run(out, x, wt, bias, scratch) }
				default:
					var rows, kb int
					if n, _ := fmt.Sscanf(mode, "lazy-%dx%d", &rows, &kb); n == 2 {
						saved := [2]int{lazyRows, lazyKB}
						lazyRows, lazyKB = rows, kb
						defer func() { lazyRows, lazyKB = saved[0], saved[1] }()
						mode = "lazy"
					}
					p := NewWinograd(s.cin, s.cout, s.h, s.w)
					if mode != "winograd" {
						p = NewWinogradLazy(s.cin, s.cout, s.h, s.w, 1, mode == "lazy-bf16")
					}
					pw := p.PrepareWeights(wt)
					scratch := make([]float32, p.ScratchSize())
					run = func() { p.Run(out, x, pw, bias, scratch) }
				}
				run()
				b.ResetTimer()
				for range b.N {
					run()
				}
				reportGFLOPS(b, s.cin, s.cout, s.h, s.w)
			})
		}
	}
}
