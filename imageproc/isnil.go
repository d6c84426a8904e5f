package imageproc

import (
	"image"
	"reflect"
)

// IsNil reports whether img is nil or an interface holding a nil pointer (a nil *image.RGBA,
// say), whose methods would dereference nil. The functions of this package treat such a picture
// as no picture at all.
func IsNil(img image.Image) bool {
	if img == nil {
		return true
	}
	v := reflect.ValueOf(img)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}
