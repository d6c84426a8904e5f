package nn

import (
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
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(r.Seed, h.Sum64()))
	n := len1(shape)
	fanIn := 1
	if len(shape) > 1 {
		fanIn = n / shape[0]
	}
	bound := float32(1 / math.Sqrt(float64(fanIn)))
	out := make([]float32, n)
	isNormWeight := len(shape) == 1 && len(name) > 7 && name[len(name)-7:] == ".weight"
	for i := range out {
		v := (rng.Float32()*2 - 1) * bound
		if isNormWeight {
			v = 1 + 0.1*v
		}
		out[i] = v
	}
	return out, nil
}

type noShapeError struct{}

func (noShapeError) Error() string { return "a random source needs the tensor's shape" }

var errNoShape error = noShapeError{}
