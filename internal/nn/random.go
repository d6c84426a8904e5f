package nn

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
)

// ShapedSource is a Source that can make a tensor of any shape on request. Params asks it with
// the shape the model expects, so a model can be built without a weights file.
type ShapedSource interface {
	Source
	// Float32Shaped returns the tensor name with the given shape.
	Float32Shaped(name string, shape []int) ([]float32, error)
}

// RowSource is a Source that can read rows of a tensor (along its first dimension) without
// loading the rest, so that a large embedding table can stay in a mapped file.
type RowSource interface {
	Source
	// Float32Rows copies the given rows of the tensor name, which must have shape want, into
	// dst.
	Float32Rows(name string, want []int, rows []int, dst []float32) error
}

// RandomSource makes deterministic random weights for any name and shape: uniform in
// ±1/√fan_in (PyTorch's default initialisation scale), with norm weights near 1. The values
// depend only on the seed and the name. It is for benchmarks: run time does not depend on the
// weights' values.
type RandomSource struct {
	Seed uint64

	mu    sync.Mutex
	names map[string][]int
}

// Float32 reports every name as missing: a RandomSource only answers Float32Shaped.
func (r *RandomSource) Float32(name string) ([]float32, []int, error) {
	return nil, nil, errNoShape
}

// Names lists the tensors made so far.
func (r *RandomSource) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Shape returns the shape a tensor was made with, or nil if it has not been made.
func (r *RandomSource) Shape(name string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[name]
}

// Float32Shaped makes the tensor name with the given shape.
func (r *RandomSource) Float32Shaped(name string, shape []int) ([]float32, error) {
	r.mu.Lock()
	if r.names == nil {
		r.names = make(map[string][]int)
	}
	r.names[name] = append([]int(nil), shape...)
	r.mu.Unlock()
	out := make([]float32, len1(shape))
	r.fill(name, shape, 0, out)
	return out, nil
}

// Float32ShapedInto is Float32Shaped into dst, which must hold the tensor.
func (r *RandomSource) Float32ShapedInto(name string, shape []int, dst []float32) error {
	if len(dst) != len1(shape) {
		return fmt.Errorf("nn: RandomSource: %d values for %q of shape %v", len(dst), name, shape)
	}
	r.mu.Lock()
	if r.names == nil {
		r.names = make(map[string][]int)
	}
	r.names[name] = append([]int(nil), shape...)
	r.mu.Unlock()
	r.fill(name, shape, 0, dst)
	return nil
}

// Float32Rows makes rows of the tensor name of shape want (the same values as Float32Shaped).
func (r *RandomSource) Float32Rows(name string, want []int, rows []int, dst []float32) error {
	if len(want) == 0 || want[0] == 0 {
		return errNoShape
	}
	r.mu.Lock()
	if r.names == nil {
		r.names = make(map[string][]int)
	}
	r.names[name] = append([]int(nil), want...)
	r.mu.Unlock()
	rowLen := len1(want) / want[0]
	for i, row := range rows {
		r.fill(name, want, row, dst[i*rowLen:(i+1)*rowLen])
	}
	return nil
}

// fill writes values of tensor name (of the given shape) from row first on into out. Each row
// has its own generator, so rows can be made alone.
func (r *RandomSource) fill(name string, shape []int, first int, out []float32) {
	h := fnv.New64a()
	h.Write([]byte(name))
	key := h.Sum64()
	n := len1(shape)
	rowLen := n
	if len(shape) > 1 {
		rowLen = n / shape[0]
	}
	fanIn := 1
	if len(shape) > 1 {
		fanIn = rowLen
	}
	bound := float32(1 / math.Sqrt(float64(fanIn)))
	isNormWeight := len(shape) == 1 && len(name) > 7 && name[len(name)-7:] == ".weight"
	for off := 0; off < len(out); off += rowLen {
		rng := rand.New(rand.NewPCG(r.Seed, key+uint64(first+off/rowLen)))
		seg := out[off:min(off+rowLen, len(out))]
		for i := range seg {
			v := (rng.Float32()*2 - 1) * bound
			if isNormWeight {
				v = 1 + 0.1*v
			}
			seg[i] = v
		}
	}
}

type noShapeError struct{}

func (noShapeError) Error() string { return "a random source needs the tensor's shape" }

var errNoShape error = noShapeError{}
