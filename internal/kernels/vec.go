package kernels

// Sdot returns the dot product Σ x[i]·y[i] over the first len(x) elements;
// y must be at least as long as x.
func Sdot(x, y []float32) float32 {
	y = y[:len(x)]
	if useAVX512Elementwise && len(x) > 0 {
		return sdotAVX512(&x[0], &y[0], len(x))
	}
	return sdotGo(x, y)
}

// Saxpy adds alpha·x to y element-wise (y[i] += alpha·x[i]) over the first
// len(x) elements; y must be at least as long as x.
func Saxpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	if useAVX512Elementwise && len(x) > 0 {
		saxpyAVX512(alpha, &x[0], &y[0], len(x))
		return
	}
	saxpyGo(alpha, x, y)
}

// sdotGo is the plain-Go Sdot, with four partial sums.
func sdotGo(x, y []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// saxpyGo is the plain-Go Saxpy.
func saxpyGo(alpha float32, x, y []float32) {
	for i, v := range x {
		y[i] += alpha * v
	}
}
