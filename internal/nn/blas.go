package nn

import (
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/gorgonia"

	"github.com/sdxs-go/sdxs/internal/kernels"
)

// fastBLAS is gonum's BLAS with the single-precision matrix product replaced by the project's
// SGEMM, for Gorgonia's own operations (gorgonia.Use). The models' heavy ops call the SGEMM
// directly; this makes any standard Gorgonia op in a graph (Mul, Conv2d, ...) fast too.
type fastBLAS struct{ gonum.Implementation }

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices.
func (fastBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	kernels.Sgemm(tA != blas.NoTrans, tB != blas.NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

var useBLAS sync.Once

// useFastBLAS hands Gorgonia the fast SGEMM, once per process. gorgonia.Use sets Gorgonia's
// process-wide BLAS; every value it could hold computes the same function, so the only effect
// on other Gorgonia users in the process is speed.
func useFastBLAS() {
	useBLAS.Do(func() { gorgonia.Use(fastBLAS{}) })
}
