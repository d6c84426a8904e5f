package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The normalisation and residual kernels (../norm.go holds their Go
// twins), generated into ../norm_amd64.s by
//
//	go run . -set norm -out ../norm_amd64.s -stubs ../norm_stub_amd64.go

// genNormAll emits every kernel of the norm set.
func genNormAll() {
	consts = &constTable{mem: GLOBL("normconst", RODATA|NOPTR), at: map[uint32]int{}}
	genMeanVarSums()

	var a, b reg.VecVirtual
	loadAB := func() {
		a, b = ZMM(), ZMM()
		VBROADCASTSS(Load(Param("a"), XMM()), a)
		VBROADCASTSS(Load(Param("b"), XMM()), b)
	}
	genMap("scaleShiftAVX512", "scaleShiftAVX512 sets dst[i] = src[i]·a + b for i < n (one rounding).",
		"func(dst, src *float32, n int, a, b float32)", []string{"src"}, 4, loadAB,
		func(in []reg.VecVirtual) reg.VecVirtual {
			VFMADD213PS(b, a, in[0])
			return in[0]
		})

	var lo, hi, zero reg.VecVirtual
	genMap("scaleShiftSiLUAVX512", "scaleShiftSiLUAVX512 sets dst[i] = silu(src[i]·a + b) for i < n.",
		"func(dst, src *float32, n int, a, b float32)", []string{"src"}, 2,
		func() {
			loadAB()
			lo, hi = bcast(-128), bcast(128)
			zero = ZMM()
			VPXORD(zero, zero, zero)
		},
		func(in []reg.VecVirtual) reg.VecVirtual {
			VFMADD213PS(b, a, in[0])
			return siluVec(in[0], lo, hi, zero)
		})

	var mean, rstd reg.VecVirtual
	genMap("layerNormRowAVX512", "layerNormRowAVX512 sets dst[i] = (src[i]−mean)·rstd·gamma[i] + beta[i] for i < n.",
		"func(dst, src, gamma, beta *float32, n int, mean, rstd float32)", []string{"src", "gamma", "beta"}, 4,
		func() {
			mean, rstd = ZMM(), ZMM()
			VBROADCASTSS(Load(Param("mean"), XMM()), mean)
			VBROADCASTSS(Load(Param("rstd"), XMM()), rstd)
		},
		func(in []reg.VecVirtual) reg.VecVirtual {
			x := in[0]
			VSUBPS(mean, x, x)
			VMULPS(rstd, x, x)
			VFMADD213PS(in[2], in[1], x) // x·gamma + beta
			return x
		})

	genMap("addAVX512", "addAVX512 sets dst[i] = a[i] + b[i] for i < n.",
		"func(dst, a, b *float32, n int)", []string{"a", "b"}, 4, func() {},
		func(in []reg.VecVirtual) reg.VecVirtual {
			VADDPS(in[1], in[0], in[0])
			return in[0]
		})

	genMap("mulAVX512", "mulAVX512 sets dst[i] = a[i] · b[i] for i < n.",
		"func(dst, a, b *float32, n int)", []string{"a", "b"}, 4, func() {},
		func(in []reg.VecVirtual) reg.VecVirtual {
			VMULPS(in[1], in[0], in[0])
			return in[0]
		})

	genMap("reluAVX512", "reluAVX512 sets x[i] = max(x[i], 0) for i < n (NaN stays NaN).",
		"func(x *float32, n int)", []string{"x"}, 4,
		func() {
			zero = ZMM()
			VPXORD(zero, zero, zero)
		},
		func(in []reg.VecVirtual) reg.VecVirtual {
			// Intel's MAXPS returns its second source (here x) when
			// either is NaN or both are zero: x < 0 ? 0 : x.
			VMAXPS(in[0], zero, in[0])
			return in[0]
		})
}

// siluVec emits x·sigmoid(x) of x, exactly as siluAVX512 computes it (see
// siluGo in ../elementwise.go); lo, hi and zero hold −128, 128 and 0.
func siluVec(x, lo, hi, zero reg.VecVirtual) reg.VecVirtual {
	xc := ZMM()
	VMAXPS(x, lo, xc)
	nax := ZMM()
	VPORD_BCST(consts.addr(math.Float32frombits(1<<31)), xc, nax) // −|x|
	p, n := expParts(nax, lo, hi)
	d := ZMM()
	VSCALEFPS(n, p, d)
	VADDPS_BCST(consts.addr(1), d, d)
	neg := K()
	VCMPPS(Imm(1), zero, xc, neg) // x < 0
	num := ZMM()
	VMULPS(p, xc, num)
	VBLENDMPS(num, xc, neg, num) // x·p where x < 0, else x
	q := ZMM()
	VDIVPS(d, num, q)
	sq := ZMM()
	VSCALEFPS(n, q, sq)
	VBLENDMPS(sq, q, neg, q)
	return q
}

// genMap emits a streaming kernel with signature sig: for i < n it reads
// element i of every pointer parameter named in ins into one register each,
// and stores body's result at element i of the first pointer parameter
// (dst, or x when that is also the only input). The loop handles
// 16·unroll elements per turn, then 16, then the rest under a mask; the
// output may alias any input, element for element.
func genMap(name, doc, sig string, ins []string, unroll int, setup func(), body func(in []reg.VecVirtual) reg.VecVirtual) {
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc)
	outName := "dst"
	if ins[0] == "x" {
		outName = "x"
	}
	out := Load(Param(outName), GP64())
	ptrs := make([]reg.Register, len(ins))
	for i, p := range ins {
		if p == outName {
			ptrs[i] = out
			continue
		}
		ptrs[i] = Load(Param(p), GP64())
	}
	n := Load(Param("n"), GP64())
	setup()
	// One index register for every pointer keeps the loop short.
	idx := GP64()
	XORQ(idx, idx)
	at := func(base reg.Register, u int) Mem {
		return Mem{Base: base, Index: idx, Scale: 4, Disp: 64 * u}
	}
	step := func(u int) {
		in := make([]reg.VecVirtual, len(ptrs))
		for i, p := range ptrs {
			in[i] = ZMM()
			VMOVUPS(at(p, u), in[i])
		}
		VMOVUPS(body(in), at(out, u))
	}
	rem := GP64()
	MOVQ(n, rem)
	Label(name + "_loopN")
	CMPQ(rem, U32(16*unroll))
	JL(LabelRef(name + "_loop16"))
	for u := 0; u < unroll; u++ {
		step(u)
	}
	ADDQ(U32(16*unroll), idx)
	SUBQ(U32(16*unroll), rem)
	JMP(LabelRef(name + "_loopN"))

	Label(name + "_loop16")
	CMPQ(rem, Imm(16))
	JL(LabelRef(name + "_tail"))
	step(0)
	ADDQ(Imm(16), idx)
	SUBQ(Imm(16), rem)
	JMP(LabelRef(name + "_loop16"))

	Label(name + "_tail")
	TESTQ(rem, rem)
	JZ(LabelRef(name + "_done"))
	k := tailMask(rem)
	in := make([]reg.VecVirtual, len(ptrs))
	for i, p := range ptrs {
		in[i] = ZMM()
		VMOVUPS_Z(at(p, 0), k, in[i])
	}
	VMOVUPS(body(in), k, at(out, 0))

	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// genMeanVarSums emits meanVarSumsAVX512(x *float32, n int, shift float64)
// (s1, s2 float64): s1 = Σ (x[i]−shift) and s2 = Σ (x[i]−shift)² for i < n,
// in float64: 32 float64 lanes for each sum (four accumulators of 8), each
// x widened exactly to float64 before the subtraction.
func genMeanVarSums() {
	TEXT("meanVarSumsAVX512", NOSPLIT, "func(x *float32, n int, shift float64) (s1, s2 float64)")
	Pragma("noescape")
	Doc("meanVarSumsAVX512 returns Σ (x[i]−shift) and Σ (x[i]−shift)² for i < n, accumulated in float64.")
	p := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	sh := ZMM()
	VBROADCASTSD(Load(Param("shift"), XMM()), sh)
	const acc = 4
	var s1, s2 [acc]reg.VecVirtual
	for u := range acc {
		s1[u], s2[u] = ZMM(), ZMM()
		VXORPD(s1[u], s1[u], s1[u])
		VXORPD(s2[u], s2[u], s2[u])
	}
	Label("mv_loop32")
	CMPQ(n, Imm(8*acc))
	JL(LabelRef("mv_loop8"))
	for u := range acc {
		d := ZMM()
		VCVTPS2PD(Mem{Base: p, Disp: 32 * u}, d)
		VSUBPD(sh, d, d)
		VADDPD(d, s1[u], s1[u])
		VFMADD231PD(d, d, s2[u])
	}
	ADDQ(U32(32*acc), p)
	SUBQ(Imm(8*acc), n)
	JMP(LabelRef("mv_loop32"))

	Label("mv_loop8")
	CMPQ(n, Imm(8))
	JL(LabelRef("mv_tail"))
	d := ZMM()
	VCVTPS2PD(Mem{Base: p}, d)
	VSUBPD(sh, d, d)
	VADDPD(d, s1[0], s1[0])
	VFMADD231PD(d, d, s2[0])
	ADDQ(Imm(32), p)
	SUBQ(Imm(8), n)
	JMP(LabelRef("mv_loop8"))

	Label("mv_tail")
	TESTQ(n, n)
	JZ(LabelRef("mv_sum"))
	k := tailMask(n) // n < 8: only the low 8 bits matter
	d = ZMM()
	VCVTPS2PD_Z(Mem{Base: p}, k, d) // masked lanes are neither read nor faulted
	VSUBPD_Z(sh, d, k, d)           // and stay 0
	VADDPD(d, s1[1], s1[1])
	VFMADD231PD(d, d, s2[1])

	Label("mv_sum")
	for i, s := range [][acc]reg.VecVirtual{s1, s2} {
		VADDPD(s[1], s[0], s[0])
		VADDPD(s[3], s[2], s[2])
		VADDPD(s[2], s[0], s[0])
		hi := YMM()
		VEXTRACTF64X4(Imm(1), s[0], hi)
		lo := s[0].AsY()
		VADDPD(hi, lo, lo)
		x2 := XMM()
		VEXTRACTF128(Imm(1), lo, x2)
		l2 := s[0].AsX()
		VADDPD(x2, l2, l2)
		VUNPCKHPD(l2, l2, x2)
		VADDSD(x2, l2, l2)
		Store(l2, ReturnIndex(i))
	}
	VZEROUPPER()
	RET()
}
