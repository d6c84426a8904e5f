package weights

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
)

// TensorSource is the least a model needs from its weights: named float32 tensors. *File,
// *Set and *MemSource satisfy it, and so does anything that can produce tensors by name (the
// model packages' constructors take one).
type TensorSource interface {
	// Float32 returns the tensor called name as float32 values and its shape.
	Float32(name string) ([]float32, []int, error)
	// Names lists the tensors the source holds.
	Names() []string
}

// Source is where a model takes its parameters from: a safetensors File, a sharded Set, or
// tensors held in memory (MemSource). Float32 returns a slice the caller owns unless the
// source documents otherwise.
type Source interface {
	// Float32 returns the tensor called name as float32 values and its shape.
	Float32(name string) ([]float32, []int, error)
	// Info describes the tensor called name.
	Info(name string) (TensorInfo, bool)
	// Names lists every tensor name, sorted.
	Names() []string
}

var (
	_ Source = (*File)(nil)
	_ Source = (*Set)(nil)
	_ Source = (*MemSource)(nil)
)

type memTensor struct {
	shape []int
	data  []float32
}

// MemSource is a Source backed by float32 tensors in memory, for models built from random or
// computed parameters (benchmarks of full-size models, tests). The zero value is ready to use
// and it is safe for concurrent use.
type MemSource struct {
	// NoCopy makes Float32 return the stored slice itself instead of a copy, saving memory for
	// large models; callers must then not modify it.
	NoCopy bool

	mu sync.RWMutex
	m  map[string]memTensor
}

// NewMemSource returns an empty MemSource.
func NewMemSource() *MemSource { return &MemSource{} }

// Add stores data under name with the given shape, replacing any tensor of that name. The
// source keeps data itself (no copy). It returns an error, storing nothing, if len(data) is not
// the product of shape.
func (m *MemSource) Add(name string, shape []int, data []float32) error {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("weights: MemSource.Add(%q): negative dimension in shape %v", name, shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return fmt.Errorf("weights: MemSource.Add(%q): shape %v is too large", name, shape)
		}
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("weights: MemSource.Add(%q): shape %v has %d elements, data has %d", name, shape, n, len(data))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]memTensor)
	}
	m.m[name] = memTensor{shape: slices.Clone(shape), data: data}
	return nil
}

// Delete removes the tensor called name, if present.
func (m *MemSource) Delete(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, name)
}

// Len returns the number of tensors.
func (m *MemSource) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m)
}

// Has reports whether a tensor called name is stored.
func (m *MemSource) Has(name string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.m[name]
	return ok
}

// Float32 returns the tensor called name (a copy unless NoCopy is set) and a copy of its shape.
func (m *MemSource) Float32(name string) ([]float32, []int, error) {
	m.mu.RLock()
	t, ok := m.m[name]
	m.mu.RUnlock()
	if !ok {
		return nil, nil, fmt.Errorf("weights: in-memory source: %w: %q", ErrNotFound, name)
	}
	if m.NoCopy {
		return t.data, slices.Clone(t.shape), nil
	}
	return slices.Clone(t.data), slices.Clone(t.shape), nil
}

// Float32Into copies the tensor called name into dst, whose length must equal its size.
func (m *MemSource) Float32Into(name string, dst []float32) error {
	m.mu.RLock()
	t, ok := m.m[name]
	m.mu.RUnlock()
	if !ok {
		return fmt.Errorf("weights: in-memory source: %w: %q", ErrNotFound, name)
	}
	if len(dst) != len(t.data) {
		return fmt.Errorf("weights: in-memory source: tensor %q has %d elements (shape %v), destination has %d", name, len(t.data), t.shape, len(dst))
	}
	copy(dst, t.data)
	return nil
}

// Info describes the tensor called name as an F32 tensor (Begin 0, End its byte size).
func (m *MemSource) Info(name string) (TensorInfo, bool) {
	m.mu.RLock()
	t, ok := m.m[name]
	m.mu.RUnlock()
	if !ok {
		return TensorInfo{}, false
	}
	return TensorInfo{Name: name, DType: F32, Shape: slices.Clone(t.shape), End: 4 * int64(len(t.data))}, true
}

// Names returns the stored tensor names, sorted.
func (m *MemSource) Names() []string {
	m.mu.RLock()
	names := make([]string, 0, len(m.m))
	for n := range m.m {
		names = append(names, n)
	}
	m.mu.RUnlock()
	sort.Strings(names)
	return names
}

// Float32Rows copies rows of the tensor called name, indexed along its first dimension, into
// dst. The tensor must have the shape want.
func (m *MemSource) Float32Rows(name string, want []int, rows []int, dst []float32) error {
	data, shape, err := m.Float32(name)
	if err != nil {
		return err
	}
	if !slices.Equal(shape, want) {
		return fmt.Errorf("weights: tensor %q has shape %v, want %v", name, shape, want)
	}
	rowLen := len(data) / max(shape[0], 1)
	if len(dst) != len(rows)*rowLen {
		return fmt.Errorf("weights: %d rows of tensor %q need %d values, destination has %d", len(rows), name, len(rows)*rowLen, len(dst))
	}
	for i, r := range rows {
		if r < 0 || r >= shape[0] {
			return fmt.Errorf("weights: row %d of tensor %q is outside [0, %d)", r, name, shape[0])
		}
		copy(dst[i*rowLen:(i+1)*rowLen], data[r*rowLen:(r+1)*rowLen])
	}
	return nil
}
