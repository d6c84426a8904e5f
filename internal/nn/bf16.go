package nn

import (
	"errors"
	"fmt"

	"github.com/sdxs-go/sdxs/internal/kernels"
	"github.com/sdxs-go/sdxs/weights"
)

// Precision is the arithmetic of a model's convolutions and linear layers.
type Precision int

const (
	// FP32 computes every product in float32 (the default).
	FP32 Precision = iota
	// BF16 holds the weights of convolutions and linear layers in bfloat16 (converted once, at
	// load, from whatever the file holds; their float32 copies are not kept) and multiplies
	// them by activations rounded to bfloat16, accumulating in float32, as PyTorch's
	// torch.bfloat16 does; attention's products too where the score matrix has at least
	// attnMinBF16 entries. Everything else (norms, softmax, smaller attention products,
	// residual sums, biases, activations) stays float32, and so do the products of the
	// convolutions that run with Winograd (large 3×3 layers): rounding their transformed
	// weights to bfloat16 costs eight times the error of rounding the weights themselves
	// (relative L2 1.8e-2 against 2.3e-3), and bf16 im2col runs them 1.8 times slower than
	// float32 Winograd. In the lazy mode (conv.LazyFast) they hold their weights as bfloat16
	// taps and transform them, exactly, in float32 on every run; otherwise they keep a float32
	// transform.
	BF16
)

// String returns "fp32" or "bf16".
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("Precision(%d)", int(p))
}

// ParsePrecision parses "fp32" or "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32", "":
		return FP32, nil
	case "bf16":
		return BF16, nil
	}
	return FP32, fmt.Errorf("unknown precision %q (want fp32 or bf16)", s)
}

// SetPrecision sets the precision of the graphs built over p from now on. Set it before the
// first build: weights already loaded stay as they are. An overlay has its parent's precision.
func (p *Params) SetPrecision(pr Precision) {
	if p.over != nil {
		return
	}
	p.mu.Lock()
	p.precision = pr
	p.mu.Unlock()
}

// Precision returns the precision of the graphs built over p.
func (p *Params) Precision() Precision {
	if p.over != nil {
		return p.over.parent.Precision()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.precision
}

// Bytes returns the memory held by the parameters loaded so far: float32 values, derived values
// (Winograd transforms) and bf16 weights. An overlay counts only what it holds itself.
func (p *Params) Bytes() int64 {
	var n int64
	if p.over != nil {
		o := p.over
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, v := range o.vals {
			n += int64(v.Shape().TotalSize()) * 4
		}
		for _, v := range o.derived {
			n += int64(len(v)) * 4
		}
		for _, vs := range o.bf16 {
			for _, v := range vs {
				n += v.Bytes()
			}
		}
		return n
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.vals {
		n += int64(v.Shape().TotalSize()) * 4
	}
	for _, v := range p.derivedVals {
		n += int64(len(v)) * 4
	}
	for _, vs := range p.bf16 {
		for _, v := range vs {
			n += v.Bytes()
		}
	}
	return n
}

// bf16Param returns (converting it once) the parameter name of shape [rows, …] as a bf16 matrix
// of rows × (the rest), laid out as the left operand of its products (left) or as the right one
// by its transpose. The float32 value is not kept unless a graph asked for it directly.
func (p *Params) bf16Param(name string, shape []int, left bool) (*kernels.BF16Matrix, error) {
	key, conv := "bf16r", func(data []float32) []*kernels.BF16Matrix {
		return []*kernels.BF16Matrix{toBF16Matrix(data, shape, left)}
	}
	if left {
		key = "bf16l"
	}
	v, err := p.bf16Derived(name, key, shape, conv)
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

// bf16Derived returns (computing it once and caching it under tag) bf16 matrices made by conv
// from the parameter name of the given shape. The float32 value is not kept unless a graph
// asked for it directly.
func (p *Params) bf16Derived(name, tag string, shape []int, conv func([]float32) []*kernels.BF16Matrix) ([]*kernels.BF16Matrix, error) {
	key := name + "#" + tag
	if o := p.over; o != nil {
		if !o.names[name] {
			return o.parent.bf16Derived(name, tag, shape, conv)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if v, ok := o.bf16[key]; ok {
			return v, nil
		}
		_, kept := o.vals[name]
		d, err := o.replaced(name, shape)
		if err != nil {
			return nil, err
		}
		v := conv(d.Float32s())
		if !kept {
			delete(o.vals, name)
		}
		if o.bf16 == nil {
			o.bf16 = make(map[string][]*kernels.BF16Matrix)
		}
		o.bf16[key] = v
		return v, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.bf16[key]; ok {
		return v, nil
	}
	data, err := p.sourceLocked(name, shape)
	if err != nil {
		return nil, err
	}
	v := conv(data)
	if p.bf16 == nil {
		p.bf16 = make(map[string][]*kernels.BF16Matrix)
	}
	p.bf16[key] = v
	return v, nil
}

func toBF16Matrix(data []float32, shape []int, left bool) *kernels.BF16Matrix {
	rows := shape[0]
	cols := len1(shape) / max(rows, 1)
	if left {
		return kernels.NewBF16Left(data, rows, cols)
	}
	return kernels.NewBF16Right(data, rows, cols)
}

// bf16Placeholder is the node that stands for a bf16 weight among an op's inputs (the op reads
// the weight itself), so that the inputs keep their positions.
func (b *Builder) bf16Placeholder(name string) *Node {
	return b.constant(name+"#bf16", []float32{0}, 1)
}

// linearBF16 is Linear with the bf16 weight "<name>.weight" [out, in] of this builder.
func (b *Builder) linearBF16(name string, x *Node, out int, bias, residual *Node) *Node {
	xs := shapeOf(x)
	full := b.Path(name + ".weight")
	bw, err := b.st.params.bf16Param(full, []int{out, xs[1]}, false)
	if err != nil {
		panic(buildError{err})
	}
	l := &linearKernel{n: xs[0], in: xs[1], out: out, bw: bw}
	ins := []*Node{x, b.bf16Placeholder(full)}
	if bias != nil {
		l.bias = true
		ins = append(ins, bias)
	}
	if residual != nil {
		if rs := shapeOf(residual); !equalShape(rs, []int{xs[0], out}) {
			fail("nn: linear %s: residual has shape %v, want %v", full, rs, []int{xs[0], out})
		}
		l.residual = true
		ins = append(ins, residual)
	}
	return b.apply("linear", l, []int{xs[0], out}, ins...)
}

// convBF16 is conv2d with the bf16 weight "<name>.weight" of shape ws of this builder,
// computed by im2col and a bf16 product (never Winograd).
func (b *Builder) convBF16(name string, x *Node, ws []int, bias *Node, stride, pad int, opts ConvOpts) *Node {
	full := b.Path(name + ".weight")
	bw, err := b.st.params.bf16Param(full, ws, true)
	if err != nil {
		panic(buildError{err})
	}
	n := b.conv2d(x, b.bf16Placeholder(full), ws, nil, bias, stride, pad, opts)
	n.Op().(*op).k.(*convKernel).bw = bw
	return n
}

// Sources that can decode a tensor into a buffer: a weights file or set (checked against its
// header's shape) and RandomSource.
type (
	intoSource interface {
		Float32Into(name string, dst []float32) error
		Info(name string) (weights.TensorInfo, bool)
	}
	shapedIntoSource interface {
		Float32ShapedInto(name string, shape []int, dst []float32) error
	}
)

// loadScratch is load into a buffer that p reuses until the end of the current build (so that
// converting weights to bf16 leaves no float32 garbage behind to swell the peak memory), where
// the source can decode into one; else it is load. The caller holds p.mu and must not keep the
// result.
func (p *Params) loadScratch(name string, shape []int) ([]float32, error) {
	n := len1(shape)
	buf := func() []float32 {
		if cap(p.scratch) < n {
			p.scratch = make([]float32, n)
		}
		return p.scratch[:n]
	}
	var err error
	var data []float32
	switch src := p.src.(type) {
	case shapedIntoSource:
		data = buf()
		err = src.Float32ShapedInto(name, shape, data)
	case intoSource:
		info, ok := src.Info(name)
		if !ok {
			return nil, &MissingError{Name: name, Err: errors.New("not in the weights")}
		}
		if !equalShape(info.Shape, shape) {
			return nil, &ShapeError{Name: name, Want: shape, Got: info.Shape}
		}
		data = buf()
		err = src.Float32Into(name, data)
	default:
		return p.load(name, shape)
	}
	if err != nil {
		return nil, &MissingError{Name: name, Err: err}
	}
	if p.used == nil {
		p.used = make(map[string]bool)
	}
	p.used[name] = true
	return data, nil
}

// releaseScratch drops the buffer of loadScratch (at the end of a build).
func (p *Params) releaseScratch() {
	if p.over != nil {
		p.over.parent.releaseScratch()
		return
	}
	p.mu.Lock()
	p.scratch = nil
	p.mu.Unlock()
}
