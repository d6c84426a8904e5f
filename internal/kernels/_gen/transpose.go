package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genTranspose16 emits transpose16x16AVX512(dst *float32, dstStride int,
// src *float32, srcStride int, alpha float32): dst[j·dstStride + i] =
// alpha·src[i·srcStride + j] for i, j < 16, in registers: interleave pairs
// of rows (32-bit, then 64-bit), then gather the 128-bit lanes.
func genTranspose16() {
	TEXT("transpose16x16AVX512", NOSPLIT, "func(dst *float32, dstStride int, src *float32, srcStride int, alpha float32)")
	Pragma("noescape")
	Doc("transpose16x16AVX512 writes alpha times the transpose of a 16×16 block of src to dst.")
	dst := Load(Param("dst"), GP64())
	ds := Load(Param("dstStride"), GP64())
	src := Load(Param("src"), GP64())
	ss := Load(Param("srcStride"), GP64())
	SHLQ(Imm(2), ds)
	SHLQ(Imm(2), ss)
	al := Load(Param("alpha"), XMM())
	alpha := ZMM()
	VBROADCASTSS(al, alpha)

	var r [16]reg.VecVirtual
	for i := range r {
		r[i] = ZMM()
		VMOVUPS(Mem{Base: src}, r[i])
		if i < 15 {
			ADDQ(ss, src)
		}
	}
	// a[2k] lane L = (r[2k][4L], r[2k+1][4L], r[2k][4L+1], r[2k+1][4L+1]),
	// a[2k+1] the same with 4L+2 and 4L+3.
	var a [16]reg.VecVirtual
	for k := 0; k < 8; k++ {
		a[2*k], a[2*k+1] = ZMM(), ZMM()
		VUNPCKLPS(r[2*k+1], r[2*k], a[2*k])
		VUNPCKHPS(r[2*k+1], r[2*k], a[2*k+1])
	}
	// b[4g+c] lane L = column 4L+c of rows 4g..4g+3.
	var b [16]reg.VecVirtual
	for g := 0; g < 4; g++ {
		for c := range 4 {
			b[4*g+c] = ZMM()
		}
		VUNPCKLPD(a[4*g+2], a[4*g], b[4*g])
		VUNPCKHPD(a[4*g+2], a[4*g], b[4*g+1])
		VUNPCKLPD(a[4*g+3], a[4*g+1], b[4*g+2])
		VUNPCKHPD(a[4*g+3], a[4*g+1], b[4*g+3])
	}
	// Output row 4L+c takes lane L of b[c], b[4+c], b[8+c], b[12+c].
	for c := 0; c < 4; c++ {
		x, y, z, w := b[c], b[4+c], b[8+c], b[12+c]
		s1, s2, s3, s4 := ZMM(), ZMM(), ZMM(), ZMM()
		VSHUFF32X4(Imm(0x44), y, x, s1) // x0 x1 y0 y1
		VSHUFF32X4(Imm(0xEE), y, x, s2) // x2 x3 y2 y3
		VSHUFF32X4(Imm(0x44), w, z, s3) // z0 z1 w0 w1
		VSHUFF32X4(Imm(0xEE), w, z, s4) // z2 z3 w2 w3
		for L, sh := range []struct {
			imm    uint64
			lo, hi reg.VecVirtual
		}{{0x88, s1, s3}, {0xDD, s1, s3}, {0x88, s2, s4}, {0xDD, s2, s4}} {
			o := ZMM()
			VSHUFF32X4(Imm(sh.imm), sh.hi, sh.lo, o)
			VMULPS(alpha, o, o)
			j := 4*L + c
			addr := GP64()
			IMUL3Q(Imm(uint64(j)), ds, addr)
			ADDQ(dst, addr)
			VMOVUPS(o, Mem{Base: addr})
		}
	}
	VZEROUPPER()
	RET()
}

// genCopyPanel emits copyPanel<16·nv>AVX512(dst, src *float32, ld, rows int,
// alpha float32): dst[p·16nv + j] = alpha·src[p·ld + j] for p < rows,
// j < 16·nv, the packing of a panel of B that is not transposed.
func genCopyPanel(nv int) {
	name := "copyPanel16AVX512"
	if nv == 2 {
		name = "copyPanel32AVX512"
	}
	TEXT(name, NOSPLIT, "func(dst, src *float32, ld, rows int, alpha float32)")
	Pragma("noescape")
	Doc(name + " copies alpha times rows of a strided matrix into a packed panel.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ld := Load(Param("ld"), GP64())
	SHLQ(Imm(2), ld)
	rows := Load(Param("rows"), GP64())
	al := Load(Param("alpha"), XMM())
	alpha := ZMM()
	VBROADCASTSS(al, alpha)
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
	Label(name + "_loop")
	for v := 0; v < nv; v++ {
		t := ZMM()
		VMULPS(Mem{Base: src, Disp: 64 * v}, alpha, t)
		VMOVUPS(t, Mem{Base: dst, Disp: 64 * v})
	}
	ADDQ(ld, src)
	ADDQ(U32(64*nv), dst)
	DECQ(rows)
	JNZ(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}
