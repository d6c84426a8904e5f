package imageproc

import "math"

// maxBlur bounds CannyOptions.Blur (a kernel of 6·32+1 = 193 taps).
const maxBlur = 32

// blurFracBits is the fraction of OpenCV's 8-bit Gaussian kernels (ufixedpoint16: 8 bits).
const blurFracBits = 8

// gaussianBlur blurs an 8-bit plane as OpenCV 4.6's cv2.GaussianBlur(p, (0, 0), sigma) does on
// 8-bit data, bit for bit: the kernel size round(6σ + 1) made odd, the Gaussian normalised in
// float64 then turned into 8-bit fixed point with error diffusion (the centre tap takes the
// remainder so the taps sum to exactly 1), a horizontal pass kept exact in 16 bits, a vertical
// pass in 32 bits rounded half up, and reflect-101 borders. A side of length 1 is not filtered
// along that axis.
func gaussianBlur(p []uint8, w, h int, sigma float64) []uint8 {
	n := int(math.RoundToEven(sigma*3*2+1)) | 1
	kx := fixedGaussian(n, sigma)
	ky := kx
	if w == 1 {
		kx = []int64{1 << blurFracBits}
	}
	if h == 1 {
		ky = []int64{1 << blurFracBits}
	}
	if len(kx) == 1 && len(ky) == 1 {
		return append([]uint8(nil), p...)
	}
	// Horizontal pass: values with 8 fraction bits, at most 255·256, exact.
	rx := len(kx) / 2
	xs := make([]int, len(kx)*w) // reflected source column of each tap of each output column
	for x := 0; x < w; x++ {
		for i := range kx {
			xs[x*len(kx)+i] = reflect101(x+i-rx, w)
		}
	}
	tmp := make([]int64, w*h)
	for y := 0; y < h; y++ {
		row := p[y*w : (y+1)*w]
		for x := 0; x < w; x++ {
			var s int64
			for i, k := range kx {
				s += k * int64(row[xs[x*len(kx)+i]])
			}
			tmp[y*w+x] = s
		}
	}
	// Vertical pass: 16 fraction bits, rounded half up to 8 bits.
	ry := len(ky) / 2
	out := make([]uint8, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var s int64
			for j, k := range ky {
				s += k * tmp[reflect101(y+j-ry, h)*w+x]
			}
			v := (s + 1<<(2*blurFracBits-1)) >> (2 * blurFracBits)
			out[y*w+x] = uint8(min(v, 255))
		}
	}
	return out
}

// reflect101 maps an index outside 0…n−1 back inside by reflecting about the edge pixels
// (OpenCV's BORDER_REFLECT_101: …, 2, 1 | 0, 1, 2, …, n−1 | n−2, …), repeatedly if needed.
func reflect101(i, n int) int {
	if n == 1 {
		return 0
	}
	for i < 0 || i >= n {
		if i < 0 {
			i = -i
		} else {
			i = 2*n - 2 - i
		}
	}
	return i
}

// gaussianKernel is OpenCV's getGaussianKernelBitExact for sigma > 0 and odd n: the taps
// exp(−x²/(2σ²)) normalised to sum 1, computed in float64 in OpenCV's order.
func gaussianKernel(n int, sigma float64) []float64 {
	half := (n - 1) / 2
	values := make([]float64, half)
	sum := 0.0
	scale2X := -0.125 / (sigma * sigma)
	for i, x := 0, 1-n; i < half; i, x = i+1, x+2 {
		// x runs over 2·(i − half): OpenCV evaluates exp(x²·(−1/8σ²)) = exp(−(x/2)²/(2σ²)).
		t := math.Exp(float64(x*x) * scale2X)
		values[i] = t
		sum += t
	}
	sum *= 2
	sum += 1
	mul1 := 1 / sum
	k := make([]float64, n)
	for i := 0; i < half; i++ {
		t := values[i] * mul1
		k[i], k[n-1-i] = t, t
	}
	k[half] = 1 * mul1
	return k
}

// fixedGaussian is OpenCV's getGaussianKernelFixedPoint_ED with 8 fraction bits: the outer
// taps rounded (half to even) with the rounding error carried to the next tap, the centre tap
// the remainder of 256.
func fixedGaussian(n int, sigma float64) []int64 {
	k := gaussianKernel(n, sigma)
	out := make([]int64, n)
	half := n / 2
	mult := float64(int64(1) << blurFracBits)
	var sum int64
	errAcc := 0.0
	for i := 0; i < half; i++ {
		adj := k[i]*mult + errAcc
		v := int64(math.RoundToEven(adj))
		errAcc = adj - float64(v)
		out[i], out[n-1-i] = v, v
		sum += v
	}
	out[half] = int64(1)<<blurFracBits - 2*sum
	return out
}
