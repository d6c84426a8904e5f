package imageproc

import "image"

// libjpeg's YCbCr → RGB tables (jdcolor.c): 16-bit fixed point, FIX(x) = round(x·2^16).
const (
	yccScale   = 16
	yccHalf    = 1 << (yccScale - 1)
	fixCrR     = 91881  // FIX(1.40200)
	fixCbB     = 116130 // FIX(1.77200)
	fixCrG     = 46802  // FIX(0.71414)
	fixCbG     = 22554  // FIX(0.34414)
	jpegCenter = 128
)

// yccToRGB is libjpeg's ycc_rgb_convert for one pixel.
func yccToRGB(y, cb, cr int) (r, g, b uint8) {
	cb -= jpegCenter
	cr -= jpegCenter
	r = clip8(y + (fixCrR*cr+yccHalf)>>yccScale)
	g = clip8(y + (-fixCbG*cb+yccHalf-fixCrG*cr)>>yccScale)
	b = clip8(y + (fixCbB*cb+yccHalf)>>yccScale)
	return r, g, b
}

// ycbcrRow converts row y (relative to the picture's origin) of a YCbCr picture into RGBA
// levels, upsampling the chroma as libjpeg does by default (do_fancy_upsampling) for the
// 4:2:0 and 4:2:2 layouts of a whole decoded picture: each output chroma sample is 3/4 of the
// nearer input sample and 1/4 of the next one along each subsampled axis, with libjpeg's
// integer rounding, edge samples replicated, and plain replication when the chroma plane is at
// most 2 samples wide. Other layouts (and pictures not at the origin) replicate the chroma as
// Go does.
func ycbcrRow(row []uint8, src *image.YCbCr, y int) {
	b := src.Rect
	w, h := b.Dx(), b.Dy()
	ratio := src.SubsampleRatio
	cw := (w + 1) / 2
	fancy := b.Min == image.Point{} && cw > 2 &&
		(ratio == image.YCbCrSubsampleRatio420 || ratio == image.YCbCrSubsampleRatio422)
	if !fancy {
		for x := 0; x < w; x++ {
			yi := src.YOffset(b.Min.X+x, b.Min.Y+y)
			ci := src.COffset(b.Min.X+x, b.Min.Y+y)
			r, g, bl := yccToRGB(int(src.Y[yi]), int(src.Cb[ci]), int(src.Cr[ci]))
			set(row, x, r, g, bl)
		}
		return
	}
	yrow := src.Y[y*src.YStride:]
	if ratio == image.YCbCrSubsampleRatio422 {
		cbRow, crRow := src.Cb[y*src.CStride:], src.Cr[y*src.CStride:]
		for x := 0; x < w; x++ {
			r, g, bl := yccToRGB(int(yrow[x]), h2v1(cbRow, x, cw), h2v1(crRow, x, cw))
			set(row, x, r, g, bl)
		}
		return
	}
	// 4:2:0: the nearer chroma row and the next nearest (above for even rows, below for odd
	// ones), replicated past the edges of the chroma plane.
	ch := (h + 1) / 2
	near := y / 2
	other := near - 1
	if y%2 == 1 {
		other = near + 1
	}
	other = min(max(other, 0), ch-1)
	cb0, cb1 := src.Cb[near*src.CStride:], src.Cb[other*src.CStride:]
	cr0, cr1 := src.Cr[near*src.CStride:], src.Cr[other*src.CStride:]
	for x := 0; x < w; x++ {
		r, g, bl := yccToRGB(int(yrow[x]), h2v2(cb0, cb1, x, cw), h2v2(cr0, cr1, x, cw))
		set(row, x, r, g, bl)
	}
}

// h2v1 is libjpeg's h2v1_fancy_upsample at output column x of a chroma row cw samples wide.
func h2v1(c []uint8, x, cw int) int {
	cx := x / 2
	v := int(c[cx])
	if x%2 == 0 {
		if cx == 0 {
			return v
		}
		return (3*v + int(c[cx-1]) + 1) >> 2
	}
	if cx == cw-1 {
		return v
	}
	return (3*v + int(c[cx+1]) + 2) >> 2
}

// h2v2 is libjpeg's h2v2_fancy_upsample at output column x, from the nearer chroma row near
// and the next nearest row other (cw samples wide).
func h2v2(near, other []uint8, x, cw int) int {
	cx := x / 2
	sum := func(i int) int { return 3*int(near[i]) + int(other[i]) }
	this := sum(cx)
	if x%2 == 0 {
		if cx == 0 {
			return (this*4 + 8) >> 4
		}
		return (this*3 + sum(cx-1) + 8) >> 4
	}
	if cx == cw-1 {
		return (this*4 + 7) >> 4
	}
	return (this*3 + sum(cx+1) + 7) >> 4
}
