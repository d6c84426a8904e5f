package conv

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestInputTransformTwins compares the assembly input transform with its Go
// twin bit for bit, on windows at every edge of small planes.
func TestInputTransformTwins(t *testing.T) {
	if !useAVX512 {
		t.Skip("no assembly transforms on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for iter := 0; iter < 400; iter++ {
		h, w := 1+rng.IntN(12), 1+rng.IntN(90)
		plane := make([]float32, h*w)
		for i := range plane {
			plane[i] = float32(rng.NormFloat64())
		}
		pad := rng.IntN(2)
		ys := rng.IntN(h+2) - pad - 1
		ntw := (w + 2*pad - 2 + 3) / 4
		if ntw < 1 {
			ntw = 1
		}
		tc := rng.IntN(ntw)
		xs := 4*tc - pad
		n := 1 + rng.IntN(ntw-tc)
		ldv := n + rng.IntN(20)
		got := make([]float32, nXi*ldv+3)
		want := make([]float32, len(got))
		for i := range got {
			got[i], want[i] = -7, -7
		}
		inputTransformGo(want, ldv, plane, h, w, ys, xs, n)
		inputTransformAVX512(&got[0], ldv, &plane[0], h, w, ys, xs, n)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("h %d w %d ys %d xs %d n %d ldv %d: v[%d] = %v, Go twin %v", h, w, ys, xs, n, ldv, i, got[i], want[i])
			}
		}
	}
}

// TestOutputTransformTwins compares the assembly output transform with its
// Go twin bit for bit, with partial rows and columns and every epilogue
// (the residual in dst holds some NaN, ±0 and values that cancel).
func TestOutputTransformTwins(t *testing.T) {
	if !useAVX512 {
		t.Skip("no assembly transforms on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for iter := 0; iter < 400; iter++ {
		n := 1 + rng.IntN(40)
		ldm := n + rng.IntN(20)
		m := make([]float32, nXi*ldm)
		for i := range m {
			m[i] = float32(rng.NormFloat64())
		}
		nrows := 1 + rng.IntN(4)
		ncols := 4*n - rng.IntN(4)
		ldd := ncols + rng.IntN(10)
		bias := float32(rng.NormFloat64())
		for ep := 0; ep < 4; ep++ {
			got := make([]float32, 4*ldd+5)
			want := make([]float32, len(got))
			for i := range got {
				v := float32(rng.NormFloat64())
				switch rng.IntN(20) {
				case 0:
					v = float32(math.NaN())
				case 1:
					v = float32(math.Copysign(0, -1))
				case 2:
					v = 0
				}
				got[i], want[i] = v, v
			}
			outputTransformGo(want, ldd, m, ldm, nrows, ncols, n, bias, ep)
			outputTransformAVX512(&got[0], ldd, &m[0], ldm, nrows, ncols, n, bias, ep)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("ep %d n %d ldm %d rows %d cols %d ldd %d: dst[%d] = %v, Go twin %v", ep, n, ldm, nrows, ncols, ldd, i, got[i], want[i])
				}
			}
		}
	}
}

// TestOutputTransformEpilogue checks the Go output transform's epilogues
// against the plain transform followed by a separate pass, leaving the
// values outside the tiles untouched.
func TestOutputTransformEpilogue(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for iter := 0; iter < 200; iter++ {
		n := 1 + rng.IntN(20)
		ldm := n + rng.IntN(5)
		m := make([]float32, nXi*ldm)
		for i := range m {
			m[i] = float32(rng.NormFloat64())
		}
		nrows := 1 + rng.IntN(4)
		ncols := 4*n - rng.IntN(4)
		ldd := ncols + rng.IntN(10)
		bias := float32(rng.NormFloat64())
		res := make([]float32, 4*ldd+5)
		for i := range res {
			res[i] = float32(rng.NormFloat64())
		}
		conv := make([]float32, len(res))
		outputTransformGo(conv, ldd, m, ldm, nrows, ncols, n, bias, 0)
		for ep := 0; ep < 4; ep++ {
			got := append([]float32(nil), res...)
			outputTransformGo(got, ldd, m, ldm, nrows, ncols, n, bias, ep)
			for i := range got {
				want := res[i]
				if r, c := i/ldd, i%ldd; r < nrows && c < ncols {
					v := conv[i]
					if ep&epAccumulate != 0 {
						v = res[i] + v
					}
					if ep&epReLU != 0 && v < 0 {
						v = 0
					}
					want = v
				}
				if got[i] != want {
					t.Fatalf("ep %d n %d rows %d cols %d ldd %d: dst[%d] = %v, want %v", ep, n, nrows, ncols, ldd, i, got[i], want)
				}
			}
		}
	}
}

// TestGemmKernels compares the assembly product kernels with their Go twin
// (the sums are rounded differently, with fused multiply-adds, so within a
// tolerance), overwriting and accumulating.
func TestGemmKernels(t *testing.T) {
	if !useAVX512 {
		t.Skip("no assembly kernels on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(13, 14))
	for iter := 0; iter < 300; iter++ {
		k := 1 + rng.IntN(80)
		rows := 1 + rng.IntN(60)
		n := 1 + rng.IntN(150)
		ld := n + rng.IntN(30)
		acc := rng.IntN(2)
		rp := padRows(rows)
		a := make([]float32, rp*k)
		for o := 0; o < rows; o++ {
			for i := 0; i < k; i++ {
				a[blockIndex(o, i, k)] = float32(rng.NormFloat64())
			}
		}
		b := make([]float32, k*ld)
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		got := make([]float32, rows*ld+7)
		want := make([]float32, len(got))
		for i := range got {
			got[i] = float32(rng.NormFloat64())
			want[i] = got[i]
		}
		gemmPackedGo(a, b, want, ld, k, rows, n, acc != 0)
		if rng.IntN(2) == 0 {
			gemm8x48PAVX512(&a[0], &b[0], &got[0], ld, k, rows, n, acc)
		} else {
			gemm24x16PAVX512(&a[0], &b[0], &got[0], ld, k, rows, n, acc)
		}
		for i := range got {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*math.Sqrt(float64(k)) {
				t.Fatalf("k %d rows %d n %d ld %d acc %d: c[%d] = %v, Go twin %v", k, rows, n, ld, acc, i, got[i], want[i])
			}
		}
	}
}

// TestPrefetchRows calls the prefetch on whole planes, single rows and columns, the last row and
// empty ranges: it must not fault (a prefetch has no other effect to check), and the
// convolutions that use it are checked against direct ones elsewhere.
func TestPrefetchRows(t *testing.T) {
	const h, w = 7, 37
	plane := make([]float32, h*w)
	for _, c := range [][4]int{{0, h, 0, w}, {h - 1, h, 0, w}, {0, h, w - 1, w}, {3, 4, 5, 6}, {2, 2, 0, w}, {0, h, 4, 4}} {
		prefetchRows(plane, w, c[0], c[1], c[2], c[3])
	}
}
