package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The constants below must match those of the Go twins in ../elementwise.go.
var (
	expPoly  = []float32{1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1, 1}
	erfcPoly = []float32{
		0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
		-0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223,
	}
)

const (
	log2e    = float32(1.44269504088896340736)
	ln2Hi    = float32(0.693359375)
	ln2Lo    = float32(-2.12194440e-4)
	invSqrt2 = float32(0.70710678118654752440)
)

// constTable lays out the read-only constants that the element-wise kernels
// broadcast from memory.
type constTable struct {
	mem  Mem
	next int
	at   map[uint32]int
}

func newConstTable() *constTable {
	return &constTable{mem: GLOBL("elemconst", RODATA|NOPTR), at: map[uint32]int{}}
}

// addr returns a memory operand holding f, adding it to the table if new.
func (t *constTable) addr(f float32) Mem {
	bits := math.Float32bits(f)
	off, ok := t.at[bits]
	if !ok {
		off = t.next
		DATA(off, U32(bits))
		t.at[bits] = off
		t.next += 4
	}
	return t.mem.Offset(off)
}

var consts *constTable

// bcast returns a new register holding f in every lane.
func bcast(f float32) reg.VecVirtual {
	g := GP32()
	MOVL(U32(math.Float32bits(f)), g)
	z := ZMM()
	VPBROADCASTD(g, z)
	return z
}

// expParts emits p, n with e^x = p·2^n (x is clamped to ±128 first; a NaN
// in x stays NaN).
func expParts(x, clampLo, clampHi reg.VecVirtual) (p, n reg.VecVirtual) {
	xc := ZMM()
	VMINPS(x, clampHi, xc)
	VMAXPS(xc, clampLo, xc)
	n = ZMM()
	VMULPS_BCST(consts.addr(log2e), xc, n)
	VRNDSCALEPS(Imm(0), n, n)
	r := ZMM()
	VMOVAPS(xc, r)
	VFNMADD231PS_BCST(consts.addr(ln2Hi), n, r)
	VFNMADD231PS_BCST(consts.addr(ln2Lo), n, r)
	p = ZMM()
	VBROADCASTSS(consts.addr(expPoly[0]), p)
	for _, c := range expPoly[1:] {
		VFMADD213PS_BCST(consts.addr(c), r, p)
	}
	return p, n
}

// genElementwise emits name(x *float32, n int), which replaces x[i] with
// body(x[i]) for i < n: 16 lanes at a time, then the tail under a mask.
func genElementwise(name, doc string, setup func(), body func(x reg.VecVirtual) reg.VecVirtual) {
	TEXT(name, NOSPLIT, "func(x *float32, n int)")
	Pragma("noescape")
	Doc(doc)
	ptr := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	setup()
	Label(name + "_loop")
	CMPQ(n, Imm(16))
	JL(LabelRef(name + "_tail"))
	x := ZMM()
	VMOVUPS(Mem{Base: ptr}, x)
	VMOVUPS(body(x), Mem{Base: ptr})
	ADDQ(Imm(64), ptr)
	SUBQ(Imm(16), n)
	JMP(LabelRef(name + "_loop"))

	Label(name + "_tail")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	k := tailMask(n)
	x = ZMM()
	VMOVUPS_Z(Mem{Base: ptr}, k, x)
	VMOVUPS(body(x), k, Mem{Base: ptr})

	Label(name + "_done")
	VZEROUPPER()
	RET()
}

func genElementwiseAll() {
	consts = newConstTable()
	var lo, hi, zero reg.VecVirtual

	genElementwise("expAVX512", "expAVX512 replaces x[i] with e^x[i] for i < n.",
		func() { lo, hi = bcast(-128), bcast(128) },
		func(x reg.VecVirtual) reg.VecVirtual {
			p, n := expParts(x, lo, hi)
			VSCALEFPS(n, p, p)
			return p
		})

	genElementwise("siluAVX512", "siluAVX512 replaces x[i] with x[i]·sigmoid(x[i]) for i < n.",
		func() {
			lo, hi = bcast(-128), bcast(128)
			zero = ZMM()
			VPXORD(zero, zero, zero)
		},
		func(x reg.VecVirtual) reg.VecVirtual { return siluVec(x, lo, hi, zero) })

	var lo20, hi20 reg.VecVirtual
	genElementwise("geluAVX512", "geluAVX512 replaces x[i] with ½·x[i]·(1+erf(x[i]/√2)) for i < n.",
		func() {
			lo, hi = bcast(-128), bcast(128)
			lo20, hi20 = bcast(-20), bcast(20)
			zero = ZMM()
			VPXORD(zero, zero, zero)
		},
		func(x reg.VecVirtual) reg.VecVirtual {
			xc := ZMM()
			VMINPS(x, hi20, xc)
			VMAXPS(xc, lo20, xc)
			t := ZMM()
			VPANDD_BCST(consts.addr(math.Float32frombits(1<<31-1)), xc, t) // |x|
			VMULPS_BCST(consts.addr(invSqrt2), t, t)
			VFMADD213PS_BCST(consts.addr(1), ZMMHalf(), t) // 1 + t/2
			tau := ZMM()
			VBROADCASTSS(consts.addr(1), tau)
			VDIVPS(t, tau, tau)
			q := ZMM()
			VBROADCASTSS(consts.addr(erfcPoly[0]), q)
			for _, c := range erfcPoly[1:] {
				VFMADD213PS_BCST(consts.addr(c), tau, q)
			}
			hiSq := ZMM()
			VMULPS(xc, xc, hiSq)
			loSq := ZMM()
			VMOVAPS(hiSq, loSq)
			VFMSUB231PS(xc, xc, loSq) // x·x − hi, exactly
			yh := ZMM()
			VMULPS_BCST(consts.addr(-0.5), hiSq, yh)
			yl := q
			VFMADD231PS_BCST(consts.addr(-0.5), loSq, yl)
			s := ZMM()
			VADDPS(yl, yh, s)
			bb := ZMM()
			VSUBPS(yh, s, bb) // s − yh
			t1 := ZMM()
			VSUBPS(bb, s, t1)  // s − bb
			VSUBPS(t1, yh, t1) // yh − (s − bb)
			t2 := ZMM()
			VSUBPS(bb, yl, t2) // yl − bb
			VADDPS(t2, t1, t1) // rounding error of s
			p, n := expParts(s, lo, hi)
			VFMADD231PS(t1, p, p) // p + p·e
			g1 := ZMM()
			VMULPS_BCST(consts.addr(0.5), xc, g1)
			VMULPS(p, tau, p)
			VMULPS(p, g1, g1)
			VSCALEFPS(n, g1, g1) // g = ½·x·erfc(|x|/√2)
			res := ZMM()
			VSUBPS(g1, x, res) // x − g
			neg := K()
			VCMPPS(Imm(1), zero, x, neg)
			VBLENDMPS(g1, res, neg, res)
			return res
		})
}

// ZMMHalf returns a register of ½ (through the constant table).
func ZMMHalf() reg.VecVirtual {
	z := ZMM()
	VBROADCASTSS(consts.addr(0.5), z)
	return z
}
