package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refGemm is the naive triple loop in float64.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, len(c))
	for i := range c {
		out[i] = float64(c[i])
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*ldc+j] = v
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// checkGemm runs Sgemm on one case and compares it with refGemm.
func checkGemm(t *testing.T, r *rand.Rand, transA, transB bool, m, n, k int, alpha, beta float32, pad int) {
	t.Helper()
	lda, ldb, ldc := k, n, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	lda = max(lda, 1) + r.IntN(pad+1)
	ldb = max(ldb, 1) + r.IntN(pad+1)
	ldc = max(ldc, 1) + r.IntN(pad+1)
	ar, br := m, k
	if transA {
		ar = k
	}
	if transB {
		br = n
	}
	a := randSlice(r, max(ar*lda, 1))
	b := randSlice(r, max(br*ldb, 1))
	c := randSlice(r, max(m*ldc, 1))
	if beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	want := refGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	tol := 1e-5 * math.Sqrt(float64(k)+1)
	for i := 0; i < m; i++ {
		for j := 0; j < ldc && i*ldc+j < len(c); j++ {
			got, w := float64(c[i*ldc+j]), want[i*ldc+j]
			if j >= n {
				// Padding must be left alone (NaN stays NaN).
				if !(got == w || math.IsNaN(got) && math.IsNaN(w)) {
					t.Fatalf("transA=%v transB=%v m=%d n=%d k=%d: padding C[%d][%d] changed to %v", transA, transB, m, n, k, i, j, got)
				}
				continue
			}
			if math.IsNaN(got) || math.Abs(got-w) > tol*(1+math.Abs(w)) {
				t.Fatalf("transA=%v transB=%v m=%d n=%d k=%d alpha=%v beta=%v lda=%d ldb=%d ldc=%d: C[%d][%d] = %v, want %v",
					transA, transB, m, n, k, alpha, beta, lda, ldb, ldc, i, j, got, w)
			}
		}
	}
}

func TestSgemmRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphas := []float32{1, -0.5, 2.25}
	betas := []float32{0, 1, -1.5, 0.3}
	for it := 0; it < 400; it++ {
		m, n, k := 1+r.IntN(130), 1+r.IntN(130), 1+r.IntN(130)
		checkGemm(t, r, r.IntN(2) == 1, r.IntN(2) == 1, m, n, k,
			alphas[r.IntN(len(alphas))], betas[r.IntN(len(betas))], 5*r.IntN(2))
	}
}

func TestSgemmBlockEdges(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	kn := &activeKernel
	ms := []int{kn.mr - 1, kn.mr + 1, kn.mc - 1, kn.mc + 1, 2*kn.mc + 3}
	ns := []int{kn.nr - 1, kn.nr + 1, kn.nc + 5}
	ks := []int{kn.kc - 1, kn.kc + 1, 2*kn.kc + 7}
	for _, m := range ms {
		for _, n := range ns {
			for _, k := range ks {
				tA, tB := r.IntN(2) == 1, r.IntN(2) == 1
				checkGemm(t, r, tA, tB, m, n, k, 1.5, []float32{0, 0.5}[r.IntN(2)], 3)
			}
		}
	}
}

func TestSgemmShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range []struct{ m, n, k int }{
		{1, 1, 1}, {1, 1280, 320}, {1, 37, 1}, {1, 77, 1000}, {77, 1, 200}, {300, 1, 3},
		{77, 768, 768}, {512, 77, 80}, {50, 40, 1024}, {30, 70, 512}, {25, 17, 2048}, {40, 512, 40}, {13, 1024, 100}, {5, 3, 0}, {0, 4, 4}, {4, 0, 4}, {33, 65, 1}, {2, 2, 2},
	} {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				checkGemm(t, r, tA, tB, s.m, s.n, s.k, 0.75, 0, 2)
				checkGemm(t, r, tA, tB, s.m, s.n, s.k, 1, 0.5, 0)
			}
		}
	}
}

func TestSgemmAlphaZero(t *testing.T) {
	c := []float32{1, 2, float32(math.NaN()), 4}
	Sgemm(false, false, 2, 2, 3, 0, make([]float32, 6), 3, make([]float32, 6), 2, 2, c, 2)
	if c[0] != 2 || c[1] != 4 || !math.IsNaN(float64(c[2])) || c[3] != 8 {
		t.Fatalf("alpha=0 beta=2: got %v", c)
	}
	Sgemm(false, false, 2, 2, 3, 0, make([]float32, 6), 3, make([]float32, 6), 2, 0, c, 2)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("alpha=0 beta=0: got %v", c)
		}
	}
}

func TestSgemmPanics(t *testing.T) {
	for i, f := range []func(){
		func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		},
		func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 1, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		},
		func() { Sgemm(false, false, -1, 2, 2, 1, nil, 2, make([]float32, 4), 2, 0, nil, 2) },
		func() {
			Sgemm(false, true, 2, 3, 2, 1, make([]float32, 4), 2, make([]float32, 6), 2, 0, make([]float32, 5), 3)
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("case %d did not panic", i)
				}
			}()
			f()
		}()
	}
}

// kernelCase is one random micro-kernel call.
type kernelCase struct {
	pr, w, kc, ldc, rows, cols, mode int
	a, b                             operand
	c                                []float32
	beta                             float32
}

func randKernelCase(r *rand.Rand, kn *microKernel, pr, w int, aIn, bIn bool, it int) kernelCase {
	var k kernelCase
	k.pr, k.w = pr, w
	k.kc = r.IntN(70)
	if it%10 == 0 {
		k.kc = 300 + r.IntN(200)
	}
	k.rows, k.cols = pr, w
	if kn.partial && it%3 == 2 {
		k.rows, k.cols = 1+r.IntN(pr), 1+r.IntN(w)
	}
	k.ldc = w + r.IntN(9)
	if aIn {
		k.a.ld = k.kc + 1 + r.IntN(5)
		k.a.s = randSlice(r, max(pr*k.a.ld, 1))
	} else {
		k.a.s = randSlice(r, max(k.kc*pr, 1))
	}
	if bIn {
		k.b.ld = w + r.IntN(40)
		k.b.s = randSlice(r, max(k.kc*k.b.ld, 1))
	} else {
		k.b.s = randSlice(r, max(k.kc*w, 1))
	}
	k.c = randSlice(r, pr*k.ldc)
	k.mode = r.IntN(2)
	k.beta = float32(r.NormFloat64())
	if k.mode == storeOverwrite {
		for i := range k.c {
			k.c[i] = float32(math.NaN())
		}
	}
	return k
}

// check compares the result got of the case with want from the Go twin:
// inside the rows×cols corner within the tolerance, elsewhere unchanged.
func (k *kernelCase) check(t *testing.T, got, want []float32) {
	t.Helper()
	for i := range got {
		gv, wv := float64(got[i]), float64(want[i])
		if i/k.ldc >= k.rows || i%k.ldc >= k.cols {
			if !(gv == wv || math.IsNaN(gv) && math.IsNaN(wv)) {
				t.Fatalf("kc=%d w=%d rows=%d cols=%d: element %d outside the corner changed", k.kc, k.w, k.rows, k.cols, i)
			}
			continue
		}
		if math.IsNaN(gv) || math.Abs(gv-wv) > 1e-5*math.Sqrt(float64(k.kc)+1)*(1+math.Abs(wv)) {
			t.Fatalf("kc=%d w=%d rows=%d cols=%d mode=%d: c[%d] = %v, want %v", k.kc, k.w, k.rows, k.cols, k.mode, i, gv, wv)
		}
	}
}

// TestKernelsMatchGo compares every assembly micro-kernel (every height,
// width and in-place variant) with kernelGo.
func TestKernelsMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, kn := range asmKernels() {
		for i, pr := range kn.rows {
			for ua := range 2 {
				for ub := range 2 {
					for h := range 2 {
						if kn.kernels[i][ua][ub][h] == nil {
							continue
						}
						w := kn.nr >> h
						t.Run(fmt.Sprintf("%s/%dx%d/ua=%d/ub=%d", kn.name, pr, w, ua, ub), func(t *testing.T) {
							for it := 0; it < 150; it++ {
								k := randKernelCase(r, &kn, pr, w, ua == 1, ub == 1, it)
								want := append([]float32(nil), k.c...)
								kernelGo(pr, w, k.kc, k.a, k.b, want, k.ldc, k.beta, k.mode, k.rows, k.cols)
								kn.run(pr, w, k.kc, k.a, k.b, k.c, k.ldc, k.beta, k.mode, k.rows, k.cols)
								k.check(t, k.c, want)
							}
						})
					}
				}
			}
		}
	}
}

// TestSgemmAllKernels runs random products through every micro-kernel.
func TestSgemmAllKernels(t *testing.T) {
	saved := activeKernel
	defer func() { activeKernel = saved }()
	for _, kn := range append(asmKernels(), goKernel) {
		activeKernel = kn
		t.Run(kn.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(9, 10))
			for it := 0; it < 60; it++ {
				m, n, k := 1+r.IntN(200), 1+r.IntN(200), 1+r.IntN(500)
				checkGemm(t, r, r.IntN(2) == 1, r.IntN(2) == 1, m, n, k, 1.25, []float32{0, 1, 0.5}[r.IntN(3)], 2)
			}
		})
	}
}

func TestSdotSaxpy(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for n := 0; n < 200; n++ {
		x, y := randSlice(r, n), randSlice(r, n+3)
		var want float64
		for i := range x {
			want += float64(x[i]) * float64(y[i])
		}
		if got := Sdot(x, y); math.Abs(float64(got)-want) > 1e-5*math.Sqrt(float64(n)+1)*(1+math.Abs(want)) {
			t.Fatalf("Sdot n=%d: %v, want %v", n, got, want)
		}
		if got, twin := Sdot(x, y), sdotGo(x, y[:n]); math.Abs(float64(got-twin)) > 1e-5*math.Sqrt(float64(n)+1)*(1+math.Abs(want)) {
			t.Fatalf("Sdot n=%d: %v, Go twin %v", n, got, twin)
		}
		y0 := append([]float32(nil), y...)
		twin := append([]float32(nil), y...)
		saxpyGo(-0.75, x, twin[:n])
		Saxpy(-0.75, x, y)
		for i := range y {
			if math.Abs(float64(y[i]-twin[i])) > 1e-6*(1+math.Abs(float64(twin[i]))) {
				t.Fatalf("Saxpy n=%d: y[%d] = %v, Go twin %v", n, i, y[i], twin[i])
			}
		}
		for i := range y {
			w := y0[i]
			if i < n {
				w += -0.75 * x[i]
			}
			if math.Abs(float64(y[i]-w)) > 1e-6*(1+math.Abs(float64(w))) {
				t.Fatalf("Saxpy n=%d: y[%d] = %v, want %v", n, i, y[i], w)
			}
		}
	}
}

func TestSgemmNoAllocs(t *testing.T) {
	for _, s := range []struct{ m, n, k int }{{256, 512, 300}, {512, 256, 40}, {100, 50, 30}, {1, 300, 200}} {
		m, n, k := s.m, s.n, s.k
		a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
		Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		allocs := testing.AllocsPerRun(20, func() {
			Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		})
		if allocs > 0.5 {
			t.Errorf("Sgemm %d×%d×%d allocates %v times per call", m, n, k, allocs)
		}
	}
}

var benchShapes = []struct {
	name    string
	transB  bool
	m, n, k int
}{
	{"conv_M320_N4096_K2880", false, 320, 4096, 2880},
	{"conv_M640_N1024_K5760", false, 640, 1024, 5760},
	{"linear_M4096_N320_K320", false, 4096, 320, 320},
	{"linear_M4096_N320_K320_transB", true, 4096, 320, 320},
	{"attn_M4096_N4096_K40_transB", true, 4096, 4096, 40},
	{"attn_M4096_N77_K80_transB", true, 4096, 77, 80},
	{"attnPV_M4096_N40_K4096", false, 4096, 40, 4096},
	{"ff_M4096_N2560_K320_transB", true, 4096, 2560, 320},
	{"small_M77_N768_K768_transB", true, 77, 768, 768},
	{"conv_M1280_N256_K11520", false, 1280, 256, 11520},
	{"conv_M1280_N64_K11520", false, 1280, 64, 11520},
	{"gemv_M1_N1280_K1280_transB", true, 1, 1280, 1280},
	{"taesd_M64_N3584_K576", false, 64, 3584, 576},
	{"attnPV_M256_N40_K4096", false, 256, 40, 4096},
}

func benchGemm(b *testing.B, transB bool, m, n, k int) {
	r := rand.New(rand.NewPCG(1, 1))
	a := randSlice(r, m*k)
	bb := randSlice(r, k*n)
	c := make([]float32, m*n)
	ldb := n
	if transB {
		ldb = k
	}
	Sgemm(false, transB, m, n, k, 1, a, k, bb, ldb, 0, c, n)
	b.ResetTimer()
	cpu0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		Sgemm(false, transB, m, n, k, 1, a, k, bb, ldb, 0, c, n)
	}
	flops := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := cpuSeconds() - cpu0; cpu > 0 {
		// Throughput per busy core: less sensitive to other processes.
		b.ReportMetric(flops/cpu/1e9, "GFLOP/cpu-s")
	}
}

func BenchmarkSgemm(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) { benchGemm(b, s.transB, s.m, s.n, s.k) })
	}
}

// BenchmarkKernel measures each micro-kernel alone on panels in cache.
func BenchmarkKernel(b *testing.B) {
	for _, kn := range append(asmKernels(), goKernel) {
		b.Run(kn.name, func(b *testing.B) {
			const kc = 256
			r := rand.New(rand.NewPCG(1, 1))
			a, bb := randSlice(r, kc*kn.mr), randSlice(r, kc*kn.nr)
			c := make([]float32, kn.mr*kn.nr)
			for i := 0; i < b.N; i++ {
				kn.run(kn.mr, kn.nr, kc, operand{s: a}, operand{s: bb}, c, kn.nr, 0, storeOverwrite, kn.mr, kn.nr)
			}
			b.ReportMetric(2*float64(kc*kn.mr*kn.nr)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSgemmKernels runs the benchmark shapes with every micro-kernel.
func BenchmarkSgemmKernels(b *testing.B) {
	saved := activeKernel
	defer func() { activeKernel = saved }()
	for _, kn := range asmKernels() {
		activeKernel = kn
		for _, s := range benchShapes {
			b.Run(fmt.Sprintf("%s/%s", kn.name, s.name), func(b *testing.B) { benchGemm(b, s.transB, s.m, s.n, s.k) })
		}
	}
}

func TestTranspose16(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, strides := range [][2]int{{16, 16}, {32, 20}, {17, 100}} {
		src := randSlice(r, 16*strides[1])
		got := randSlice(r, 16*strides[0])
		want := append([]float32(nil), got...)
		transpose16x16(got, strides[0], src, strides[1], -1.5)
		transpose16x16Go(want, strides[0], src, strides[1], -1.5)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("strides %v: element %d = %v, want %v", strides, i, got[i], want[i])
			}
		}
	}
}

// TestPackBMatchesGo compares packB with its assembly helpers (panel copy,
// 16×16 transpose) against the plain-Go loops.
func TestPackBMatchesGo(t *testing.T) {
	if !useTranspose {
		t.Skip("no assembly packing on this build")
	}
	r := rand.New(rand.NewPCG(19, 20))
	kn := &activeKernel
	for it := 0; it < 100; it++ {
		trans := it%2 == 1
		kc, nc := 1+r.IntN(kn.kc), 1+r.IntN(200)
		pc, jc := r.IntN(30), r.IntN(30)
		rows, cols := pc+kc, jc+nc // op(B) is rows×cols
		ld := cols + r.IntN(40)
		if trans {
			ld = rows + r.IntN(40)
		}
		b := randSlice(r, max(rows, cols)*ld)
		alpha := []float32{1, -2.5}[r.IntN(2)]
		got := make([]float32, kn.kc*kn.nc)
		want := make([]float32, kn.kc*kn.nc)
		packB(got, trans, b, ld, pc, jc, kc, nc, kn, alpha)
		useTranspose = false
		packB(want, trans, b, ld, pc, jc, kc, nc, kn, alpha)
		useTranspose = true
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("trans=%v kc=%d nc=%d: packed[%d] = %v, want %v", trans, kc, nc, i, got[i], want[i])
			}
		}
	}
}

// TestSgemmConcurrent runs products from several goroutines at once, as a
// pipeline serving several requests does.
func TestSgemmConcurrent(t *testing.T) {
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func(seed uint64) {
			r := rand.New(rand.NewPCG(seed, 99))
			for it := 0; it < 5; it++ {
				m, n, k := 50+r.IntN(150), 50+r.IntN(150), 20+r.IntN(300)
				a, b := randSlice(r, m*k), randSlice(r, k*n)
				c := make([]float32, m*n)
				want := refGemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
				Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
				for i := range c {
					if math.Abs(float64(c[i])-want[i]) > 1e-5*math.Sqrt(float64(k))*(1+math.Abs(want[i])) {
						done <- fmt.Errorf("goroutine %d: %d×%d×%d: C[%d] = %v, want %v", seed, m, n, k, i, c[i], want[i])
						return
					}
				}
			}
			done <- nil
		}(uint64(g))
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
