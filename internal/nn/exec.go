package nn

import (
	"context"
	"fmt"
	"sort"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Program is a compiled graph: its op nodes in topological order, each with its output buffer
// and its inputs' buffers resolved once. Intermediate buffers are planned by liveness: a buffer
// is handed to a later node as soon as its last reader has run, and element-wise ops write in
// place over an input that dies with them. Running a Program allocates nothing.
//
// A Program is safe for concurrent use; concurrent runs are serialised, and a run waiting for
// another to finish returns as soon as its context ends.
type Program struct {
	g       *gorgonia.ExprGraph
	steps   []step
	inputs  map[string][]float32
	inShape map[string][]int
	outputs map[string]outRef
	scratch []float32
	arena   int           // floats held by intermediate buffers
	sem     chan struct{} // holds one token while a run uses the buffers
}

type step struct {
	o   *op
	out []float32
	ins [][]float32
}

type outRef struct {
	data  []float32
	shape []int
}

// block is a planned intermediate buffer.
type block struct {
	data []float32
	refs int
}

func compile(st *buildState, outs map[string]*Node) (*Program, error) {
	sorted, err := gorgonia.Sort(st.g)
	if err != nil {
		return nil, fmt.Errorf("nn: sorting graph: %w", err)
	}
	// gorgonia.Sort puts roots first; execution goes from leaves to roots.
	order := make([]*Node, 0, len(sorted))
	for i := len(sorted) - 1; i >= 0; i-- {
		order = append(order, sorted[i])
	}
	// Keep only nodes the outputs depend on.
	needed := make(map[int64]bool)
	var mark func(n *Node)
	mark = func(n *Node) {
		if needed[n.ID()] {
			return
		}
		needed[n.ID()] = true
		for _, c := range st.kids[n.ID()] {
			mark(c)
		}
	}
	for _, n := range outs {
		mark(n)
	}
	isOutput := make(map[int64]bool)
	for _, n := range outs {
		isOutput[n.ID()] = true
	}
	pos := make(map[int64]int)
	var ops []*Node
	for _, n := range order {
		if !needed[n.ID()] || n.Op() == nil {
			continue
		}
		if _, ok := n.Op().(*op); !ok {
			return nil, fmt.Errorf("nn: node %v has op %T, which the program cannot run", n, n.Op())
		}
		pos[n.ID()] = len(ops)
		ops = append(ops, n)
	}
	lastUse := make(map[int64]int)
	for i, n := range ops {
		for _, c := range st.kids[n.ID()] {
			lastUse[c.ID()] = i
		}
	}
	for id := range isOutput {
		lastUse[id] = len(ops)
	}

	p := &Program{
		g:       st.g,
		inputs:  make(map[string][]float32),
		inShape: make(map[string][]int),
		outputs: make(map[string]outRef),
		sem:     make(chan struct{}, 1),
	}
	for name, n := range st.inputs {
		d := n.Value().(*tensor.Dense)
		p.inputs[name] = d.Float32s()
		p.inShape[name] = shapeOf(n)
	}

	// Plan the buffers.
	owner := make(map[int64]*block)
	var free []*block
	take := func(size int) *block {
		best := -1
		for i, b := range free {
			if cap(b.data) >= size && (best < 0 || cap(b.data) < cap(free[best].data)) {
				best = i
			}
		}
		if best >= 0 {
			b := free[best]
			free = append(free[:best], free[best+1:]...)
			b.data = b.data[:size]
			return b
		}
		p.arena += size
		return &block{data: make([]float32, size)}
	}
	data := func(n *Node) []float32 {
		if b, ok := owner[n.ID()]; ok {
			return b.data
		}
		v, ok := n.Value().(*tensor.Dense)
		if !ok || v.Dtype() != tensor.Float32 {
			panic(fmt.Sprintf("nn: node %s has no float32 value", describe(n)))
		}
		return v.Float32s()
	}
	maxScratch := 0
	for i, n := range ops {
		o := n.Op().(*op)
		size := o.out.TotalSize()
		kids := st.kids[n.ID()]
		ins := make([][]float32, len(kids))
		for j, c := range kids {
			ins[j] = data(c)
		}
		var ob *block
		if ip := o.k.inplace(); ip >= 0 {
			c := kids[ip]
			if b, ok := owner[c.ID()]; ok && lastUse[c.ID()] == i && b.refs == 1 && len(b.data) == size && !isOutput[c.ID()] {
				// Steal the dying input's buffer, unless another input shares it.
				shared := false
				for j, c2 := range kids {
					if j != ip && owner[c2.ID()] == b {
						shared = true
					}
				}
				if !shared {
					ob = b
					b.refs++
				}
			}
		}
		if ob == nil {
			ob = take(size)
			ob.refs = 1
		}
		// Release inputs that die here (a node may appear twice among the children).
		seen := make(map[int64]bool)
		for _, c := range kids {
			if seen[c.ID()] {
				continue
			}
			seen[c.ID()] = true
			if b, ok := owner[c.ID()]; ok && lastUse[c.ID()] == i {
				b.refs--
				if b.refs == 0 {
					free = append(free, b)
				}
			}
		}
		owner[n.ID()] = ob
		p.steps = append(p.steps, step{o: o, out: ob.data, ins: ins})
		maxScratch = max(maxScratch, o.k.scratchSize())
	}
	p.scratch = make([]float32, maxScratch)
	for name, n := range outs {
		p.outputs[name] = outRef{data: data(n), shape: shapeOf(n)}
	}
	return p, nil
}

// Graph returns the Gorgonia graph the program runs.
func (p *Program) Graph() *gorgonia.ExprGraph { return p.g }

// Steps returns the number of op nodes the program runs.
func (p *Program) Steps() int { return len(p.steps) }

// ArenaBytes returns the bytes held by the program's intermediate buffers and scratch.
func (p *Program) ArenaBytes() int64 { return int64(p.arena+len(p.scratch)) * 4 }

// OutputShape returns the shape of the named output, or nil if there is none.
func (p *Program) OutputShape(name string) []int {
	if o, ok := p.outputs[name]; ok {
		return o.shape
	}
	return nil
}

// Run sets the inputs, runs every step and copies the named outputs into outs (whose slices
// must have the outputs' sizes). It checks ctx while it waits for another run of the program
// to finish, and between steps.
func (p *Program) Run(ctx context.Context, inputs map[string][]float32, outs map[string][]float32) error {
	if ctx == nil {
		return errNilContext
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.sem }()
	for name, buf := range p.inputs {
		v, ok := inputs[name]
		if !ok {
			return fmt.Errorf("nn: input %q not given", name)
		}
		if len(v) != len(buf) {
			return fmt.Errorf("nn: input %q has %d values, want %d (shape %v)", name, len(v), len(buf), p.inShape[name])
		}
		copy(buf, v)
	}
	for name := range inputs {
		if _, ok := p.inputs[name]; !ok {
			return fmt.Errorf("nn: unknown input %q", name)
		}
	}
	for name, dst := range outs {
		o, ok := p.outputs[name]
		if !ok {
			return fmt.Errorf("nn: unknown output %q", name)
		}
		if len(dst) != len(o.data) {
			return fmt.Errorf("nn: output %q has %d values, buffer has %d", name, len(o.data), len(dst))
		}
	}
	for i := range p.steps {
		if i&15 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		s := &p.steps[i]
		s.o.k.run(s.out, s.ins, p.scratch)
	}
	for name, dst := range outs {
		copy(dst, p.outputs[name].data)
	}
	return nil
}

// OutputNames lists the program's outputs.
func (p *Program) OutputNames() []string {
	var out []string
	for n := range p.outputs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// MACs returns the multiply-adds of one run: those of convolutions and linear layers, and
// those of attention score and value products.
func (p *Program) MACs() (convLinear, attention int64) {
	for _, s := range p.steps {
		switch k := s.o.k.(type) {
		case *convKernel:
			convLinear += int64(k.cout) * int64(k.cin*k.k*k.k) * int64(k.ho*k.wo)
		case *linearKernel:
			convLinear += int64(k.n) * int64(k.in) * int64(k.out)
		case *attentionKernel:
			attention += 2 * int64(k.nq) * int64(k.nk) * int64(k.c)
		}
	}
	return convLinear, attention
}
