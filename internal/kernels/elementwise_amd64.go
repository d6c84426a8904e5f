//go:build !noasm

package kernels

// useAVX512Elementwise selects the assembly element-wise kernels.
var useAVX512Elementwise = hasAVX512
