//go:build noasm || !amd64

package kernels

// useBF16Asm is false without the assembly kernels: the bf16 products run the Go twin.
var useBF16Asm = false

func bf16Kernel12x32AVX512(kq int, a *uint32, lda int, b *uint32, c *float32, ldc int, mode int) {
	panic("kernels: no AVX512_BF16 kernel in this build")
}

var useBF16Pack = false // no AVX-512 packing kernels

func bf16PackPanelAVX512(dst *uint32, x *float32, ldx int, kq int) {
	panic("kernels: no AVX-512 packing kernel in this build")
}

func bf16PackRowAVX512(dst *uint32, x *float32, n int) {
	panic("kernels: no AVX-512 packing kernel in this build")
}
