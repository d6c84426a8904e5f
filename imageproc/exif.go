package imageproc

import (
	"bytes"
	"encoding/binary"
	"image"
)

// exifOrientation returns the EXIF orientation (1…8) stored in a JPEG's APP1 "Exif" segment or
// a PNG's eXIf chunk, or 1 when there is none or it cannot be read.
func exifOrientation(data []byte, format string) int {
	var tiff []byte
	switch format {
	case "jpeg":
		tiff = jpegExif(data)
	case "png":
		tiff = pngExif(data)
	}
	if tiff == nil {
		return 1
	}
	return tiffOrientation(tiff)
}

// jpegExif returns the TIFF data of the first APP1 Exif segment before the scan.
func jpegExif(data []byte) []byte {
	if len(data) < 4 || data[0] != 0xff || data[1] != 0xd8 {
		return nil
	}
	for p := 2; p+4 <= len(data); {
		if data[p] != 0xff {
			return nil
		}
		marker := data[p+1]
		if marker == 0xff { // fill byte
			p++
			continue
		}
		if marker == 0xda || marker == 0xd9 { // start of scan, end of image
			return nil
		}
		if marker >= 0xd0 && marker <= 0xd7 || marker == 0x01 { // no length
			p += 2
			continue
		}
		n := int(binary.BigEndian.Uint16(data[p+2:]))
		if n < 2 || p+2+n > len(data) {
			return nil
		}
		seg := data[p+4 : p+2+n]
		if marker == 0xe1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return seg[6:]
		}
		p += 2 + n
	}
	return nil
}

// pngExif returns the data of the eXIf chunk.
func pngExif(data []byte) []byte {
	for p := 8; p+12 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[p:]))
		if n < 0 || n > len(data)-p-12 {
			return nil
		}
		typ := string(data[p+4 : p+8])
		if typ == "eXIf" {
			d := data[p+8 : p+8+n]
			// Some writers keep the JPEG segment's "Exif\0\0" prefix.
			return bytes.TrimPrefix(d, []byte("Exif\x00\x00"))
		}
		if typ == "IEND" {
			return nil
		}
		p += 12 + n
	}
	return nil
}

// tiffOrientation reads tag 0x0112 (Orientation) of the first IFD of TIFF data.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 1
	}
	n := int64(bo.Uint16(t[off:]))
	for i := int64(0); i < n; i++ {
		e := off + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 1
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		var v int
		switch bo.Uint16(t[e+2:]) {
		case 3: // SHORT
			v = int(bo.Uint16(t[e+8:]))
		case 4: // LONG
			v = int(bo.Uint32(t[e+8:]))
		default:
			return 1
		}
		if v < 1 || v > 8 {
			return 1
		}
		return v
	}
	return 1
}

// orient applies an EXIF orientation as Pillow's ImageOps.exif_transpose does (2: mirror, 3:
// rotate 180°, 4: flip, 5: transpose, 6: rotate 90° clockwise, 7: transverse, 8: rotate 90°
// counter-clockwise). A JPEG's YCbCr picture is converted to RGB first, as libjpeg does before
// Pillow transposes it; other pictures keep their type.
func orient(img image.Image, o int) image.Image {
	if o <= 1 || o > 8 {
		return img
	}
	switch img.(type) {
	case *image.Gray, *image.Gray16, *image.RGBA, *image.NRGBA, *image.RGBA64, *image.NRGBA64,
		*image.CMYK, *image.Paletted:
	default:
		img = ToRGB(img)
	}
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	r := image.Rect(0, 0, w, h)
	if o >= 5 {
		r = image.Rect(0, 0, h, w)
	}
	// The source and destination pixels as bytes: slice, stride, bytes per pixel.
	var (
		dst              image.Image
		sp, dp           []byte
		sstride, dstride int
		bpp              int
	)
	switch src := img.(type) {
	case *image.Gray:
		d := image.NewGray(r)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 1
	case *image.Gray16:
		d := image.NewGray16(r)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 2
	case *image.RGBA:
		d := image.NewRGBA(r)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 4
	case *image.NRGBA:
		d := image.NewNRGBA(r)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 4
	case *image.RGBA64:
		d := image.NewRGBA64(r)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 8
	case *image.NRGBA64:
		d := image.NewNRGBA64(r)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 8
	case *image.CMYK:
		d := image.NewCMYK(r)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 4
	case *image.Paletted:
		d := image.NewPaletted(r, src.Palette)
		dst, sp, sstride, dp, dstride, bpp = d, src.Pix, src.Stride, d.Pix, d.Stride, 1
	}
	ow, oh := r.Dx(), r.Dy()
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			var sx, sy int
			switch o {
			case 2:
				sx, sy = w-1-x, y
			case 3:
				sx, sy = w-1-x, h-1-y
			case 4:
				sx, sy = x, h-1-y
			case 5:
				sx, sy = y, x
			case 6:
				sx, sy = y, h-1-x
			case 7:
				sx, sy = w-1-y, h-1-x
			case 8:
				sx, sy = w-1-y, x
			}
			copy(dp[y*dstride+x*bpp:y*dstride+(x+1)*bpp], sp[sy*sstride+sx*bpp:])
		}
	}
	return dst
}
