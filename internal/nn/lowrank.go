package nn

import (
	"fmt"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// LowRank is a low-rank update of a layer, ΔW = Scale·B·A, run unfused: the layer's output
// gains Scale·B·(A·x) (for a convolution, A is a convolution with the layer's kernel, stride
// and padding to Rank channels, and B a 1×1 convolution back).
type LowRank struct {
	// Rank is r.
	Rank int
	// A is [Rank, In·kh·kw], B is [Out, Rank].
	A, B []float32
	// Scale multiplies the update.
	Scale float32
}

// WithLowRank returns parameters that read like p and whose graphs add, to each layer named in
// branches (by its path without ".weight": "down_blocks.1.resnets.0.conv1"), the sum of its
// low-rank updates as an unfused branch. p's own graphs are unaffected.
func (p *Params) WithLowRank(branches map[string][]LowRank) *Params {
	q := p.Overlay(nil, nil)
	q.lowRank = branches
	return q
}

// lowRankBranch is the concatenation of a layer's low-rank updates: A [R, In] and the scaled
// B [Out, R], R the sum of their ranks.
type lowRankBranch struct {
	rank int
	a, b []float32
}

// branch returns the layer's low-rank branch (nil for none), checking it against the layer's
// input width in (times kh·kw) and output width out.
func (p *Params) branch(name string, in, out int) *lowRankBranch {
	lrs := p.lowRank[name]
	if len(lrs) == 0 {
		return nil
	}
	br := &lowRankBranch{}
	for _, lr := range lrs {
		br.rank += lr.Rank
	}
	br.a = make([]float32, 0, br.rank*in)
	br.b = make([]float32, out*br.rank)
	col := 0
	for _, lr := range lrs {
		if len(lr.A) != lr.Rank*in || len(lr.B) != out*lr.Rank {
			fail("nn: low-rank update of %s: A has %d values and B %d, the layer takes %d×%d with rank %d", name, len(lr.A), len(lr.B), out, in, lr.Rank)
		}
		br.a = append(br.a, lr.A...)
		for o := 0; o < out; o++ {
			for k := 0; k < lr.Rank; k++ {
				br.b[o*br.rank+col+k] = lr.Scale * lr.B[o*lr.Rank+k]
			}
		}
		col += lr.Rank
	}
	return br
}

// constant returns a node holding data with the given shape.
func (b *Builder) constant(name string, data []float32, shape ...int) *Node {
	v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	return gorgonia.NewTensor(b.st.g, tensor.Float32, len(shape), gorgonia.WithShape(shape...),
		gorgonia.WithName(fmt.Sprintf("%s#%d", name, b.st.nextConst())), gorgonia.WithValue(v))
}

func (st *buildState) nextConst() uint64 {
	st.nextID++
	return st.nextID
}
