package imageproc

import (
	"image"
	"image/color"
	"math/rand/v2"
	"testing"
)

func randomRGBA(r *rand.Rand, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	return img
}

// TestTensorsLayout checks ControlTensor and InitTensor on random pictures of odd sizes at
// their own size (no resampling): channel-major [3, h, w], x/255, 1 − x/255, 2·x/255 − 1.
func TestTensorsLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sz := range [][2]int{{1, 1}, {1, 7}, {9, 1}, {13, 5}, {33, 17}} {
		w, h := sz[0], sz[1]
		img := randomRGBA(r, w, h)
		// A sub-image with a non-zero origin must work as its own picture.
		big := randomRGBA(r, w+3, h+2)
		sub := big.SubImage(image.Rect(2, 1, 2+w, 1+h))
		for _, pic := range []image.Image{img, sub} {
			ctl := ControlTensor(pic, w, h, false)
			inv := ControlTensor(pic, w, h, true)
			ini := InitTensor(pic, w, h)
			if len(ctl) != 3*w*h || len(inv) != 3*w*h || len(ini) != 3*w*h {
				t.Fatalf("%d×%d: lengths %d %d %d, want %d", w, h, len(ctl), len(inv), len(ini), 3*w*h)
			}
			b := pic.Bounds()
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					c := pic.At(b.Min.X+x, b.Min.Y+y).(color.RGBA)
					for ch, v := range []uint8{c.R, c.G, c.B} {
						i := (ch*h+y)*w + x
						f := float32(v) / 255
						if ctl[i] != f || inv[i] != 1-f || ini[i] != 2*f-1 {
							t.Fatalf("%d×%d (%d,%d) ch %d: control %v inverted %v init %v, level %d",
								w, h, x, y, ch, ctl[i], inv[i], ini[i], v)
						}
					}
				}
			}
		}
	}
}

// TestResizeProperties checks what any correct Lanczos resize must do on random sizes: a
// constant picture stays constant, a 1×1 picture fills the output, the same size is a copy
// (not the same memory), and the output is opaque.
func TestResizeProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 40; n++ {
		w, h := 1+r.IntN(40), 1+r.IntN(40)
		ow, oh := 1+r.IntN(60), 1+r.IntN(60)
		c := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
		flat := image.NewRGBA(image.Rect(0, 0, w, h))
		for i := 0; i < len(flat.Pix); i += 4 {
			flat.Pix[i], flat.Pix[i+1], flat.Pix[i+2], flat.Pix[i+3] = c.R, c.G, c.B, c.A
		}
		got := Resize(flat, ow, oh)
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				if g := got.RGBAAt(x, y); g != c {
					t.Fatalf("constant %v %d×%d → %d×%d: (%d,%d) = %v", c, w, h, ow, oh, x, y, g)
				}
			}
		}
		one := image.NewRGBA(image.Rect(0, 0, 1, 1))
		one.SetRGBA(0, 0, c)
		if g := Resize(one, ow, oh).RGBAAt(ow-1, oh-1); g != c {
			t.Fatalf("1×1 %v → %d×%d: corner %v", c, ow, oh, g)
		}
		src := randomRGBA(r, w, h)
		cp := Resize(src, w, h)
		if &cp.Pix[0] == &src.Pix[0] {
			t.Fatal("Resize to the same size returned the same pixels, want a copy")
		}
		for i := range src.Pix {
			if cp.Pix[i] != src.Pix[i] {
				t.Fatalf("Resize to the same size changed level %d: %d → %d", i, src.Pix[i], cp.Pix[i])
			}
		}
		out := Resize(src, ow, oh)
		for i := 3; i < len(out.Pix); i += 4 {
			if out.Pix[i] != 255 {
				t.Fatalf("Resize output alpha %d at %d", out.Pix[i], i)
			}
		}
	}
}

func TestDefaultSize(t *testing.T) {
	for _, c := range []struct{ w, h, m, ww, wh int }{
		{256, 256, 8, 256, 256}, {255, 129, 8, 248, 128}, {7, 9, 8, 0, 8}, {100, 50, 16, 96, 48},
	} {
		w, h := DefaultSize(image.NewGray(image.Rect(3, 4, 3+c.w, 4+c.h)), c.m)
		if w != c.ww || h != c.wh {
			t.Errorf("DefaultSize(%d×%d, %d) = %d×%d, want %d×%d", c.w, c.h, c.m, w, h, c.ww, c.wh)
		}
	}
}

// TestBadSizesReturnNil checks that bad sizes and nil pictures give nil (or 0×0), not panics.
func TestBadSizesReturnNil(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	if Resize(img, 0, 4) != nil || Resize(img, 4, -2) != nil || Resize(nil, 4, 4) != nil || Resize(img, 1<<30, 1<<30) != nil {
		t.Error("Resize of a bad size or a nil picture is not nil")
	}
	if ControlTensor(img, 4, -1, false) != nil || ControlTensor(nil, 4, 4, true) != nil {
		t.Error("ControlTensor of a bad size or a nil picture is not nil")
	}
	if InitTensor(nil, 4, 4) != nil || InitTensor(img, 0, 0) != nil {
		t.Error("InitTensor of a bad size or a nil picture is not nil")
	}
	if ToRGB(nil) != nil {
		t.Error("ToRGB(nil) is not nil")
	}
	for _, m := range []int{0, -8} {
		if w, h := DefaultSize(img, m); w != 0 || h != 0 {
			t.Errorf("DefaultSize(img, %d) = %d×%d, want 0×0", m, w, h)
		}
	}
	if w, h := DefaultSize(nil, 8); w != 0 || h != 0 {
		t.Errorf("DefaultSize(nil, 8) = %d×%d", w, h)
	}
	// Good sizes still work.
	if r := Resize(img, 2, 3); r == nil || r.Rect.Dx() != 2 || r.Rect.Dy() != 3 {
		t.Error("Resize(img, 2, 3)")
	}
	if v := ControlTensor(img, 2, 2, false); len(v) != 12 {
		t.Errorf("ControlTensor: %d values", len(v))
	}
}
