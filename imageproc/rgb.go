package imageproc

import (
	"image"
	"image/color"
)

// ToRGB returns img as an opaque 8-bit RGB picture with its origin at (0, 0), converted as
// Pillow's Image.convert("RGB") converts the picture Pillow opens from the same file:
//
//   - pictures with alpha (NRGBA, NRGBA64, PNGs with an alpha channel) drop the alpha without
//     compositing: the colour channels are the non-premultiplied values, whatever the alpha;
//   - 16-bit colour keeps the high byte of each channel (Pillow reads "RGB;16B" that way);
//   - 8-bit grayscale is replicated into the three channels;
//   - 16-bit grayscale (Pillow's mode "I;16") is clipped, not scaled: a level above 255 becomes
//     255, so a typical 16-bit grayscale photo comes out almost white, exactly as in Pillow;
//   - paletted pictures take their palette colours (the palette's alpha is dropped);
//   - YCbCr (a JPEG) is converted as libjpeg converts it for Pillow: 4:2:0 and 4:2:2 chroma
//     interpolated by libjpeg's "fancy" upsampling, then its fixed-point YCbCr → RGB;
//   - CMYK uses Pillow's formula, R = 255 − K − C·(255 − K)/255 rounded as Pillow rounds;
//   - a premultiplied *image.RGBA or *image.RGBA64 with partial alpha is un-premultiplied
//     first (Pillow has no such mode); other image types go through color.NRGBAModel.
//
// The result is a new picture; img is not modified. A nil img gives nil.
func ToRGB(img image.Image) *image.RGBA {
	if IsNil(img) {
		return nil
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		row := out.Pix[y*out.Stride : y*out.Stride+4*w]
		sy := b.Min.Y + y
		switch src := img.(type) {
		case *image.RGBA:
			s := src.Pix[src.PixOffset(b.Min.X, sy):]
			for x := 0; x < w; x++ {
				r, g, bl, a := s[4*x], s[4*x+1], s[4*x+2], s[4*x+3]
				if a != 0xff {
					c := color.NRGBAModel.Convert(color.RGBA{r, g, bl, a}).(color.NRGBA)
					r, g, bl = c.R, c.G, c.B
				}
				set(row, x, r, g, bl)
			}
		case *image.NRGBA:
			s := src.Pix[src.PixOffset(b.Min.X, sy):]
			for x := 0; x < w; x++ {
				set(row, x, s[4*x], s[4*x+1], s[4*x+2])
			}
		case *image.NRGBA64:
			s := src.Pix[src.PixOffset(b.Min.X, sy):]
			for x := 0; x < w; x++ {
				// Big-endian 16-bit samples: the high byte comes first.
				set(row, x, s[8*x], s[8*x+2], s[8*x+4])
			}
		case *image.RGBA64:
			for x := 0; x < w; x++ {
				c := src.RGBA64At(b.Min.X+x, sy)
				if c.A != 0xffff {
					n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
					c = color.RGBA64{n.R, n.G, n.B, 0xffff}
				}
				set(row, x, uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8))
			}
		case *image.Gray:
			s := src.Pix[src.PixOffset(b.Min.X, sy):]
			for x := 0; x < w; x++ {
				set(row, x, s[x], s[x], s[x])
			}
		case *image.Gray16:
			for x := 0; x < w; x++ {
				v := src.Gray16At(b.Min.X+x, sy).Y
				if v > 255 {
					v = 255
				}
				set(row, x, uint8(v), uint8(v), uint8(v))
			}
		case *image.Paletted:
			pal := paletteRGB(src.Palette)
			s := src.Pix[src.PixOffset(b.Min.X, sy):]
			for x := 0; x < w; x++ {
				c := pal[s[x]]
				set(row, x, c[0], c[1], c[2])
			}
		case *image.CMYK:
			s := src.Pix[src.PixOffset(b.Min.X, sy):]
			for x := 0; x < w; x++ {
				nk := 255 - int(s[4*x+3])
				set(row, x, cmyk(s[4*x], nk), cmyk(s[4*x+1], nk), cmyk(s[4*x+2], nk))
			}
		case *image.YCbCr:
			ycbcrRow(row, src, y)
		default:
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, sy)).(color.NRGBA)
				set(row, x, c.R, c.G, c.B)
			}
		}
	}
	return out
}

func set(row []uint8, x int, r, g, b uint8) {
	row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = r, g, b, 0xff
}

// cmyk is Pillow's cmyk2rgb for one channel: nk − c·nk/255 with MULDIV255 rounding.
func cmyk(c uint8, nk int) uint8 {
	return clip8(nk - mulDiv255(int(c), nk))
}

// mulDiv255 is Pillow's MULDIV255: a·b/255 rounded, in integers.
func mulDiv255(a, b int) int {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}

func clip8(v int) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v)
}

// paletteRGB returns the non-premultiplied colours of a palette, padded to 256 entries with
// black: an index past the palette is black in Pillow 10 and 11 (Pillow 9 gave the gray
// level of the index) and in Go's PNG decoder.
func paletteRGB(p color.Palette) [256][3]uint8 {
	var out [256][3]uint8
	for i, c := range p {
		if i >= 256 {
			break
		}
		var n color.NRGBA
		switch c := c.(type) {
		case color.NRGBA:
			n = c
		case color.RGBA:
			if c.A == 0xff {
				n = color.NRGBA{c.R, c.G, c.B, c.A}
			} else {
				n = color.NRGBAModel.Convert(c).(color.NRGBA)
			}
		default:
			if c == nil {
				continue
			}
			n = color.NRGBAModel.Convert(c).(color.NRGBA)
		}
		out[i] = [3]uint8{n.R, n.G, n.B}
	}
	return out
}
