package conv

// The products M_ξ = U_ξ·V_ξ run on kernels of this package when the CPU
// has AVX-512 (single-threaded, on U packed in panels of 8 rows, reading V
// in place), and on kernels.Sgemm otherwise.

// gemmMR is the height of a panel of packed weights; panels are padded to
// a multiple of gemmPanelGroup so that the 24-row kernel never reads past
// the end.
const (
	gemmMR         = 8
	gemmPanelGroup = 3
)

// gemmPackedGo is the plain-Go twin of the product kernels: for one
// position ξ it sets C[o][t] = Σ_i A[o][i]·B[i][t] for the rows o < rows
// and the columns t < n, where A is packed in panels of 8 rows (element
// (o, i) at (o/8)·8k + 8i + o%8), and B and C have row stride ld.
func gemmPackedGo(a, b, c []float32, ld, k, rows, n int) {
	for o := 0; o < rows; o++ {
		ap := a[(o/gemmMR)*gemmMR*k+o%gemmMR:]
		dst := c[o*ld : o*ld+n]
		clear(dst)
		for i := 0; i < k; i++ {
			av := ap[i*gemmMR]
			for t, bv := range b[i*ld : i*ld+n] {
				dst[t] += av * bv
			}
		}
	}
}

// gemmPacked is gemmPackedGo on the assembly kernels: 8×48 blocks, and
// 24×16 blocks for the last columns when fewer than 33 are left (where an
// 8×48 block would waste a third or more of its work).
func gemmPacked(a, b, c []float32, ld, k, rows, n int) {
	if !useAVX512 {
		gemmPackedGo(a, b, c, ld, k, rows, n)
		return
	}
	if rows <= 0 || n <= 0 || k <= 0 {
		return
	}
	// The kernels read whole groups of 3 panels of a, k rows of b and
	// write rows × n of c.
	_ = a[ceilDiv(rows, gemmMR*gemmPanelGroup)*gemmMR*gemmPanelGroup*k-1]
	_ = b[(k-1)*ld+n-1]
	_ = c[(rows-1)*ld+n-1]
	wide := n / 48 * 48
	if n-wide > 32 {
		wide = n
	}
	if wide > 0 {
		gemm8x48AVX512(&a[0], &b[0], &c[0], ld, k, rows, wide)
	}
	if wide < n {
		gemm24x16AVX512(&a[0], &b[wide], &c[wide], ld, k, rows, n-wide)
	}
}
