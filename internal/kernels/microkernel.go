package kernels

// microKernel describes the micro-kernel in use and the block sizes that
// suit it.
type microKernel struct {
	name       string
	mr, nr     int // tile of C computed by one call
	kc, mc, nc int // blocking of k, m and n for the packed buffers
	// asm is the assembly kernel, or nil to run kernelGo.
	asm asmKernel
	// half, when not nil, is the mr×(nr/2) assembly kernel used for the last
	// micro-panel of B when at most nr/2 columns are left.
	half asmKernel
	// ua and halfUA, when not nil, are the same kernels reading the A panel
	// in place (row-major, stride lda) instead of packed; Sgemm then skips
	// packing A when it is not transposed.
	ua, halfUA asmKernelUA
	// tails, in increasing mr, are kernels for fewer rows than mr over
	// packed A panels of that many rows: the last rows of A use the smallest
	// that covers them instead of a zero-padded mr-row panel.
	tails []tailKernel
	// partial tells that the kernels store a top-left corner of the tile
	// themselves (rows < mr or cols < w); otherwise edge tiles go through a
	// scratch tile.
	partial bool
}

// tailKernel is a kernel for the last rows of A (see microKernel.tails).
type tailKernel struct {
	mr        int
	asm, half asmKernel
}

// panelRows returns the rows of the packed A panel that holds the last r
// rows of a block (r ≤ mr): the rows of the smallest tail kernel that covers
// them, or mr.
func (kn *microKernel) panelRows(r int) int {
	for _, t := range kn.tails {
		if r <= t.mr {
			return t.mr
		}
	}
	return kn.mr
}

// tail returns the tail kernel for a last panel of r rows, or nil.
func (kn *microKernel) tail(r int) *tailKernel {
	for i := range kn.tails {
		if r <= kn.tails[i].mr {
			return &kn.tails[i]
		}
	}
	return nil
}

// runTail is run with the tail kernel for rows-row panels (rows ≤ t.mr).
func (kn *microKernel) runTail(t *tailKernel, kc, w int, a, b, c []float32, ldc int, beta float32, mode, rows, cols int) {
	f := t.asm
	if w != kn.nr {
		f = t.half
	}
	if f == nil || kc == 0 {
		kernelGo(t.mr, w, kc, a, b, c, ldc, beta, mode, rows, cols)
		return
	}
	_ = c[(rows-1)*ldc+cols-1]
	_ = a[kc*t.mr-1]
	_ = b[kc*w-1]
	f(kc, &a[0], &b[0], &c[0], ldc, beta, mode, rows, cols)
}

// asmKernel is the signature of the generated micro-kernels over packed
// panels.
type asmKernel func(kc int, a, b, c *float32, ldc int, beta float32, mode, rows, cols int)

// asmKernelUA is the signature of the generated micro-kernels that read A
// in place.
type asmKernelUA func(kc int, a *float32, lda int, b, c *float32, ldc int, beta float32, mode, rows, cols int)

// panelWidth returns the width of the B micro-panel that covers the next
// rem columns.
func (kn *microKernel) panelWidth(rem int) int {
	if kn.half != nil && rem <= kn.nr/2 {
		return kn.nr / 2
	}
	return kn.nr
}

// Store modes of the micro-kernels.
const (
	storeOverwrite  = 0 // c = acc
	storeAccumulate = 1 // c = acc + beta·c
)

// run computes one mr×w tile (w is nr, or nr/2 when half is set),
// Σ_p a[p·mr:]⊗b[p·w:], and stores its top-left rows×cols corner into c
// as mode says. rows < mr or cols < w need kn.partial.
func (kn *microKernel) run(kc, w int, a, b, c []float32, ldc int, beta float32, mode, rows, cols int) {
	f := kn.asm
	if w != kn.nr {
		f = kn.half
	}
	if f == nil || kc == 0 {
		kernelGo(kn.mr, w, kc, a, b, c, ldc, beta, mode, rows, cols)
		return
	}
	_ = c[(rows-1)*ldc+cols-1]
	_ = a[kc*kn.mr-1]
	_ = b[kc*w-1]
	f(kc, &a[0], &b[0], &c[0], ldc, beta, mode, rows, cols)
}

// runUA is run with the A panel read in place: element (i, p) at a[i·lda+p]
// (all mr rows are read, whatever rows is).
func (kn *microKernel) runUA(kc, w int, a []float32, lda int, b, c []float32, ldc int, beta float32, mode, rows, cols int) {
	f := kn.ua
	if w != kn.nr {
		f = kn.halfUA
	}
	if f == nil || kc == 0 {
		kernelGoUA(kn.mr, w, kc, a, lda, b, c, ldc, beta, mode, rows, cols)
		return
	}
	_ = c[(rows-1)*ldc+cols-1]
	_ = a[(kn.mr-1)*lda+kc-1]
	_ = b[kc*w-1]
	f(kc, &a[0], lda, &b[0], &c[0], ldc, beta, mode, rows, cols)
}

// kernelGoUA is the plain-Go twin of the kernels that read A in place.
func kernelGoUA(mr, nr, kc int, a []float32, lda int, b, c []float32, ldc int, beta float32, mode, rows, cols int) {
	var accBuf [16 * 64]float32
	acc := accBuf[:mr*nr]
	for p := 0; p < kc; p++ {
		bp := b[p*nr : p*nr+nr]
		for i := 0; i < mr; i++ {
			av := a[i*lda+p]
			row := acc[i*nr : i*nr+nr]
			for j, bv := range bp {
				row[j] += av * bv
			}
		}
	}
	storeTile(rows, cols, acc, nr, c, ldc, beta, mode)
}

// kernelGo is the plain-Go twin of the assembly micro-kernels: it computes
// the mr×nr tile of the product of the packed panels a (kc columns of mr
// values) and b (kc rows of nr values) and stores its top-left rows×cols
// corner into c (row stride ldc), adding beta·c in storeAccumulate mode.
func kernelGo(mr, nr, kc int, a, b, c []float32, ldc int, beta float32, mode, rows, cols int) {
	if mr == 4 && nr == 8 && rows == 4 && cols == 8 {
		kernelGo4x8(kc, a, b, c, ldc, beta, mode)
		return
	}
	var accBuf [16 * 64]float32
	acc := accBuf[:mr*nr]
	for p := 0; p < kc; p++ {
		ap := a[p*mr : p*mr+mr]
		bp := b[p*nr : p*nr+nr]
		for i, av := range ap {
			row := acc[i*nr : i*nr+nr]
			for j, bv := range bp {
				row[j] += av * bv
			}
		}
	}
	storeTile(rows, cols, acc, nr, c, ldc, beta, mode)
}

// storeTile writes the rows×cols corner of the tile acc (row stride ldt) to
// c: c = acc, or c = acc + beta·c in storeAccumulate mode.
func storeTile(rows, cols int, acc []float32, ldt int, c []float32, ldc int, beta float32, mode int) {
	for i := 0; i < rows; i++ {
		src := acc[i*ldt : i*ldt+cols]
		dst := c[i*ldc : i*ldc+cols]
		if mode == storeAccumulate {
			for j, v := range src {
				dst[j] = v + beta*dst[j]
			}
		} else {
			copy(dst, src)
		}
	}
}

// kernelGo4x8 is kernelGo for whole 4×8 tiles with the accumulators in
// locals, the kernel of the portable path.
func kernelGo4x8(kc int, a, b, c []float32, ldc int, beta float32, mode int) {
	var c0, c1, c2, c3 [8]float32
	a = a[:kc*4]
	b = b[:kc*8]
	for p := 0; p < kc; p++ {
		ap := (*[4]float32)(a[p*4:])
		bp := (*[8]float32)(b[p*8:])
		a0, a1, a2, a3 := ap[0], ap[1], ap[2], ap[3]
		for j, bv := range bp {
			c0[j] += a0 * bv
			c1[j] += a1 * bv
			c2[j] += a2 * bv
			c3[j] += a3 * bv
		}
	}
	for i, row := range [4]*[8]float32{&c0, &c1, &c2, &c3} {
		dst := (*[8]float32)(c[i*ldc:])
		if mode == storeAccumulate {
			for j, v := range row {
				dst[j] = v + beta*dst[j]
			}
		} else {
			*dst = *row
		}
	}
}

// goKernel is the portable configuration.
var goKernel = microKernel{name: "go4x8", mr: 4, nr: 8, kc: 256, mc: 128, nc: 1024, partial: true}
