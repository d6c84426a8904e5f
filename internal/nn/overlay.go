package nn

import (
	"fmt"
	"sync"

	"gorgonia.org/tensor"

	"github.com/sdxs-go/sdxs/internal/kernels"
	"github.com/sdxs-go/sdxs/weights"
)

// Override computes the value a parameter takes in an overlay from its base value, which it
// must not modify. shape is the parameter's shape.
type Override func(name string, shape []int, base []float32) ([]float32, error)

// overlay is the part of Params that an overlay adds: the parameters it replaces, the
// function that replaces them, and the parameters everything else comes from.
type overlay struct {
	parent *Params
	names  map[string]bool
	fn     Override

	mu      sync.Mutex
	vals    map[string]*tensor.Dense
	derived map[string][]float32
	bf16    map[string][]*kernels.BF16Matrix
}

// Overlay returns parameters that read like p except for the named ones, whose values are
// fn(base value), computed on first use and held by the overlay. Every other parameter, and
// every value derived from one (Winograd-transformed weights), is p's own, shared. A graph
// built over the overlay sees the replaced weights; graphs built over p are unaffected.
func (p *Params) Overlay(names []string, fn Override) *Params {
	o := &overlay{parent: p, names: make(map[string]bool, len(names)), fn: fn,
		vals: make(map[string]*tensor.Dense), derived: make(map[string][]float32)}
	for _, n := range names {
		o.names[n] = true
	}
	return &Params{src: p.src, over: o}
}

// Overridden reports whether the parameter name is replaced by an overlay.
func (p *Params) Overridden(name string) bool {
	return p.over != nil && p.over.names[name]
}

// replaced computes (once) the overlay's value of the parameter name.
// The caller holds o.mu.
func (o *overlay) replaced(name string, shape []int) (*tensor.Dense, error) {
	if v, ok := o.vals[name]; ok {
		if !equalShape(v.Shape(), shape) {
			return nil, &ShapeError{Name: name, Want: shape, Got: v.Shape()}
		}
		return v, nil
	}
	base, err := o.parent.baseValue(name, shape)
	if err != nil {
		return nil, err
	}
	data, err := o.fn(name, shape, base)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	if len(data) != len1(shape) {
		return nil, fmt.Errorf("tensor %q: the override returned %d values for shape %v", name, len(data), shape)
	}
	d := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	o.vals[name] = d
	return d, nil
}

// get is Get for an overlay.
func (o *overlay) get(name string, shape []int) (*tensor.Dense, error) {
	if !o.names[name] {
		return o.parent.Get(name, shape)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.replaced(name, shape)
}

// derivedParam is Params.derivedParam for an overlay: a replaced parameter's derived value is
// computed from the replaced value and held by the overlay (the replaced value itself is then
// dropped unless a graph asked for it directly).
func (o *overlay) derivedParam(name, tag string, shape []int, fn func([]float32) []float32) ([]float32, error) {
	if !o.names[name] {
		return o.parent.derivedParam(name, tag, shape, fn)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	key := name + "#" + tag
	if v, ok := o.derived[key]; ok {
		return v, nil
	}
	_, kept := o.vals[name]
	d, err := o.replaced(name, shape)
	if err != nil {
		return nil, err
	}
	v := fn(d.Float32s())
	if !kept {
		delete(o.vals, name)
	}
	o.derived[key] = v
	return v, nil
}

// baseValue returns the value of the parameter name without keeping it: p's cached value if a
// graph loaded it, else a fresh read from the source. The caller must not modify it.
func (p *Params) baseValue(name string, shape []int) ([]float32, error) {
	if p.over != nil {
		// An overlay of an overlay reads its parent's values.
		if p.over.names[name] {
			p.over.mu.Lock()
			defer p.over.mu.Unlock()
			d, err := p.over.replaced(name, shape)
			if err != nil {
				return nil, err
			}
			return d.Float32s(), nil
		}
		return p.over.parent.baseValue(name, shape)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.vals[name]; ok {
		if !equalShape(v.Shape(), shape) {
			return nil, &ShapeError{Name: name, Want: shape, Got: v.Shape()}
		}
		return v.Float32s(), nil
	}
	return p.load(name, shape)
}

// Shape returns the shape of the parameter name in the weights and whether they have it: from
// the source's header when it describes its tensors, else from a value already loaded, else
// from a RandomSource's record of what it made (only after a graph asked for it).
func (p *Params) Shape(name string) ([]int, bool) {
	if p.over != nil {
		return p.over.parent.Shape(name)
	}
	if inf, ok := p.src.(interface {
		Info(name string) (weights.TensorInfo, bool)
	}); ok {
		ti, found := inf.Info(name)
		if !found {
			return nil, false
		}
		return ti.Shape, true
	}
	p.mu.Lock()
	v, ok := p.vals[name]
	p.mu.Unlock()
	if ok {
		return v.Shape().Clone(), true
	}
	if rs, ok := p.src.(*RandomSource); ok {
		if s := rs.Shape(name); s != nil {
			return s, true
		}
	}
	for _, n := range p.src.Names() {
		if n == name {
			_, s, err := p.src.Float32(name)
			return s, err == nil
		}
	}
	return nil, false
}
