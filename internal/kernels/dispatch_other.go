//go:build !amd64 || noasm

package kernels

// activeKernel is the micro-kernel Sgemm uses: the portable one.
var activeKernel = goKernel

// asmKernels returns no kernel: this build has no assembly.
func asmKernels() []microKernel { return nil }
