package conv

// The products M_ξ = U_ξ·V_ξ run on kernels of this package when the CPU
// has AVX-512 (single-threaded, on U packed in panels of 8 rows, reading V
// in place), and on kernels.Sgemm otherwise.

// Packed weights: the rows (output channels) are padded to a multiple of
// gemmGroup (so that the 24-row kernel reads whole panels), and each block
// of gemmKB input channels holds panels of gemmMR rows, each [k][8], one
// after the other.
const (
	gemmGroup = 24
	gemmMR    = 8
)

// gemmKB is the depth of the blocks the products are summed in: each block
// of input channels is summed from zero and then added to the result. With
// one running sum the error grows with Cin (relative L2 5·10⁻⁶ at
// Cin = 1280); in blocks of 256 it stays near 2·10⁻⁶ up to Cin = 2560, for
// a few per cent of speed on the largest weight matrices (128 would give
// 1.7·10⁻⁶ and cost 15% there).
var gemmKB = 256

// packedIndex returns the position of A[o][i] in packed weights (cin input
// channels, rowsPadded rows).
func packedIndex(o, i, cin, rowsPadded int) int {
	k0 := i / gemmKB * gemmKB
	klen := min(gemmKB, cin-k0)
	return k0*rowsPadded + blockIndex(o, i-k0, klen)
}

// blockIndex returns the position of A[o][i] in one block of k input
// channels.
func blockIndex(o, i, k int) int { return ((o/gemmMR)*k+i)*gemmMR + o%gemmMR }

// padRows returns rows rounded up to whole groups.
func padRows(rows int) int { return ceilDiv(rows, gemmGroup) * gemmGroup }

// gemmPackedGo is the plain-Go twin of the product kernels: for one block
// of k input channels it sets C[o][t] = Σ_i A[o][i]·B[i][t] (or adds the
// sum to C when acc is set) for the rows o < rows and the columns t < n,
// where A is packed (element (o, i) at blockIndex(o, i, k)) and B and C
// have row stride ld.
func gemmPackedGo(a, b, c []float32, ld, k, rows, n int, acc bool) {
	var buf [64]float32 // columns in blocks of 64: no allocation
	for t0 := 0; t0 < n; t0 += len(buf) {
		nb := min(len(buf), n-t0)
		sum := buf[:nb]
		for o := 0; o < rows; o++ {
			clear(sum)
			for i := 0; i < k; i++ {
				av := a[blockIndex(o, i, k)]
				for t, bv := range b[i*ld+t0 : i*ld+t0+nb] {
					sum[t] += av * bv
				}
			}
			dst := c[o*ld+t0 : o*ld+t0+nb]
			if acc {
				for t := range dst {
					dst[t] += sum[t]
				}
			} else {
				copy(dst, sum)
			}
		}
	}
}

// gemmPacked sets C = A·B for one position ξ, for weights A packed as
// packedIndex says (cin input channels, rows output channels), B [cin, n]
// and C [rows, n] with row stride ld. It runs the assembly kernels on each
// block of gemmKB input channels: 8×48 register blocks, and 24×16 blocks
// for the last columns when fewer than 33 are left (where an 8×48 block
// would waste a third or more of its work).
func gemmPacked(a, b, c []float32, ld, cin, rows, n int) {
	if rows <= 0 || n <= 0 || cin <= 0 {
		return
	}
	rp := padRows(rows)
	// The kernels read a (rp × cin), cin rows of b and write rows × n of c.
	_ = a[rp*cin-1]
	for k0 := 0; k0 < cin; k0 += gemmKB {
		klen := min(gemmKB, cin-k0)
		gemmBlock(a[k0*rp:], b[k0*ld:], c, ld, klen, rows, n, k0 > 0)
	}
}

// gemmBlock sets C = A·B (or adds A·B to C when acc is set) for one block of k input channels:
// A is packed (element (o, i) at blockIndex(o, i, k), whole groups of 24 rows), B [k, n] and
// C [rows, n] have row stride ld.
func gemmBlock(a, b, c []float32, ld, k, rows, n int, acc bool) {
	if !useAVX512 {
		gemmPackedGo(a, b, c, ld, k, rows, n, acc)
		return
	}
	_ = a[padRows(rows)*k-1]
	_ = b[(k-1)*ld+n-1]
	_ = c[(rows-1)*ld+n-1]
	wide := n / 48 * 48
	if n-wide > 32 {
		wide = n
	}
	ac := 0
	if acc {
		ac = 1
	}
	if wide > 0 {
		gemm8x48PAVX512(&a[0], &b[0], &c[0], ld, k, rows, wide, ac)
	}
	if wide < n {
		gemm24x16PAVX512(&a[0], &b[wide], &c[wide], ld, k, rows, n-wide, ac)
	}
}
