package imageproc

import (
	"fmt"
	"image"

	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// The fixtures under testdata/ were made by Pillow (testdata/gen.py); these tests compare
// with them level for level.

// TestToRGBPillowModes checks ToRGB(Decode(png)) against Pillow's
// Image.open(png).convert("RGB") for every PNG colour type and depth Pillow opens as another
// mode: RGBA and LA (alpha dropped without compositing), 1-, 4-, 8- and 16-bit gray (16-bit
// clips), transparency keys, 16-bit colour (high byte), palettes with and without tRNS.
func TestToRGBPillowModes(t *testing.T) {
	names := []string{
		"rgba8", "la8", "gray8", "gray8_trns", "gray16", "gray16_trns", "gray1", "gray4",
		"rgb16", "rgba16", "la16", "rgb8_trns", "palette", "palette2",
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			img := mustDecode(t, filepath.Join("testdata", "modes", name+".png"))
			want := mustDecode(t, filepath.Join("testdata", "modes", name+"_rgb.png"))
			assertSameRGB(t, ToRGB(img), want, 0)
		})
	}
}

// TestToRGBJPEG bounds how far Decode+ToRGB of a JPEG lands from libjpeg's (through Pillow):
// the chroma upsampling and the YCbCr conversion are libjpeg's, but Go's inverse DCT rounds
// differently, so a level or two differ on some pixels. (With Go's own chroma replication the
// noisy 4:2:0 fixture differed by up to 36 levels.)
func TestToRGBJPEG(t *testing.T) {
	for _, c := range []struct {
		name   string
		maxAbs int
	}{{"jpeg444", 2}, {"jpeg420", 2}, {"jpeg422", 2}, {"jpeg420_odd", 2}, {"jpeg422_odd", 2}, {"jpeg420_tiny", 2}, {"jpeg_cmyk", 2}} {
		t.Run(c.name, func(t *testing.T) {
			img := mustDecode(t, filepath.Join("testdata", "modes", c.name+".jpg"))
			want := mustDecode(t, filepath.Join("testdata", "modes", c.name+"_rgb.png"))
			assertSameRGB(t, ToRGB(img), want, c.maxAbs)
		})
	}
}

// TestResizePillow checks Resize against Pillow's LANCZOS resize of random RGB pictures, up,
// down, one axis only, to and from 1 pixel, and by large factors: every level equal.
func TestResizePillow(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "resize", "src*_*x*.png"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("found %d resize fixtures, want at least 15", len(files))
	}
	re := regexp.MustCompile(`^(src\d+)_(\d+)x(\d+)\.png$`)
	for _, f := range files {
		m := re.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			t.Fatalf("unexpected fixture name %s", f)
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			w, _ := strconv.Atoi(m[2])
			h, _ := strconv.Atoi(m[3])
			src := mustDecode(t, filepath.Join("testdata", "resize", m[1]+".png"))
			want := mustDecode(t, f)
			got := Resize(src, w, h)
			if got.Rect != image.Rect(0, 0, w, h) {
				t.Fatalf("Resize gave %v, want %d×%d", got.Rect, w, h)
			}
			assertSameRGB(t, got, want, 0)
		})
	}
}

func mustDecode(t *testing.T, path string) image.Image {
	t.Helper()
	img, err := DecodeFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// assertSameRGB fails unless got and ToRGB(want) have the same size and every level within
// maxAbs, and every alpha of got is 255.
func assertSameRGB(t *testing.T, got *image.RGBA, want image.Image, maxAbs int) {
	t.Helper()
	w := ToRGB(want)
	if got.Rect.Size() != w.Rect.Size() {
		t.Fatalf("size %v, want %v", got.Rect.Size(), w.Rect.Size())
	}
	worst, bad, first := 0, 0, ""
	for y := 0; y < w.Rect.Dy(); y++ {
		for x := 0; x < w.Rect.Dx(); x++ {
			for c := 0; c < 4; c++ {
				g, e := int(got.Pix[y*got.Stride+4*x+c]), int(w.Pix[y*w.Stride+4*x+c])
				d := g - e
				if d < 0 {
					d = -d
				}
				if d > worst {
					worst = d
				}
				if d > maxAbs {
					bad++
					if first == "" {
						first = fmt.Sprintf("(%d,%d) channel %d = %d, want %d", x, y, c, g, e)
					}
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d levels differ by more than %d (worst %d); first at %s", bad, maxAbs, worst, first)
	}
	if maxAbs > 0 {
		t.Logf("largest difference %d (bound %d)", worst, maxAbs)
	}
}

// TestDecodeEXIFOrientation checks Decode against Pillow's ImageOps.exif_transpose (which
// diffusers' load_image applies) for the eight EXIF orientations of a PNG (eXIf chunk), exactly,
// and three of a JPEG (APP1), within the JPEG decoders' difference.
func TestDecodeEXIFOrientation(t *testing.T) {
	for k := 1; k <= 8; k++ {
		for _, ext := range []string{"png", "jpg"} {
			p := filepath.Join("testdata", "exif", fmt.Sprintf("o%d.%s", k, ext))
			if ext == "jpg" && k != 1 && k != 6 && k != 8 {
				continue
			}
			t.Run(filepath.Base(p), func(t *testing.T) {
				img := mustDecode(t, p)
				want := mustDecode(t, filepath.Join("testdata", "exif", fmt.Sprintf("o%d_%s_rgb.png", k, ext)))
				if k >= 5 && img.Bounds().Dx() != 4 {
					t.Fatalf("orientation %d: size %v, want the 7×4 picture turned to 4×7", k, img.Bounds())
				}
				tol := 0
				if ext == "jpg" {
					tol = 2
				}
				assertSameRGB(t, ToRGB(img), want, tol)
			})
		}
	}
}
