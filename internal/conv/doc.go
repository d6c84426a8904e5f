// Package conv computes 3×3, stride-1 convolutions of float32 [C, H, W]
// images (batch 1) with Winograd's minimal filtering algorithm F(4×4, 3×3).
//
// # Algorithm
//
// The output is cut into 4×4 tiles. Each tile of the output depends on a
// 6×6 patch of the (zero-padded) input, and for one input channel and one
// output channel the 4×4 result is
//
//	Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
//
// where g is the 3×3 kernel, d the 6×6 patch, ⊙ the element-wise product and
// Bᵀ (6×6), G (6×3), Aᵀ (4×6) the Toom-Cook matrices built on the
// interpolation points 0, 1, −1, 2, −2 and ∞ (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016). Summing over input
// channels turns the 36 element-wise products into 36 independent matrix
// products, one per position ξ of the 6×6 transformed tile:
//
//	M_ξ [Cout × T] = U_ξ [Cout × Cin] · V_ξ [Cin × T]
//
// with U = G g Gᵀ (the weights, transformed once by TransformWeights), V =
// Bᵀ d B (the input tiles, transformed on every Run) and T the number of
// tiles. The 36 products run on kernels.Sgemm, and each output tile is
// Aᵀ M A plus the bias. That is 36 multiply-adds per tile and channel pair
// instead of 16·9 = 144: a quarter of the arithmetic of a direct (im2col +
// GEMM) convolution, plus the transforms, which cost O(C·H·W) rather than
// O(Cin·Cout·H·W) and matter only when the channel count is small.
//
// The tiles are processed in chunks of a few dozen to a few hundred, so that
// the transformed inputs V and products M of one chunk stay in cache and the
// scratch memory is bounded whatever the image size. With few channels each
// goroutine transforms, multiplies and inverse-transforms its own chunks
// (the matrix products are then small and run on one core each); with many
// channels all goroutines share each chunk: the transforms are split by
// channel and the matrix products use the parallel Sgemm.
//
// The input and output transforms are written in AVX-512 assembly (generated
// by avo from the _gen folder) that works on 16 tiles at a time, with a
// plain-Go twin that computes bit-identical results; the Go version runs on
// other CPUs and under the noasm build tag.
//
// # Accuracy
//
// The transforms scale values by up to 4 (Bᵀ) and 8 (Aᵀ) and the weight
// transform G has entries 1/6, 1/12 and 1/24, so F(4×4, 3×3) in float32
// loses about one decimal digit against a direct float32 convolution: on
// random normal inputs with weights of scale 1/√(9·Cin), the relative L2
// error against a float64 direct convolution is about 2–3·10⁻⁶ for 64 to
// 1280 input channels (a direct float32 convolution gets about 2–4·10⁻⁷).
// The tests check ≤ 1e-5. Every coefficient of Bᵀ and Aᵀ used at run time
// is a power of two, so fusing multiplies and adds does not change the result.
//
// The transformed weights take 36/9 = 4 times the memory of the 3×3 kernels.
package conv
