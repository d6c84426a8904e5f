package kernels

import "math"

// ExpInPlace replaces every x[i] with e^x[i], to within about two units in
// the last place (relative error below 3e-7): results that overflow float32
// are +Inf, ones below the smallest subnormal are 0, and NaN stays NaN. It is
// meant for softmax and similar.
func ExpInPlace(x []float32) {
	if len(x) == 0 {
		return
	}
	if useAVX512Elementwise {
		expAVX512(&x[0], len(x))
		return
	}
	for i, v := range x {
		x[i] = expGo(v)
	}
}

// SiLUInPlace replaces every x[i] with SiLU(x[i]) = x[i]·sigmoid(x[i]) =
// x[i]/(1+e^(−x[i])), with a relative error below about 1e-6 over the whole
// float32 range (tiny negative results included).
func SiLUInPlace(x []float32) {
	if len(x) == 0 {
		return
	}
	if useAVX512Elementwise {
		siluAVX512(&x[0], len(x))
		return
	}
	for i, v := range x {
		x[i] = siluGo(v)
	}
}

// GELUInPlace replaces every x[i] with the exact (erf-based) GELU,
// x·Φ(x) = ½·x·(1+erf(x/√2)), as PyTorch's default approximate="none"; the
// relative error is below about 1e-6, also for negative x where the result
// is tiny (it is computed through erfc, which does not cancel).
func GELUInPlace(x []float32) {
	if len(x) == 0 {
		return
	}
	if useAVX512Elementwise {
		geluAVX512(&x[0], len(x))
		return
	}
	for i, v := range x {
		x[i] = geluGo(v)
	}
}

// Constants shared by the Go twins and the generator (_gen/elementwise.go
// spells the same values).
const (
	expClamp = 128 // |x| beyond this already over- or underflows float32
	log2e    = float32(1.44269504088896340736)
	ln2Hi    = float32(0.693359375)    // few significant bits: n·ln2Hi is exact
	ln2Lo    = float32(-2.12194440e-4) // ln 2 − ln2Hi
	invSqrt2 = float32(0.70710678118654752440)
)

// expPoly holds 1/k! for k = 7 down to 0: the Taylor polynomial of e^r, whose
// error on |r| ≤ ln2/2 is below 6e-9.
var expPoly = [8]float32{1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1, 1}

// erfcPoly holds the coefficients, highest degree first, of the polynomial
// Q(τ) in erfc(t) ≈ τ·exp(−t² + Q(τ)), τ = 1/(1+t/2), for t ≥ 0 (the
// Chebyshev-fitted form given in Numerical Recipes, relative error ≤ 1.2e-7).
var erfcPoly = [10]float32{
	0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
	-0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223,
}

// fma32 returns a·b+c rounded once to float32, as the FMA instructions do.
func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

// expGo is the plain-Go twin of the AVX-512 exp.
func expGo(x float32) float32 {
	if x != x {
		return x
	}
	p, n := expParts(x)
	return scale32(p, n)
}

// expParts splits e^x = p·2^n: n = round(x·log2 e), r = x − n·ln 2 (in two
// parts, |r| ≤ ln2/2) and p = e^r by its Taylor polynomial. x is clamped to
// ±expClamp first, which changes no float32 result.
func expParts(x float32) (p, n float32) {
	x = min(max(x, -expClamp), expClamp)
	n = float32(math.RoundToEven(float64(x * log2e)))
	r := fma32(-n, ln2Hi, x)
	r = fma32(-n, ln2Lo, r)
	p = expPoly[0]
	for _, c := range expPoly[1:] {
		p = fma32(p, r, c)
	}
	return p, n
}

// scale32 returns p·2^n rounded once, as VSCALEFPS does.
func scale32(p, n float32) float32 {
	return float32(math.Ldexp(float64(p), int(n)))
}

// siluGo is the plain-Go twin of the AVX-512 SiLU. With e = e^(−|x|) = p·2^n,
// it is x/(1+e) for x ≥ 0 and (x·p/(1+e))·2^n for x < 0: nothing overflows,
// and the only rounding into the subnormal range is the last one.
func siluGo(x float32) float32 {
	if x != x {
		return x
	}
	x = max(x, -expClamp)
	p, n := expParts(-abs32(x))
	d := 1 + scale32(p, n)
	if x < 0 {
		return scale32(x*p/d, n)
	}
	return x / d
}

// geluGo is the plain-Go twin of the AVX-512 GELU. With t = |x|/√2 and
// E = erfc(t) = τ·exp(−t² + Q(τ)), it is ½·x·E for x < 0 and x − ½·x·E
// otherwise. t² = x²/2 is carried as an exact sum of two floats, the exponent
// as a two-float sum, and the power of two of the exp is applied last, so the
// tiny results of very negative x keep their relative accuracy.
func geluGo(x float32) float32 {
	if x != x {
		return x
	}
	xc := min(max(x, -20), 20)
	t := abs32(xc) * invSqrt2
	tau := 1 / fma32(0.5, t, 1)
	q := erfcPoly[0]
	for _, c := range erfcPoly[1:] {
		q = fma32(q, tau, c)
	}
	hi := xc * xc
	lo := fma32(xc, xc, -hi)
	yh := -0.5 * hi
	yl := fma32(-0.5, lo, q)
	s := yh + yl
	bb := s - yh
	e := (yh - (s - bb)) + (yl - bb)
	p, n := expParts(s)
	p = fma32(p, e, p)
	g := scale32(0.5*xc*(tau*p), n)
	if x < 0 {
		return g
	}
	return x - g
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// SoftmaxInPlace replaces x with its softmax, e^(x[i]−m) / Σ_j e^(x[j]−m)
// with m = max x, so large inputs do not overflow. Entries of −Inf become 0
// (as masked attention scores should); a row containing NaN or +Inf becomes
// NaN, as in PyTorch.
func SoftmaxInPlace(x []float32) {
	if len(x) == 0 {
		return
	}
	if useAVX512Elementwise {
		softmaxAVX512(&x[0], len(x))
		return
	}
	softmaxGo(x)
}

// softmaxGo is the plain-Go twin of the AVX-512 softmax.
func softmaxGo(x []float32) {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	var sum float64
	for i, v := range x {
		e := expGo(v - m)
		x[i] = e
		sum += float64(e)
	}
	inv := 1 / float32(sum)
	for i := range x {
		x[i] *= inv
	}
}
