package nn

import "github.com/sdxs-go/sdxs/internal/kernels"

// sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices (BLAS semantics, C is
// m×n). It is the single entry point of the package's matrix products: the packed, blocked,
// parallel SGEMM of internal/kernels with its AVX-512 / AVX2 micro-kernels.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	kernels.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
