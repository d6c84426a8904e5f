package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

func TestToBF16(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{float32(math.Inf(1)), 0x7f80},
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // rounds to +Inf
		{math.Float32frombits(0x00400000), 0x0000}, // subnormal flushed
		{math.Float32frombits(0x80400000), 0x8000},
	}
	for _, c := range cases {
		if got := ToBF16(c.in); got != c.want {
			t.Errorf("ToBF16(%g = %#x) = %#x, want %#x", c.in, math.Float32bits(c.in), got, c.want)
		}
	}
	if h := ToBF16(float32(math.NaN())); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("ToBF16(NaN) = %#x, not a NaN", h)
	}
	if FromBF16(0x3f80) != 1 {
		t.Errorf("FromBF16(0x3f80) = %g", FromBF16(0x3f80))
	}
}

// TestBF16KernelTwin checks the AVX512_BF16 micro-kernel against its Go twin, bit for bit.
func TestBF16KernelTwin(t *testing.T) {
	if !useBF16Asm {
		t.Log("no AVX512_BF16 kernel on this CPU or build: the Go twin is what runs")
		return
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kq := range []int{0, 1, 2, 7, 64, 300} {
		lda := kq + 3
		a := make([]uint32, bfMR*lda)
		b := make([]uint32, kq*bfNR)
		for i := range a {
			a[i] = pairOf(float32(rng.NormFloat64()), float32(rng.NormFloat64()))
		}
		for i := range b {
			b[i] = pairOf(float32(rng.NormFloat64()), float32(rng.NormFloat64()))
		}
		for mode := 0; mode < 2; mode++ {
			ldc := bfNR + 5
			c0 := make([]float32, bfMR*ldc)
			for i := range c0 {
				c0[i] = float32(rng.NormFloat64())
			}
			want := append([]float32(nil), c0...)
			got := append([]float32(nil), c0...)
			bf16KernelGo(kq, a, lda, b, want, ldc, mode)
			bf16Kernel12x32AVX512(kq, unsafe.SliceData(a), lda, unsafe.SliceData(b), unsafe.SliceData(got), ldc, mode)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("kq=%d mode=%d: element %d (row %d col %d) = %g, twin %g", kq, mode, i, i/ldc, i%ldc, got[i], want[i])
				}
			}
		}
	}
}

// refBF16 returns C = op(A)·op(B) in float64 from bf16-rounded inputs.
func bf16Round(x float32) float64 { return float64(FromBF16(ToBF16(x))) }

func randBF16(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// checkBF16Product compares c with the float64 product of the bf16-rounded operands (plus c0
// when accumulating): float32 accumulation of k exact products errs by at most about k·2⁻²⁴
// of the sum of |products|.
func checkBF16Product(t *testing.T, name string, m, n, k int, at func(i, p int) float32, bt func(p, j int) float32, c, c0 []float32, ldc int, accumulate bool) {
	t.Helper()
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, abs float64
			for p := 0; p < k; p++ {
				v := bf16Round(at(i, p)) * bf16Round(bt(p, j))
				s += v
				abs += math.Abs(v)
			}
			if accumulate {
				s += float64(c0[i*ldc+j])
				abs += math.Abs(float64(c0[i*ldc+j]))
			}
			got := float64(c[i*ldc+j])
			if d := math.Abs(got - s); d > float64(k+2)*0x1p-23*abs+1e-30 {
				t.Fatalf("%s %d×%d×%d: C[%d][%d] = %g, want %g (|Σ|products|| = %g)", name, m, n, k, i, j, got, s, abs)
			}
		}
	}
}

func testGemmBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := [][3]int{{3, 5, 0}, {1, 1, 1}, {12, 32, 2}, {13, 33, 3}, {5, 70, 17}, {30, 9, 600}, {100, 100, 515}, {25, 200, 64}, {200, 7, 31}}
	for _, sz := range sizes {
		m, n, k := sz[0], sz[1], sz[2]
		for _, accumulate := range []bool{false, true} {
			// Left: C [m×n] = W [m×k] · X [k×n].
			w := randBF16(rng, m*k)
			ldx, ldc := n+2, n+3
			x := randBF16(rng, k*ldx)
			c0 := randBF16(rng, m*ldc)
			c := append([]float32(nil), c0...)
			GemmBF16Left(NewBF16Left(w, m, k), x, n, ldx, c, ldc, accumulate)
			checkBF16Product(t, "left", m, n, k, func(i, p int) float32 { return w[i*k+p] }, func(p, j int) float32 { return x[p*ldx+j] }, c, c0, ldc, accumulate)
			// Right: C [m×n] = X [m×k] · W [n×k]ᵀ.
			wr := randBF16(rng, n*k)
			ldx = k + 1
			xr := randBF16(rng, m*ldx)
			c = append([]float32(nil), c0...)
			GemmBF16Right(xr, m, ldx, NewBF16Right(wr, n, k), c, ldc, accumulate)
			checkBF16Product(t, "right", m, n, k, func(i, p int) float32 { return xr[i*ldx+p] }, func(p, j int) float32 { return wr[j*k+p] }, c, c0, ldc, accumulate)
		}
	}
}

// TestGemmBF16 checks both bf16 products on odd sizes against a float64 reference, with the
// kernel this build and CPU select.
func TestGemmBF16(t *testing.T) { testGemmBF16(t) }

// TestGemmBF16Widened runs the same checks on the fallback for CPUs without AVX512_BF16.
func TestGemmBF16Widened(t *testing.T) {
	savedAsm, savedWiden := useBF16Asm, bf16Widen
	useBF16Asm, bf16Widen = false, true
	defer func() { useBF16Asm, bf16Widen = savedAsm, savedWiden }()
	testGemmBF16(t)
}

// TestGemmBF16Twin runs the same checks with the Go twin forced, and checks that it gives the
// same bits as the assembly kernel where there is one.
func TestGemmBF16Twin(t *testing.T) {
	saved, savedWiden := useBF16Asm, bf16Widen
	useBF16Asm, bf16Widen = false, false
	defer func() { useBF16Asm, bf16Widen = saved, savedWiden }()
	testGemmBF16(t)
	if !saved {
		return
	}
	rng := rand.New(rand.NewPCG(5, 6))
	m, n, k := 37, 75, 701
	w := NewBF16Left(randBF16(rng, m*k), m, k)
	x := randBF16(rng, k*n)
	twin := make([]float32, m*n)
	GemmBF16Left(w, x, n, n, twin, n, false)
	useBF16Asm = true
	asm := make([]float32, m*n)
	GemmBF16Left(w, x, n, n, asm, n, false)
	for i := range asm {
		if math.Float32bits(asm[i]) != math.Float32bits(twin[i]) {
			t.Fatalf("element %d: assembly %g, twin %g", i, asm[i], twin[i])
		}
	}
}

func TestBF16MatrixBytes(t *testing.T) {
	w := NewBF16Right(make([]float32, 64*100), 64, 100)
	if w.Bytes() != 64*100*2 {
		t.Errorf("Bytes = %d, want %d (half of float32)", w.Bytes(), 64*100*2)
	}
}

// specialFloats returns random values with NaNs, infinities, subnormals, ties and values that
// round to infinity mixed in.
func specialFloats(rng *rand.Rand, n int) []float32 {
	special := []uint32{0x7fc00000, 0x7f800001, 0xffa00000, 0x7f800000, 0xff800000, 0x00000001, 0x807fffff,
		0x00400000, 0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0xff7fffff, 0, 0x80000000, 0x00800000, 0x007fffff}
	s := make([]float32, n)
	for i := range s {
		if rng.IntN(4) == 0 {
			s[i] = math.Float32frombits(special[rng.IntN(len(special))])
		} else {
			s[i] = float32(rng.NormFloat64() * math.Exp(rng.NormFloat64()*5))
		}
	}
	return s
}

// TestBF16PackAsm checks the AVX-512 packing kernels against ToBF16, bit for bit, on special
// values and odd sizes.
func TestBF16PackAsm(t *testing.T) {
	if !useBF16Pack {
		t.Log("no AVX-512 packing kernels on this CPU or build: the Go packing is what runs")
		return
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, sz := range [][2]int{{1, 1}, {3, 32}, {4, 64}, {5, 33}, {9, 100}, {2, 31}, {7, 200}} {
		k, n := sz[0], sz[1]
		ldx := n + 3
		x := specialFloats(rng, k*ldx)
		kq := (k + 1) / 2
		for _, useAsm := range []bool{true, false} {
			useBF16Pack = useAsm
			np := (n + bfNR - 1) / bfNR
			got := make([]uint32, np*kq*bfNR)
			for p := 0; p < np; p++ {
				packPanel(got[p*kq*bfNR:], x, ldx, p*bfNR, min(bfNR, n-p*bfNR), k)
			}
			for p := 0; p < np; p++ {
				for q := 0; q < kq; q++ {
					for j := 0; j < bfNR; j++ {
						var want uint32
						if c := p*bfNR + j; c < n {
							lo := x[2*q*ldx+c]
							var hi float32
							if 2*q+1 < k {
								hi = x[(2*q+1)*ldx+c]
							}
							want = uint32(ToBF16(lo)) | uint32(ToBF16(hi))<<16
						}
						if g := got[p*kq*bfNR+q*bfNR+j]; g != want {
							t.Fatalf("asm %v: panel %d pair %d col %d: %#x, want %#x (%#x, %#x)", useAsm, p, q, j, g, want, math.Float32bits(x[2*q*ldx+p*bfNR+j]), math.Float32bits(x[min(2*q+1, k-1)*ldx+p*bfNR+j]))
						}
					}
				}
			}
			// Rows: k rows of n values as pairs.
			nq := (n + 1) / 2
			rows := make([]uint32, k*nq)
			packPairs(rows, nq, x, k, n, ldx)
			for i := 0; i < k; i++ {
				for q := 0; q < nq; q++ {
					lo := x[i*ldx+2*q]
					var hi float32
					if 2*q+1 < n {
						hi = x[i*ldx+2*q+1]
					}
					if want := uint32(ToBF16(lo)) | uint32(ToBF16(hi))<<16; rows[i*nq+q] != want {
						t.Fatalf("asm %v: row %d pair %d: %#x, want %#x", useAsm, i, q, rows[i*nq+q], want)
					}
				}
			}
		}
		useBF16Pack = true
	}
}

// TestPackRight checks that PackRight and PackRightTransposed lay out activations exactly as
// NewBF16Right lays out weights (of the matrix and of its transpose), on odd sizes, with
// strides, reusing one matrix from larger to smaller shapes and back.
func TestPackRight(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	var m, mt BF16Matrix
	for _, s := range [][2]int{{1, 1}, {1024, 80}, {33, 7}, {77, 64}, {5, 160}, {300, 33}} {
		rows, cols := s[0], s[1]
		ld := cols + r.IntN(5)
		w := make([]float32, (rows-1)*ld+cols)
		for i := range w {
			w[i] = float32(r.NormFloat64())
		}
		dense := make([]float32, rows*cols)
		trans := make([]float32, rows*cols)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				dense[i*cols+j] = w[i*ld+j]
				trans[j*rows+i] = w[i*ld+j]
			}
		}
		m.PackRight(w, rows, cols, ld)
		want := NewBF16Right(dense, rows, cols)
		if m.Rows() != rows || m.Cols() != cols || !slices.Equal(m.data, want.data) {
			t.Fatalf("PackRight %d×%d differs from NewBF16Right", rows, cols)
		}
		// w read as x [k = rows, n = cols]: mt stands for xᵀ [cols×rows].
		mt.PackRightTransposed(w, rows, cols, ld)
		wantT := NewBF16Right(trans, cols, rows)
		if mt.Rows() != cols || mt.Cols() != rows || !slices.Equal(mt.data, wantT.data) {
			t.Fatalf("PackRightTransposed %d×%d differs from NewBF16Right of the transpose", rows, cols)
		}
	}
}
