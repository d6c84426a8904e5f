package kernels

// microKernel describes the micro-kernels in use and the block sizes that
// suit them.
type microKernel struct {
	name       string
	mr, nr     int // the tile of C computed by the main kernel
	kc, mc, nc int // blocking of k, m and n for the packed buffers
	// rows lists, in increasing order, the panel heights that have kernels;
	// the last is mr. A last panel of r < mr rows of A is packed with the
	// smallest height that covers r (see panelRows).
	rows []int
	// kernels[i][ua][ub][half] is the assembly kernel for panels of rows[i]
	// rows, reading A in place (ua = 1) or packed, B in place (ub = 1) or
	// packed, nr columns (half = 0) or nr/2 (half = 1); nil runs the Go twin
	// (or, for ua or ub, means that variant is not offered).
	kernels [][2][2][2]asmKernel
	// half tells that there are nr/2-wide kernels, used for a last B panel
	// of at most nr/2 columns.
	half bool
	// partial tells that the kernels store any top-left corner of the tile
	// themselves; otherwise edge tiles go through a scratch tile.
	partial bool
}

// asmKernel is the signature shared by the AVX-512 micro-kernels (lda and
// ldb are read only by the variants that read A or B in place).
type asmKernel func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, beta float32, mode, rows, cols int)

// Store modes of the micro-kernels.
const (
	storeOverwrite  = 0 // c = acc
	storeAccumulate = 1 // c = acc + beta·c
)

// panelWidth returns the width of the B micro-panel that covers the next
// rem columns.
func (kn *microKernel) panelWidth(rem int) int {
	if kn.half && rem <= kn.nr/2 {
		return kn.nr / 2
	}
	return kn.nr
}

// panelRows returns the height of the packed A panel that holds r rows
// (r ≤ mr): the smallest kernel height that covers them.
func (kn *microKernel) panelRows(r int) int {
	for _, h := range kn.rows {
		if r <= h {
			return h
		}
	}
	return kn.mr
}

// variant returns the kernel for panels of pr rows and width w reading A
// and B in place or not, or nil.
func (kn *microKernel) variant(pr, w int, aIn, bIn bool) asmKernel {
	for i, h := range kn.rows {
		if h == pr {
			return kn.kernels[i][b2i(aIn)][b2i(bIn)][b2i(w != kn.nr)]
		}
	}
	return nil
}

// inPlaceA and inPlaceB tell whether the main kernels can read A, or B, in
// place.
func (kn *microKernel) inPlaceA() bool { return kn.variant(kn.mr, kn.nr, true, false) != nil }
func (kn *microKernel) inPlaceB() bool { return kn.variant(kn.mr, kn.nr, false, true) != nil }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// operand is one input panel of a micro-kernel call: in place (element
// (i, p) of A at s[i·ld + p], element (p, j) of B at s[p·ld + j]) or packed
// (ld = 0: A at s[p·pr + i], B at s[p·w + j]).
type operand struct {
	s  []float32
	ld int
}

// run computes the pr×w tile Σ_p A[:, p]⊗B[p, :] and stores its top-left
// rows×cols corner into c (row stride ldc) as mode says.
func (kn *microKernel) run(pr, w, kc int, a, b operand, c []float32, ldc int, beta float32, mode, rows, cols int) {
	f := kn.variant(pr, w, a.ld != 0, b.ld != 0)
	if f == nil || kc == 0 {
		kernelGo(pr, w, kc, a, b, c, ldc, beta, mode, rows, cols)
		return
	}
	if a.ld != 0 {
		_ = a.s[(pr-1)*a.ld+kc-1]
	} else {
		_ = a.s[kc*pr-1]
	}
	if b.ld != 0 {
		_ = b.s[(kc-1)*b.ld+w-1]
	} else {
		_ = b.s[kc*w-1]
	}
	_ = c[(rows-1)*ldc+cols-1]
	f(kc, &a.s[0], a.ld, &b.s[0], b.ld, &c[0], ldc, beta, mode, rows, cols)
}

// kernelGo is the plain-Go twin of the micro-kernels: it computes the mr×nr
// tile of the product of the A panel (mr rows) and the B panel (nr columns)
// over kc steps and stores its top-left rows×cols corner into c (row stride
// ldc), adding beta·c in storeAccumulate mode.
func kernelGo(mr, nr, kc int, a, b operand, c []float32, ldc int, beta float32, mode, rows, cols int) {
	if mr == 4 && nr == 8 && rows == 4 && cols == 8 && a.ld == 0 && b.ld == 0 {
		kernelGo4x8(kc, a.s, b.s, c, ldc, beta, mode)
		return
	}
	var accBuf [16 * 64]float32
	acc := accBuf[:mr*nr]
	for p := 0; p < kc; p++ {
		var bp []float32
		if b.ld != 0 {
			bp = b.s[p*b.ld : p*b.ld+nr]
		} else {
			bp = b.s[p*nr : p*nr+nr]
		}
		for i := 0; i < mr; i++ {
			var av float32
			if a.ld != 0 {
				av = a.s[i*a.ld+p]
			} else {
				av = a.s[p*mr+i]
			}
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

// kernelGo4x8 is kernelGo for whole 4×8 tiles of packed panels with the
// accumulators in locals, the kernel of the portable path.
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
var goKernel = microKernel{name: "go4x8", mr: 4, nr: 8, kc: 256, mc: 128, nc: 1024,
	rows: []int{4}, kernels: make([][2][2][2]asmKernel, 1), partial: true}
