package imageproc

import (
	"fmt"
	"image"
	"math"
)

// Default thresholds of CannyOptions (those of the ControlNet canny demos).
const (
	DefaultCannyLow  = 100
	DefaultCannyHigh = 200
)

// CannyOptions configures Canny. The zero value is cv2.Canny(rgb, 100, 200) with the L1
// gradient and no blur.
type CannyOptions struct {
	// Low and High are the hysteresis thresholds on the gradient magnitude: a pixel whose
	// magnitude passes non-maximum suppression and exceeds High (strictly) is an edge, and so is
	// one exceeding Low that is 8-connected to an edge through such pixels. If Low > High they
	// are swapped, as OpenCV does. When both are 0 the defaults DefaultCannyLow and
	// DefaultCannyHigh apply. They must be finite and non-negative.
	Low, High float64
	// L2Gradient selects the magnitude sqrt(dx² + dy²) (compared squared, in integers, with
	// the squared thresholds) instead of |dx| + |dy|, as cv2.Canny's L2gradient.
	L2Gradient bool
	// Gray computes the edges of the grayscale picture (cv2.cvtColor(rgb, COLOR_RGB2GRAY), in
	// OpenCV's 15-bit fixed point) instead of the RGB picture. On RGB, OpenCV takes at each
	// pixel the gradient of the channel whose magnitude is largest (the first on ties).
	Gray bool
	// Blur, when positive, is the standard deviation in pixels of a Gaussian blur applied
	// first, as cv2.GaussianBlur(img, (0, 0), Blur) does (kernel size round(6·Blur + 1) made
	// odd, reflect-101 borders). It is not part of cv2.Canny; 0 means no blur. At most 32.
	Blur float64
}

// cannyShift and tg22 are OpenCV's fixed point for tan(22.5°) in the direction test.
const (
	cannyShift = 15
	tg22       = 13573 // int(0.4142135623730950488 * (1 << 15) + 0.5)
)

// Canny returns the edge map of img (255 on edges, 0 elsewhere, the size of img with its
// origin at (0, 0)) as OpenCV 4.6's cv2.Canny(image, Low, High, apertureSize=3,
// L2gradient=L2Gradient) computes it on ToRGB(img) (or on its grayscale with opts.Gray):
// 3×3 Sobel derivatives with replicated borders, integer magnitudes, non-maximum suppression
// along the gradient direction quantised to 0°, 45°, 90° or 135° with OpenCV's fixed-point
// tangent test (strict > against one neighbour, ≥ against the other), and hysteresis.
// Magnitudes outside the picture count as 0. It returns an error for invalid options.
func Canny(img image.Image, opts CannyOptions) (*image.Gray, error) {
	if IsNil(img) {
		return nil, fmt.Errorf("imageproc: Canny of a nil picture")
	}
	low, high := opts.Low, opts.High
	for _, v := range [...]struct {
		name string
		v    float64
	}{{"Low", low}, {"High", high}} {
		if math.IsNaN(v.v) || math.IsInf(v.v, 0) || v.v < 0 {
			return nil, fmt.Errorf("imageproc: Canny threshold %s = %v: must be finite and ≥ 0", v.name, v.v)
		}
	}
	if math.IsNaN(opts.Blur) || opts.Blur < 0 || opts.Blur > maxBlur {
		return nil, fmt.Errorf("imageproc: Canny Blur = %v: must be in [0, %d]", opts.Blur, maxBlur)
	}
	if low == 0 && high == 0 {
		low, high = DefaultCannyLow, DefaultCannyHigh
	}
	if low > high {
		low, high = high, low
	}
	if opts.L2Gradient {
		low, high = math.Min(low, 32767), math.Min(high, 32767)
		low, high = low*low, high*high
	}
	// Magnitudes stay below 2^22; larger thresholds all mean "none", and must not overflow.
	lo, hi := int(math.Floor(math.Min(low, 1<<40))), int(math.Floor(math.Min(high, 1<<40)))

	rgb := ToRGB(img)
	w, h := rgb.Rect.Dx(), rgb.Rect.Dy()
	var planes [][]uint8
	if opts.Gray {
		planes = [][]uint8{grayPlane(rgb)}
	} else {
		planes = rgbPlanes(rgb)
	}
	if opts.Blur > 0 {
		for i, p := range planes {
			planes[i] = gaussianBlur(p, w, h, opts.Blur)
		}
	}
	dx, dy, mag := gradients(planes, w, h, opts.L2Gradient)
	return hysteresis(nonMaxSuppress(dx, dy, mag, w, h, lo, hi), w, h), nil
}

// rgbPlanes splits an RGBA picture into its R, G and B planes (in that order: OpenCV's
// tie-break between channels follows the order of the array given to it, RGB here).
func rgbPlanes(rgb *image.RGBA) [][]uint8 {
	w, h := rgb.Rect.Dx(), rgb.Rect.Dy()
	planes := [][]uint8{make([]uint8, w*h), make([]uint8, w*h), make([]uint8, w*h)}
	for y := 0; y < h; y++ {
		row := rgb.Pix[y*rgb.Stride:]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				planes[c][y*w+x] = row[4*x+c]
			}
		}
	}
	return planes
}

// grayPlane is cv2.cvtColor(rgb, COLOR_RGB2GRAY) on 8-bit data in OpenCV 4.6, which uses
// 15-bit coefficients: (9798·R + 19235·G + 3735·B + 2^14) >> 15. (The 14-bit ones of OpenCV's
// documentation, 4899/9617/1868, round differently on about 1 pixel in 50.)
func grayPlane(rgb *image.RGBA) []uint8 {
	w, h := rgb.Rect.Dx(), rgb.Rect.Dy()
	out := make([]uint8, w*h)
	for y := 0; y < h; y++ {
		row := rgb.Pix[y*rgb.Stride:]
		for x := 0; x < w; x++ {
			r, g, b := int(row[4*x]), int(row[4*x+1]), int(row[4*x+2])
			out[y*w+x] = uint8((r*9798 + g*19235 + b*3735 + 1<<14) >> 15)
		}
	}
	return out
}

// gradients returns, per pixel, the 3×3 Sobel derivatives (replicated borders) of the plane
// with the largest magnitude (the first plane on ties), and that magnitude, |dx| + |dy| or
// dx² + dy² with l2, in a (w+2)×(h+2) array whose one-pixel frame is 0.
func gradients(planes [][]uint8, w, h int, l2 bool) (dx, dy []int16, mag []int32) {
	dx, dy = make([]int16, w*h), make([]int16, w*h)
	stride := w + 2
	mag = make([]int32, stride*(h+2))
	left, right := make([]int, w), make([]int, w)
	for x := range w {
		left[x], right[x] = max(x-1, 0), min(x+1, w-1)
	}
	for pi, p := range planes {
		for y := 0; y < h; y++ {
			up, mid, down := p[max(y-1, 0)*w:][:w], p[y*w:][:w], p[min(y+1, h-1)*w:][:w]
			mrow := mag[(y+1)*stride+1:][:w]
			dxr, dyr := dx[y*w:][:w], dy[y*w:][:w]
			for x := 0; x < w; x++ {
				l, r := left[x], right[x]
				gx := int32(up[r]) - int32(up[l]) + 2*(int32(mid[r])-int32(mid[l])) + int32(down[r]) - int32(down[l])
				gy := int32(down[l]) + 2*int32(down[x]) + int32(down[r]) - int32(up[l]) - 2*int32(up[x]) - int32(up[r])
				var m int32
				if l2 {
					m = gx*gx + gy*gy
				} else {
					m = abs32(gx) + abs32(gy)
				}
				if pi == 0 || m > mrow[x] {
					dxr[x], dyr[x], mrow[x] = int16(gx), int16(gy), m
				}
			}
		}
	}
	return dx, dy, mag
}

func abs32(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}

// Map states of OpenCV's Canny, over a (w+2)×(h+2) map with a frame of notEdge.
const (
	mayBeEdge uint8 = 0 // passed suppression with magnitude > low
	notEdge   uint8 = 1
	isEdge    uint8 = 2
)

// nonMaxSuppress classifies every pixel into a (w+2)×(h+2) map (with a frame of notEdge) and
// returns it, the pixels that pass with magnitude > high marked isEdge. mag is framed by 0s.
func nonMaxSuppress(dx, dy []int16, mag []int32, w, h, low, high int) []uint8 {
	stride := w + 2
	m := make([]uint8, stride*(h+2))
	for i := range m {
		m[i] = notEdge
	}
	lo, hi := int64(low), int64(high)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := (y+1)*stride + x + 1 // index in the framed arrays
			v := mag[c]
			if int64(v) <= lo {
				continue
			}
			xs, ys := int(dx[y*w+x]), int(dy[y*w+x])
			ax, ay := xs, ys
			if ax < 0 {
				ax = -ax
			}
			if ay < 0 {
				ay = -ay
			}
			ay <<= cannyShift
			tg22x := ax * tg22
			var keep bool
			switch {
			case ay < tg22x: // near horizontal gradient: compare left and right
				keep = v > mag[c-1] && v >= mag[c+1]
			case ay > tg22x+ax<<(cannyShift+1): // near vertical: above and below
				keep = v > mag[c-stride] && v >= mag[c+stride]
			default: // diagonal: the pair along the gradient's sign
				s := 1
				if xs^ys < 0 {
					s = -1
				}
				keep = v > mag[c-stride-s] && v > mag[c+stride+s]
			}
			if !keep {
				continue
			}
			if int64(v) > hi {
				m[c] = isEdge
			} else {
				m[c] = mayBeEdge
			}
		}
	}
	return m
}

// hysteresis grows the edges through 8-connected mayBeEdge pixels and renders the edge map.
func hysteresis(m []uint8, w, h int) *image.Gray {
	stride := w + 2
	var stack []int
	for i, v := range m {
		if v == isEdge {
			stack = append(stack, i)
		}
	}
	nb := [8]int{-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range nb {
			if m[i+d] == mayBeEdge {
				m[i+d] = isEdge
				stack = append(stack, i+d)
			}
		}
	}
	out := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if m[(y+1)*stride+x+1] == isEdge {
				out.Pix[y*out.Stride+x] = 255
			}
		}
	}
	return out
}
