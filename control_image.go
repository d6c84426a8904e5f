package sdxs

import (
	"fmt"
	"image"
	"image/color"
)

// controlTensor turns a control image into the ControlNet's input [3, h, w]: RGB, scaled to
// [0, 1] (and inverted when asked), as diffusers' control-image processor does.
// TODO(controlnet): resize with imageproc.ControlTensor once it lands; until then the image
// must already have the picture's size.
func controlTensor(img image.Image, w, h int, invert bool) ([]float32, error) {
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		return nil, fmt.Errorf("sdxs: the control image is %d×%d, want %d×%d", b.Dx(), b.Dy(), w, h)
	}
	out := make([]float32, 3*w*h)
	plane := w * h
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			for ch, v := range [3]uint8{c.R, c.G, c.B} {
				f := float32(v) / 255
				if invert {
					f = 1 - f
				}
				out[ch*plane+y*w+x] = f
			}
		}
	}
	return out, nil
}
