//go:build !noasm

package kernels

import "golang.org/x/sys/cpu"

var (
	avx512Kernel = microKernel{name: "avx512_12x32", mr: 12, nr: 32, kc: 384, mc: 192, nc: 2048,
		asm: sgemmKernel12x32AVX512, half: sgemmKernel12x16AVX512,
		ua: sgemmKernel12x32AVX512UA, halfUA: sgemmKernel12x16AVX512UA, partial: true,
		tails: []tailKernel{
			{mr: 4, asm: sgemmKernel4x32AVX512, half: sgemmKernel4x16AVX512},
			{mr: 8, asm: sgemmKernel8x32AVX512, half: sgemmKernel8x16AVX512},
		}}
	avx2Kernel = microKernel{name: "avx2_6x16", mr: 6, nr: 16, kc: 256, mc: 144, nc: 2048, asm: kernel6x16AVX2}
)

// hasAVX512 and hasAVX2 tell which assembly kernels this CPU can run.
var (
	hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

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
// run, for tests and benchmarks.
func asmKernels() []microKernel {
	var ks []microKernel
	if hasAVX512 {
		packedOnly := avx512Kernel
		packedOnly.name += "_packedA"
		packedOnly.ua, packedOnly.halfUA = nil, nil
		noTails := avx512Kernel
		noTails.name += "_notails"
		noTails.tails = nil
		ks = append(ks, avx512Kernel, packedOnly, noTails)
	}
	if hasAVX2 {
		ks = append(ks, avx2Kernel)
	}
	return ks
}

// useTranspose selects the AVX-512 16×16 transpose for packing Bᵀ.
var useTranspose = hasAVX512

// kernel6x16AVX2 adapts the AVX2 kernel, which always stores its whole
// tile, to the asmKernel signature (the avx2Kernel configuration is not
// partial, so rows and cols are always 6 and 16).
func kernel6x16AVX2(kc int, a, b, c *float32, ldc int, beta float32, mode, rows, cols int) {
	sgemmKernel6x16AVX2(kc, a, b, c, ldc, beta, mode)
}

// useAVX512Elementwise selects the assembly element-wise and vector kernels.
var useAVX512Elementwise = hasAVX512
