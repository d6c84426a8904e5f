package nn

import (
	"fmt"
	"math"

	"github.com/sdxs-go/sdxs/internal/conv"
	"github.com/sdxs-go/sdxs/internal/kernels"
)

// All activations have batch size 1 and no batch dimension: images are [C, H, W], token
// sequences are [N, C].

// ConvOpts are the optional parts of a convolution, fused into the op.
type ConvOpts struct {
	// ChannelBias [Cout] is added to every position of each output channel (a ResNet's
	// projected time embedding).
	ChannelBias *Node
	// Residual [Cout, Ho, Wo] is added to the result.
	Residual *Node
	// Act is an activation applied last ("" for none).
	Act string
}

// Conv2d applies a 2-D convolution to x [Cin, H, W] with weight [Cout, Cin, k, k] and an
// optional bias [Cout] (nil for none).
func (b *Builder) Conv2d(x, w, bias *Node, stride, pad int, opts ConvOpts) *Node {
	return b.conv2d(x, w, shapeOf(w), nil, bias, stride, pad, opts)
}

// conv2d builds a convolution whose weight node w holds either the weights of shape ws or,
// when wino is set, their Winograd transform.
func (b *Builder) conv2d(x, w *Node, ws []int, wino *conv.Winograd, bias *Node, stride, pad int, opts ConvOpts) *Node {
	xs := shapeOf(x)
	if len(xs) != 3 || len(ws) != 4 || ws[1] != xs[0] || ws[2] != ws[3] {
		fail("nn: conv2d %s: input %v does not fit weight %v", w.Name(), xs, ws)
	}
	kk := ws[2]
	ho := (xs[1]+2*pad-kk)/stride + 1
	wo := (xs[2]+2*pad-kk)/stride + 1
	if ho <= 0 || wo <= 0 {
		fail("nn: conv2d %s: input %v too small for kernel %d", w.Name(), xs, kk)
	}
	c := &convKernel{cin: xs[0], h: xs[1], w: xs[2], cout: ws[0], k: kk, stride: stride, pad: pad, ho: ho, wo: wo, act: opts.Act}
	if opts.Act != "" {
		activationFunc(opts.Act) // validates
	}
	if wino != nil {
		c.wino = wino
		c.sumBias = make([]float32, c.cout)
	}
	ins := []*Node{x, w}
	if bias != nil {
		if bs := shapeOf(bias); len1(bs) != ws[0] {
			fail("nn: conv2d bias %s has shape %v, want [%d]", bias.Name(), bs, ws[0])
		}
		c.bias = true
		ins = append(ins, bias)
	}
	if opts.ChannelBias != nil {
		if bs := shapeOf(opts.ChannelBias); len1(bs) != ws[0] {
			fail("nn: conv2d %s: channel bias has shape %v, want %d values", w.Name(), bs, ws[0])
		}
		c.chanBias = true
		ins = append(ins, opts.ChannelBias)
	}
	if opts.Residual != nil {
		if rs := shapeOf(opts.Residual); !equalShape(rs, []int{ws[0], ho, wo}) {
			fail("nn: conv2d %s: residual has shape %v, want %v", w.Name(), rs, []int{ws[0], ho, wo})
		}
		c.residual = true
		ins = append(ins, opts.Residual)
	}
	return b.apply("conv2d", c, []int{ws[0], ho, wo}, ins...)
}

// ConvLayer is Conv2d with the parameters "<name>.weight" and "<name>.bias" of this builder.
func (b *Builder) ConvLayer(name string, x *Node, cout, k, stride, pad int, bias bool) *Node {
	return b.ConvLayerOpts(name, x, cout, k, stride, pad, bias, ConvOpts{})
}

// ConvLayerOpts is ConvLayer with fused extras. A 3×3 convolution that useWinograd selects
// binds the Winograd transform of its weight instead of the weight itself.
func (b *Builder) ConvLayerOpts(name string, x *Node, cout, k, stride, pad int, bias bool, opts ConvOpts) *Node {
	cin := shapeOf(x)[0]
	if br := b.st.params.branch(b.Path(name), cin*k*k, cout); br != nil {
		// An unfused low-rank update: y = conv(x) + B·conv_A(x), the sum fused into B's
		// 1×1 convolution as its residual, the activation (if any) applied last.
		act := opts.Act
		opts.Act = ""
		y := b.convLayerOpts(name, x, cout, k, stride, pad, bias, opts)
		an := b.constant(b.Path(name)+".lora_A", br.a, br.rank, cin, k, k)
		t := b.conv2d(x, an, []int{br.rank, cin, k, k}, nil, nil, stride, pad, ConvOpts{})
		bn := b.constant(b.Path(name)+".lora_B", br.b, cout, br.rank, 1, 1)
		return b.conv2d(t, bn, []int{cout, br.rank, 1, 1}, nil, nil, 1, 0, ConvOpts{Residual: y, Act: act})
	}
	return b.convLayerOpts(name, x, cout, k, stride, pad, bias, opts)
}

// convLayerOpts is ConvLayerOpts without low-rank branches.
func (b *Builder) convLayerOpts(name string, x *Node, cout, k, stride, pad int, bias bool, opts ConvOpts) *Node {
	xs := shapeOf(x)
	cin := xs[0]
	ws := []int{cout, cin, k, k}
	var bn *Node
	if bias {
		bn = b.Param(name+".bias", cout)
	}
	bf16 := b.st.params.Precision() == BF16
	if len(xs) == 3 {
		ho := (xs[1]+2*pad-k)/stride + 1
		wo := (xs[2]+2*pad-k)/stride + 1
		if ho > 0 && wo > 0 {
			if wino := b.winograd(b.Path(name), cin, cout, xs[1], xs[2], k, stride, pad, ho, wo); wino != nil {
				// Also in bf16 mode: see BF16 for why these compute in float32.
				tw := b.paramDerived(name+".weight", wino.WeightsKind(), ws, wino.PrepareWeights)
				return b.conv2d(x, tw, ws, wino, bn, stride, pad, opts)
			}
		}
	}
	if bf16 && len(xs) == 3 {
		return b.convBF16(name, x, ws, bn, stride, pad, opts)
	}
	return b.conv2d(x, b.Param(name+".weight", ws...), ws, nil, bn, stride, pad, opts)
}

// Linear applies x [N, In] · wᵀ + bias (+ residual) with weight [Out, In], optional bias [Out]
// and optional residual [N, Out].
func (b *Builder) Linear(x, w, bias, residual *Node) *Node {
	xs, ws := shapeOf(x), shapeOf(w)
	if len(xs) != 2 || len(ws) != 2 || ws[1] != xs[1] {
		fail("nn: linear %s: input %v does not fit weight %v", w.Name(), xs, ws)
	}
	l := &linearKernel{n: xs[0], in: xs[1], out: ws[0]}
	ins := []*Node{x, w}
	if bias != nil {
		l.bias = true
		ins = append(ins, bias)
	}
	if residual != nil {
		if rs := shapeOf(residual); !equalShape(rs, []int{xs[0], ws[0]}) {
			fail("nn: linear %s: residual has shape %v, want %v", w.Name(), rs, []int{xs[0], ws[0]})
		}
		l.residual = true
		ins = append(ins, residual)
	}
	return b.apply("linear", l, []int{xs[0], ws[0]}, ins...)
}

// LinearLayer is Linear with the parameters "<name>.weight" and optionally "<name>.bias".
func (b *Builder) LinearLayer(name string, x *Node, out int, bias bool) *Node {
	return b.LinearResidual(name, x, out, bias, nil)
}

// LinearResidual is LinearLayer with residual [N, Out] added to the result (fused).
func (b *Builder) LinearResidual(name string, x *Node, out int, bias bool, residual *Node) *Node {
	in := shapeOf(x)[1]
	bf16 := b.st.params.Precision() == BF16
	var bn *Node
	if bias {
		bn = b.Param(name+".bias", out)
	}
	if br := b.st.params.branch(b.Path(name), in, out); br != nil {
		// An unfused low-rank update: y = x·Wᵀ + (x·Aᵀ)·Bᵀ, the sum fused into the second
		// product as its residual.
		var y *Node
		if bf16 {
			y = b.linearBF16(name, x, out, bn, residual)
		} else {
			y = b.Linear(x, b.Param(name+".weight", out, in), bn, residual)
		}
		t := b.Linear(x, b.constant(b.Path(name)+".lora_A", br.a, br.rank, in), nil, nil)
		return b.Linear(t, b.constant(b.Path(name)+".lora_B", br.b, out, br.rank), nil, y)
	}
	if bf16 {
		return b.linearBF16(name, x, out, bn, residual)
	}
	return b.Linear(x, b.Param(name+".weight", out, in), bn, residual)
}

// GroupNorm normalises x [C, ...] in groups of channels, with affine parameters
// "<name>.weight" and "<name>.bias"; silu applies SiLU to the result.
func (b *Builder) GroupNorm(name string, x *Node, groups int, eps float64, silu bool) *Node {
	xs := shapeOf(x)
	c := xs[0]
	if groups <= 0 || c%groups != 0 {
		fail("nn: group norm %s: %d channels are not divisible into %d groups", b.Path(name), c, groups)
	}
	s := 1
	for _, d := range xs[1:] {
		s *= d
	}
	g := b.Param(name+".weight", c)
	bb := b.Param(name+".bias", c)
	return b.apply("groupnorm", &groupNormKernel{c: c, s: s, groups: groups, eps: eps, silu: silu}, xs, x, g, bb)
}

// LayerNorm normalises each row of x [N, C] with "<name>.weight" and "<name>.bias".
func (b *Builder) LayerNorm(name string, x *Node, eps float64) *Node {
	xs := shapeOf(x)
	c := xs[len(xs)-1]
	g := b.Param(name+".weight", c)
	bb := b.Param(name+".bias", c)
	return b.apply("layernorm", &layerNormKernel{rows: len1(xs) / c, c: c, eps: eps}, xs, x, g, bb)
}

// Attention computes softmax(q·kᵀ/√d)·v per head for q [Nq, C] and k, v [Nk, C]. causal masks
// every key after the query's own position.
func (b *Builder) Attention(q, k, v *Node, heads int, causal bool) *Node {
	qs, ks, vs := shapeOf(q), shapeOf(k), shapeOf(v)
	if len(qs) != 2 || len(ks) != 2 || len(vs) != 2 || qs[1] != ks[1] || ks[0] != vs[0] || vs[1] != qs[1] {
		fail("nn: attention: shapes q %v, k %v, v %v do not fit", qs, ks, vs)
	}
	if heads <= 0 || qs[1]%heads != 0 {
		fail("nn: attention: %d channels are not divisible into %d heads", qs[1], heads)
	}
	// bf16 products pay only on large score matrices (the 32×32 level's self-attention: 0.76×
	// the float32 time; the 16×16 level's 256×256 scores: 1.1×, packing included).
	bf16 := b.st.params.Precision() == BF16 && qs[0]*ks[0] >= attnMinBF16
	a := &attentionKernel{nq: qs[0], nk: ks[0], c: qs[1], heads: heads, causal: causal, bf16: bf16}
	return b.apply("attention", a, qs, q, k, v)
}

// Add adds two tensors of the same shape.
func (b *Builder) Add(x, y *Node) *Node {
	if !equalShape(shapeOf(x), shapeOf(y)) {
		fail("nn: add: shapes %v and %v differ", shapeOf(x), shapeOf(y))
	}
	return b.apply("add", addKernel{}, shapeOf(x), x, y)
}

// AddChannel adds v [C] to every position of channel c of x [C, ...].
func (b *Builder) AddChannel(x, v *Node) *Node {
	xs, vs := shapeOf(x), shapeOf(v)
	if len(vs) != 1 && !(len(vs) == 2 && vs[0] == 1) || len1(vs) != xs[0] {
		fail("nn: add channel: %v does not fit %v", vs, xs)
	}
	return b.apply("addchannel", addChannelKernel{c: xs[0], s: len1(xs) / xs[0]}, xs, x, v)
}

// Unary functions applied element by element.
const (
	ActSiLU      = "silu"
	ActGELU      = "gelu"       // exact, erf-based
	ActQuickGELU = "quick_gelu" // x·σ(1.702x)
	ActReLU      = "relu"
)

// Act applies the activation function act element by element.
func (b *Builder) Act(act string, x *Node) *Node {
	return b.apply(act, unaryKernel{f: activationFunc(act)}, shapeOf(x), x)
}

// activationFunc returns the function of an activation; an unknown name is a build error.
func activationFunc(act string) func(dst, src []float32) {
	switch act {
	case ActSiLU:
		return siluSlice
	case ActGELU:
		return geluSlice
	case ActQuickGELU:
		return quickGELUSlice
	case ActReLU:
		return reluSlice
	}
	fail("nn: unknown activation %q", act)
	return nil
}

// Affine returns x·scale + shift.
func (b *Builder) Affine(x *Node, scale, shift float32) *Node {
	return b.apply("affine", unaryKernel{f: func(dst, src []float32) {
		kernels.ScaleShift(dst, src, scale, shift)
	}}, shapeOf(x), x)
}

// TanhScale returns tanh(x/s)·s.
func (b *Builder) TanhScale(x *Node, s float32) *Node {
	return b.apply("tanhscale", unaryKernel{f: func(dst, src []float32) {
		for i, v := range src {
			dst[i] = float32(math.Tanh(float64(v/s))) * s
		}
	}}, shapeOf(x), x)
}

// GEGLU splits the last dimension of x [N, 2F] into a value and a gate half and returns
// value·gelu(gate) [N, F].
func (b *Builder) GEGLU(x *Node) *Node {
	xs := shapeOf(x)
	if len(xs) != 2 || xs[1]%2 != 0 {
		fail("nn: geglu: shape %v", xs)
	}
	return b.apply("geglu", gegluKernel{n: xs[0], f: xs[1] / 2}, []int{xs[0], xs[1] / 2}, x)
}

// Transpose turns x [A, ...] into [rest, A] where rest is the product of the other dimensions,
// and back: a [C, H, W] image becomes [H·W, C] tokens. out gives the result's shape.
func (b *Builder) Transpose(x *Node, out ...int) *Node {
	xs := shapeOf(x)
	if len1(out) != len1(xs) {
		fail("nn: transpose: %v cannot become %v", xs, out)
	}
	a := xs[0]
	return b.apply("transpose", transposeKernel{rows: a, cols: len1(xs) / a}, out, x)
}

// Reshape gives x a new shape with the same number of elements.
func (b *Builder) Reshape(x *Node, shape ...int) *Node {
	if len1(shape) != len1(shapeOf(x)) {
		fail("nn: reshape: %v cannot become %v", shapeOf(x), shape)
	}
	return b.apply("reshape", copyKernel{}, shape, x)
}

// Concat joins tensors along their first dimension (channels of [C, H, W]).
func (b *Builder) Concat(xs ...*Node) *Node {
	first := shapeOf(xs[0])
	out := append([]int(nil), first...)
	out[0] = 0
	sizes := make([]int, len(xs))
	for i, x := range xs {
		s := shapeOf(x)
		if len(s) != len(first) || !equalShape(s[1:], first[1:]) {
			fail("nn: concat: shapes %v and %v differ", first, s)
		}
		out[0] += s[0]
		sizes[i] = len1(s)
	}
	return b.apply("concat", concatKernel{sizes: sizes}, out, xs...)
}

// Upsample resizes x [C, H, W] to [C, ho, wo] by nearest-neighbour sampling (PyTorch's
// "nearest" mode).
func (b *Builder) Upsample(x *Node, ho, wo int) *Node {
	xs := shapeOf(x)
	return b.apply("upsample", upsampleKernel{c: xs[0], h: xs[1], w: xs[2], ho: ho, wo: wo}, []int{xs[0], ho, wo}, x)
}

// Pad surrounds x [C, H, W] with zeros: top and bottom rows, left and right columns (PyTorch's
// F.pad(x, (left, right, top, bottom)) in "constant" mode). Padding may differ on each side, as
// in the KL encoder's downsamplers, which pad (0, 1, 0, 1) before a stride-2 convolution.
func (b *Builder) Pad(x *Node, top, bottom, left, right int) *Node {
	xs := shapeOf(x)
	if len(xs) != 3 {
		fail("nn: pad: input %v is not [C, H, W]", xs)
	}
	if top < 0 || bottom < 0 || left < 0 || right < 0 {
		fail("nn: pad: negative padding (%d, %d, %d, %d)", top, bottom, left, right)
	}
	k := padKernel{c: xs[0], h: xs[1], w: xs[2], top: top, left: left, ho: xs[1] + top + bottom, wo: xs[2] + left + right}
	return b.apply("pad", k, []int{k.c, k.ho, k.wo}, x)
}

// Embedding looks up rows of table [V, D] for ids [N] (token ids stored as float32).
func (b *Builder) Embedding(table, ids *Node) *Node {
	ts, is := shapeOf(table), shapeOf(ids)
	if len(ts) != 2 || len(is) != 1 {
		fail("nn: embedding: table %v, ids %v", ts, is)
	}
	return b.apply("embedding", embeddingKernel{v: ts[0], d: ts[1]}, []int{is[0], ts[1]}, table, ids)
}

func len1(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// String describes a node for error messages.
func describe(n *Node) string { return fmt.Sprintf("%s%v", n.Name(), n.Shape()) }
