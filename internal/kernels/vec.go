package kernels

import "fmt"

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

// Transpose writes the transpose of src [rows×cols, row-major] to dst [cols×rows], in 16×16
// blocks (AVX-512 where the CPU has it) and plain Go at the edges. It panics when a slice is
// too short.
func Transpose(dst, src []float32, rows, cols int) { TransposeRows(dst, src, rows, cols, 0, rows) }

// TransposeRows is Transpose for the rows [r0, r1) of src only (the columns [r0, r1) of dst),
// so that goroutines can share a transpose; r0 should be a multiple of 16.
func TransposeRows(dst, src []float32, rows, cols, r0, r1 int) {
	if rows <= 0 || cols <= 0 || r0 >= r1 {
		return
	}
	if len(src) < rows*cols || len(dst) < rows*cols || r0 < 0 || r1 > rows {
		panic(fmt.Sprintf("kernels: Transpose: rows [%d, %d) of %d×%d (src %d values, dst %d)", r0, r1, rows, cols, len(src), len(dst)))
	}
	c16 := cols &^ 15
	r := r0
	for ; r+16 <= r1; r += 16 {
		for c := 0; c < c16; c += 16 {
			transpose16x16(dst[c*rows+r:], rows, src[r*cols+c:], cols, 1)
		}
		for i := r; i < r+16; i++ {
			for c := c16; c < cols; c++ {
				dst[c*rows+i] = src[i*cols+c]
			}
		}
	}
	for ; r < r1; r++ {
		for c := 0; c < cols; c++ {
			dst[c*rows+r] = src[r*cols+c]
		}
	}
}
