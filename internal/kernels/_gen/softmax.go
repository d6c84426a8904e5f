package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// allLanes combines the 16 lanes of z with op (VMAXPS or VADDPS) so that
// every lane holds the result.
func allLanes(z reg.VecVirtual, op func(ops ...Op)) {
	t := ZMM()
	VSHUFF32X4(Imm(0x4E), z, z, t) // swap 256-bit halves
	op(t, z, z)
	VSHUFF32X4(Imm(0xB1), z, z, t) // swap neighbouring 128-bit lanes
	op(t, z, z)
	VPERMILPS(Imm(0x4E), z, t) // swap 64-bit halves of each lane
	op(t, z, z)
	VPERMILPS(Imm(0xB1), z, t) // swap neighbouring floats
	op(t, z, z)
}

// genSoftmax emits softmaxAVX512(x *float32, n int), n ≥ 1: x becomes
// exp(x − max x) / Σ exp(x − max x), in three passes (max; exp and sum;
// scale).
func genSoftmax() {
	TEXT("softmaxAVX512", NOSPLIT, "func(x *float32, n int)")
	Pragma("noescape")
	Doc("softmaxAVX512 replaces x[:n] (n ≥ 1) with its softmax.")
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	p, c := GP64(), GP64()
	ninf := bcast(float32(math.Inf(-1)))
	lo, hi := bcast(-128), bcast(128)

	// Pass 1: the maximum.
	m0, m1 := ZMM(), ZMM()
	VMOVAPS(ninf, m0)
	VMOVAPS(ninf, m1)
	MOVQ(x, p)
	MOVQ(n, c)
	Label("softmax_max32")
	CMPQ(c, Imm(32))
	JL(LabelRef("softmax_max16"))
	VMAXPS(Mem{Base: p}, m0, m0)
	VMAXPS(Mem{Base: p, Disp: 64}, m1, m1)
	ADDQ(U32(128), p)
	SUBQ(Imm(32), c)
	JMP(LabelRef("softmax_max32"))
	Label("softmax_max16")
	CMPQ(c, Imm(16))
	JL(LabelRef("softmax_maxtail"))
	VMAXPS(Mem{Base: p}, m0, m0)
	ADDQ(U32(64), p)
	SUBQ(Imm(16), c)
	Label("softmax_maxtail")
	TESTQ(c, c)
	JZ(LabelRef("softmax_maxdone"))
	k := tailMask(c)
	t := ZMM()
	VMOVAPS(ninf, t)
	VMOVUPS(Mem{Base: p}, k, t) // −inf in the lanes past the end
	VMAXPS(t, m0, m0)
	Label("softmax_maxdone")
	VMAXPS(m1, m0, m0)
	allLanes(m0, VMAXPS)

	// Pass 2: e = exp(x − max), stored, and summed.
	s0, s1 := ZMM(), ZMM()
	VPXORD(s0, s0, s0)
	VPXORD(s1, s1, s1)
	expOf := func(v reg.VecVirtual) reg.VecVirtual {
		VSUBPS(m0, v, v)
		pp, nn := expParts(v, lo, hi)
		VSCALEFPS(nn, pp, pp)
		return pp
	}
	MOVQ(x, p)
	MOVQ(n, c)
	Label("softmax_exp32")
	CMPQ(c, Imm(32))
	JL(LabelRef("softmax_exp16"))
	for u, s := range []reg.VecVirtual{s0, s1} {
		v := ZMM()
		VMOVUPS(Mem{Base: p, Disp: 64 * u}, v)
		e := expOf(v)
		VMOVUPS(e, Mem{Base: p, Disp: 64 * u})
		VADDPS(e, s, s)
	}
	ADDQ(U32(128), p)
	SUBQ(Imm(32), c)
	JMP(LabelRef("softmax_exp32"))
	Label("softmax_exp16")
	CMPQ(c, Imm(16))
	JL(LabelRef("softmax_exptail"))
	{
		v := ZMM()
		VMOVUPS(Mem{Base: p}, v)
		e := expOf(v)
		VMOVUPS(e, Mem{Base: p})
		VADDPS(e, s0, s0)
	}
	ADDQ(U32(64), p)
	SUBQ(Imm(16), c)
	Label("softmax_exptail")
	TESTQ(c, c)
	JZ(LabelRef("softmax_expdone"))
	{
		k := tailMask(c)
		v := ZMM()
		VMOVUPS_Z(Mem{Base: p}, k, v)
		e := expOf(v)
		VMOVUPS(e, k, Mem{Base: p})
		VADDPS(e, s1, k, s1) // only the lanes inside x
	}
	Label("softmax_expdone")
	VADDPS(s1, s0, s0)
	allLanes(s0, VADDPS)

	// Pass 3: scale by 1/sum.
	inv := ZMM()
	VBROADCASTSS(consts.addr(1), inv)
	VDIVPS(s0, inv, inv)
	MOVQ(x, p)
	MOVQ(n, c)
	Label("softmax_scale16")
	CMPQ(c, Imm(16))
	JL(LabelRef("softmax_scaletail"))
	{
		v := ZMM()
		VMULPS(Mem{Base: p}, inv, v)
		VMOVUPS(v, Mem{Base: p})
	}
	ADDQ(U32(64), p)
	SUBQ(Imm(16), c)
	JMP(LabelRef("softmax_scale16"))
	Label("softmax_scaletail")
	TESTQ(c, c)
	JZ(LabelRef("softmax_done"))
	{
		k := tailMask(c)
		v := ZMM()
		VMOVUPS_Z(Mem{Base: p}, k, v)
		VMULPS(v, inv, v)
		VMOVUPS(v, k, Mem{Base: p})
	}
	Label("softmax_done")
	VZEROUPPER()
	RET()
}
