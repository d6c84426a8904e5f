//go:build noasm || !amd64

package kernels

// useBF16Asm is false without the assembly kernels: the bf16 products run the Go twin.
var useBF16Asm = false

func bf16Kernel12x32AVX512(kq int, a *uint32, lda int, b *uint32, c *float32, ldc int, mode int) {
	panic("kernels: no AVX512_BF16 kernel in this build")
}
