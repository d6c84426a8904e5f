//go:build !noasm

#include "textflag.h"

// The bf16 packing kernels: float32 rounded to bfloat16 as ToBF16 does (to nearest, ties to
// even; NaN made quiet; subnormal results flushed to zero of the same sign), with AVX-512F
// integer instructions only, written by hand (they need no AVX512_BF16 instruction).

// ROUND rounds the float32 bits in u to bf16, leaving the result in the high half of each
// dword of r (the low half is garbage), with t as a temporary. Constants: Z20 = 1, Z21 =
// 0x7fff, Z22 = 0x7f800000, Z23 = 0x80000000, Z24 = 0x7fffffff, Z25 = 0x00400000.
#define ROUND(u, r, t) \
	VPSRLD $16, u, t \
	VPANDD Z20, t, t \
	VPADDD Z21, u, r \
	VPADDD t, r, r \
	VPTESTNMD Z22, r, K1 \
	VPANDD Z23, r, K1, r \
	VPANDD Z24, u, t \
	VPCMPGTD Z22, t, K2 \
	VPORD Z25, u, K2, r

#define CONSTANTS \
	MOVL $1, AX \
	VPBROADCASTD AX, Z20 \
	MOVL $0x7fff, AX \
	VPBROADCASTD AX, Z21 \
	MOVL $0x7f800000, AX \
	VPBROADCASTD AX, Z22 \
	MOVL $0x80000000, AX \
	VPBROADCASTD AX, Z23 \
	MOVL $0x7fffffff, AX \
	VPBROADCASTD AX, Z24 \
	MOVL $0x00400000, AX \
	VPBROADCASTD AX, Z25 \
	MOVL $0xffff0000, AX \
	VPBROADCASTD AX, Z26

// func bf16PackPanelAVX512(dst *uint32, x *float32, ldx int, kq int)
// For q < kq and j < 32: dst[32q+j] = pair(x[2q·ldx+j], x[(2q+1)·ldx+j]).
TEXT ·bf16PackPanelAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ ldx+16(FP), DX
	SHLQ $2, DX
	MOVQ kq+24(FP), CX
	CONSTANTS
	TESTQ CX, CX
	JEQ panelDone
panelLoop:
	VMOVDQU32 (SI), Z0
	VMOVDQU32 64(SI), Z1
	VMOVDQU32 (SI)(DX*1), Z2
	VMOVDQU32 64(SI)(DX*1), Z3
	ROUND(Z0, Z4, Z8)
	ROUND(Z1, Z5, Z8)
	ROUND(Z2, Z6, Z8)
	ROUND(Z3, Z7, Z8)
	VPSRLD $16, Z4, Z4
	VPSRLD $16, Z5, Z5
	VPANDD Z26, Z6, Z6
	VPANDD Z26, Z7, Z7
	VPORD Z4, Z6, Z6
	VPORD Z5, Z7, Z7
	VMOVDQU32 Z6, (DI)
	VMOVDQU32 Z7, 64(DI)
	LEAQ (SI)(DX*2), SI
	ADDQ $128, DI
	DECQ CX
	JNE panelLoop
panelDone:
	VZEROUPPER
	RET

// func bf16PackRowAVX512(dst *uint32, x *float32, n int)
// For q < 16·n: dst[q] = pair(x[2q], x[2q+1]) (n blocks of 32 floats).
TEXT ·bf16PackRowAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	CONSTANTS
	MOVQ $0xffff, AX
	VPBROADCASTQ AX, Z27
	MOVQ $0xffff0000, AX
	VPBROADCASTQ AX, Z28
	TESTQ CX, CX
	JEQ rowDone
rowLoop:
	VMOVDQU32 (SI), Z0
	VMOVDQU32 64(SI), Z1
	ROUND(Z0, Z4, Z8)
	ROUND(Z1, Z5, Z8)
	// qword i holds the rounded x[2i] (low dword) and x[2i+1] (high dword): keep bits 16–31
	// of each as the low and high halves of the low dword, then narrow qwords to dwords.
	VPSRLQ $16, Z4, Z6
	VPANDQ Z27, Z6, Z6
	VPSRLQ $32, Z4, Z7
	VPANDQ Z28, Z7, Z7
	VPORQ Z6, Z7, Z6
	VPMOVQD Z6, Y9
	VPSRLQ $16, Z5, Z6
	VPANDQ Z27, Z6, Z6
	VPSRLQ $32, Z5, Z7
	VPANDQ Z28, Z7, Z7
	VPORQ Z6, Z7, Z6
	VPMOVQD Z6, Y10
	VMOVDQU32 Y9, (DI)
	VMOVDQU32 Y10, 32(DI)
	ADDQ $128, SI
	ADDQ $64, DI
	DECQ CX
	JNE rowLoop
rowDone:
	VZEROUPPER
	RET
