//go:build !amd64 || noasm

package kernels

// activeKernel is the micro-kernel Sgemm uses: the portable one.
var activeKernel = goKernel

// asmKernels returns no kernel: this build has no assembly.
func asmKernels() []microKernel { return nil }

// The assembly kernels do not exist in this build; these stubs are never
// called because the flags below are false.

const useAVX512Elementwise = false

func expAVX512(x *float32, n int)     { panic("unreachable") }
func siluAVX512(x *float32, n int)    { panic("unreachable") }
func geluAVX512(x *float32, n int)    { panic("unreachable") }
func softmaxAVX512(x *float32, n int) { panic("unreachable") }

func sdotAVX512(x, y *float32, n int) float32         { panic("unreachable") }
func saxpyAVX512(alpha float32, x, y *float32, n int) { panic("unreachable") }

var useTranspose = false

func transpose16x16AVX512(dst *float32, dstStride int, src *float32, srcStride int, alpha float32) {
	panic("unreachable")
}

func copyPanel16AVX512(dst, src *float32, ld, rows int, alpha float32) { panic("unreachable") }
func copyPanel32AVX512(dst, src *float32, ld, rows int, alpha float32) { panic("unreachable") }
