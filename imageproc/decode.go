// Package imageproc prepares pictures for the image-conditioned pipelines: the control image of a
// ControlNet and the init picture of image-to-image. Every step computes what the reference
// (diffusers 0.31 on Pillow, OpenCV 4.6 for Canny) computes, bit for bit where the reference is
// integer arithmetic:
//
//   - Decode / DecodeFile read a PNG or JPEG with a guard against decompression bombs.
//   - ToRGB is Pillow's Image.convert("RGB") (alpha dropped without compositing).
//   - Resize is Pillow's Image.resize((w, h), Image.LANCZOS) on 8-bit RGB.
//   - ControlTensor and InitTensor are diffusers' VaeImageProcessor.preprocess for a control
//     image ([0, 1]) and an img2img init image ([−1, 1]); DefaultSize is its default size.
//   - Canny is OpenCV's cv2.Canny (aperture 3), optionally after a Gaussian blur.
//
// The pipeline the functions reproduce is diffusers' documented usage,
// pipe(image=load_image(path)), where load_image converts the picture to RGB before the
// pipeline resizes it. All functions are pure and safe for concurrent use.
package imageproc

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register the JPEG decoder
	_ "image/png"  // register the PNG decoder
	"io"
	"os"
)

// Limits on what Decode accepts. A PNG of a few kilobytes can declare a picture of billions of
// pixels (a decompression bomb); Decode reads the declared size with image.DecodeConfig and
// refuses a picture over these limits before allocating it.
const (
	// MaxPixels is the largest width×height Decode accepts (2^26, e.g. 8192×8192).
	MaxPixels = 1 << 26
	// MaxSide is the largest width or height Decode accepts.
	MaxSide = 1 << 15
	// MaxFileBytes is the largest encoded file Decode reads.
	MaxFileBytes = 1 << 28
)

// ErrFormat is wrapped by the errors of Decode for input that is not a PNG or JPEG image (or
// another format whose decoder the program registered with package image).
var ErrFormat = errors.New("not a PNG or JPEG image")

// Decode reads a PNG or JPEG picture (or any format whose decoder is registered with package
// image). It refuses, with an error, input that is not a picture, a picture larger than MaxSide
// on a side or MaxPixels in all, an empty picture, and a truncated or corrupt file; it does not
// panic. The picture is returned as the standard decoder gives it, except that a 16-bit
// grayscale PNG with a transparent colour (tRNS) loses that transparency, as Pillow opens it,
// and that the EXIF orientation of a JPEG (APP1) or PNG (eXIf) is applied as Pillow's
// ImageOps.exif_transpose does, which diffusers' load_image calls: a phone photo stored
// sideways comes out upright (a JPEG is then already RGB).
//
// JPEG pictures are decoded by Go's image/jpeg, whose inverse DCT differs from libjpeg's
// (which Pillow uses) by a level or two on some pixels; PNG decoding is exact.
func Decode(r io.Reader) (image.Image, error) {
	img, err := decode(r)
	if err != nil {
		return nil, fmt.Errorf("imageproc: %w", err)
	}
	return img, nil
}

// DecodeFile opens and decodes the picture at path as Decode does; errors name the file.
func DecodeFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("imageproc: %w", err)
	}
	defer f.Close()
	img, err := decode(f)
	if err != nil {
		return nil, fmt.Errorf("imageproc: %s: %w", path, err)
	}
	return img, nil
}

func decode(r io.Reader) (image.Image, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading picture: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("picture file larger than %d bytes", MaxFileBytes)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrFormat)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return nil, fmt.Errorf("%w: unknown format (starts with %q)", ErrFormat, head(data))
		}
		return nil, fmt.Errorf("reading picture header: %w", err)
	}
	if err := checkSize(cfg.Width, cfg.Height); err != nil {
		return nil, fmt.Errorf("%s picture: %w", format, err)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decoding %s picture (%d×%d): %w", format, cfg.Width, cfg.Height, err)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height || b.Empty() {
		return nil, fmt.Errorf("decoding %s picture: got %v, header says %d×%d", format, b, cfg.Width, cfg.Height)
	}
	if format == "png" {
		img = pngAsPillow(data, img)
	}
	if o := exifOrientation(data, format); o > 1 {
		img = orient(img, o)
	}
	return img, nil
}

func checkSize(w, h int) error {
	switch {
	case w <= 0 || h <= 0:
		return fmt.Errorf("empty picture (%d×%d)", w, h)
	case w > MaxSide || h > MaxSide:
		return fmt.Errorf("picture of %d×%d is larger than %d on a side", w, h, MaxSide)
	case int64(w)*int64(h) > MaxPixels:
		return fmt.Errorf("picture of %d×%d has more than %d pixels", w, h, MaxPixels)
	}
	return nil
}

// head returns the first bytes of data for an error message.
func head(data []byte) []byte {
	if len(data) > 8 {
		return data[:8]
	}
	return data
}

// pngAsPillow undoes the one difference between what Go's PNG decoder and Pillow make of a PNG
// that matters for ToRGB: a 16-bit grayscale PNG with a transparent colour is a Gray16 for
// Pillow (mode "I;16", whose RGB conversion clips), not an NRGBA64.
func pngAsPillow(data []byte, img image.Image) image.Image {
	// Signature (8), IHDR length (4) and type (4), width (4), height (4), bit depth, colour type.
	if len(data) < 26 || string(data[12:16]) != "IHDR" {
		return img
	}
	depth, colorType := data[24], data[25]
	if colorType != 0 || depth != 16 {
		return img
	}
	src, ok := img.(*image.NRGBA64)
	if !ok {
		return img
	}
	b := src.Bounds()
	g := image.NewGray16(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			g.SetGray16(x, y, color.Gray16{Y: src.NRGBA64At(x, y).R})
		}
	}
	return g
}
