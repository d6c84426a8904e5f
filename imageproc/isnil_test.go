package imageproc

import (
	"image"
	"testing"
)

// TestTypedNilPictures checks that a nil *image.RGBA (or *image.Gray) inside an image.Image is
// treated as no picture: no panic, nil results, an error from Canny.
func TestTypedNilPictures(t *testing.T) {
	var rgba *image.RGBA
	var gray *image.Gray
	for _, img := range []image.Image{nil, rgba, gray} {
		if !IsNil(img) {
			t.Fatalf("IsNil(%T) = false", img)
		}
		if ToRGB(img) != nil || Resize(img, 8, 8) != nil || ControlTensor(img, 8, 8, false) != nil || InitTensor(img, 8, 8) != nil {
			t.Errorf("%T: a conversion of a nil picture gave a result", img)
		}
		if w, h := DefaultSize(img, 8); w != 0 || h != 0 {
			t.Errorf("%T: DefaultSize = %d×%d, want 0×0", img, w, h)
		}
		if _, err := Canny(img, CannyOptions{}); err == nil {
			t.Errorf("%T: Canny of a nil picture gave no error", img)
		}
	}
	if IsNil(image.NewRGBA(image.Rect(0, 0, 1, 1))) {
		t.Error("IsNil of a real picture = true")
	}
}
