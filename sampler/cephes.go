package sampler

import "math"

// On an AVX2 machine PyTorch 1.13 turns the uniforms of torch.randn into normals with
// single-precision Cephes-style approximations of log, sin and cos (the avx_mathfun.h routines),
// not with libm, and the compiler contracts some of their multiply–add pairs into fused
// multiply–adds. The functions below evaluate the same approximations in float32 arithmetic
// with the same roundings, which makes Randn agree with PyTorch bit for bit (checked on every
// value of the reference fixtures).

// Polynomial coefficients and reduction constants, rounded to float32 through float64 as a C
// compiler does when a double literal initialises a float.
var (
	cSqrtHalf = float32(float64(0.707106781186547524))
	cLogP     = [9]float32{
		float32(float64(7.0376836292e-2)),
		float32(float64(-1.1514610310e-1)),
		float32(float64(1.1676998740e-1)),
		float32(float64(-1.2420140846e-1)),
		float32(float64(1.4249322787e-1)),
		float32(float64(-1.6668057665e-1)),
		float32(float64(2.0000714765e-1)),
		float32(float64(-2.4999993993e-1)),
		float32(float64(3.3333331174e-1)),
	}
	cLogQ1 = float32(float64(-2.12194440e-4))
	cLogQ2 = float32(float64(0.693359375))

	cFourOverPi = float32(float64(1.27323954473516))
	cDP1        = float32(float64(-0.78515625))
	cDP2        = float32(float64(-2.4187564849853515625e-4))
	cDP3        = float32(float64(-3.77489497744594108e-8))
	cSinP       = [3]float32{
		float32(float64(-1.9515295891e-4)),
		float32(float64(8.3321608736e-3)),
		float32(float64(-1.6666654611e-1)),
	}
	cCosP = [3]float32{
		float32(float64(2.443315711809948e-5)),
		float32(float64(-1.388731625493765e-3)),
		float32(float64(4.166664568298827e-2)),
	}
	// 2.0f * pi<double>, stored as a float.
	cTwoPi32 = float32(2 * math.Pi)
)

// mul32 is one rounded float32 multiplication. The explicit conversion forbids the Go compiler
// from fusing it with a following addition.
func mul32(a, b float32) float32 { return float32(a * b) }

// fma32 returns a*b+c rounded once to float32. The product of two float32 values is exact in
// float64; the sum is computed with its exact error (TwoSum) so that the final rounding to
// float32 does not suffer from double rounding.
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact
	q := float64(c)
	s := p + q
	bv := s - p
	e := (p - (s - bv)) + (q - bv)
	if e != 0 {
		// s is inexact. If it lies exactly half-way between two float32 values (the 29 bits
		// float32 drops are 1000…0), move it one float64 ulp towards the exact value so the
		// conversion rounds the right way. Values here are far from the float32 subnormal range.
		bits := math.Float64bits(s)
		if bits&(1<<29-1) == 1<<28 {
			if (e > 0) == (s > 0) {
				bits++
			} else {
				bits--
			}
			s = math.Float64frombits(bits)
		}
	}
	return float32(s)
}

// logCephes32 is the natural logarithm of a positive float32: reduction to a mantissa in
// [sqrt(1/2), sqrt(2)) and a degree-9 polynomial.
func logCephes32(x float32) float32 {
	if !(x > 0) {
		return float32(math.NaN())
	}
	const minNormal = 0x00800000
	bits := math.Float32bits(x)
	if bits < minNormal {
		bits = minNormal // denormals are cut off, as in the vector code
	}
	exp := int32(bits >> 23)
	m := math.Float32frombits(bits&^0x7f800000 | math.Float32bits(0.5)) // in [0.5, 1)
	e := float32(exp-0x7f) + 1
	var extra float32
	if m < cSqrtHalf {
		extra = m
		e--
	}
	m = m - 1
	m = m + extra

	z := mul32(m, m)
	y := cLogP[0]
	for _, p := range cLogP[1:] {
		y = fma32(y, m, p)
	}
	y = mul32(y, m)
	y = fma32(y, z, mul32(e, cLogQ1))
	y = y - mul32(z, 0.5)
	r := m + y
	return fma32(e, cLogQ2, r)
}

// sincosCephes32 returns sin(x) and cos(x) of a float32 (accurate for |x| < 8192): reduction
// modulo pi/4 with a three-part pi/4, then the Cephes sine and cosine polynomials.
func sincosCephes32(x float32) (sin, cos float32) {
	signSin := math.Float32bits(x) & 0x80000000
	x = math.Float32frombits(math.Float32bits(x) &^ 0x80000000)

	j := int32(mul32(x, cFourOverPi)) // truncation toward zero
	j = (j + 1) &^ 1
	y := float32(j)

	signSin ^= uint32(j&4) << 29
	signCos := uint32(^(j-2)&4) << 29
	sinFromSinPoly := j&2 == 0 // otherwise the two polynomials swap roles

	x = fma32(y, cDP1, x)
	x = fma32(y, cDP2, x)
	x = fma32(y, cDP3, x)

	z := mul32(x, x)
	// cos on [-pi/4, pi/4]: 1 - z/2 + z²·P(z)
	c := fma32(cCosP[0], z, cCosP[1])
	c = fma32(c, z, cCosP[2])
	c = mul32(c, z)
	c = fma32(c, z, -mul32(z, 0.5))
	c = c + 1
	// sin on [-pi/4, pi/4]: x + x·z·Q(z)
	s := fma32(cSinP[0], z, cSinP[1])
	s = fma32(s, z, cSinP[2])
	s = mul32(s, z)
	s = fma32(s, x, x)

	// Select as the vector code does, by masking and adding zeros (this only matters for -0).
	var fromSin, fromCos float32
	if sinFromSinPoly {
		fromSin = s
	} else {
		fromCos = c
	}
	s = s - fromSin
	c = c - fromCos
	sin = math.Float32frombits(math.Float32bits(fromCos+fromSin) ^ signSin)
	cos = math.Float32frombits(math.Float32bits(c+s) ^ signCos)
	return sin, cos
}
