package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// Constants of the weight transform G (F(4, 3) on the points 0, 1, −1, 2, −2, ∞).
var wc4, wcm6, wc24, wc6, wc12 Mem

// genWeightConsts lays out the weight transform's constants.
func genWeightConsts() {
	m := GLOBL("convwconst", RODATA|NOPTR)
	for i, v := range []float32{1.0 / 4, -1.0 / 6, 1.0 / 24, 1.0 / 6, 1.0 / 12} {
		DATA(4*i, U32(math.Float32bits(v)))
	}
	wc4, wcm6, wc24, wc6, wc12 = m.Offset(0), m.Offset(4), m.Offset(8), m.Offset(12), m.Offset(16)
}

// gTriple applies one row of G to (a, b, c), six outputs, with the operations of gTriple in
// lazy.go (no fused multiply-adds, so that the plain-Go twin is bit-identical). The outputs
// y0…y4 are new registers; y5 is c itself.
func gTriple(zp *zpool, a, b, c reg.VecPhysical) [6]reg.VecPhysical {
	var y [6]reg.VecPhysical
	y[0] = zp.get()
	VMULPS_BCST(wc4, a, y[0]) // y0 = a/4
	s := zp.get()
	VADDPS(c, a, s) // s = a + c
	y[1], y[2] = zp.get(), zp.get()
	VADDPS(b, s, y[1])            // s + b
	VSUBPS(b, s, y[2])            // s − b
	VMULPS_BCST(wcm6, y[1], y[1]) // y1 = (s+b)·(−1/6)
	VMULPS_BCST(wcm6, y[2], y[2]) // y2 = (s−b)·(−1/6)
	q := s
	VMULPS_BCST(wc24, a, q) // a/24
	t := zp.get()
	VMULPS_BCST(wc6, c, t)  // c/6
	VADDPS(t, q, q)         // q = a/24 + c/6
	VMULPS_BCST(wc12, b, t) // w = b/12
	y[3], y[4] = zp.get(), zp.get()
	VADDPS(t, q, y[3]) // y3 = q + w
	VSUBPS(t, q, y[4]) // y4 = q − w
	zp.put(q, t)
	y[5] = c
	return y
}

// genWeights emits weightPairsAVX512 (float32 source) or weightPairsBF16AVX512 (bf16 source),
// which transform n pairs of input channels of one panel of 8 output channels: the source holds,
// for each pair, 9 taps of 16 lanes (the pair's two channels × 8 rows), and the 36 transformed
// 16-lane vectors go to dst + ξ·ldp floats, the next pair 16 floats on.
func genWeights(bf16 bool) {
	name, sig, step := "weightPairsAVX512", "func(dst *float32, ldp int, src *float32, n int)", 9*64
	if bf16 {
		name, sig, step = "weightPairsBF16AVX512", "func(dst *float32, ldp int, src *uint16, n int)", 9*32
	}
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(name + " is " + name[:len(name)-len("AVX512")] + "Go on 16 lanes.")
	dst := Load(Param("dst"), GP64())
	ldp := Load(Param("ldp"), GP64())
	SHLQ(Imm(2), ldp)
	ldp3, ldp5, ldp6 := GP64(), GP64(), GP64()
	LEAQ(Mem{Base: ldp, Index: ldp, Scale: 2}, ldp3)
	LEAQ(Mem{Base: ldp, Index: ldp, Scale: 4}, ldp5)
	LEAQ(Mem{Base: ldp3, Index: ldp3, Scale: 1}, ldp6)
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	lbl := name + "_pair"
	Label(lbl)
	zp := newZPool()
	load := func(tap int) reg.VecPhysical {
		z := zp.get()
		if bf16 {
			VPMOVZXWD(Mem{Base: src, Disp: 32 * tap}, z)
			VPSLLD(Imm(16), z, z)
		} else {
			VMOVUPS(Mem{Base: src, Disp: 64 * tap}, z)
		}
		return z
	}
	// t = G g: column c of g is taps c, 3+c, 6+c.
	var t [6][3]reg.VecPhysical
	for c := 0; c < 3; c++ {
		a, b, cc := load(c), load(3+c), load(6+c)
		y := gTriple(zp, a, b, cc)
		zp.put(a, b)
		for r := range y {
			t[r][c] = y[r]
		}
	}
	// U = t Gᵀ: row r gives ξ = 6r … 6r+5, at p + c·ldp for c < 6 with p = dst + 6r·ldp.
	p := GP64()
	MOVQ(dst, p)
	for r := 0; r < 6; r++ {
		y := gTriple(zp, t[r][0], t[r][1], t[r][2])
		for c := range y {
			m := Mem{Base: p}
			switch c {
			case 1, 2, 4:
				m = Mem{Base: p, Index: ldp, Scale: uint8(c)}
			case 3:
				m = Mem{Base: p, Index: ldp3, Scale: 1}
			case 5:
				m = Mem{Base: p, Index: ldp5, Scale: 1}
			}
			VMOVUPS(y[c], m)
		}
		if r < 5 {
			ADDQ(ldp6, p)
		}
		zp.put(y[0], y[1], y[2], y[3], y[4], t[r][0], t[r][1], t[r][2])
	}
	ADDQ(Imm(64), dst)
	ADDQ(U32(step), src)
	DECQ(n)
	JNZ(LabelRef(lbl))
	VZEROUPPER()
	RET()
}
