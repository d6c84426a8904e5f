package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// prefetchA is how far ahead (bytes) the product kernels prefetch a
// sequential stream of weights: a weight matrix streams from memory once
// per product.
const prefetchA = 4096

// genGemm emits the product kernel gemm<8·np>x<16·nz>PAVX512, which sets
// C = A·B (or adds A·B to C when acc is not 0) for one position ξ and one
// block of k input channels. A (the weights) is packed in panels of 8 rows,
// each [k][8], one after the other; B (the transformed tiles) and C are
// row-major with row stride ld.
// The kernel computes rows [0, rows) in blocks of 8·np (A must hold whole
// groups of 24 rows: the missing rows are zero and not stored) and columns
// [0, n) in blocks of 16·nz (masked at the end), with np·nz accumulators of
// 16 lanes per row of 8.
func genGemm(np, nz int) {
	name := fmt.Sprintf("gemm%dx%dPAVX512", 8*np, 16*nz)
	TEXT(name, NOSPLIT, "func(a, b, c *float32, ld, k, rows, n, acc int)")
	Pragma("noescape")
	Doc(name + " is gemmPackedGo with " + fmt.Sprintf("%d×%d", 8*np, 16*nz) + " register blocks.")
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	c := Load(Param("c"), GP64())
	ld := Load(Param("ld"), GP64())
	SHLQ(Imm(2), ld)
	n := Load(Param("n"), GP64())
	lbl := func(s string) string { return name + "_" + s }
	const step = 32 // bytes of A per step of k
	var pst reg.Register
	if np > 1 {
		pst = Load(Param("k"), GP64()) // panel stride: 32k bytes
		SHLQ(Imm(5), pst)
	}

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
	var pf reg.Register
	if np > 1 {
		// The three panels after this block's, fetched while it runs.
		pf = GP64()
		LEAQ(Mem{Base: ak, Index: pst, Scale: 2}, pf)
		ADDQ(pst, pf)
	}
	Label(lbl("k"))
	bv := make([]reg.VecVirtual, nz)
	for j := range bv {
		bv[j] = ZMM()
		VMOVUPS_Z(Mem{Base: bp, Disp: 64 * j}, km[j], bv[j])
	}
	switch {
	case np == 1:
		PREFETCHT0(Mem{Base: ak, Disp: prefetchA})
	default:
		for p := 0; p < np; p++ {
			if p == 0 {
				PREFETCHT0(Mem{Base: pf})
			} else {
				PREFETCHT0(Mem{Base: pf, Index: pst, Scale: uint8(p)})
			}
		}
	}
	for i := range acc {
		mem := Mem{Base: ak, Disp: 4 * i}
		if i >= 8 {
			mem = Mem{Base: ak, Index: pst, Scale: uint8(i / 8), Disp: 4 * (i % 8)}
		}
		for j := range bv {
			VFMADD231PS_BCST(mem, bv[j], acc[i][j])
		}
	}
	ADDQ(ld, bp)
	ADDQ(Imm(uint64(step)), ak)
	if pf != nil {
		ADDQ(Imm(uint64(step)), pf)
	}
	DECQ(kk)
	JNZ(LabelRef(lbl("k")))

	// Store the block's rows (fewer than 8·np in the last block), after
	// adding C to them when accumulating; whole blocks of columns without
	// masks (masked stores are slow).
	cr := GP64()
	MOVQ(cp, cr)
	accf := Load(Param("acc"), GP64())
	mode := GP64() // 0: overwrite, 1: accumulate; +2 when columns are masked
	MOVQ(accf, mode)
	CMPQ(cols, Imm(uint64(16*nz)))
	JEQ(LabelRef(lbl("full")))
	ADDQ(Imm(2), mode)
	Label(lbl("full"))
	for variant := 0; variant < 4; variant++ {
		add, masked := variant&1 != 0, variant&2 != 0
		here := lbl(fmt.Sprintf("store%d", variant))
		Label(here)
		if variant < 3 {
			CMPQ(mode, Imm(uint64(variant)))
			JNE(LabelRef(lbl(fmt.Sprintf("store%d", variant+1))))
		}
		for i := range acc {
			if i > 0 {
				CMPQ(rows, Imm(uint64(i)))
				JLE(LabelRef(lbl("stored")))
			}
			for j := range acc[i] {
				mem := Mem{Base: cr, Disp: 64 * j}
				if add {
					if masked {
						t := ZMM()
						VMOVUPS_Z(mem, km[j], t)
						VADDPS(t, acc[i][j], acc[i][j])
					} else {
						VADDPS(mem, acc[i][j], acc[i][j])
					}
				}
				if masked {
					VMOVUPS(acc[i][j], km[j], mem)
				} else {
					VMOVUPS(acc[i][j], mem)
				}
			}
			ADDQ(ld, cr)
		}
		JMP(LabelRef(lbl("stored")))
	}
	Label(lbl("stored"))
	MOVQ(cr, cp)
	// Next block of rows: right after this one's last step (np = 1), or
	// three panels on (np = 3).
	if np > 1 {
		for p := 0; p < np; p++ {
			ADDQ(pst, ap)
		}
	} else {
		MOVQ(ak, ap)
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
