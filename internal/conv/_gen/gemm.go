package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genGemm emits gemm<8·np>x<16·nz>AVX512, which sets C = A·B for one
// position ξ: A (the weights) is packed in panels of 8 rows
// ([panel][k][8], panel stride 8k), B (the transformed tiles) and C are
// row-major with row stride ld. It computes rows [0, rows) in blocks of
// 8·np (A must hold whole blocks: missing rows are zero and not stored) and
// columns [0, n) in blocks of 16·nz (masked at the end), with np·nz
// accumulators of 16 lanes per row of 8.
func genGemm(np, nz int) {
	name := fmt.Sprintf("gemm%dx%dAVX512", 8*np, 16*nz)
	TEXT(name, NOSPLIT, "func(a, b, c *float32, ld, k, rows, n int)")
	Pragma("noescape")
	Doc(name + " is gemmPackedGo with " + fmt.Sprintf("%d×%d", 8*np, 16*nz) + " register blocks.")
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	c := Load(Param("c"), GP64())
	ld := Load(Param("ld"), GP64())
	SHLQ(Imm(2), ld)
	n := Load(Param("n"), GP64())
	pst := Load(Param("k"), GP64()) // panel stride in bytes: 32k
	SHLQ(Imm(5), pst)
	lbl := func(s string) string { return name + "_" + s }

	Label(lbl("cols"))
	cols := GP64()
	MOVQ(n, cols)
	lim := GP64()
	MOVQ(U32(16*nz), lim)
	CMPQ(cols, lim)
	CMOVQGT(lim, cols)
	ones, m := GP64(), GP64()
	MOVQ(I32(-1), ones)
	BZHIQ(cols, ones, m)
	km := make([]reg.OpmaskVirtual, nz)
	for j := range km {
		km[j] = K()
		KMOVW(m.As32(), km[j])
		if j < nz-1 {
			SHRQ(Imm(16), m)
		}
	}
	ap := GP64()
	MOVQ(a, ap)
	cp := GP64()
	MOVQ(c, cp)
	rows := Load(Param("rows"), GP64())

	Label(lbl("rows"))
	acc := make([][]reg.VecVirtual, 8*np)
	for i := range acc {
		acc[i] = make([]reg.VecVirtual, nz)
		for j := range acc[i] {
			acc[i][j] = ZMM()
			VPXORD(acc[i][j], acc[i][j], acc[i][j])
		}
	}
	bp := GP64()
	MOVQ(b, bp)
	ak := GP64()
	MOVQ(ap, ak)
	kk := Load(Param("k"), GP64())
	Label(lbl("k"))
	bv := make([]reg.VecVirtual, nz)
	for j := range bv {
		bv[j] = ZMM()
		VMOVUPS_Z(Mem{Base: bp, Disp: 64 * j}, km[j], bv[j])
	}
	for i := range acc {
		mem := Mem{Base: ak, Disp: 4 * (i % 8)}
		if p := i / 8; p > 0 {
			mem = Mem{Base: ak, Index: pst, Scale: uint8(p), Disp: 4 * (i % 8)}
		}
		for j := range bv {
			VFMADD231PS_BCST(mem, bv[j], acc[i][j])
		}
	}
	ADDQ(ld, bp)
	ADDQ(Imm(32), ak)
	DECQ(kk)
	JNZ(LabelRef(lbl("k")))

	// Store the block's rows (fewer than 8·np in the last block).
	cr := GP64()
	MOVQ(cp, cr)
	for i := range acc {
		if i > 0 {
			CMPQ(rows, Imm(uint64(i)))
			JLE(LabelRef(lbl("stored")))
		}
		for j := range acc[i] {
			VMOVUPS(acc[i][j], km[j], Mem{Base: cr, Disp: 64 * j})
		}
		ADDQ(ld, cr)
	}
	Label(lbl("stored"))
	MOVQ(cr, cp)
	for p := 0; p < np; p++ {
		ADDQ(pst, ap)
	}
	SUBQ(Imm(uint64(8*np)), rows)
	JG(LabelRef(lbl("rows")))

	ADDQ(U32(64*nz), b)
	ADDQ(U32(64*nz), c)
	SUBQ(Imm(uint64(16*nz)), n)
	JG(LabelRef(lbl("cols")))
	VZEROUPPER()
	RET()
}
