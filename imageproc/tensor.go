package imageproc

import (
	"image"
	"math"
)

// ControlTensor returns the ControlNet conditioning image [3, h, w] (channel-major, the batch
// dimension left out) with values in [0, 1], as diffusers' StableDiffusionControlNetPipeline
// prepare_image computes it from a picture: VaeImageProcessor(do_convert_rgb=True,
// do_normalize=False).preprocess(image, height=h, width=w), i.e. ToRGB, Resize to w×h
// (Lanczos; a copy when the size already matches) and level/255 in float32.
//
// With invert, each value x becomes 1 − x: a white-on-black edge map becomes black-on-white
// and the other way round (the reference pipeline has no such switch; it is for control
// pictures drawn in the opposite convention to the one the ControlNet was trained on).
//
// diffusers rounds h and w down to multiples of 8 first; the pipeline's sizes already are,
// so ControlTensor resizes to exactly w×h. The picture is converted to RGB before it is
// resized, as with diffusers' documented load_image(path); a PIL image handed to diffusers
// without that conversion is resized in its own mode first (premultiplied for RGBA, nearest
// for palettes), which differs only where a resize meets partial transparency or a palette.
// It returns nil if w or h is not positive or img is nil.
func ControlTensor(img image.Image, w, h int, invert bool) []float32 {
	rgb := Resize(img, w, h)
	if rgb == nil {
		return nil
	}
	out := make([]float32, 3*w*h)
	for y := 0; y < h; y++ {
		row := rgb.Pix[y*rgb.Stride:]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := float32(row[4*x+c]) / 255
				if invert {
					v = 1 - v
				}
				out[(c*h+y)*w+x] = v
			}
		}
	}
	return out
}

// InitTensor returns the image-to-image init picture [3, h, w] (channel-major, the batch
// dimension left out) with values in [−1, 1], as diffusers' StableDiffusionImg2ImgPipeline
// prepares it: VaeImageProcessor.preprocess, i.e. Resize to w×h (Lanczos; a copy when the size
// already matches), level/255 in float32, then 2x − 1. diffusers' own size is DefaultSize(img,
// 8). It returns nil if w or h is not positive or img is nil.
func InitTensor(img image.Image, w, h int) []float32 {
	rgb := Resize(img, w, h)
	if rgb == nil {
		return nil
	}
	out := make([]float32, 3*w*h)
	for y := 0; y < h; y++ {
		row := rgb.Pix[y*rgb.Stride:]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := float32(row[4*x+c]) / 255
				out[(c*h+y)*w+x] = 2*v - 1
			}
		}
	}
	return out
}

// DefaultSize returns the size diffusers' VaeImageProcessor.get_default_height_width gives a
// picture when the caller gives none: its width and height each rounded down to a multiple of
// multiple (the VAE scale factor, 8). A side shorter than multiple gives 0, which callers must
// refuse (Pillow cannot resize to it). A nil img or a multiple that is not positive gives 0×0.
func DefaultSize(img image.Image, multiple int) (w, h int) {
	if IsNil(img) || multiple <= 0 {
		return 0, 0
	}
	b := img.Bounds()
	return b.Dx() - b.Dx()%multiple, b.Dy() - b.Dy()%multiple
}

// validSize reports whether w×h is a size an RGBA picture can have (its pixels addressable).
func validSize(w, h int) bool {
	return w > 0 && h > 0 && w <= math.MaxInt32/4/h
}
