package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// normSizes are the lengths the norm kernels are tested on: every kind of
// tail around the 16- and 64-element steps, and a long odd one.
var normSizes = []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 79, 100, 127, 128, 129, 320, 1000, 1280, 1000003}

// normInput returns n values: mostly normal of a random scale, with a few
// special ones (zeros of both signs, infinities, NaN, subnormals, huge).
func normInput(r *rand.Rand, n int, specials bool) []float32 {
	sp := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, 1e-30, -1e30, 1e30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}
	x := make([]float32, n)
	scale := []float64{0.01, 1, 3, 10}[r.IntN(4)]
	for i := range x {
		if specials && r.IntN(20) == 0 {
			x[i] = sp[r.IntN(len(sp))]
			continue
		}
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

// near reports whether got is within tol of want; NaN must give NaN and
// an infinite or out-of-range want the same infinity.
func near(got float32, want, tol float64) bool {
	g := float64(got)
	if math.IsNaN(want) {
		return math.IsNaN(g)
	}
	if math.IsInf(want, 0) || math.Abs(want) > math.MaxFloat32 {
		return math.IsInf(g, int(math.Copysign(1, want)))
	}
	return math.Abs(g-want) <= tol
}

func siluRef64(x float64) float64 {
	for _, f := range elementwiseFuncs {
		if f.name == "SiLU" {
			return f.ref(x)
		}
	}
	panic("no SiLU")
}

// normMap describes one streaming kernel for the table-driven tests.
type normMap struct {
	name  string
	nin   int  // input slices
	exact bool // the vector kernel and its twin agree bit for bit
	// special: the inputs may hold infinities and NaN
	special bool
	// run calls the exported kernel (asm) or the Go twin on dst and in,
	// with scalars s.
	run func(asm bool, dst []float32, in [][]float32, s []float32)
	// ref returns the exact result for the inputs v at one index and the
	// error bound, for the fused (vector) or unfused (Go) rounding.
	ref func(v, s []float32, fused bool) (want, tol float64)
}

const u32 = 1.0 / (1 << 24) // unit roundoff of float32

var normMaps = []normMap{
	{name: "ScaleShift", nin: 1, special: true,
		run: func(asm bool, dst []float32, in [][]float32, s []float32) {
			if asm {
				ScaleShift(dst, in[0], s[0], s[1])
			} else {
				scaleShiftGo(dst, in[0], s[0], s[1])
			}
		},
		ref: func(v, s []float32, fused bool) (float64, float64) {
			p := float64(v[0]) * float64(s[0])
			w := p + float64(s[1])
			return w, 1.01*u32*(math.Abs(p)+math.Abs(w)) + 1e-44
		}},
	{name: "ScaleShiftSiLU", nin: 1, special: true,
		run: func(asm bool, dst []float32, in [][]float32, s []float32) {
			if asm {
				ScaleShiftSiLU(dst, in[0], s[0], s[1])
			} else {
				scaleShiftSiLUGo(dst, in[0], s[0], s[1])
			}
		},
		ref: func(v, s []float32, fused bool) (float64, float64) {
			// The argument is rounded to float32 first, as any float32
			// implementation does; SiLU of it is then within 1e-6.
			t := float32(v[0]*s[0]) + s[1]
			if fused {
				t = fma32(v[0], s[0], s[1])
			}
			w := siluRef64(float64(t))
			return w, 1e-6*math.Abs(w) + 2e-45
		}},
	{name: "LayerNormRow", nin: 3,
		run: func(asm bool, dst []float32, in [][]float32, s []float32) {
			if asm {
				LayerNormRow(dst, in[0], in[1], in[2], s[0], s[1])
			} else {
				layerNormRowGo(dst, in[0], in[1], in[2], s[0], s[1])
			}
		},
		ref: func(v, s []float32, fused bool) (float64, float64) {
			p := (float64(v[0]) - float64(s[0])) * float64(s[1]) * float64(v[1])
			w := p + float64(v[2])
			return w, 3.1*u32*math.Abs(p) + 1.01*u32*math.Abs(w) + 1e-44
		}},
	{name: "Add", nin: 2, exact: true, special: true,
		run: func(asm bool, dst []float32, in [][]float32, s []float32) {
			if asm {
				Add(dst, in[0], in[1])
			} else {
				addGo(dst, in[0], in[1])
			}
		},
		ref: func(v, s []float32, fused bool) (float64, float64) {
			// float32 + float32 is exact in float64 unless the smaller is
			// below half a float32 unit of the larger; one rounding then.
			return float64(float32(float64(v[0]) + float64(v[1]))), 0
		}},
	{name: "Mul", nin: 2, exact: true, special: true,
		run: func(asm bool, dst []float32, in [][]float32, s []float32) {
			if asm {
				Mul(dst, in[0], in[1])
			} else {
				mulGo(dst, in[0], in[1])
			}
		},
		ref: func(v, s []float32, fused bool) (float64, float64) {
			// The product of two float32 is exact in float64; one rounding.
			return float64(float32(float64(v[0]) * float64(v[1]))), 0
		}},
	{name: "ReLU", nin: 1, exact: true, special: true,
		run: func(asm bool, dst []float32, in [][]float32, s []float32) {
			copy(dst, in[0])
			if asm {
				ReLUInPlace(dst)
			} else {
				reluGo(dst)
			}
		},
		ref: func(v, s []float32, fused bool) (float64, float64) {
			if v[0] < 0 {
				return 0, 0
			}
			return float64(v[0]), 0
		}},
}

func sameBits(a, b float32) bool {
	if a != a && b != b {
		return true
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

// TestNormMaps checks every streaming kernel, exported (vector) and Go
// twin, against a float64 reference and against each other, on every
// length of normSizes at two alignments, with guard elements past the end
// and with the output aliasing each input.
func TestNormMaps(t *testing.T) {
	for _, k := range normMaps {
		t.Run(k.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(31, uint64(len(k.name))))
			for _, n := range normSizes {
				for _, off := range []int{0, 1} {
					if n > 100000 && off > 0 {
						continue
					}
					checkNormMap(t, r, k, n, off)
				}
			}
		})
	}
}

func checkNormMap(t *testing.T, r *rand.Rand, k normMap, n, off int) {
	const guard = 17
	sentinel := float32(-12345.5)
	in := make([][]float32, k.nin)
	for j := range in {
		in[j] = normInput(r, off+n+guard, k.special && r.IntN(2) == 0)
	}
	s := []float32{1, 0}
	if r.IntN(3) > 0 {
		s = []float32{float32(r.NormFloat64() * 2), float32(r.NormFloat64())}
	}
	if k.name == "LayerNormRow" {
		s = []float32{float32(r.NormFloat64()), float32(0.1 + 3*r.Float64())}
	}
	view := func() [][]float32 {
		v := make([][]float32, len(in))
		for i := range in {
			v[i] = in[i][off : off+n]
		}
		return v
	}
	outs := [2][]float32{}
	for m, asm := range []bool{true, false} {
		dst := make([]float32, off+n+guard)
		for i := range dst {
			dst[i] = sentinel
		}
		k.run(asm, dst[off:off+n], view(), s)
		for i := range dst {
			if (i < off || i >= off+n) && dst[i] != sentinel {
				t.Fatalf("n=%d off=%d asm=%v: element %d outside the output changed", n, off, asm, i)
			}
		}
		out := dst[off : off+n]
		outs[m] = out
		fused := asm && useAVX512Elementwise
		v := make([]float32, k.nin)
		for i := range out {
			for j := range in {
				v[j] = in[j][off+i]
			}
			want, tol := k.ref(v, s, fused)
			if !near(out[i], want, tol) || (k.exact && !sameBits(out[i], float32(want)) && !math.IsNaN(want)) {
				t.Fatalf("n=%d off=%d asm=%v s=%v: [%d] of %v = %v, want %v ± %.3g", n, off, asm, s, i, v, out[i], want, tol)
			}
		}
	}
	// The two versions agree within the sum of their bounds.
	v := make([]float32, k.nin)
	for i := range outs[0] {
		for j := range in {
			v[j] = in[j][off+i]
		}
		wa, ta := k.ref(v, s, useAVX512Elementwise)
		wg, tg := k.ref(v, s, false)
		a, g := outs[0][i], outs[1][i]
		if k.exact && !sameBits(a, g) || !near(a, float64(g), ta+tg+math.Abs(wa-wg)) {
			t.Fatalf("n=%d: [%d] of %v: exported %v, Go twin %v", n, i, v, a, g)
		}
	}
	// Output aliasing each input: same results as into a separate slice.
	for j := range in {
		if k.name == "ReLU" {
			break // in place anyway
		}
		buf := append([]float32(nil), in[j]...)
		vw := view()
		vw[j] = buf[off : off+n]
		k.run(true, buf[off:off+n], vw, s)
		for i := range outs[0] {
			if !sameBits(buf[off+i], outs[0][i]) {
				t.Fatalf("n=%d: output aliasing input %d: [%d] = %v, not %v", n, j, i, buf[off+i], outs[0][i])
			}
		}
	}
	if k.name == "Add" && n > 0 { // dst = a = b
		buf := append([]float32(nil), in[0][off:off+n]...)
		Add(buf, buf, buf)
		for i, x := range in[0][off : off+n] {
			if !sameBits(buf[i], x+x) {
				t.Fatalf("n=%d: Add(x, x, x)[%d] = %v, want %v", n, i, buf[i], x+x)
			}
		}
	}
}

func TestReLUSpecials(t *testing.T) {
	nz := float32(math.Copysign(0, -1))
	x := []float32{-1, 0, nz, 2, float32(math.Inf(-1)), float32(math.Inf(1)), float32(math.NaN()), -1e-45}
	want := []float32{0, 0, nz, 2, 0, float32(math.Inf(1)), float32(math.NaN()), 0}
	for _, asm := range []bool{true, false} {
		y := append([]float32(nil), x...)
		if asm {
			ReLUInPlace(y)
		} else {
			reluGo(y)
		}
		for i := range y {
			if !sameBits(y[i], want[i]) {
				t.Errorf("asm=%v: ReLU(%v) = %v, want %v", asm, x[i], y[i], want[i])
			}
		}
	}
}

// pairwiseSum returns Σ f(i) for i in [lo, hi) by pairwise summation
// (error growing as log n).
func pairwiseSum(lo, hi int, f func(int) float64) float64 {
	if hi-lo <= 64 {
		s := 0.0
		for i := lo; i < hi; i++ {
			s += f(i)
		}
		return s
	}
	mid := lo + (hi-lo)/2
	return pairwiseSum(lo, mid, f) + pairwiseSum(mid, hi, f)
}

// meanVarRef is the float64 two-pass mean and biased variance, with pairwise
// sums and the correction term of the second pass.
func meanVarRef(x []float32) (mean, variance float64) {
	n := float64(len(x))
	mean = pairwiseSum(0, len(x), func(i int) float64 { return float64(x[i]) }) / n
	d := pairwiseSum(0, len(x), func(i int) float64 { return float64(x[i]) - mean })
	q := pairwiseSum(0, len(x), func(i int) float64 { e := float64(x[i]) - mean; return e * e })
	return mean + d/n, (q - d*d/n) / n
}

// TestMeanVarSums compares the vector sums with the Go twin on every tail,
// with huge values past the end that must not be read.
func TestMeanVarSums(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for n := 1; n <= 200; n++ {
		x := make([]float32, n+16)
		for i := range x {
			x[i] = float32(r.NormFloat64()*3 + 5)
		}
		for i := n; i < len(x); i++ {
			x[i] = 1e30
		}
		shift := float64(x[0])
		a1, a2 := meanVarSums(x[:n], shift)
		g1, g2 := meanVarSumsGo(x[:n], shift)
		if math.Abs(a1-g1) > 1e-12*(math.Abs(g1)+float64(n)) || math.Abs(a2-g2) > 1e-12*g2 {
			t.Fatalf("n=%d: sums %v %v, Go twin %v %v", n, a1, a2, g1, g2)
		}
	}
}

// TestMeanVar checks the exported MeanVar and the one built on the Go
// sums against the float64 two-pass reference, on data whose mean is up
// to 10⁴ standard deviations, on a first element far from the rest, and
// on constant data.
func TestMeanVar(t *testing.T) {
	if m, v := MeanVar(nil); m != 0 || v != 0 {
		t.Fatalf("MeanVar(nil) = %v, %v", m, v)
	}
	r := rand.New(rand.NewPCG(43, 44))
	sizes := []int{1, 2, 15, 16, 17, 31, 33, 320, 1280, 40960, 1000003}
	if !testing.Short() {
		sizes = append(sizes, 16<<20)
	}
	worst := 0.0
	for _, n := range sizes {
		x := make([]float32, n)
		for _, c := range []struct {
			name      string
			mean, std float64
		}{{"centred", 0, 1}, {"mean 10", 10, 1}, {"mean 1e4·std", 1e4, 1}, {"mean 1e3, std 1e-2", 1e3, 1e-2}, {"outlier first", 0, 1}, {"constant", 3.25, 0}} {
			for i := range x {
				x[i] = float32(c.mean + c.std*r.NormFloat64())
			}
			if c.name == "outlier first" {
				x[0] = 1e6
			}
			rm, rv := meanVarRef(x)
			for _, asm := range []bool{true, false} {
				var m, v float64
				if asm {
					m, v = MeanVar(x)
				} else {
					m, v = meanVarWith(x, meanVarSumsGo)
				}
				ev := math.Abs(v - rv)
				if rv > 0 {
					ev /= rv
				}
				worst = max(worst, ev)
				if ev > 1e-9 || math.Abs(m-rm) > 1e-13*math.Abs(rm)+1e-9*math.Sqrt(rv) || v < 0 {
					t.Errorf("n=%d %s asm=%v: mean, var = %v, %v, want %v, %v (var error %.3g)", n, c.name, asm, m, v, rm, rv, ev)
				}
				if c.std == 0 && v != 0 {
					t.Errorf("n=%d constant: variance %v", n, v)
				}
			}
		}
	}
	t.Logf("worst relative variance error %.3g", worst)
	x := []float32{1, 2, float32(math.NaN())}
	if _, v := MeanVar(x); !math.IsNaN(v) {
		t.Errorf("MeanVar with a NaN: variance %v", v)
	}
}

// Benchmarks: GB/s counts the bytes each call must read and write (γ and β
// of LayerNormRow stay in cache across rows of 1280 and are not counted).
func BenchmarkNorm(b *testing.B) {
	r := rand.New(rand.NewPCG(45, 46))
	for _, n := range []int{64 * 64 * 320, 512 * 512 * 64} {
		x := normInput(r, n, false)
		y := normInput(r, n, false)
		dst := make([]float32, n)
		const row = 1280
		gamma, beta := normInput(r, row, false), normInput(r, row, false)
		for _, asm := range []bool{true, false} {
			sfx := ""
			if !asm {
				sfx = "_go"
			}
			bench := func(name string, bytes int, f func()) {
				b.Run(fmt.Sprintf("%s/n=%d%s", name, n, sfx), func(b *testing.B) {
					b.SetBytes(int64(bytes * n))
					for b.Loop() {
						f()
					}
				})
			}
			sums := meanVarSums
			if !asm {
				sums = meanVarSumsGo
			}
			bench("MeanVar", 4, func() { meanVarWith(x, sums) })
			bench("ScaleShift", 8, func() {
				if asm {
					ScaleShift(dst, x, 1.5, 0.25)
				} else {
					scaleShiftGo(dst, x, 1.5, 0.25)
				}
			})
			bench("ScaleShiftSiLU", 8, func() {
				if asm {
					ScaleShiftSiLU(dst, x, 1.5, 0.25)
				} else {
					scaleShiftSiLUGo(dst, x, 1.5, 0.25)
				}
			})
			bench("LayerNormRow", 8, func() {
				for i := 0; i+row <= n; i += row {
					if asm {
						LayerNormRow(dst[i:i+row], x[i:i+row], gamma, beta, 0.1, 1.2)
					} else {
						layerNormRowGo(dst[i:i+row], x[i:i+row], gamma, beta, 0.1, 1.2)
					}
				}
			})
			bench("Add", 12, func() {
				if asm {
					Add(dst, x, y)
				} else {
					addGo(dst, x, y)
				}
			})
			bench("ReLU", 8, func() {
				if asm {
					ReLUInPlace(dst)
				} else {
					reluGo(dst)
				}
			})
		}
	}
}
