package oracle

import (
	"testing"

	"github.com/sdxs-go/sdxs/weights"
)

// Tensors opens the safetensors file at elem under the oracle folder with the project's own
// reader; the file is closed when the test ends. It skips (or fails under CI) as Dir does, and
// fails the test if the file cannot be opened.
func Tensors(tb testing.TB, elem ...string) *weights.File {
	tb.Helper()
	p := Path(tb, elem...)
	f, err := weights.Open(p)
	if err != nil {
		tb.Fatalf("oracle: %v", err)
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("oracle: %v", err)
		}
	})
	return f
}

// Float32 returns the float tensor called name of f (F32, F16 or BF16, converted) and its
// shape, failing the test with the name on error.
func Float32(tb testing.TB, f weights.Source, name string) ([]float32, []int) {
	tb.Helper()
	v, shape, err := f.Float32(name)
	if err != nil {
		tb.Fatalf("oracle: tensor %q: %v", name, err)
	}
	return v, shape
}

// Int64 returns the I64 tensor called name of f and its shape, failing the test on error.
func Int64(tb testing.TB, f *weights.File, name string) ([]int64, []int) {
	tb.Helper()
	v, shape, err := f.Int64(name)
	if err != nil {
		tb.Fatalf("oracle: tensor %q: %v", name, err)
	}
	return v, shape
}

// Uint8 returns the U8 tensor called name of f (the reference images) and its shape, failing
// the test on error.
func Uint8(tb testing.TB, f *weights.File, name string) ([]uint8, []int) {
	tb.Helper()
	v, shape, err := f.Uint8(name)
	if err != nil {
		tb.Fatalf("oracle: tensor %q: %v", name, err)
	}
	return v, shape
}

// ReadDump reads every tensor of a safetensors file written by a -dump flag (examples/txt2img,
// examples/img2img), as AssertCase takes them: I64 and U8 tensors as they are, any other dtype
// converted to float32. It fails the test if the file or a tensor cannot be read.
func ReadDump(tb testing.TB, path string) []weights.Tensor {
	tb.Helper()
	f, err := weights.Open(path)
	if err != nil {
		tb.Fatalf("oracle: %v", err)
	}
	defer f.Close()
	var ts []weights.Tensor
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		tn := weights.Tensor{Name: name, DType: info.DType, Shape: info.Shape}
		switch info.DType {
		case weights.I64:
			tn.I64, _, err = f.Int64(name)
		case weights.U8:
			tn.U8, _, err = f.Uint8(name)
		default:
			tn.F32, _, err = f.Float32(name)
		}
		if err != nil {
			tb.Fatalf("oracle: %s: tensor %q: %v", path, name, err)
		}
		ts = append(ts, tn)
	}
	return ts
}

// OpenComponent opens the component folder dir (a model's unet/, vae/, text_encoder/ …, as
// weights.OpenComponent does); the set is closed when the test ends. It fails the test if the
// folder cannot be opened.
func OpenComponent(tb testing.TB, dir string) *weights.Set {
	tb.Helper()
	src, err := weights.OpenComponent(dir)
	if err != nil {
		tb.Fatalf("oracle: %v", err)
	}
	tb.Cleanup(func() { _ = src.Close() })
	return src
}
