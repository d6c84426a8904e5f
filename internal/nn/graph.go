// Package nn builds the models of this module as Gorgonia expression graphs and runs them.
//
// A model is described once, as a function of a *Builder, in the words of diffusers: parameters
// are bound by their module path (b.Sub("down_blocks").Sub("0").Param("conv1.weight", ...)) and
// layers are the custom Gorgonia ops of this package (Conv2d, Linear, GroupNorm, Attention, ...).
// Build turns that description into a gorgonia.ExprGraph and compiles it into a Program: the
// nodes in topological order, with every intermediate buffer allocated once and reused by
// liveness, so that running the program allocates nothing.
//
// Every op is a real gorgonia.Op (it also implements gorgonia.UsePreallocDoer), so the same graph
// runs under Gorgonia's TapeMachine; the Program is the lean executor used in production.
package nn

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/sdxs-go/sdxs/internal/kernels"
	"github.com/sdxs-go/sdxs/weights"
)

// Source provides named float32 tensors, such as a safetensors file or a set of them.
type Source = weights.TensorSource

// Params caches the parameters of one model, loaded from a Source, so that graphs built for
// several image sizes share one copy of the weights. It is safe for concurrent use.
type Params struct {
	src  Source
	mu   sync.Mutex
	vals map[string]*tensor.Dense
	// derivedVals caches values computed from parameters (Winograd-transformed weights).
	derivedVals map[string][]float32
	// used records every parameter loaded, kept or not.
	used map[string]bool
	// over, when set, makes these parameters an overlay of others (see Overlay); the fields
	// above are then unused.
	over *overlay
	// lowRank holds unfused low-rank branches by layer (see WithLowRank).
	lowRank map[string][]LowRank
	// precision is the arithmetic of the graphs built over these parameters (SetPrecision);
	// bf16 holds their bf16 weights (see bf16Param).
	precision Precision
	bf16      map[string][]*kernels.BF16Matrix
	// scratch is the buffer of loadScratch during a build.
	scratch []float32
	// The Winograd budget (see winograd_policy.go): the budget if set, the bytes granted, and
	// the grant of each layer asked about.
	winoBudget    int64
	winoBudgetSet bool
	winoSpent     int64
	winoGrants    map[string]bool
	// lazyOff turns the lazy Winograd mode off (for tests and benchmarks that want im2col).
	lazyOff bool
}

// NewParams returns a parameter cache over src.
func NewParams(src Source) *Params {
	return &Params{src: src, vals: make(map[string]*tensor.Dense)}
}

// Get loads (once) the parameter name and checks that it has the wanted shape.
func (p *Params) Get(name string, shape []int) (*tensor.Dense, error) {
	if p.over != nil {
		return p.over.get(name, shape)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.vals[name]; ok {
		if !equalShape(v.Shape(), shape) {
			return nil, &ShapeError{Name: name, Want: shape, Got: v.Shape()}
		}
		return v, nil
	}
	data, err := p.load(name, shape)
	if err != nil {
		return nil, err
	}
	d := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	p.vals[name] = d
	return d, nil
}

// load reads the parameter name from the source and checks its shape.
// The caller holds p.mu.
func (p *Params) load(name string, shape []int) ([]float32, error) {
	var data []float32
	var got []int
	var err error
	if ss, ok := p.src.(ShapedSource); ok {
		data, err = ss.Float32Shaped(name, shape)
		got = shape
	} else {
		data, got, err = p.src.Float32(name)
	}
	if err != nil {
		return nil, &MissingError{Name: name, Err: err}
	}
	if !equalShape(got, shape) {
		return nil, &ShapeError{Name: name, Want: shape, Got: got}
	}
	if p.used == nil {
		p.used = make(map[string]bool)
	}
	p.used[name] = true
	return data, nil
}

// Source returns the source the parameters come from.
func (p *Params) Source() Source { return p.src }

// MarkUsed records that a model read the tensor name directly from the source (not through
// Get), so that Unused does not list it.
func (p *Params) MarkUsed(name string) {
	if p.over != nil {
		p.over.parent.MarkUsed(name)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used == nil {
		p.used = make(map[string]bool)
	}
	p.used[name] = true
}

// sourceLocked returns the float32 values of parameter name, to derive another form from: the
// kept value if a graph asked for it directly before, else the weight decoded into the build's
// reused scratch buffer (not kept once derived: garbage of that size would swell the peak
// memory). The caller holds p.mu and must not keep the slice.
func (p *Params) sourceLocked(name string, shape []int) ([]float32, error) {
	if v, ok := p.vals[name]; ok {
		if !equalShape(v.Shape(), shape) {
			return nil, &ShapeError{Name: name, Want: shape, Got: v.Shape()}
		}
		return v.Float32s(), nil
	}
	return p.loadScratch(name, shape)
}

// derivedParam returns fn of the parameter name (of the given shape), computed once and cached
// under tag. The parameter itself is not kept, unless a graph asked for it directly before.
func (p *Params) derivedParam(name, tag string, shape []int, fn func([]float32) []float32) ([]float32, error) {
	if p.over != nil {
		return p.over.derivedParam(name, tag, shape, fn)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := name + "#" + tag
	if v, ok := p.derivedVals[key]; ok {
		return v, nil
	}
	data, err := p.sourceLocked(name, shape)
	if err != nil {
		return nil, err
	}
	v := fn(data)
	if p.derivedVals == nil {
		p.derivedVals = make(map[string][]float32)
	}
	p.derivedVals[key] = v
	return v, nil
}

// derived returns (computing it once) a value derived from parameters, such as transformed
// weights, cached under key so that every graph of the model shares it.
func (p *Params) derived(key string, compute func() []float32) []float32 {
	if p.over != nil {
		// compute may read replaced parameters: an overlay keeps its own.
		o := p.over
		o.mu.Lock()
		defer o.mu.Unlock()
		if v, ok := o.derived["derived:"+key]; ok {
			return v
		}
		v := compute()
		o.derived["derived:"+key] = v
		return v
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.derivedVals[key]; ok {
		return v
	}
	v := compute()
	if p.derivedVals == nil {
		p.derivedVals = make(map[string][]float32)
	}
	p.derivedVals[key] = v
	return v
}

// Unused lists the tensors of the source whose names start with prefix and that no graph has
// asked for. Names for which ignore returns true are left out.
func (p *Params) Unused(prefix string, ignore func(string) bool) []string {
	if p.over != nil {
		return p.over.parent.Unused(prefix, ignore)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, n := range p.src.Names() {
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		if p.used[n] {
			continue
		}
		if ignore != nil && ignore(n) {
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// MissingError reports a parameter the model needs and the weights do not have.
type MissingError struct {
	Name string
	Err  error
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("tensor %q is missing: %v", e.Name, e.Err)
}

func (e *MissingError) Unwrap() error { return e.Err }

// ShapeError reports a parameter whose shape differs from what the model's config implies.
type ShapeError struct {
	Name      string
	Want, Got []int
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("tensor %q has shape %v, the config implies %v", e.Name, e.Got, e.Want)
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Builder builds one graph. Its methods that take or return *Node panic with a build error on
// misuse; Build recovers those and returns them as errors.
type Builder struct {
	st     *buildState
	prefix string
}

type buildState struct {
	g      *gorgonia.ExprGraph
	params *Params
	inputs map[string]*Node
	kids   map[int64][]*Node // the inputs of every op node, in order
	nextID uint64
}

// Node is a node of the graph: a parameter, an input or the result of an op.
type Node = gorgonia.Node

type buildError struct{ err error }

func fail(format string, args ...any) {
	panic(buildError{fmt.Errorf(format, args...)})
}

// Fail stops the build with err, which Build returns.
func (b *Builder) Fail(err error) { panic(buildError{err}) }

// Sub returns a builder whose parameter names are prefixed with name and a dot.
func (b *Builder) Sub(name string) *Builder {
	p := name
	if b.prefix != "" {
		p = b.prefix + "." + name
	}
	return &Builder{st: b.st, prefix: p}
}

// Subf is Sub with a formatted name.
func (b *Builder) Subf(format string, args ...any) *Builder {
	return b.Sub(fmt.Sprintf(format, args...))
}

// Path returns the full name of a parameter under this builder.
func (b *Builder) Path(name string) string {
	if b.prefix == "" {
		return name
	}
	return b.prefix + "." + name
}

// Param returns the parameter name (under the builder's prefix) with the given shape.
func (b *Builder) Param(name string, shape ...int) *Node {
	full := b.Path(name)
	v, err := b.st.params.Get(full, shape)
	if err != nil {
		panic(buildError{err})
	}
	return gorgonia.NewTensor(b.st.g, tensor.Float32, len(shape), gorgonia.WithShape(shape...),
		gorgonia.WithName(full), gorgonia.WithValue(v))
}

// paramDerived returns a node holding fn of the parameter name (loaded with the given shape),
// shared by every graph of the model; the parameter itself is not kept for it.
func (b *Builder) paramDerived(name, tag string, shape []int, fn func([]float32) []float32) *Node {
	full := b.Path(name)
	v, err := b.st.params.derivedParam(full, tag, shape, fn)
	if err != nil {
		panic(buildError{err})
	}
	return gorgonia.NewTensor(b.st.g, tensor.Float32, 1, gorgonia.WithShape(len(v)),
		gorgonia.WithName(full+"#"+tag), gorgonia.WithValue(tensor.New(tensor.WithShape(len(v)), tensor.WithBacking(v))))
}

// Input declares a graph input, set before every run with Program.SetInput.
func (b *Builder) Input(name string, shape ...int) *Node {
	if _, ok := b.st.inputs[name]; ok {
		fail("input %q declared twice", name)
	}
	v := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(shape...))
	n := gorgonia.NewTensor(b.st.g, tensor.Float32, len(shape), gorgonia.WithShape(shape...),
		gorgonia.WithName("input:"+name), gorgonia.WithValue(v))
	b.st.inputs[name] = n
	return n
}

// Graph returns the Gorgonia graph being built.
func (b *Builder) Graph() *gorgonia.ExprGraph { return b.st.g }

// Build describes a graph with fn, which returns its named outputs, and compiles it.
func Build(params *Params, fn func(b *Builder) map[string]*Node) (prog *Program, err error) {
	useFastBLAS()
	st := &buildState{g: gorgonia.NewGraph(), params: params, inputs: make(map[string]*Node), kids: make(map[int64][]*Node)}
	defer func() {
		if r := recover(); r != nil {
			be, ok := r.(buildError)
			if !ok {
				panic(r)
			}
			prog, err = nil, be.err
		}
	}()
	defer params.releaseScratch()
	outs := fn(&Builder{st: st})
	if len(outs) == 0 {
		return nil, errors.New("nn: graph has no outputs")
	}
	return compile(st, outs)
}

func shapeOf(n *Node) []int { return []int(n.Shape()) }
