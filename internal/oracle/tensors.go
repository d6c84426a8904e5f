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
