package nn

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// kernel is the arithmetic of one op: it reads its inputs and writes the whole output.
type kernel interface {
	// run computes the output. scratch has at least scratchSize() floats and may hold anything.
	run(out []float32, in [][]float32, scratch []float32)
	// scratchSize returns how many floats of scratch memory run needs.
	scratchSize() int
	// inplace returns the index of the input whose buffer the output may share, or -1.
	inplace() int
}

// op adapts a kernel to gorgonia.Op. Each op is unique (its hash includes a serial number), so
// Gorgonia never merges two layers that happen to have the same parameters.
type op struct {
	kind   string
	serial uint64
	out    tensor.Shape
	inDims []int
	k      kernel
}

var _ gorgonia.Op = (*op)(nil)
var _ gorgonia.UsePreallocDoer = (*op)(nil)

// Arity is the number of inputs.
func (o *op) Arity() int { return len(o.inDims) }

// Type is the op's type: float32 tensors of the inputs' ranks to a float32 tensor.
func (o *op) Type() hm.Type {
	ts := make([]hm.Type, 0, len(o.inDims)+1)
	for _, d := range o.inDims {
		ts = append(ts, gorgonia.TensorType{Dims: d, Of: tensor.Float32})
	}
	ts = append(ts, gorgonia.TensorType{Dims: len(o.out), Of: tensor.Float32})
	return hm.NewFnType(ts...)
}

// InferShape returns the output shape, fixed when the graph was built.
func (o *op) InferShape(...gorgonia.DimSizer) (tensor.Shape, error) { return o.out.Clone(), nil }

// Do computes the op into a newly allocated tensor.
func (o *op) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	out := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(o.out...))
	return o.UsePreallocDo(out, vals...)
}

// UsePreallocDo computes the op into prealloc.
func (o *op) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	if len(vals) != len(o.inDims) {
		return nil, fmt.Errorf("nn: %s: %d inputs, want %d", o.kind, len(vals), len(o.inDims))
	}
	outT, ok := prealloc.(*tensor.Dense)
	if !ok || outT.Dtype() != tensor.Float32 || outT.Shape().TotalSize() != o.out.TotalSize() {
		return nil, fmt.Errorf("nn: %s: output must be a float32 tensor of shape %v", o.kind, o.out)
	}
	ins := make([][]float32, len(vals))
	for i, v := range vals {
		d, ok := v.(*tensor.Dense)
		if !ok || d.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("nn: %s: input %d is not a float32 tensor", o.kind, i)
		}
		ins[i] = d.Float32s()
	}
	var scratch []float32
	if n := o.k.scratchSize(); n > 0 {
		scratch = make([]float32, n)
	}
	o.k.run(outT.Float32s(), ins, scratch)
	return outT, nil
}

// ReturnsPtr is false: the op writes a new value.
func (o *op) ReturnsPtr() bool { return false }

// CallsExtern is false: everything runs in Go.
func (o *op) CallsExtern() bool { return false }

// OverwritesInput is -1: Gorgonia's machines must not alias inputs (the Program plans its own
// in-place reuse).
func (o *op) OverwritesInput() int { return -1 }

// WriteHash writes the op's identity.
func (o *op) WriteHash(h hash.Hash) {
	h.Write([]byte(o.kind))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], o.serial)
	h.Write(b[:])
}

// Hashcode returns a hash of the op's identity.
func (o *op) Hashcode() uint32 {
	h := fnv.New32a()
	o.WriteHash(h)
	return h.Sum32()
}

func (o *op) String() string { return fmt.Sprintf("%s#%d%v", o.kind, o.serial, o.out) }

// apply adds an op node to the graph.
func (b *Builder) apply(kind string, k kernel, out []int, ins ...*Node) *Node {
	b.st.nextID++
	o := &op{kind: kind, serial: b.st.nextID, out: tensor.Shape(append([]int(nil), out...)), k: k}
	for _, n := range ins {
		o.inDims = append(o.inDims, n.Dims())
	}
	n, err := gorgonia.ApplyOp(o, ins...)
	if err != nil {
		fail("nn: %s: %v", kind, err)
	}
	b.st.kids[n.ID()] = ins
	return n
}
