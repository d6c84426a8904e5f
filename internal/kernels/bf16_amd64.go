//go:build !noasm

package kernels

import "golang.org/x/sys/cpu"

// useBF16Asm selects the AVX512_BF16 micro-kernel of the bf16 products.
var useBF16Asm = hasAVX512 && cpu.X86.HasAVX512BF16

// bf16Kernel12x32AVX512 computes one 12×32 tile of C from rows of bf16 pairs of A and a
// 32-column panel of B pairs (see bf16_amd64.s).
//
//go:noescape
func bf16Kernel12x32AVX512(kq int, a *uint32, lda int, b *uint32, c *float32, ldc int, mode int)

// bf16PackPanelAVX512 packs kq pairs of rows of 32 floats (row stride ldx) as bf16 pairs.
//
//go:noescape
func bf16PackPanelAVX512(dst *uint32, x *float32, ldx int, kq int)

// bf16PackRowAVX512 packs n blocks of 32 consecutive floats as 16 bf16 pairs each.
//
//go:noescape
func bf16PackRowAVX512(dst *uint32, x *float32, n int)

// useBF16Pack selects the AVX-512 packing kernels.
var useBF16Pack = hasAVX512
