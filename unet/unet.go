// Package unet is diffusers' UNet2DConditionModel as a Gorgonia graph, built from its
// config.json: the SDXS-512 releases (no mid block), SD-Turbo-class UNets with a
// UNetMidBlock2DCrossAttn, and anything between that uses DownBlock2D / CrossAttnDownBlock2D and
// UpBlock2D / CrossAttnUpBlock2D.
//
// The forward pass follows diffusers' own steps: 1. time, 2. pre-process (conv_in), 3. down,
// 4. mid, 5. up, 6. post-process. Weights are bound by their diffusers module paths
// (down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight, ...).
package unet

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// Model is a UNet with its weights, ready to run at any latent size. Graphs are built once per
// latent size (and per use of ControlNet residuals) and kept in the runner's program cache
// (its own, unbounded, unless SetCache shares a bounded one). It is safe for concurrent use.
type Model struct {
	cfg    *weights.UNetConfig
	runner *nn.Runner[progKey]
}

type progKey struct {
	h, w    int
	control bool
	trace   bool
}

func (k progKey) String() string {
	s := fmt.Sprintf("a %d×%d latent", k.h, k.w)
	if k.control {
		s += " with ControlNet residuals"
	}
	if k.trace {
		s += " (trace)"
	}
	return s
}

// Residuals are ControlNet outputs, already scaled by the control strength: one tensor per skip
// connection of the down path ([C, h, w] each, in order) and one for the mid block.
type Residuals struct {
	Down [][]float32
	Mid  []float32
}

// New returns a UNet with the given config whose weights come from src.
func New(cfg *weights.UNetConfig, src weights.TensorSource) (*Model, error) {
	if cfg == nil {
		return nil, fmt.Errorf("unet: nil config")
	}
	if src == nil {
		return nil, fmt.Errorf("unet: nil weight source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("unet: %w", err)
	}
	m := &Model{cfg: cfg}
	m.runner = nn.NewRunner("unet", nn.NewParams(src), m.build)
	return m, nil
}

// SetCache makes the model keep its compiled graphs in c, shared with the other models of a
// pipeline under one byte budget.
func (m *Model) SetCache(c *nn.ProgramCache) { m.runner.SetCache(c) }

// Config returns the model's configuration.
func (m *Model) Config() *weights.UNetConfig { return m.cfg }

// Prepare builds (once) the graph for a latent of h×w, so that the first Forward of that size
// does not pay for it. It also checks every weight the graph needs. If ctx ends first, Prepare
// returns its error and the build completes in the background.
func (m *Model) Prepare(ctx context.Context, h, w int, control bool) error {
	if err := m.checkSize(h, w); err != nil {
		return err
	}
	_, err := m.runner.Program(ctx, progKey{h: h, w: w, control: control})
	return err
}

// MACs returns the multiply-adds of one forward pass on an h×w latent: in convolutions and
// linear layers, and in attention products. It builds the graph for that size if needed.
func (m *Model) MACs(ctx context.Context, h, w int) (convLinear, attention int64, err error) {
	if err := m.checkSize(h, w); err != nil {
		return 0, 0, err
	}
	return m.runner.MACs(ctx, progKey{h: h, w: w})
}

// Unused lists the tensors of the weights that no graph built so far has used.
func (m *Model) Unused() []string { return m.runner.Params().Unused("", nil) }

// checkSize checks a latent size.
func (m *Model) checkSize(h, w int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("unet: latent size %d×%d is not positive", h, w)
	}
	return nil
}

// Forward computes the UNet's output for sample [in_channels, h, w] at timestep t, conditioned
// on text [L, cross_attention_dim], with optional ControlNet residuals (nil for none).
func (m *Model) Forward(ctx context.Context, sample []float32, h, w int, t float64, text []float32, res *Residuals) ([]float32, error) {
	outs, err := m.run(ctx, sample, h, w, t, text, res, false)
	if err != nil {
		return nil, err
	}
	return outs["out"], nil
}

// Trace runs the UNet like Forward and also returns the output of every module, named by its
// diffusers path ("conv_in", "down_blocks.1.attentions.0.proj_in", ...). Tokens are [N, C],
// images [C, H, W]. It is for tests and debugging: it keeps every activation in memory.
func (m *Model) Trace(ctx context.Context, sample []float32, h, w int, t float64, text []float32, res *Residuals) (map[string][]float32, error) {
	return m.run(ctx, sample, h, w, t, text, res, true)
}

func (m *Model) run(ctx context.Context, sample []float32, h, w int, t float64, text []float32, res *Residuals, trace bool) (map[string][]float32, error) {
	key, in, err := m.inputs(sample, h, w, t, text, res)
	if err != nil {
		return nil, err
	}
	if trace {
		key.trace = true
		return m.runner.RunOnce(ctx, key, in)
	}
	return m.runner.Run(ctx, key, in)
}

// inputs checks the inputs of a forward pass and returns the graph's key and input map.
func (m *Model) inputs(sample []float32, h, w int, t float64, text []float32, res *Residuals) (progKey, map[string][]float32, error) {
	cfg := m.cfg
	if err := m.checkSize(h, w); err != nil {
		return progKey{}, nil, err
	}
	if len(sample) != cfg.InChannels*h*w {
		return progKey{}, nil, fmt.Errorf("unet: sample has %d values, want %d×%d×%d", len(sample), cfg.InChannels, h, w)
	}
	d := cfg.CrossAttentionDim
	if len(text) == 0 || len(text)%d != 0 {
		return progKey{}, nil, fmt.Errorf("unet: text embeddings have %d values, not a multiple of cross_attention_dim %d", len(text), d)
	}
	if len(text)/d != textLen {
		return progKey{}, nil, fmt.Errorf("unet: text embeddings have %d tokens, want %d", len(text)/d, textLen)
	}
	key := progKey{h: h, w: w, control: res != nil}
	in := map[string][]float32{
		"sample":    sample,
		"time_proj": timestepEmbedding(t, cfg.BlockOutChannels[0], cfg.FlipSinToCos, cfg.FreqShift),
		"text":      text,
	}
	if res != nil {
		shapes := DownResidualShapes(cfg, h, w)
		if len(res.Down) != len(shapes) {
			return progKey{}, nil, fmt.Errorf("unet: %d ControlNet down residuals, want %d", len(res.Down), len(shapes))
		}
		for i, r := range res.Down {
			s := shapes[i]
			if len(r) != s[0]*s[1]*s[2] {
				return progKey{}, nil, fmt.Errorf("unet: ControlNet down residual %d has %d values, want %v", i, len(r), s)
			}
			in[fmt.Sprintf("control_down.%d", i)] = r
		}
		ms := MidResidualShape(cfg, h, w)
		if len(res.Mid) != ms[0]*ms[1]*ms[2] {
			return progKey{}, nil, fmt.Errorf("unet: ControlNet mid residual has %d values, want %v", len(res.Mid), ms)
		}
		in["control_mid"] = res.Mid
	}
	return key, in, nil
}

// textLen is the number of text tokens the UNet is conditioned on (CLIP's context length).
const textLen = 77

// build describes the graph for key: its output "out" and, when tracing, every module's output.
func (m *Model) build(b *nn.Builder, key progKey) (map[string]*nn.Node, error) {
	g := &graph{cfg: &m.cfg.UNetBlocks, trace: key.trace, taps: make(map[string]*nn.Node)}
	g.taps["out"] = g.build(b, m.cfg, key.h, key.w, key.control)
	return g.taps, nil
}

// timestepEmbedding is diffusers' get_timestep_embedding for one timestep, in float32 as PyTorch
// computes it: exponent = −ln(10000)·i/(half − shift), arg = t·exp(exponent), [sin, cos]
// (or [cos, sin] with flipSinToCos).
func timestepEmbedding(t float64, dim int, flipSinToCos bool, shift float64) []float32 {
	half := dim / 2
	out := make([]float32, dim)
	lnp := float32(-math.Log(10000))
	den := float32(float64(half) - shift)
	for i := 0; i < half; i++ {
		e := float32(lnp*float32(i)) / den
		f := float32(math.Exp(float64(e)))
		arg := float32(t) * f
		s, c := float32(math.Sin(float64(arg))), float32(math.Cos(float64(arg)))
		if flipSinToCos {
			out[i], out[half+i] = c, s
		} else {
			out[i], out[half+i] = s, c
		}
	}
	return out
}

// DownResidualShapes returns the shapes [C, H, W] of the skip connections of the down path for a
// latent of h×w: the ControlNet residuals the UNet accepts, in order. It returns nil for a nil
// config or one without blocks.
func DownResidualShapes(cfg *weights.UNetConfig, h, w int) [][3]int {
	if cfg == nil || len(cfg.BlockOutChannels) == 0 || len(cfg.LayersPerBlock()) < len(cfg.DownBlockTypes) || len(cfg.DownBlockTypes) > len(cfg.BlockOutChannels) {
		return nil
	}
	boc := cfg.BlockOutChannels
	layers := cfg.LayersPerBlock()
	shapes := [][3]int{{boc[0], h, w}}
	for i := range cfg.DownBlockTypes {
		for j := 0; j < layers[i]; j++ {
			shapes = append(shapes, [3]int{boc[i], h, w})
		}
		if i < len(boc)-1 {
			h, w = downSize(h, cfg), downSize(w, cfg)
			shapes = append(shapes, [3]int{boc[i], h, w})
		}
	}
	return shapes
}

// MidResidualShape returns the shape of the ControlNet residual added after the mid block (zero
// for a nil config or one without blocks).
func MidResidualShape(cfg *weights.UNetConfig, h, w int) [3]int {
	if cfg == nil || len(cfg.BlockOutChannels) == 0 {
		return [3]int{}
	}
	for i := 0; i < len(cfg.BlockOutChannels)-1; i++ {
		h, w = downSize(h, cfg), downSize(w, cfg)
	}
	return [3]int{cfg.BlockOutChannels[len(cfg.BlockOutChannels)-1], h, w}
}

// downSize is the output size of a 3×3, stride-2 downsampling convolution.
func downSize(n int, cfg *weights.UNetConfig) int {
	return (n+2*cfg.DownsamplePadding-3)/2 + 1
}

// graph holds the state of one graph description. Its helpers (time embedding, down path, mid
// block, ResNet, transformer) build the blocks UNet2DConditionModel and ControlNetModel share.
type graph struct {
	cfg   *weights.UNetBlocks
	text  *nn.Node
	temb  *nn.Node
	trace bool
	taps  map[string]*nn.Node
}

func (g *graph) tap(b *nn.Builder, name string, n *nn.Node) *nn.Node {
	if g.trace {
		g.taps[b.Path(name)] = n
	}
	return n
}

// inputs declares the text input and the sinusoidal time features, and builds the time
// embedding (time_embedding.linear_1, SiLU, linear_2); every ResNet then uses g.temb.
func (g *graph) inputs(b *nn.Builder) {
	cfg := g.cfg
	g.text = b.Input("text", textLen, cfg.CrossAttentionDim)
	tp := b.Input("time_proj", 1, cfg.BlockOutChannels[0])
	te := b.Sub("time_embedding")
	t := te.LinearLayer("linear_1", tp, cfg.TimeEmbedDim(), true)
	t = b.Act(nn.ActSiLU, t)
	t = te.LinearLayer("linear_2", t, cfg.TimeEmbedDim(), true)
	g.tap(b, "time_embedding", t)
	// Every ResNet applies SiLU to the embedding before its projection: do it once.
	g.temb = b.Act(nn.ActSiLU, t)
}

// down is the down path (down_blocks.*) from the output x of conv_in: it returns the last
// activation and the skip connections, conv_in's output first.
func (g *graph) down(b *nn.Builder, x *nn.Node) (*nn.Node, []*nn.Node) {
	cfg := g.cfg
	boc := cfg.BlockOutChannels
	heads := cfg.Heads()
	onlyCross := cfg.OnlyCross()
	layers := cfg.LayersPerBlock()
	tlayers := cfg.TransformerLayers()
	skips := []*nn.Node{x}
	for i, typ := range cfg.DownBlockTypes {
		db := b.Subf("down_blocks.%d", i)
		for j := 0; j < layers[i]; j++ {
			x = g.resnet(db.Subf("resnets.%d", j), x, boc[i])
			if typ == weights.CrossAttnDownBlock2D {
				x = g.transformer(db.Subf("attentions.%d", j), x, heads[i], tlayers[i], onlyCross[i])
			}
			skips = append(skips, x)
		}
		if i < len(boc)-1 {
			x = db.ConvLayer("downsamplers.0.conv", x, boc[i], 3, 2, cfg.DownsamplePadding, true)
			skips = append(skips, x)
		}
		g.tap(b, fmt.Sprintf("down_blocks.%d", i), x)
	}
	return x, skips
}

// mid is the mid block (mid_block.*) when the config has one, else x unchanged.
func (g *graph) mid(b *nn.Builder, x *nn.Node) *nn.Node {
	cfg := g.cfg
	last := len(cfg.BlockOutChannels) - 1
	c := cfg.BlockOutChannels[last]
	mb := b.Sub("mid_block")
	sf := cfg.MidBlockScaleFactor
	switch cfg.MidBlockType {
	case weights.UNetMidBlock2DCrossAttn:
	case weights.UNetMidBlock2D:
		// A ControlNet's UNetMidBlock2D without attention: one ResNet.
		x = g.scaled(b, g.resnet(mb.Sub("resnets.0"), x, c), sf)
		g.tap(b, "mid_block", x)
		return x
	default:
		return x
	}
	// ResNet, then (Transformer2D, ResNet); its ResNets divide by mid_block_scale_factor.
	x = g.scaled(b, g.resnet(mb.Sub("resnets.0"), x, c), sf)
	x = g.transformer(mb.Sub("attentions.0"), x, cfg.Heads()[last], cfg.TransformerLayers()[last], false)
	x = g.scaled(b, g.resnet(mb.Sub("resnets.1"), x, c), sf)
	g.tap(b, "mid_block", x)
	return x
}

// build describes the UNet: 1. time, 2. pre-process, 3. down, 4. mid, 5. up, 6. post-process.
func (g *graph) build(b *nn.Builder, cfg *weights.UNetConfig, h, w int, control bool) *nn.Node {
	boc := cfg.BlockOutChannels
	heads := cfg.Heads()
	onlyCross := cfg.OnlyCross()
	layers := cfg.LayersPerBlock()
	tlayers := cfg.TransformerLayers()

	sample := b.Input("sample", cfg.InChannels, h, w)

	// 1. time
	g.inputs(b)

	// 2. pre-process
	x := b.ConvLayer("conv_in", sample, boc[0], cfg.ConvInKernel, 1, (cfg.ConvInKernel-1)/2, true)
	g.tap(b, "conv_in", x)

	// 3. down, with the ControlNet's residuals added to the skip connections
	x, skips := g.down(b, x)
	if control {
		for j, s := range skips {
			sh := s.Shape()
			skips[j] = b.Add(s, b.Input(fmt.Sprintf("control_down.%d", j), sh...))
		}
	}

	// 4. mid, and the ControlNet's mid residual after it (also when there is no mid block)
	x = g.mid(b, x)
	if control {
		x = b.Add(x, b.Input("control_mid", x.Shape()...))
	}

	// 5. up
	n := len(boc)
	for i, typ := range cfg.UpBlockTypes {
		ub := b.Subf("up_blocks.%d", i)
		rb := n - 1 - i // the matching down block
		outCh := boc[rb]
		for j := 0; j < layers[rb]+1; j++ {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			x = b.Concat(x, skip)
			x = g.resnet(ub.Subf("resnets.%d", j), x, outCh)
			if typ == weights.CrossAttnUpBlock2D {
				x = g.transformer(ub.Subf("attentions.%d", j), x, heads[rb], tlayers[rb], onlyCross[rb])
			}
		}
		if i < n-1 {
			// Upsample to the size of the next skip connection (2× unless the size was odd).
			ns := skips[len(skips)-1].Shape()
			x = b.Upsample(x, ns[1], ns[2])
			x = ub.ConvLayer("upsamplers.0.conv", x, outCh, 3, 1, 1, true)
		}
		g.tap(b, fmt.Sprintf("up_blocks.%d", i), x)
	}

	// 6. post-process
	x = g.normSiLU(b, "conv_norm_out", x)
	x = b.ConvLayer("conv_out", x, cfg.OutChannels, cfg.ConvOutKernel, 1, (cfg.ConvOutKernel-1)/2, true)
	return x
}

// scaled divides a ResNet's output by its output_scale_factor (nothing to do for 1).
func (g *graph) scaled(b *nn.Builder, x *nn.Node, factor float64) *nn.Node {
	if factor == 1 || factor == 0 {
		return x
	}
	return b.Affine(x, float32(1/factor), 0)
}

// normSiLU is GroupNorm followed by SiLU, fused into one op except when tracing (where the
// module path names the GroupNorm's own output).
func (g *graph) normSiLU(b *nn.Builder, name string, x *nn.Node) *nn.Node {
	if !g.trace {
		return b.GroupNorm(name, x, g.cfg.NormNumGroups, g.cfg.NormEps, true)
	}
	h := g.tap(b, name, b.GroupNorm(name, x, g.cfg.NormNumGroups, g.cfg.NormEps, false))
	return b.Act(nn.ActSiLU, h)
}

// resnet is ResnetBlock2D with the time embedding: norm1, SiLU, conv1, + time_emb_proj,
// norm2, SiLU, conv2, plus the input (through conv_shortcut when the channels change).
func (g *graph) resnet(b *nn.Builder, x *nn.Node, out int) *nn.Node {
	in := x.Shape()[0]
	shortcut := x
	if in != out {
		shortcut = b.ConvLayer("conv_shortcut", x, out, 1, 1, 0, true)
	}
	h := g.normSiLU(b, "norm1", x)
	t := b.LinearLayer("time_emb_proj", g.temb, out, true)
	if g.trace {
		h = g.tap(b, "conv1", b.ConvLayer("conv1", h, out, 3, 1, 1, true))
		h = b.AddChannel(h, t)
	} else {
		h = b.ConvLayerOpts("conv1", h, out, 3, 1, 1, true, nn.ConvOpts{ChannelBias: t})
	}
	h = g.normSiLU(b, "norm2", h)
	if g.trace {
		h = g.tap(b, "conv2", b.ConvLayer("conv2", h, out, 3, 1, 1, true))
		return b.Add(h, shortcut)
	}
	return b.ConvLayerOpts("conv2", h, out, 3, 1, 1, true, nn.ConvOpts{Residual: shortcut})
}

// transformer is Transformer2DModel over an image x [C, H, W]: GroupNorm (eps 1e-6), proj_in,
// basic transformer blocks on the H·W tokens, proj_out, plus the input.
func (g *graph) transformer(b *nn.Builder, x *nn.Node, heads, depth int, onlyCross bool) *nn.Node {
	cfg := g.cfg
	s := x.Shape()
	c, hh, ww := s[0], s[1], s[2]
	n := hh * ww
	h := b.GroupNorm("norm", x, cfg.NormNumGroups, 1e-6, false)
	var tok *nn.Node
	if cfg.UseLinearProjection {
		tok = b.LinearLayer("proj_in", b.Transpose(h, n, c), c, true)
	} else {
		img := b.ConvLayer("proj_in", h, c, 1, 1, 0, true)
		g.tap(b, "proj_in", img)
		tok = b.Transpose(img, n, c)
	}
	if cfg.UseLinearProjection {
		g.tap(b, "proj_in", tok)
	}
	for l := 0; l < depth; l++ {
		tok = g.basicBlock(b.Subf("transformer_blocks.%d", l), tok, heads, onlyCross)
	}
	var out *nn.Node
	if cfg.UseLinearProjection {
		out = b.LinearLayer("proj_out", tok, c, true)
		g.tap(b, "proj_out", out)
		out = b.Transpose(out, c, hh, ww)
	} else {
		out = b.ConvLayer("proj_out", b.Transpose(tok, c, hh, ww), c, 1, 1, 0, true)
		g.tap(b, "proj_out", out)
	}
	return b.Add(out, x)
}

// basicBlock is BasicTransformerBlock: attn1 (self-attention, or cross-attention when
// onlyCross), attn2 (cross-attention) and a GEGLU feed-forward, each pre-normed and residual.
func (g *graph) basicBlock(b *nn.Builder, x *nn.Node, heads int, onlyCross bool) *nn.Node {
	h := b.LayerNorm("norm1", x, 1e-5)
	g.tap(b, "norm1", h)
	ctx1 := h
	if onlyCross {
		ctx1 = g.text
	}
	x = g.attention(b, "attn1", h, ctx1, heads, x)
	h = b.LayerNorm("norm2", x, 1e-5)
	g.tap(b, "norm2", h)
	x = g.attention(b, "attn2", h, g.text, heads, x)
	h = b.LayerNorm("norm3", x, 1e-5)
	c := x.Shape()[1]
	inner := 4 * c
	h = b.GEGLU(b.LinearLayer("ff.net.0.proj", h, 2*inner, true))
	if g.trace {
		h = g.tap(b, "ff", b.LinearLayer("ff.net.2", h, c, true))
		return b.Add(h, x)
	}
	return b.LinearResidual("ff.net.2", h, c, true, x)
}

// attention is diffusers' Attention module name: to_q, to_k, to_v without bias, multi-head
// scaled dot product, to_out.0 with bias; the result is added to residual.
func (g *graph) attention(b *nn.Builder, name string, x, ctx *nn.Node, heads int, residual *nn.Node) *nn.Node {
	ab := b.Sub(name)
	c := x.Shape()[1]
	q := ab.LinearLayer("to_q", x, c, false)
	k := ab.LinearLayer("to_k", ctx, c, false)
	v := ab.LinearLayer("to_v", ctx, c, false)
	o := b.Attention(q, k, v, heads, false)
	if g.trace {
		a := g.tap(b, name, ab.LinearLayer("to_out.0", o, c, true))
		return b.Add(a, residual)
	}
	return ab.LinearResidual("to_out.0", o, c, true, residual)
}

// IsWeight reports whether a tensor name in a UNet file is a weight the model uses (rather than
// a buffer or something foreign to the model).
func IsWeight(name string) bool {
	return !strings.HasSuffix(name, "position_ids")
}

// Params returns the parameters the model's graphs are built over (to set their precision
// before the first build, or to account for their memory).
func (m *Model) Params() *nn.Params { return m.runner.Params() }
