// Command _gen generates the AVX-512 Winograd transforms of package conv
// with avo.
//
//	cd internal/conv/_gen && go run . -out ../transform_amd64.s -stubs ../transform_stub_amd64.go
//
// Both kernels work on 16 tiles at a time, one tile per vector lane, and
// perform exactly the operations of their Go twins in transform.go (in the
// same order, with fused multiply-adds only where the product is by a power
// of two and so exact), so that the results are bit-identical.
package main

import (
	"flag"
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

func main() {
	if err := flag.Set("pkg", "conv"); err != nil {
		panic(err)
	}
	ConstraintExpr("!noasm")
	genConsts()
	genInput()
	genOutput()
	genGemm(1, 3)
	genGemm(3, 1)
	genWeightConsts()
	genWeights(false)
	genWeights(true)
	genPrefetch()
	Generate()
}

var (
	constMem                   Mem
	c2, c4, c8                 Mem // broadcast constants
	idxD0, idxD1, idxI0, idxI1 Mem // permutation indices
)

// genConsts lays out the read-only data: three floats, then four
// 16-lane permutation tables.
func genConsts() {
	constMem = GLOBL("convconst", RODATA|NOPTR)
	off := 0
	f := func(v float32) Mem {
		DATA(off, U32(math.Float32bits(v)))
		m := constMem.Offset(off)
		off += 4
		return m
	}
	c2, c4, c8 = f(2), f(4), f(8)
	off = 64
	table := func(idx func(l int) int) Mem {
		m := constMem.Offset(off)
		for l := 0; l < 16; l++ {
			DATA(off+4*l, U32(uint32(idx(l))))
		}
		off += 64
		return m
	}
	// Deinterleave: from x[0..31] take x[4t+j] for t < 8; j = 0, 1 (D0) or
	// 2, 3 (D1) in the low and high halves.
	idxD0 = table(func(l int) int { return 4*(l%8) + l/8 })
	idxD1 = table(func(l int) int { return 4*(l%8) + 2 + l/8 })
	// Interleave: from [y0 | y1] (lanes 0–15) and [y2 | y3] (16–31), each
	// half holding 8 tiles, put y_c[t] at lane 4t+c, for t < 4 (I0) or
	// 4 ≤ t < 8 (I1).
	idxI0 = table(func(l int) int { return 8*(l%4) + l/4 })
	idxI1 = table(func(l int) int { return 8*(l%4) + 4 + l/4 })
}

// bzhiMask returns a new register with the low min(n, 64) bits set
// (n ≥ 0 in a register).
func bzhiMask(n reg.Register) reg.GPVirtual {
	ones, m := GP64(), GP64()
	MOVQ(I32(-1), ones)
	BZHIQ(n, ones, m)
	return m
}

// clampZero sets r = max(r, 0).
func clampZero(r reg.Register) {
	z := GP64()
	XORL(z.As32(), z.As32())
	CMPQ(r, Imm(0))
	CMOVQLT(z, r)
}

// zpool hands out physical vector registers: the input transform keeps up
// to 28 vectors live, more than avo's greedy allocator manages to fit in 32.
type zpool struct{ free []reg.VecPhysical }

func newZPool() *zpool {
	all := []reg.VecPhysical{reg.Z0, reg.Z1, reg.Z2, reg.Z3, reg.Z4, reg.Z5, reg.Z6, reg.Z7,
		reg.Z8, reg.Z9, reg.Z10, reg.Z11, reg.Z12, reg.Z13, reg.Z14, reg.Z15,
		reg.Z16, reg.Z17, reg.Z18, reg.Z19, reg.Z20, reg.Z21, reg.Z22, reg.Z23,
		reg.Z24, reg.Z25, reg.Z26, reg.Z27, reg.Z28, reg.Z29, reg.Z30, reg.Z31}
	p := &zpool{}
	for i := len(all) - 1; i >= 0; i-- {
		p.free = append(p.free, all[i])
	}
	return p
}

func (p *zpool) get() reg.VecPhysical {
	if len(p.free) == 0 {
		panic("out of vector registers")
	}
	z := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return z
}

func (p *zpool) put(zs ...reg.VecPhysical) { p.free = append(p.free, zs...) }

// btVec computes h = Bᵀp on six vectors, reusing their registers; the
// operations are those of bt in transform.go.
func btVec(zp *zpool, p [6]reg.VecPhysical) [6]reg.VecPhysical {
	t1 := zp.get()
	VSUBPS(p[2], p[4], t1)            // t1 = p4 − p2
	VSUBPS(p[2], p[0], p[0])          // p0 − p2
	VFNMADD132PS_BCST(c4, p[4], p[2]) // t2 = p4 − 4p2
	zp.put(p[4])
	u := zp.get()
	VSUBPS(p[1], p[3], u)             // u = p3 − p1
	VSUBPS(p[3], p[5], p[5])          // p5 − p3
	VFNMADD231PS_BCST(c4, u, p[5])    // h5 = 4(p1 − p3) + (p5 − p3)
	VFNMADD132PS_BCST(c4, p[3], p[1]) // t3 = p3 − 4p1
	zp.put(p[3])
	VADDPS(u, u, u)                // t4 = 2(p3 − p1)
	VFMADD132PS_BCST(c4, t1, p[0]) // h0 = 4(p0 − p2) + t1
	h1, h3 := zp.get(), zp.get()
	VADDPS(p[1], p[2], h1)   // h1 = t2 + t3
	VSUBPS(p[1], p[2], p[2]) // h2 = t2 − t3
	VADDPS(u, t1, h3)        // h3 = t1 + t4
	VSUBPS(u, t1, t1)        // h4 = t1 − t4
	zp.put(p[1], u)
	return [6]reg.VecPhysical{p[0], h1, p[2], h3, t1, p[5]}
}

// storeP writes z under mask k to base + xi·ld.
func storeP(z reg.VecPhysical, k reg.OpmaskVirtual, base, ld reg.Register, xi int) {
	if xi == 0 {
		VMOVUPS(z, k, Mem{Base: base})
		return
	}
	t := GP64()
	IMUL3Q(Imm(uint64(xi)), ld, t)
	VMOVUPS(z, k, Mem{Base: base, Index: t, Scale: 1})
}

// genInput emits inputTransformAVX512, the twin of inputTransformGo.
func genInput() {
	TEXT("inputTransformAVX512", NOSPLIT, "func(v *float32, ldv int, plane *float32, h, w, ys, xs, n int)")
	Pragma("noescape")
	Doc("inputTransformAVX512 is inputTransformGo on 16 tiles at a time.")
	vp := Load(Param("v"), GP64())
	ldv := Load(Param("ldv"), GP64())
	SHLQ(Imm(2), ldv)
	plane := Load(Param("plane"), GP64())
	h := Load(Param("h"), GP64())
	w := Load(Param("w"), GP64())
	ys := Load(Param("ys"), GP64())
	xs := Load(Param("xs"), GP64())
	n := Load(Param("n"), GP64())

	// valid: bit r set when row ys+r is inside the plane.
	valid := GP64()
	XORL(valid.As32(), valid.As32())
	for r := 0; r < 6; r++ {
		t := GP64()
		LEAQ(Mem{Base: ys, Disp: r}, t)
		CMPQ(t, h)
		JCC(LabelRef(fmt.Sprintf("in_row%d_out", r))) // unsigned ys+r ≥ h
		ORQ(Imm(1<<r), valid)
		Label(fmt.Sprintf("in_row%d_out", r))
	}
	// src = plane + (ys·w + xs)·4, the window's top-left corner (it may
	// point before the plane: those lanes are never loaded).
	src := GP64()
	MOVQ(ys, src)
	IMULQ(w, src)
	ADDQ(xs, src)
	LEAQ(Mem{Base: plane, Index: src, Scale: 4}, src)
	w4 := w
	// lo, hi: the lanes of the group's columns that are inside the plane.
	lo, hi := GP64(), GP64()
	MOVQ(xs, lo)
	NEGQ(lo)
	MOVQ(w, hi)
	SUBQ(xs, hi)
	SHLQ(Imm(2), w4)

	Label("in_loop")
	CMPQ(n, Imm(0))
	JLE(LabelRef("in_done"))
	nt := GP64()
	MOVQ(n, nt)
	sixteen := GP64()
	MOVQ(U32(16), sixteen)
	CMPQ(nt, sixteen)
	CMOVQGT(sixteen, nt)
	kt := K()
	KMOVW(bzhiMask(nt).As32(), kt)
	// Column lanes: [max(lo, 0), min(hi, 4·nt+2)).
	need := GP64()
	MOVQ(nt, need)
	SHLQ(Imm(2), need)
	ADDQ(Imm(2), need)
	hc := GP64()
	MOVQ(hi, hc)
	CMPQ(hc, need)
	CMOVQGT(need, hc)
	clampZero(hc)
	lc := GP64()
	MOVQ(lo, lc)
	clampZero(lc)
	mhi := bzhiMask(hc)
	mlo := bzhiMask(lc)
	m := GP64()
	ANDNQ(mhi, mlo, m) // m = mhi &^ mlo
	var kk [5]reg.OpmaskVirtual
	for i := 0; i < 4; i++ {
		kk[i] = K()
		KMOVW(m.As32(), kk[i])
		if i < 3 {
			SHRQ(Imm(16), m)
		}
	}
	// Lanes 64 and 65.
	SUBQ(Imm(64), hc)
	clampZero(hc)
	SUBQ(Imm(64), lc)
	clampZero(lc)
	mhi = bzhiMask(hc)
	mlo = bzhiMask(lc)
	ANDNQ(mhi, mlo, m)
	ANDQ(Imm(3), m)
	kk[4] = K()
	KMOVW(m.As32(), kk[4])

	zp := newZPool()
	// row loads row r of the window and returns Bᵀ applied to each tile's
	// six values.
	row := func(r int) [6]reg.VecPhysical {
		zero, done := fmt.Sprintf("in_row%d_zero", r), fmt.Sprintf("in_row%d_done", r)
		var mem Mem
		if r == 0 {
			mem = Mem{Base: src}
		} else {
			t := GP64()
			IMUL3Q(Imm(uint64(r)), w4, t)
			mem = Mem{Base: src, Index: t, Scale: 1}
		}
		var a [5]reg.VecPhysical
		for i := range a {
			a[i] = zp.get()
		}
		BTQ(Imm(uint64(r)), valid)
		JCC(LabelRef(zero))
		for i := range a {
			VMOVUPS_Z(mem.Offset(64*i), kk[i], a[i])
		}
		JMP(LabelRef(done))
		Label(zero)
		for i := range a {
			VPXORD(a[i], a[i], a[i])
		}
		Label(done)
		// Deinterleave x[0..63] into p_j[t] = x[4t+j].
		b0, b1 := zp.get(), zp.get()
		VMOVUPS(idxD0, b0)
		VPERMI2PS(a[1], a[0], b0)
		VMOVUPS(idxD1, b1)
		VPERMI2PS(a[1], a[0], b1)
		zp.put(a[0], a[1])
		d0, d1 := zp.get(), zp.get()
		VMOVUPS(idxD0, d0)
		VPERMI2PS(a[3], a[2], d0)
		VMOVUPS(idxD1, d1)
		VPERMI2PS(a[3], a[2], d1)
		zp.put(a[2], a[3])
		var p [6]reg.VecPhysical
		p[0], p[1] = zp.get(), zp.get()
		VSHUFF32X4(Imm(0x44), d0, b0, p[0])
		VSHUFF32X4(Imm(0xee), d0, b0, p[1])
		zp.put(b0, d0)
		p[2], p[3] = zp.get(), zp.get()
		VSHUFF32X4(Imm(0x44), d1, b1, p[2])
		VSHUFF32X4(Imm(0xee), d1, b1, p[3])
		zp.put(b1, d1)
		// p4[t] = x[4t+4], p5[t] = x[4t+5]: shift p0, p1 by one tile,
		// taking x[64] and x[65] from a4.
		p[4], p[5] = zp.get(), zp.get()
		VALIGND(Imm(1), p[0], a[4], p[4])
		VALIGND(Imm(1), a[4], a[4], a[4])
		VALIGND(Imm(1), p[1], a[4], p[5])
		zp.put(a[4])
		return btVec(zp, p)
	}

	// Vertical Bᵀ over the rows, in the order 0, 2, 4, 1, 3, 5 to keep few
	// vectors live; the operations are those of bt.
	D0 := row(0)
	D2 := row(2)
	for j := 0; j < 6; j++ {
		VSUBPS(D2[j], D0[j], D0[j]) // d0 − d2
	}
	D4 := row(4)
	var C [6]reg.VecPhysical
	for j := 0; j < 6; j++ {
		C[j] = zp.get()
		VSUBPS(D2[j], D4[j], C[j])          // t1 = d4 − d2
		VFNMADD132PS_BCST(c4, D4[j], D2[j]) // t2 = d4 − 4d2
		zp.put(D4[j])
		VFMADD132PS_BCST(c4, C[j], D0[j]) // v0 = 4(d0 − d2) + t1
		storeP(D0[j], kt, vp, ldv, j)
		zp.put(D0[j])
	}
	A := D2
	D1 := row(1)
	D3 := row(3)
	var U [6]reg.VecPhysical
	for j := 0; j < 6; j++ {
		U[j] = zp.get()
		VSUBPS(D1[j], D3[j], U[j])          // u = d3 − d1
		VFNMADD132PS_BCST(c4, D3[j], D1[j]) // t3 = d3 − 4d1
		t := zp.get()
		VADDPS(D1[j], A[j], t) // v1 = t2 + t3
		storeP(t, kt, vp, ldv, 6+j)
		VSUBPS(D1[j], A[j], A[j]) // v2 = t2 − t3
		storeP(A[j], kt, vp, ldv, 12+j)
		zp.put(A[j], D1[j])
		t4 := zp.get()
		VADDPS(U[j], U[j], t4) // t4 = 2u
		VADDPS(t4, C[j], t)    // v3 = t1 + t4
		storeP(t, kt, vp, ldv, 18+j)
		VSUBPS(t4, C[j], C[j]) // v4 = t1 − t4
		storeP(C[j], kt, vp, ldv, 24+j)
		zp.put(t, t4, C[j])
	}
	D5 := row(5)
	for j := 0; j < 6; j++ {
		VSUBPS(D3[j], D5[j], D5[j])        // d5 − d3
		VFNMADD231PS_BCST(c4, U[j], D5[j]) // v5 = 4(d1 − d3) + (d5 − d3)
		storeP(D5[j], kt, vp, ldv, 30+j)
		zp.put(D3[j], U[j], D5[j])
	}
	if len(zp.free) != 32 {
		panic("vector register leak")
	}

	ADDQ(Imm(64), vp)
	ADDQ(U32(256), src)
	SUBQ(Imm(16), n)
	SUBQ(Imm(64), lo)
	SUBQ(Imm(64), hi)
	JMP(LabelRef("in_loop"))
	Label("in_done")
	VZEROUPPER()
	RET()
}

// atVec computes q = Aᵀm on six vectors as at in transform.go does; the
// registers of m are reused.
func atVec(m [6]reg.VecVirtual) [4]reg.VecVirtual {
	s12, s34 := ZMM(), ZMM()
	VADDPS(m[2], m[1], s12)
	VSUBPS(m[2], m[1], m[1]) // d12
	VADDPS(m[4], m[3], s34)
	VSUBPS(m[4], m[3], m[3]) // d34
	VADDPS(s12, m[0], m[0])
	VADDPS(s34, m[0], m[0]) // q0 = (m0 + s12) + s34
	q1 := ZMM()
	VADDPS(m[3], m[3], q1)
	VADDPS(q1, m[1], q1)             // q1 = d12 + 2·d34
	VFMADD231PS_BCST(c4, s34, s12)   // q2 = s12 + 4·s34
	VFMADD231PS_BCST(c8, m[3], m[1]) // d12 + 8·d34
	VADDPS(m[5], m[1], m[1])         // q3 = (d12 + 8·d34) + m5
	return [4]reg.VecVirtual{m[0], q1, s12, m[1]}
}

// Epilogue bits of outputTransformAVX512's ep argument (as in package conv).
const (
	epAccumulate = 1
	epReLU       = 2
)

// genOutput emits outputTransformAVX512, the twin of outputTransformGo.
func genOutput() {
	TEXT("outputTransformAVX512", NOSPLIT, "func(dst *float32, ldd int, m *float32, ldm, nrows, ncols, n int, bias float32, ep int)")
	Pragma("noescape")
	Doc("outputTransformAVX512 is outputTransformGo on 16 tiles at a time.")
	dp := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(Imm(2), ldd)
	mp := Load(Param("m"), GP64())
	ldm := Load(Param("ldm"), GP64())
	SHLQ(Imm(2), ldm)
	nrows := Load(Param("nrows"), GP64())
	ncols := Load(Param("ncols"), GP64())
	n := Load(Param("n"), GP64())
	bias := ZMM()
	VBROADCASTSS(NewParamAddr("bias", 56), bias)

	Label("out_loop")
	CMPQ(n, Imm(0))
	JLE(LabelRef("out_done"))
	nt := GP64()
	MOVQ(n, nt)
	sixteen := GP64()
	MOVQ(U32(16), sixteen)
	CMPQ(nt, sixteen)
	CMOVQGT(sixteen, nt)
	kt := K()
	KMOVW(bzhiMask(nt).As32(), kt)
	nc := GP64()
	MOVQ(ncols, nc)
	sixtyFour := GP64()
	MOVQ(U32(64), sixtyFour)
	CMPQ(nc, sixtyFour)
	CMOVQGT(sixtyFour, nc)
	clampZero(nc)
	cm := bzhiMask(nc)
	var kc [4]reg.OpmaskVirtual
	for i := range kc {
		kc[i] = K()
		KMOVW(cm.As32(), kc[i])
		if i < 3 {
			SHRQ(Imm(16), cm)
		}
	}

	// hrow loads row r of the transformed tiles and applies Aᵀ across it.
	hrow := func(r int) [4]reg.VecVirtual {
		var m [6]reg.VecVirtual
		for j := range m {
			m[j] = ZMM()
			xi := 6*r + j
			if xi == 0 {
				VMOVUPS_Z(Mem{Base: mp}, kt, m[j])
				continue
			}
			t := GP64()
			IMUL3Q(Imm(uint64(xi)), ldm, t)
			VMOVUPS_Z(Mem{Base: mp, Index: t, Scale: 1}, kt, m[j])
		}
		return atVec(m)
	}
	// emit adds the bias to output row i (y[c][t] is column 4t+c),
	// interleaves it and stores the columns inside the image.
	emit := func(i int, y [4]reg.VecVirtual) {
		skip := fmt.Sprintf("out_row%d_skip", i)
		CMPQ(nrows, Imm(uint64(i)))
		JLE(LabelRef(skip))
		for c := range y {
			VADDPS(bias, y[c], y[c])
		}
		b0, b1, e0, e1 := ZMM(), ZMM(), ZMM(), ZMM()
		VSHUFF32X4(Imm(0x44), y[1], y[0], b0)
		VSHUFF32X4(Imm(0x44), y[3], y[2], b1)
		VSHUFF32X4(Imm(0xee), y[1], y[0], e0)
		VSHUFF32X4(Imm(0xee), y[3], y[2], e1)
		z := [4]reg.VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
		VMOVUPS(idxI0, z[0])
		VPERMI2PS(b1, b0, z[0])
		VMOVUPS(idxI1, z[1])
		VPERMI2PS(b1, b0, z[1])
		VMOVUPS(idxI0, z[2])
		VPERMI2PS(e1, e0, z[2])
		VMOVUPS(idxI1, z[3])
		VPERMI2PS(e1, e0, z[3])
		mem := Mem{Base: dp}
		if i > 0 {
			t := GP64()
			IMUL3Q(Imm(uint64(i)), ldd, t)
			mem = Mem{Base: dp, Index: t, Scale: 1}
		}
		// The epilogue: add the old values (epAccumulate, read under the
		// same masks as the stores), then clamp at zero (epReLU) with
		// max(0, v), which keeps NaN and −0 as the Go twin does.
		noAcc := fmt.Sprintf("out_row%d_noacc", i)
		TESTQ(U32(epAccumulate), NewParamAddr("ep", 64))
		JZ(LabelRef(noAcc))
		for k := range z {
			t := ZMM()
			VMOVUPS_Z(mem.Offset(64*k), kc[k], t)
			VADDPS(t, z[k], z[k])
		}
		Label(noAcc)
		noReLU := fmt.Sprintf("out_row%d_norelu", i)
		TESTQ(U32(epReLU), NewParamAddr("ep", 64))
		JZ(LabelRef(noReLU))
		zero := ZMM()
		VXORPS(zero, zero, zero)
		for k := range z {
			VMAXPS(z[k], zero, z[k]) // Intel: max(zero, z) = zero > z ? zero : z
		}
		Label(noReLU)
		for k := range z {
			VMOVUPS(z[k], kc[k], mem.Offset(64*k))
		}
		Label(skip)
	}

	Q1 := hrow(1)
	Q2 := hrow(2)
	var S12 [4]reg.VecVirtual
	for c := 0; c < 4; c++ {
		S12[c] = ZMM()
		VADDPS(Q2[c], Q1[c], S12[c])
		VSUBPS(Q2[c], Q1[c], Q1[c]) // d12
	}
	D12 := Q1
	Q3 := hrow(3)
	Q4 := hrow(4)
	var S34 [4]reg.VecVirtual
	for c := 0; c < 4; c++ {
		S34[c] = ZMM()
		VADDPS(Q4[c], Q3[c], S34[c])
		VSUBPS(Q4[c], Q3[c], Q3[c]) // d34
	}
	D34 := Q3
	Q0 := hrow(0)
	for c := 0; c < 4; c++ {
		VADDPS(S12[c], Q0[c], Q0[c])
		VADDPS(S34[c], Q0[c], Q0[c]) // y0 = (q0 + s12) + s34
	}
	emit(0, Q0)
	for c := 0; c < 4; c++ {
		VFMADD231PS_BCST(c4, S34[c], S12[c]) // y2 = s12 + 4·s34
	}
	emit(2, S12)
	var Y1 [4]reg.VecVirtual
	for c := 0; c < 4; c++ {
		Y1[c] = ZMM()
		VADDPS(D34[c], D34[c], Y1[c])
		VADDPS(Y1[c], D12[c], Y1[c]) // y1 = d12 + 2·d34
	}
	emit(1, Y1)
	Q5 := hrow(5)
	for c := 0; c < 4; c++ {
		VFMADD231PS_BCST(c8, D34[c], D12[c])
		VADDPS(Q5[c], D12[c], D12[c]) // y3 = (d12 + 8·d34) + q5
	}
	emit(3, D12)

	ADDQ(Imm(64), mp)
	ADDQ(U32(256), dp)
	SUBQ(Imm(16), n)
	SUBQ(Imm(64), ncols)
	JMP(LabelRef("out_loop"))
	Label("out_done")
	VZEROUPPER()
	RET()
}
