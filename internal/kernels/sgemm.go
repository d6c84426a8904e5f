package kernels

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major float32
// matrices, with BLAS semantics: op(X) is X, or its transpose when the
// matching trans flag is set; op(A) is m×k, op(B) is k×n and C is m×n.
// lda, ldb and ldc are the row strides of the matrices as stored (so A is
// stored m×k with lda ≥ k, or k×m with lda ≥ m when transA is set). When beta
// is zero C is not read, so NaNs in it are overwritten. Sgemm panics when a
// dimension is negative, a stride is too small or a slice is too short.
//
// The work is split across runtime.GOMAXPROCS(0) goroutines (read at each
// call) when it is large enough to gain from it. C must not overlap A or B.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkMatrix("A", transA, m, k, a, lda)
	checkMatrix("B", transB, k, n, b, ldb)
	checkMatrix("C", false, m, n, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleMatrix(m, n, beta, c, ldc)
		return
	}
	g := gemmArgs{transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc}
	if m == 1 || n == 1 {
		gemv(&g)
		return
	}
	threads := runtime.GOMAXPROCS(0)
	if threads > maxThreads {
		threads = maxThreads
	}
	// Below a few MFLOP the hand-off to other goroutines costs more than it saves.
	if threads < 2 || float64(m)*float64(n)*float64(k) < 1<<20 {
		ws := getWorkspace()
		gemmSerial(ws, &g)
		putWorkspace(ws)
		return
	}
	gemmParallel(&g, threads)
}

// maxThreads bounds the number of goroutines one call uses.
const maxThreads = 64

// checkMatrix panics unless s holds a rows×cols matrix (cols×rows when trans
// is set) with row stride ld.
func checkMatrix(name string, trans bool, rows, cols int, s []float32, ld int) {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("kernels: Sgemm: negative dimension of %s (%d×%d)", name, rows, cols))
	}
	if trans {
		rows, cols = cols, rows
	}
	if ld < 1 || ld < cols {
		panic(fmt.Sprintf("kernels: Sgemm: ld%s = %d is less than %d columns", name, ld, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(s) < need {
		panic(fmt.Sprintf("kernels: Sgemm: %s has %d elements, need %d for %d×%d with stride %d", name, len(s), need, rows, cols, ld))
	}
}

// scaleMatrix sets C = beta·C, writing zeros (not reading C) when beta is 0.
func scaleMatrix(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// gemmArgs holds the arguments of one Sgemm call or of one part of it.
type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	alpha          float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	beta           float32
	c              []float32
	ldc            int
}

// rows returns the arguments restricted to rows [i0, i1) of C.
func (g *gemmArgs) rows(i0, i1 int) gemmArgs {
	s := *g
	s.m = i1 - i0
	if g.transA {
		s.a = g.a[i0:]
	} else {
		s.a = g.a[i0*g.lda:]
	}
	s.c = g.c[i0*g.ldc:]
	return s
}

// cols returns the arguments restricted to columns [j0, j1) of C.
func (g *gemmArgs) cols(j0, j1 int) gemmArgs {
	s := *g
	s.n = j1 - j0
	if g.transB {
		s.b = g.b[j0*g.ldb:]
	} else {
		s.b = g.b[j0:]
	}
	s.c = g.c[j0:]
	return s
}

// workspace holds the packing buffers of one goroutine.
type workspace struct {
	a, b []float32
	tmp  []float32
}

// freeWorkspaces keeps the workspaces between calls. Unlike a sync.Pool it
// is not emptied by the garbage collector, so steady use allocates nothing;
// it holds at most as many workspaces as goroutines ever ran Sgemm at once
// (up to its capacity).
var freeWorkspaces = make(chan *workspace, 2*maxThreads)

// getWorkspace returns a workspace sized for the active kernel.
func getWorkspace() *workspace {
	kn := &activeKernel
	na, nb, nt := kn.mc*kn.kc, kn.kc*kn.nc, kn.mr*kn.nr
	select {
	case ws := <-freeWorkspaces:
		if len(ws.a) >= na && len(ws.b) >= nb && len(ws.tmp) >= nt {
			return ws
		}
	default:
	}
	return &workspace{a: make([]float32, na), b: make([]float32, nb), tmp: make([]float32, nt)}
}

// putWorkspace returns ws for reuse.
func putWorkspace(ws *workspace) {
	select {
	case freeWorkspaces <- ws:
	default:
	}
}

// gemmSerial runs the blocked algorithm on one goroutine: for each nc-wide
// block of columns and kc-deep slice of k it packs op(B) into NR-wide
// micro-panels, then for each mc-high block of rows packs op(A) into MR-high
// micro-panels and runs the micro-kernel over every tile.
//
// Packing is skipped where the kernels can read an operand in place: A when
// it is not transposed (only a last partial panel is packed; alpha then
// scales B), and B when it is not transposed and few rows share each of its
// panels (so packing would cost more than it saves; with alpha = 1 or a
// packed A).
func gemmSerial(ws *workspace, g *gemmArgs) {
	kn := &activeKernel
	MR := kn.mr
	inPlaceA := !g.transA && kn.inPlaceA()
	if inPlaceA && (g.lda%512 == 0 || aliasC8 && g.ldc%512 == 0 && g.k <= rowMajorTilesK) && kn.variant(8, kn.nr, true, false) != nil {
		// Rows of A 2 KB apart (or a multiple of that) fall in a few L1
		// sets, which 12 rows read together overflow: read 8 at a time.
		// The same helps short products whose rows of C are so aligned
		// (their time goes into writing C).
		MR = 8
	}
	inPlaceB := !g.transB && kn.inPlaceB() && g.m <= inPlaceBMaxM &&
		(g.alpha == 1 || !inPlaceA) && g.ldb%512 != 0
	alphaA, alphaB := g.alpha, float32(1)
	if inPlaceA {
		alphaA, alphaB = 1, g.alpha
	}
	for jc := 0; jc < g.n; jc += kn.nc {
		nc := min(kn.nc, g.n-jc)
		for pc := 0; pc < g.k; pc += kn.kc {
			kc := min(kn.kc, g.k-pc)
			if !inPlaceB {
				packB(ws.b, g.transB, g.b, g.ldb, pc, jc, kc, nc, kn, alphaB)
			} else if w := kn.panelWidth(nc % kn.nr); nc%kn.nr != 0 && nc%kn.nr != w {
				// Only a last, partial panel is packed: reading it in place
				// would run past the end of the rows.
				jr := nc - nc%kn.nr
				packB(ws.b[jr*kc:], false, g.b, g.ldb, pc, jc+jr, kc, nc-jr, kn, alphaB)
			}
			beta, mode := g.beta, storeOverwrite
			if pc > 0 {
				beta = 1
			}
			if beta != 0 {
				mode = storeAccumulate
			}
			for ic := 0; ic < g.m; ic += kn.mc {
				mc := min(kn.mc, g.m-ic)
				full := 0 // rows served by the in-place A kernel
				if !inPlaceA {
					packA(ws.a, g.transA, g.a, g.lda, ic, pc, mc, kc, kn, alphaA)
				} else if full = mc - mc%MR; full < mc {
					// Only a last, partial panel is packed, where the tiles
					// of the block would have put it.
					packA(ws.a[full*kc:], false, g.a, g.lda, ic+full, pc, mc-full, kc, kn, alphaA)
				}
				// tile runs the kernel on the tile of rows [ir, ir+MR) and the
				// B panel at jr of width w.
				tile := func(ir, jr, w int) {
					nr := min(w, nc-jr)
					mr := min(MR, mc-ir)
					b := operand{s: ws.b[jr*kc : (jr+w)*kc]}
					if inPlaceB && nr == w {
						b = operand{s: g.b[pc*g.ldb+jc+jr:], ld: g.ldb}
					}
					a, pr := operand{s: ws.a[ir*kc:]}, kn.panelRows(mr)
					if ir < full {
						a, pr = operand{s: g.a[(ic+ir)*g.lda+pc:], ld: g.lda}, MR
					}
					off := (ic+ir)*g.ldc + jc + jr
					if kn.partial || mr == pr && nr == w {
						kn.run(pr, w, kc, a, b, g.c[off:], g.ldc, beta, mode, mr, nr)
						return
					}
					kn.run(pr, w, kc, a, b, ws.tmp, w, 0, storeOverwrite, pr, w)
					storeTile(mr, nr, ws.tmp, w, g.c[off:], g.ldc, beta, mode)
				}
				if kc <= rowMajorTilesK && rowMajorTiles {
					// Short products are bound by writing C: go along rows of
					// tiles so that each row of C is written in order.
					for ir := 0; ir < mc; ir += MR {
						for jr := 0; jr < nc; {
							w := kn.panelWidth(nc - jr)
							tile(ir, jr, w)
							jr += w
						}
					}
				} else {
					for jr := 0; jr < nc; {
						w := kn.panelWidth(nc - jr)
						for ir := 0; ir < mc; ir += MR {
							tile(ir, jr, w)
						}
						jr += w
					}
				}
			}
		}
	}
}

// packB copies alpha times the kc×nc block of op(B) starting at row pc, column jc into
// dst as micro-panels of kn.nr columns (the last one may be kn.nr/2 wide,
// see panelWidth): the panel of columns [jr, jr+NR) is stored row after row
// at dst[jr·kc:], zero-padded on the right.
func packB(dst []float32, trans bool, b []float32, ldb, pc, jc, kc, nc int, kn *microKernel, alpha float32) {
	for jr := 0; jr < nc; {
		NR := kn.panelWidth(nc - jr)
		nr := min(NR, nc-jr)
		panel := dst[jr*kc : jr*kc+NR*kc]
		j0 := jc + jr
		jr += NR
		if !trans {
			if useTranspose && nr == NR && (NR == 16 || NR == 32) {
				_ = b[(pc+kc-1)*ldb+j0+NR-1]
				if NR == 32 {
					copyPanel32AVX512(&panel[0], &b[pc*ldb+j0], ldb, kc, alpha)
				} else {
					copyPanel16AVX512(&panel[0], &b[pc*ldb+j0], ldb, kc, alpha)
				}
				continue
			}
			for p := 0; p < kc; p++ {
				src := b[(pc+p)*ldb+j0:]
				row := panel[p*NR : p*NR+NR]
				if alpha == 1 {
					copy(row, src[:nr])
				} else {
					for j, v := range src[:nr] {
						row[j] = alpha * v
					}
				}
				clear(row[nr:])
			}
			continue
		}
		// op(B)[p][j] = b[j·ldb + p]: each stored row is one column of the panel.
		if useTranspose && nr == NR && NR%16 == 0 && kc >= 16 {
			packBTransposed(panel, b, ldb, j0, pc, kc, NR, alpha)
			continue
		}
		for j := 0; j < nr; j++ {
			src := b[(j0+j)*ldb+pc:]
			src = src[:kc]
			for p, v := range src {
				panel[p*NR+j] = alpha * v
			}
		}
		for j := nr; j < NR; j++ {
			for p := 0; p < kc; p++ {
				panel[p*NR+j] = 0
			}
		}
	}
}

// packA copies alpha times the mc×kc block of op(A) starting at row ic,
// column pc into dst as micro-panels of kn.mr rows: the panel of rows
// [ir, ir+mr) is stored column after column at dst[ir·kc:], zero-padded
// below; a last panel of fewer rows has kn.panelRows of them.
func packA(dst []float32, trans bool, a []float32, lda, ic, pc, mc, kc int, kn *microKernel, alpha float32) {
	for ir := 0; ir < mc; ir += kn.mr {
		mr := min(kn.mr, mc-ir)
		MR := kn.panelRows(mr)
		panel := dst[ir*kc : ir*kc+MR*kc]
		if trans {
			// op(A)[i][p] = a[p·lda + i]: stored rows are panel columns.
			for p := 0; p < kc; p++ {
				src := a[(pc+p)*lda+ic+ir:]
				src = src[:mr]
				col := panel[p*MR : p*MR+MR]
				if alpha == 1 {
					copy(col, src)
				} else {
					for i, v := range src {
						col[i] = alpha * v
					}
				}
				clear(col[mr:])
			}
			continue
		}
		if mr == 12 && MR == 12 {
			packA12(panel, a[(ic+ir)*lda+pc:], lda, kc, alpha)
			continue
		}
		for i := 0; i < mr; i++ {
			src := a[(ic+ir+i)*lda+pc:]
			src = src[:kc]
			if alpha == 1 {
				for p, v := range src {
					panel[p*MR+i] = v
				}
			} else {
				for p, v := range src {
					panel[p*MR+i] = alpha * v
				}
			}
		}
		for i := mr; i < MR; i++ {
			for p := 0; p < kc; p++ {
				panel[p*MR+i] = 0
			}
		}
	}
}

// gemmJob is one multi-threaded Sgemm call, cut into parts along M or N.
type gemmJob struct {
	g      gemmArgs
	splitN bool
	unit   int // rows or columns per unit of work (MR or NR)
	units  int
	parts  int
	next   atomic.Int64
	wg     sync.WaitGroup
}

// part returns the arguments of part p.
func (j *gemmJob) part(p int) gemmArgs {
	u0 := p * j.units / j.parts
	u1 := (p + 1) * j.units / j.parts
	if j.splitN {
		return j.g.cols(u0*j.unit, min(u1*j.unit, j.g.n))
	}
	return j.g.rows(u0*j.unit, min(u1*j.unit, j.g.m))
}

// work runs parts until none is left.
func (j *gemmJob) work() {
	ws := getWorkspace()
	for {
		p := int(j.next.Add(1)) - 1
		if p >= j.parts {
			break
		}
		sub := j.part(p)
		gemmSerial(ws, &sub)
	}
	putWorkspace(ws)
}

// freeJobs keeps gemmJobs between calls (see freeWorkspaces).
var freeJobs = make(chan *gemmJob, maxThreads)

// workQueue feeds the helper goroutines; each item asks for one more worker
// on a job.
var workQueue = make(chan *gemmJob, maxThreads)

var workers struct {
	sync.Mutex
	n int
}

// ensureWorkers starts helper goroutines until there are at least n. They
// live as long as the process and sleep when there is no work.
func ensureWorkers(n int) {
	workers.Lock()
	for workers.n < n {
		workers.n++
		go worker()
	}
	workers.Unlock()
}

// worker runs jobs from workQueue. After each job it keeps polling the
// queue for spinWait before it blocks: waking a blocked goroutine takes the
// scheduler tens to hundreds of microseconds, as long as a whole product of
// attention size, and models call Sgemm back to back.
func worker() {
	for {
		var j *gemmJob
		select {
		case j = <-workQueue:
		default:
			j = pollWork()
		}
		j.work()
		j.wg.Done()
	}
}

// pollWork polls workQueue for spinWait, yielding the processor between
// polls, then blocks on it.
func pollWork() *gemmJob {
	if spinWait > 0 {
		deadline := time.Now().Add(spinWait)
		for i := 0; ; i++ {
			select {
			case j := <-workQueue:
				return j
			default:
			}
			runtime.Gosched()
			if i%64 == 63 && time.Now().After(deadline) {
				break
			}
		}
	}
	return <-workQueue
}

// spinWait is how long an idle helper polls for work before it blocks (a
// variable for benchmarks).
var spinWait = 500 * time.Microsecond

func gemmParallel(g *gemmArgs, threads int) {
	kn := &activeKernel
	var j *gemmJob
	select {
	case j = <-freeJobs:
	default:
		j = new(gemmJob)
	}
	j.g = *g
	tm := (g.m + kn.mr - 1) / kn.mr
	tn := (g.n + kn.nr - 1) / kn.nr
	// Split the dimension that gives each part the most tiles.
	j.splitN = g.n*kn.mr >= g.m*kn.nr/2 && tn >= threads || tm < threads
	if j.splitN {
		j.unit, j.units = kn.nr, tn
	} else {
		j.unit, j.units = kn.mr, tm
	}
	j.parts = min(threads*partsPerThread, j.units)
	threads = min(threads, j.parts)
	j.next.Store(0)
	ensureWorkers(threads - 1)
	j.wg.Add(threads - 1)
	for t := 1; t < threads; t++ {
		workQueue <- j
	}
	j.work()
	j.wg.Wait()
	j.g = gemmArgs{}
	select {
	case freeJobs <- j:
	default:
	}
}

// partsPerThread is how many parts each goroutine gets on average; more
// parts balance better when a core is shared, at the cost of packing more.
var partsPerThread = 2

// packA12 packs 12 rows of kc values (row stride lda) of a into panel,
// column after column, scaled by alpha.
func packA12(panel, a []float32, lda, kc int, alpha float32) {
	_ = a[11*lda+kc-1]
	panel = panel[:12*kc]
	r0, r1, r2, r3 := a[:kc], a[lda:lda+kc], a[2*lda:2*lda+kc], a[3*lda:3*lda+kc]
	r4, r5, r6, r7 := a[4*lda:4*lda+kc], a[5*lda:5*lda+kc], a[6*lda:6*lda+kc], a[7*lda:7*lda+kc]
	r8, r9, r10, r11 := a[8*lda:8*lda+kc], a[9*lda:9*lda+kc], a[10*lda:10*lda+kc], a[11*lda:11*lda+kc]
	for p := range r0 {
		d := (*[12]float32)(panel[12*p:])
		d[0], d[1], d[2], d[3] = alpha*r0[p], alpha*r1[p], alpha*r2[p], alpha*r3[p]
		d[4], d[5], d[6], d[7] = alpha*r4[p], alpha*r5[p], alpha*r6[p], alpha*r7[p]
		d[8], d[9], d[10], d[11] = alpha*r8[p], alpha*r9[p], alpha*r10[p], alpha*r11[p]
	}
}

// packBTransposed is the transposing branch of packB for a full panel of NR
// columns (a multiple of 16), in 16×16 blocks transposed in registers.
func packBTransposed(panel, b []float32, ldb, j0, pc, kc, NR int, alpha float32) {
	_ = b[(j0+NR-1)*ldb+pc+kc-1]
	_ = panel[kc*NR-1]
	k16 := kc &^ 15
	for jj := 0; jj < NR; jj += 16 {
		for pp := 0; pp < k16; pp += 16 {
			transpose16x16(panel[pp*NR+jj:], NR, b[(j0+jj)*ldb+pc+pp:], ldb, alpha)
		}
	}
	for j := 0; j < NR; j++ {
		src := b[(j0+j)*ldb+pc+k16 : (j0+j)*ldb+pc+kc]
		for p, v := range src {
			panel[(k16+p)*NR+j] = alpha * v
		}
	}
}

// transpose16x16 writes alpha times the transpose of the 16×16 block of src
// (row stride srcStride) to dst (row stride dstStride).
func transpose16x16(dst []float32, dstStride int, src []float32, srcStride int, alpha float32) {
	_ = dst[15*dstStride+15]
	_ = src[15*srcStride+15]
	if useTranspose {
		transpose16x16AVX512(&dst[0], dstStride, &src[0], srcStride, alpha)
		return
	}
	transpose16x16Go(dst, dstStride, src, srcStride, alpha)
}

// transpose16x16Go is the plain-Go twin of transpose16x16AVX512.
func transpose16x16Go(dst []float32, dstStride int, src []float32, srcStride int, alpha float32) {
	for i := 0; i < 16; i++ {
		for j := 0; j < 16; j++ {
			dst[j*dstStride+i] = alpha * src[i*srcStride+j]
		}
	}
}

// inPlaceBMaxM is the largest number of rows (of one part) for which B is
// read in place rather than packed.
var inPlaceBMaxM = 768

// rowMajorTiles and rowMajorTilesK choose the order of the tiles for
// short products (variables for benchmarks).
var (
	rowMajorTiles  = true
	rowMajorTilesK = 128
)

// aliasC8 enables 8-row tiles for short products whose rows of C are 2 KB
// apart or a multiple (a variable for benchmarks).
var aliasC8 = true
