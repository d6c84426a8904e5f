package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// tailMask emits a mask register with the low n bits set (n < 16 in a
// general register; CX is clobbered).
func tailMask(n reg.Register) reg.OpmaskVirtual {
	MOVQ(n, reg.RCX)
	m := GP32()
	MOVL(U32(1), m)
	SHLL(reg.CL, m)
	DECL(m)
	k := K()
	KMOVW(m, k)
	return k
}

// genSdot emits sdotAVX512(x, y *float32, n int) float32 with four
// 16-lane partial sums.
func genSdot() {
	TEXT("sdotAVX512", NOSPLIT, "func(x, y *float32, n int) float32")
	Pragma("noescape")
	Doc("sdotAVX512 returns Σ x[i]·y[i] for i < n.")
	px := Load(Param("x"), GP64())
	py := Load(Param("y"), GP64())
	n := Load(Param("n"), GP64())
	acc := []reg.VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
	for _, a := range acc {
		VPXORD(a, a, a)
	}
	Label("sdot_loop64")
	CMPQ(n, Imm(64))
	JL(LabelRef("sdot_loop16"))
	for u, a := range acc {
		t := ZMM()
		VMOVUPS(Mem{Base: px, Disp: 64 * u}, t)
		VFMADD231PS(Mem{Base: py, Disp: 64 * u}, t, a)
	}
	ADDQ(U32(256), px)
	ADDQ(U32(256), py)
	SUBQ(Imm(64), n)
	JMP(LabelRef("sdot_loop64"))
	Label("sdot_loop16")
	CMPQ(n, Imm(16))
	JL(LabelRef("sdot_tail"))
	t := ZMM()
	VMOVUPS(Mem{Base: px}, t)
	VFMADD231PS(Mem{Base: py}, t, acc[0])
	ADDQ(Imm(64), px)
	ADDQ(Imm(64), py)
	SUBQ(Imm(16), n)
	JMP(LabelRef("sdot_loop16"))
	Label("sdot_tail")
	TESTQ(n, n)
	JZ(LabelRef("sdot_sum"))
	k := tailMask(n)
	tx, ty := ZMM(), ZMM()
	VMOVUPS_Z(Mem{Base: px}, k, tx)
	VMOVUPS_Z(Mem{Base: py}, k, ty)
	VFMADD231PS(ty, tx, acc[1])
	Label("sdot_sum")
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	hi := YMM()
	VEXTRACTF32X8(Imm(1), acc[0], hi)
	lo := acc[0].AsY()
	VADDPS(hi, lo, lo)
	x4 := XMM()
	VEXTRACTF128(Imm(1), lo, x4)
	l4 := acc[0].AsX()
	VADDPS(x4, l4, l4)
	VMOVHLPS(l4, x4, x4)
	VADDPS(x4, l4, l4)
	VMOVSHDUP(l4, x4)
	VADDSS(x4, l4, l4)
	VZEROUPPER()
	Store(l4, ReturnIndex(0))
	RET()
}

// genSaxpy emits saxpyAVX512(alpha float32, x, y *float32, n int), which
// adds alpha·x[i] to y[i] for i < n.
func genSaxpy() {
	TEXT("saxpyAVX512", NOSPLIT, "func(alpha float32, x, y *float32, n int)")
	Pragma("noescape")
	Doc("saxpyAVX512 adds alpha·x[i] to y[i] for i < n.")
	al := Load(Param("alpha"), XMM())
	px := Load(Param("x"), GP64())
	py := Load(Param("y"), GP64())
	n := Load(Param("n"), GP64())
	a := ZMM()
	VBROADCASTSS(al, a)
	Label("saxpy_loop64")
	CMPQ(n, Imm(64))
	JL(LabelRef("saxpy_loop16"))
	for u := 0; u < 4; u++ {
		t := ZMM()
		VMOVUPS(Mem{Base: py, Disp: 64 * u}, t)
		VFMADD231PS(Mem{Base: px, Disp: 64 * u}, a, t)
		VMOVUPS(t, Mem{Base: py, Disp: 64 * u})
	}
	ADDQ(U32(256), px)
	ADDQ(U32(256), py)
	SUBQ(Imm(64), n)
	JMP(LabelRef("saxpy_loop64"))
	Label("saxpy_loop16")
	CMPQ(n, Imm(16))
	JL(LabelRef("saxpy_tail"))
	t := ZMM()
	VMOVUPS(Mem{Base: py}, t)
	VFMADD231PS(Mem{Base: px}, a, t)
	VMOVUPS(t, Mem{Base: py})
	ADDQ(Imm(64), px)
	ADDQ(Imm(64), py)
	SUBQ(Imm(16), n)
	JMP(LabelRef("saxpy_loop16"))
	Label("saxpy_tail")
	TESTQ(n, n)
	JZ(LabelRef("saxpy_done"))
	k := tailMask(n)
	tx, ty := ZMM(), ZMM()
	VMOVUPS_Z(Mem{Base: px}, k, tx)
	VMOVUPS_Z(Mem{Base: py}, k, ty)
	VFMADD231PS(tx, a, ty)
	VMOVUPS(ty, k, Mem{Base: py})
	Label("saxpy_done")
	VZEROUPPER()
	RET()
}
