package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// elementwiseInputs returns random inputs of several scales plus special
// values and the edges of the float32 range.
func elementwiseInputs(n int) []float32 {
	r := rand.New(rand.NewPCG(21, 22))
	xs := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 1e-30, -1e-30, 1e-45, -1e-45,
		88, 88.7, 88.8, 89, -87, -88, -100, -103, -103.9, -104, -105, -126, -150, 128, -128, 200, -200, 1e30, -1e30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		3, -3, 5, -5, 8, -8, 9, -9, 10, -10, 12, -12, 13, -13, 14, -14, 20, -20, 30, -30}
	for len(xs) < n {
		scale := []float64{0.01, 1, 3, 10, 40, 100}[r.IntN(6)]
		xs = append(xs, float32(r.NormFloat64()*scale))
	}
	return xs
}

// checkClose reports whether got is within rel of want, allowing absolute
// error around the float32 subnormal range.
func checkClose(got float32, want float64, rel float64) bool {
	g := float64(got)
	if math.IsNaN(want) {
		return math.IsNaN(g)
	}
	if math.IsInf(want, 0) || math.Abs(want) > math.MaxFloat32 {
		return math.IsInf(g, int(math.Copysign(1, want)))
	}
	return math.Abs(g-want) <= rel*math.Abs(want)+2e-45
}

var elementwiseFuncs = []struct {
	name string
	asm  func([]float32)
	twin func(float32) float32
	ref  func(float64) float64
	rel  float64
}{
	{"Exp", ExpInPlace, expGo, math.Exp, 3e-7},
	{"SiLU", SiLUInPlace, siluGo, func(x float64) float64 {
		if math.IsInf(x, -1) {
			return 0
		}
		if x < 0 {
			e := math.Exp(x)
			return x * e / (1 + e)
		}
		return x / (1 + math.Exp(-x))
	}, 1e-6},
	{"GELU", GELUInPlace, geluGo, func(x float64) float64 {
		if math.IsInf(x, -1) {
			return 0
		}
		return 0.5 * x * math.Erfc(-x/math.Sqrt2)
	}, 1e-6},
}

// TestElementwiseAccuracy compares the plain-Go twins with float64 math.
func TestElementwiseAccuracy(t *testing.T) {
	xs := elementwiseInputs(200000)
	for _, f := range elementwiseFuncs {
		t.Run(f.name, func(t *testing.T) {
			worst, at := 0.0, float32(0)
			for _, x := range xs {
				got, want := f.twin(x), f.ref(float64(x))
				if !checkClose(got, want, f.rel) {
					t.Errorf("%s(%v) = %v, want %v", f.name, x, got, want)
				}
				if want != 0 && !math.IsInf(want, 0) && math.Abs(want) > 1e-37 && math.Abs(want) < math.MaxFloat32 {
					if e := math.Abs(float64(got)-want) / math.Abs(want); e > worst {
						worst, at = e, x
					}
				}
			}
			t.Logf("worst relative error %.3g at x = %v", worst, at)
		})
	}
}

// TestElementwiseMatchesGo compares the vector kernels with their twins on
// every length up to 70 (so every tail) and a long slice.
func TestElementwiseMatchesGo(t *testing.T) {
	xs := elementwiseInputs(5000)
	for _, f := range elementwiseFuncs {
		t.Run(f.name, func(t *testing.T) {
			for n := 0; n <= 70; n++ {
				off := n % 7
				buf := append([]float32(nil), xs[off:off+n+3]...)
				f.asm(buf[:n])
				for i := range n {
					if want := f.twin(xs[off+i]); !checkClose(buf[i], float64(want), 4e-7) {
						t.Fatalf("n=%d: %s(%v) = %v, twin gives %v", n, f.name, xs[off+i], buf[i], want)
					}
				}
				for i := n; i < n+3; i++ {
					if math.Float32bits(buf[i]) != math.Float32bits(xs[off+i]) {
						t.Fatalf("n=%d: element %d past the end changed", n, i)
					}
				}
			}
			buf := append([]float32(nil), xs...)
			f.asm(buf)
			for i, x := range xs {
				if want := f.twin(x); !checkClose(buf[i], float64(want), 4e-7) {
					t.Fatalf("%s(%v) = %v, twin gives %v", f.name, x, buf[i], want)
				}
			}
		})
	}
}

func BenchmarkElementwise(b *testing.B) {
	xs := elementwiseInputs(1 << 16)
	for i := range xs {
		xs[i] = min(max(xs[i], -50), 50)
	}
	buf := make([]float32, len(xs))
	for _, f := range elementwiseFuncs {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(buf)))
			for i := 0; i < b.N; i++ {
				copy(buf, xs)
				f.asm(buf)
			}
		})
	}
}

func TestSoftmax(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for it := 0; it < 300; it++ {
		n := 1 + r.IntN(100)
		if it%10 == 0 {
			n = 1000 + r.IntN(5000)
		}
		scale := []float64{0.1, 1, 10, 100}[r.IntN(4)]
		x := make([]float32, n+3)
		for i := range x {
			x[i] = float32(r.NormFloat64() * scale)
		}
		if it%7 == 3 {
			for i := 0; i < n; i += 3 {
				x[i] = float32(math.Inf(-1)) // masked scores
			}
			x[n-1] = 1
		}
		in := append([]float32(nil), x...)
		// float64 reference from the float32 differences x − max (which
		// any float32 softmax, PyTorch's included, rounds the same way).
		m := float32(math.Inf(-1))
		for _, v := range in[:n] {
			m = max(m, v)
		}
		var sum float64
		for _, v := range in[:n] {
			sum += math.Exp(float64(v - m))
		}
		twin := append([]float32(nil), in...)
		softmaxGo(twin[:n])
		SoftmaxInPlace(x[:n])
		for i := 0; i < n; i++ {
			want := math.Exp(float64(in[i]-m)) / sum
			if !checkClose(x[i], want, 1e-5) {
				t.Fatalf("n=%d: softmax[%d] = %v, want %v", n, i, x[i], want)
			}
			if !checkClose(twin[i], want, 1e-6) {
				t.Fatalf("n=%d: Go twin softmax[%d] = %v, want %v", n, i, twin[i], want)
			}
		}
		for i := n; i < n+3; i++ {
			if x[i] != in[i] {
				t.Fatalf("n=%d: element %d past the end changed", n, i)
			}
		}
	}
	nan := []float32{1, float32(math.NaN()), 2}
	SoftmaxInPlace(nan)
	for _, v := range nan {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("softmax with a NaN: %v", nan)
		}
	}
}

func BenchmarkSoftmax(b *testing.B) {
	for _, n := range []int{77, 4096} {
		x := make([]float32, n)
		r := rand.New(rand.NewPCG(1, 1))
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(4 * n))
			for i := 0; i < b.N; i++ {
				SoftmaxInPlace(x)
			}
		})
		b.Run(fmt.Sprint(n, "_go"), func(b *testing.B) {
			b.SetBytes(int64(4 * n))
			for i := 0; i < b.N; i++ {
				softmaxGo(x)
			}
		})
	}
}

// TestTranspose checks Transpose and TransposeRows on odd and whole-block sizes against the
// definition, with the assembly blocks and without.
func TestTranspose(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, s := range [][2]int{{1, 1}, {16, 16}, {17, 5}, {33, 48}, {64, 640}, {100, 77}} {
		rows, cols := s[0], s[1]
		src := make([]float32, rows*cols)
		for i := range src {
			src[i] = float32(r.NormFloat64())
		}
		dst := make([]float32, rows*cols)
		Transpose(dst, src, rows, cols)
		split := make([]float32, rows*cols)
		TransposeRows(split, src, rows, cols, 0, min(16, rows))
		TransposeRows(split, src, rows, cols, min(16, rows), rows)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				if dst[j*rows+i] != src[i*cols+j] || split[j*rows+i] != src[i*cols+j] {
					t.Fatalf("%d×%d: element (%d, %d) wrong", rows, cols, i, j)
				}
			}
		}
	}
}
