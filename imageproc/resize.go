package imageproc

import (
	"image"
	"math"
)

// precisionBits is the number of fraction bits of Pillow's fixed-point resampling
// coefficients (PRECISION_BITS = 32 − 8 − 2: 8 bits for the value, 2 for overshoot).
const precisionBits = 32 - 8 - 2

// lanczosSupport is the radius of Pillow's Lanczos filter (a = 3) at scale 1.
const lanczosSupport = 3.0

// Resize returns img converted with ToRGB and resized to w×h as Pillow's
// Image.resize((w, h), resample=Image.LANCZOS) resizes an RGB picture, bit for bit: a
// horizontal pass then a vertical one (each only when that dimension changes), the Lanczos-3
// kernel widened by the downscale factor, coefficients normalised to sum 1 then rounded to
// 22-bit fixed point, sums rounded half up and clipped to 0…255 after each pass. A picture
// already w×h is returned as a copy.
//
// diffusers' VaeImageProcessor resizes this way ("lanczos" is its default resample).
// Resize returns nil (and does not panic) if img is nil or w×h is not a size a picture can
// have (a side not positive, or too many pixels); callers validate sizes.
func Resize(img image.Image, w, h int) *image.RGBA {
	if IsNil(img) || !validSize(w, h) {
		return nil
	}
	src := ToRGB(img)
	inW, inH := src.Rect.Dx(), src.Rect.Dy()
	if w == inW && h == inH {
		return src
	}
	cur := src
	if w != inW {
		horiz := newCoeffs(inW, w)
		vert := newCoeffs(inH, h)
		// Only the rows the vertical pass reads are resampled horizontally.
		first, last := 0, inH
		if h != inH {
			first = vert.bounds[0]
			last = vert.bounds[2*(h-1)] + vert.bounds[2*(h-1)+1]
		}
		tmp := image.NewRGBA(image.Rect(0, 0, w, last-first))
		resampleRows(tmp, cur, first, horiz)
		cur = tmp
		if h != inH {
			for i := 0; i < h; i++ {
				vert.bounds[2*i] -= first
			}
			out := image.NewRGBA(image.Rect(0, 0, w, h))
			resampleColumns(out, cur, vert)
			cur = out
		}
		return cur
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	resampleColumns(out, cur, newCoeffs(inH, h))
	return out
}

// coeffs holds, per output pixel, the first input pixel, the number of input pixels, and the
// fixed-point weights (ksize per output pixel, unused ones zero).
type coeffs struct {
	ksize  int
	bounds []int   // 2 per output pixel: first input index, count
	k      []int32 // ksize per output pixel
}

// lanczos is Pillow's lanczos_filter: sinc(x)·sinc(x/3) on [−3, 3), zero outside.
func lanczos(x float64) float64 {
	if -3.0 <= x && x < 3.0 {
		return sinc(x) * sinc(x/3)
	}
	return 0
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return math.Sin(x) / x
}

// newCoeffs computes Pillow's precompute_coeffs (for the box 0…inSize) followed by
// normalize_coeffs_8bpc.
func newCoeffs(inSize, outSize int) *coeffs {
	// Pillow passes the box as C floats; an integer size up to 2^24 is exact in one.
	scale := float64(float32(inSize)) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := lanczosSupport * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := &coeffs{ksize: ksize, bounds: make([]int, 2*outSize), k: make([]int32, ksize*outSize)}
	w := make([]float64, ksize)
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		ss := 1.0 / filterscale
		// C's (int) conversion truncates toward zero; negative values clamp to 0 either way.
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			v := lanczos((float64(x+xmin) - center + 0.5) * ss)
			w[x] = v
			ww += v
		}
		k := c.k[xx*ksize : (xx+1)*ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		c.bounds[2*xx] = xmin
		c.bounds[2*xx+1] = xmax
	}
	return c
}

// clipFixed turns a fixed-point sum (with its rounding half already added) into a level.
func clipFixed(ss int) uint8 {
	return clip8(ss >> precisionBits)
}

// resampleRows fills dst (w×n) from rows first…first+n−1 of src, resampling each row.
func resampleRows(dst, src *image.RGBA, first int, c *coeffs) {
	w, n := dst.Rect.Dx(), dst.Rect.Dy()
	for y := 0; y < n; y++ {
		in := src.Pix[(first+y)*src.Stride:]
		out := dst.Pix[y*dst.Stride:]
		for xx := 0; xx < w; xx++ {
			xmin, cnt := c.bounds[2*xx], c.bounds[2*xx+1]
			k := c.k[xx*c.ksize : xx*c.ksize+cnt]
			s0, s1, s2 := 1<<(precisionBits-1), 1<<(precisionBits-1), 1<<(precisionBits-1)
			p := in[4*xmin:]
			for x, kv := range k {
				kk := int(kv)
				s0 += int(p[4*x]) * kk
				s1 += int(p[4*x+1]) * kk
				s2 += int(p[4*x+2]) * kk
			}
			out[4*xx], out[4*xx+1], out[4*xx+2], out[4*xx+3] = clipFixed(s0), clipFixed(s1), clipFixed(s2), 0xff
		}
	}
}

// resampleColumns fills dst (w×h) from src (w×any), resampling each column.
func resampleColumns(dst, src *image.RGBA, c *coeffs) {
	w, h := dst.Rect.Dx(), dst.Rect.Dy()
	for yy := 0; yy < h; yy++ {
		ymin, cnt := c.bounds[2*yy], c.bounds[2*yy+1]
		k := c.k[yy*c.ksize : yy*c.ksize+cnt]
		out := dst.Pix[yy*dst.Stride:]
		for xx := 0; xx < w; xx++ {
			s0, s1, s2 := 1<<(precisionBits-1), 1<<(precisionBits-1), 1<<(precisionBits-1)
			for y, kv := range k {
				kk := int(kv)
				p := src.Pix[(ymin+y)*src.Stride+4*xx:]
				s0 += int(p[0]) * kk
				s1 += int(p[1]) * kk
				s2 += int(p[2]) * kk
			}
			out[4*xx], out[4*xx+1], out[4*xx+2], out[4*xx+3] = clipFixed(s0), clipFixed(s1), clipFixed(s2), 0xff
		}
	}
}
