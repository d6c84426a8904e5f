//go:build !noasm

package kernels

import "golang.org/x/sys/cpu"

// hasAVX512 and hasAVX2 tell which assembly kernels this CPU can run.
var (
	hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

var (
	avx512Kernel = microKernel{name: "avx512_12x32", mr: 12, nr: 32, kc: 384, mc: 192, nc: 2048,
		rows: []int{4, 8, 12},
		kernels: [][2][2][2]asmKernel{
			{ // 4 rows: A packed
				{{sgemmKernel4x32AVX512, sgemmKernel4x16AVX512}, {sgemmKernel4x32AVX512UB, sgemmKernel4x16AVX512UB}},
			},
			{ // 8 rows: A packed, or in place when the rows of A alias in L1
				{{sgemmKernel8x32AVX512, sgemmKernel8x16AVX512}, {sgemmKernel8x32AVX512UB, sgemmKernel8x16AVX512UB}},
				{{sgemmKernel8x32AVX512UA, sgemmKernel8x16AVX512UA}, {sgemmKernel8x32AVX512UAUB, sgemmKernel8x16AVX512UAUB}},
			},
			{
				{{sgemmKernel12x32AVX512, sgemmKernel12x16AVX512}, {sgemmKernel12x32AVX512UB, sgemmKernel12x16AVX512UB}},
				{{sgemmKernel12x32AVX512UA, sgemmKernel12x16AVX512UA}, {sgemmKernel12x32AVX512UAUB, sgemmKernel12x16AVX512UAUB}},
			},
		},
		half: true, partial: true}
	avx2Kernel = microKernel{name: "avx2_6x16", mr: 6, nr: 16, kc: 256, mc: 144, nc: 2048,
		rows: []int{6}, kernels: [][2][2][2]asmKernel{{{{kernel6x16AVX2}}}}}
)

// kernel6x16AVX2 adapts the AVX2 kernel, which reads packed panels and
// stores its whole tile, to the asmKernel signature (the avx2Kernel
// configuration is not partial, so rows and cols are always 6 and 16).
func kernel6x16AVX2(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, beta float32, mode, rows, cols int) {
	sgemmKernel6x16AVX2(kc, a, b, c, ldc, beta, mode)
}

// activeKernel is the micro-kernel Sgemm uses, chosen once at start-up.
var activeKernel = func() microKernel {
	switch {
	case hasAVX512:
		return avx512Kernel
	case hasAVX2:
		return avx2Kernel
	}
	return goKernel
}()

// asmKernels returns every assembly micro-kernel configuration this CPU can
// run, for tests and benchmarks: the AVX-512 one also without its in-place
// variants and without its tail kernels.
func asmKernels() []microKernel {
	var ks []microKernel
	if hasAVX512 {
		packed := avx512Kernel
		packed.name += "_packed"
		packed.kernels = append([][2][2][2]asmKernel(nil), avx512Kernel.kernels...)
		for i := range packed.kernels {
			packed.kernels[i][1] = [2][2]asmKernel{}
			packed.kernels[i][0][1] = [2]asmKernel{}
		}
		noTails := avx512Kernel
		noTails.name += "_notails"
		noTails.rows, noTails.kernels = noTails.rows[2:], noTails.kernels[2:]
		ks = append(ks, avx512Kernel, packed, noTails)
	}
	if hasAVX2 {
		ks = append(ks, avx2Kernel)
	}
	return ks
}

// useAVX512Elementwise selects the assembly element-wise and vector kernels.
var useAVX512Elementwise = hasAVX512

// useTranspose selects the AVX-512 16×16 transpose and panel copy for
// packing B.
var useTranspose = hasAVX512
