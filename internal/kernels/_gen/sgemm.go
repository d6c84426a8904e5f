package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// zmm returns the physical register Zi.
func zmm(i int) reg.VecPhysical {
	return []reg.VecPhysical{
		reg.Z0, reg.Z1, reg.Z2, reg.Z3, reg.Z4, reg.Z5, reg.Z6, reg.Z7,
		reg.Z8, reg.Z9, reg.Z10, reg.Z11, reg.Z12, reg.Z13, reg.Z14, reg.Z15,
		reg.Z16, reg.Z17, reg.Z18, reg.Z19, reg.Z20, reg.Z21, reg.Z22, reg.Z23,
		reg.Z24, reg.Z25, reg.Z26, reg.Z27, reg.Z28, reg.Z29, reg.Z30, reg.Z31,
	}[i]
}

// ymm returns the physical register Yi.
func ymm(i int) reg.VecPhysical {
	return []reg.VecPhysical{
		reg.Y0, reg.Y1, reg.Y2, reg.Y3, reg.Y4, reg.Y5, reg.Y6, reg.Y7,
		reg.Y8, reg.Y9, reg.Y10, reg.Y11, reg.Y12, reg.Y13, reg.Y14, reg.Y15,
	}[i]
}

const (
	// sgemmSig is the signature of the AVX2 kernel.
	sgemmSig = "func(kc int, a, b, c *float32, ldc int, beta float32, mode int)"
	// sgemmSig512 is the signature shared by all AVX-512 kernels (lda and
	// ldb are read only by the kernels that read A or B in place).
	sgemmSig512 = "func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, beta float32, mode, rows, cols int)"
)

// genSgemmAVX512B emits an mr×(16·nv) micro-kernel with the signature
// sgemmSig512. For p < kc it reads column p of the A panel and row p of the
// B panel, accumulates the outer products in registers, and then writes the
// top-left rows×cols corner of the tile to c (row stride ldc elements,
// columns masked, rows skipped): c = acc when mode == 0, otherwise
// c = acc + beta·c. A is read with embedded broadcasts, so all registers but
// nv hold accumulators.
//
// With unpackedA the A panel is read in place, element (i, p) at
// a[i·lda + p] (the kernel is named …UA); otherwise it is packed, element
// (i, p) at a[p·mr + i]. With unpackedB row p of the B panel is read at
// b[p·ldb:] (…UB); otherwise at b[p·nr:].
func genSgemmAVX512B(mr, nv int, unpackedA, unpackedB bool) {
	nr := 16 * nv
	if mr*nv+nv > 32 || mr > 15 {
		panic("too many registers")
	}
	name := fmt.Sprintf("sgemmKernel%dx%dAVX512", mr, nr)
	if unpackedA {
		name += "UA"
	}
	if unpackedB {
		name += "UB"
	}
	TEXT(name, NOSPLIT, sgemmSig512)
	Pragma("noescape")
	aFrom, bFrom := "a packed A panel", "a packed B panel"
	if unpackedA {
		aFrom = "rows of A in place"
	}
	if unpackedB {
		bFrom = "rows of B in place"
	}
	Doc(fmt.Sprintf("%s computes one %d×%d tile of C from %s and %s.", name, mr, nr, aFrom, bFrom))
	acc := func(i, v int) reg.VecPhysical { return zmm(nv + i*nv + v) }
	bv := func(v int) reg.VecPhysical { return zmm(v) }

	kc := Load(Param("kc"), GP64())
	pb := Load(Param("b"), GP64())
	// bRow returns the address of vector v of B row u ahead of the current
	// position of the B pointer.
	bRow := func(u, v int) Mem { return Mem{Base: pb, Disp: 4 * (u*nr + 16*v)} }
	advanceB := func(p int) { ADDQ(U32(4*p*nr), pb) }
	if unpackedB {
		ldb := Load(Param("ldb"), GP64())
		SHLQ(Imm(2), ldb)
		ldb3 := GP64()
		LEAQ(Mem{Base: ldb, Index: ldb, Scale: 2}, ldb3)
		bRow = func(u, v int) Mem {
			switch u {
			case 0:
				return Mem{Base: pb, Disp: 64 * v}
			case 1:
				return Mem{Base: pb, Index: ldb, Scale: 1, Disp: 64 * v}
			case 2:
				return Mem{Base: pb, Index: ldb, Scale: 2, Disp: 64 * v}
			default:
				return Mem{Base: pb, Index: ldb3, Scale: 1, Disp: 64 * v}
			}
		}
		advanceB = func(p int) {
			if p == 4 {
				LEAQ(Mem{Base: pb, Index: ldb, Scale: 4}, pb)
			} else {
				ADDQ(ldb, pb)
			}
		}
	}
	// aElem returns the address of A element (i, p) relative to the current
	// position of the A pointers.
	var aElem func(i, p int) Mem
	var advanceA func(p int)
	if unpackedA {
		// Rows 0-4, 5-9 and 10-14 hang off three base registers with
		// offsets 0, lda, 2·lda, 3·lda, 4·lda.
		lda := Load(Param("lda"), GP64())
		SHLQ(Imm(2), lda)
		lda3 := GP64()
		LEAQ(Mem{Base: lda, Index: lda, Scale: 2}, lda3)
		var bases []reg.GPVirtual
		for r := 0; r < mr; r += 5 {
			p := GP64()
			if r == 0 {
				Load(Param("a"), p)
			} else {
				LEAQ(Mem{Base: bases[len(bases)-1], Index: lda, Scale: 4}, p)
				ADDQ(lda, p)
			}
			bases = append(bases, p)
		}
		aElem = func(i, p int) Mem {
			base := bases[i/5]
			switch i % 5 {
			case 0:
				return Mem{Base: base, Disp: 4 * p}
			case 1:
				return Mem{Base: base, Index: lda, Scale: 1, Disp: 4 * p}
			case 2:
				return Mem{Base: base, Index: lda, Scale: 2, Disp: 4 * p}
			case 3:
				return Mem{Base: base, Index: lda3, Scale: 1, Disp: 4 * p}
			default:
				return Mem{Base: base, Index: lda, Scale: 4, Disp: 4 * p}
			}
		}
		advanceA = func(p int) {
			for _, b := range bases {
				ADDQ(U32(4*p), b)
			}
		}
	} else {
		pa := Load(Param("a"), GP64())
		aElem = func(i, p int) Mem { return Mem{Base: pa, Disp: 4 * (p*mr + i)} }
		advanceA = func(p int) { ADDQ(U32(4*p*mr), pa) }
	}
	{
		// Bring the C tile towards L1 while the products run.
		p := Load(Param("c"), GP64())
		ld := Load(Param("ldc"), GP64())
		SHLQ(Imm(2), ld)
		for i := 0; i < mr; i++ {
			for v := 0; v < 4*nv; v += 4 {
				PREFETCHT0(Mem{Base: p, Disp: 16 * v})
			}
			PREFETCHT0(Mem{Base: p, Disp: 64*nv - 4})
			if i+1 < mr {
				ADDQ(ld, p)
			}
		}
	}
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			VPXORD(acc(i, v), acc(i, v), acc(i, v))
		}
	}
	const unroll = 4
	step := func(u int) {
		for v := 0; v < nv; v++ {
			VMOVUPS(bRow(u, v), bv(v))
		}
		for i := 0; i < mr; i++ {
			for v := 0; v < nv; v++ {
				VFMADD231PS_BCST(aElem(i, u), bv(v), acc(i, v))
			}
		}
	}
	CMPQ(kc, Imm(unroll))
	JL(LabelRef(name + "_tail"))
	Label(name + "_loop4")
	if !unpackedA {
		PREFETCHT0(aElem(0, 16))
	}
	step(0)
	step(1)
	if !unpackedA {
		PREFETCHT0(Mem{Base: aElem(0, 16).Base, Disp: 4*mr*16 + 64})
	}
	step(2)
	step(3)
	advanceA(unroll)
	advanceB(unroll)
	SUBQ(Imm(unroll), kc)
	CMPQ(kc, Imm(unroll))
	JGE(LabelRef(name + "_loop4"))

	Label(name + "_tail")
	TESTQ(kc, kc)
	JZ(LabelRef(name + "_store"))
	Label(name + "_loop1")
	step(0)
	advanceA(1)
	advanceB(1)
	DECQ(kc)
	JNZ(LabelRef(name + "_loop1"))

	Label(name + "_store")
	// Only the top-left rows×cols corner of the tile is stored: whole rows
	// are skipped, columns masked.
	cols := Load(Param("cols"), GP64())
	zero, sixteen := GP64(), GP64()
	XORQ(zero, zero)
	MOVQ(U32(16), sixteen)
	masks := make([]reg.OpmaskVirtual, nv)
	for v := range masks {
		t := GP64()
		MOVQ(cols, t)
		if v > 0 {
			SUBQ(U32(16*v), t)
		}
		CMPQ(t, Imm(0))
		CMOVQLT(zero, t)
		CMPQ(t, Imm(16))
		CMOVQGT(sixteen, t)
		MOVQ(t, reg.RCX)
		m := GP32()
		MOVL(U32(1), m)
		SHLL(reg.CL, m)
		DECL(m)
		masks[v] = K()
		KMOVW(m, masks[v])
	}
	rows := Load(Param("rows"), GP64())
	pc := Load(Param("c"), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(Imm(2), ldc)
	accum := Load(Param("mode"), GP64())
	TESTQ(accum, accum)
	JZ(LabelRef(name + "_overwrite"))
	beta := Load(Param("beta"), XMM())
	VBROADCASTSS(beta, bv(0))
	for i := 0; i < mr; i++ {
		if i > 0 {
			CMPQ(rows, Imm(uint64(i)))
			JLE(LabelRef(name + "_done"))
			ADDQ(ldc, pc)
		}
		for v := 0; v < nv; v++ {
			VFMADD231PS(Mem{Base: pc, Disp: 64 * v}, bv(0), masks[v], acc(i, v))
			VMOVUPS(acc(i, v), masks[v], Mem{Base: pc, Disp: 64 * v})
		}
	}
	JMP(LabelRef(name + "_done"))

	Label(name + "_overwrite")
	for i := 0; i < mr; i++ {
		if i > 0 {
			CMPQ(rows, Imm(uint64(i)))
			JLE(LabelRef(name + "_done"))
			ADDQ(ldc, pc)
		}
		for v := 0; v < nv; v++ {
			VMOVUPS(acc(i, v), masks[v], Mem{Base: pc, Disp: 64 * v})
		}
	}
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// genSgemmAVX2 emits the 6×16 AVX2+FMA micro-kernel with the same contract
// as genSgemmAVX512.
func genSgemmAVX2() {
	const mr, nr, nv = 6, 16, 2
	name := "sgemmKernel6x16AVX2"
	TEXT(name, NOSPLIT, sgemmSig)
	Pragma("noescape")
	Doc(fmt.Sprintf("%s computes one %d×%d tile of C from packed panels.", name, mr, nr))
	acc := func(i, v int) reg.VecPhysical { return ymm(i*nv + v) }
	bv := func(v int) reg.VecPhysical { return ymm(12 + v) }
	bc := ymm(14)

	kc := Load(Param("kc"), GP64())
	pa := Load(Param("a"), GP64())
	pb := Load(Param("b"), GP64())
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			VXORPS(acc(i, v), acc(i, v), acc(i, v))
		}
	}
	const unroll = 4
	step := func(u int) {
		for v := 0; v < nv; v++ {
			VMOVUPS(Mem{Base: pb, Disp: 4 * (u*nr + 8*v)}, bv(v))
		}
		for i := 0; i < mr; i++ {
			VBROADCASTSS(Mem{Base: pa, Disp: 4 * (u*mr + i)}, bc)
			for v := 0; v < nv; v++ {
				VFMADD231PS(bc, bv(v), acc(i, v))
			}
		}
	}
	CMPQ(kc, Imm(unroll))
	JL(LabelRef(name + "_tail"))
	Label(name + "_loop4")
	PREFETCHT0(Mem{Base: pa, Disp: 4 * mr * 16})
	step(0)
	step(1)
	step(2)
	step(3)
	ADDQ(U32(4*unroll*mr), pa)
	ADDQ(U32(4*unroll*nr), pb)
	SUBQ(Imm(unroll), kc)
	CMPQ(kc, Imm(unroll))
	JGE(LabelRef(name + "_loop4"))

	Label(name + "_tail")
	TESTQ(kc, kc)
	JZ(LabelRef(name + "_store"))
	Label(name + "_loop1")
	step(0)
	ADDQ(U32(4*mr), pa)
	ADDQ(U32(4*nr), pb)
	DECQ(kc)
	JNZ(LabelRef(name + "_loop1"))

	Label(name + "_store")
	pc := Load(Param("c"), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(Imm(2), ldc)
	accum := Load(Param("mode"), GP64())
	TESTQ(accum, accum)
	JZ(LabelRef(name + "_overwrite"))
	beta := Load(Param("beta"), XMM())
	VBROADCASTSS(beta, bv(0))
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			VFMADD231PS(Mem{Base: pc, Disp: 32 * v}, bv(0), acc(i, v))
			VMOVUPS(acc(i, v), Mem{Base: pc, Disp: 32 * v})
		}
		if i+1 < mr {
			ADDQ(ldc, pc)
		}
	}
	VZEROUPPER()
	RET()

	Label(name + "_overwrite")
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			VMOVUPS(acc(i, v), Mem{Base: pc, Disp: 32 * v})
		}
		if i+1 < mr {
			ADDQ(ldc, pc)
		}
	}
	VZEROUPPER()
	RET()
}
