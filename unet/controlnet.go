package unet

import (
	"context"
	"fmt"
	"slices"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// ControlNet is diffusers' ControlNetModel as a Gorgonia graph, built from its config.json on
// the UNet's own blocks: the time embedding, conv_in, the down path and the mid block (when the
// config has one) are those of a UNet; controlnet_cond_embedding turns the control image into a
// latent-sized feature map added after conv_in; and 1×1 zero convolutions
// (controlnet_down_blocks.{j}, controlnet_mid_block) turn every skip connection and the mid
// block's output into the residuals a UNet adds to its own (Residuals). Graphs are built once per
// latent size and kept in the runner's program cache (its own, unbounded, unless SetCache shares
// a bounded one). It is safe for concurrent use.
type ControlNet struct {
	cfg    *weights.ControlNetConfig
	runner *nn.Runner[latentSize]
}

// latentSize keys the ControlNet's programs.
type latentSize struct{ h, w int }

func (k latentSize) String() string { return fmt.Sprintf("a %d×%d latent", k.h, k.w) }

// NewControlNet returns a ControlNet with the given config whose weights come from src.
func NewControlNet(cfg *weights.ControlNetConfig, src weights.TensorSource) (*ControlNet, error) {
	if cfg == nil {
		return nil, fmt.Errorf("controlnet: nil config")
	}
	if src == nil {
		return nil, fmt.Errorf("controlnet: nil weight source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &ControlNet{cfg: cfg}
	c.runner = nn.NewRunner("controlnet", nn.NewParams(src), func(b *nn.Builder, k latentSize) (map[string]*nn.Node, error) {
		return buildControlNet(b, cfg, k.h, k.w), nil
	})
	return c, nil
}

// SetCache makes the model keep its compiled graphs in c, shared with the other models of a
// pipeline under one byte budget.
func (c *ControlNet) SetCache(pc *nn.ProgramCache) { c.runner.SetCache(pc) }

// Drop waits for the graph builds in progress in the model's cache (a build whose request gave
// up goes on in the background, reading weights), then removes the model's compiled graphs
// from the cache (runs in progress finish normally). Call it before closing the weights.
func (c *ControlNet) Drop() {
	c.runner.Wait() // this model's builds only, not those of the pipeline's other models
	c.runner.Drop()
}

// Config returns the model's configuration.
func (c *ControlNet) Config() *weights.ControlNetConfig { return c.cfg }

// DownFactor returns how many pixels of the control image make one latent pixel: 2 to the
// number of stride-2 convolutions of the conditioning embedding (8 for diffusers' default).
func (c *ControlNet) DownFactor() int {
	return 1 << (len(c.cfg.ConditioningEmbeddingOutChannels) - 1)
}

// Prepare builds (once) the graph for a latent of h×w, so that the first Forward of that size
// does not pay for it. It also checks every weight the graph needs. If ctx ends first, Prepare
// returns its error (the build completes in the background).
func (c *ControlNet) Prepare(ctx context.Context, h, w int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("controlnet: latent size %d×%d is not positive", h, w)
	}
	_, err := c.runner.Program(ctx, latentSize{h, w})
	return err
}

// MACs returns the multiply-adds of one forward pass on an h×w latent: in convolutions and
// linear layers, and in attention products. It builds the graph for that size if needed.
func (c *ControlNet) MACs(ctx context.Context, h, w int) (convLinear, attention int64, err error) {
	if h <= 0 || w <= 0 {
		return 0, 0, fmt.Errorf("controlnet: latent size %d×%d is not positive", h, w)
	}
	return c.runner.MACs(ctx, latentSize{h, w})
}

// Unused lists the tensors of the weights that no graph built so far has used.
func (c *ControlNet) Unused() []string { return c.runner.Params().Unused("", nil) }

// Fits checks that the ControlNet's residuals fit a UNet: the same in_channels,
// block_out_channels, layers_per_block and cross_attention_dim (the fields that fix the number
// and the shapes of the residuals and of the inputs both models share). The error names the
// field and both values.
func (c *ControlNet) Fits(u *weights.UNetConfig) error {
	if u == nil {
		return fmt.Errorf("controlnet: nil unet config")
	}
	cn := c.cfg
	mismatch := func(field string, cv, uv any) error {
		return fmt.Errorf("controlnet: %s is %v but the unet's is %v: this ControlNet was not made for this UNet", field, cv, uv)
	}
	if cn.InChannels != u.InChannels {
		return mismatch("in_channels", cn.InChannels, u.InChannels)
	}
	if !slices.Equal(cn.BlockOutChannels, u.BlockOutChannels) {
		return mismatch("block_out_channels", cn.BlockOutChannels, u.BlockOutChannels)
	}
	if cl, ul := cn.LayersPerBlock(), u.LayersPerBlock(); !slices.Equal(cl, ul) {
		return mismatch("layers_per_block", cl, ul)
	}
	if cn.CrossAttentionDim != u.CrossAttentionDim {
		return mismatch("cross_attention_dim", cn.CrossAttentionDim, u.CrossAttentionDim)
	}
	if cn.DownsamplePadding != u.DownsamplePadding {
		return mismatch("downsample_padding", cn.DownsamplePadding, u.DownsamplePadding)
	}
	return nil
}

// Forward computes the ControlNet's residuals for a UNet's sample [in_channels, h, w] at
// timestep t, conditioned on text [77, cross_attention_dim] and on cond, the control image
// [conditioning_channels, h·DownFactor, w·DownFactor] (RGB in [0, 1] for the released models).
// Every residual is multiplied by scale (the conditioning scale), as diffusers does without
// guess mode.
func (c *ControlNet) Forward(ctx context.Context, sample []float32, h, w int, t float64, text, cond []float32, scale float64) (*Residuals, error) {
	cfg := c.cfg
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("controlnet: latent size %d×%d is not positive", h, w)
	}
	if len(sample) != cfg.InChannels*h*w {
		return nil, fmt.Errorf("controlnet: sample has %d values, want %d×%d×%d", len(sample), cfg.InChannels, h, w)
	}
	d := cfg.CrossAttentionDim
	if len(text) != textLen*d {
		return nil, fmt.Errorf("controlnet: text embeddings have %d values, want %d×%d (77 tokens × cross_attention_dim)", len(text), textLen, d)
	}
	f := c.DownFactor()
	if len(cond) != cfg.ConditioningChannels*h*f*w*f {
		return nil, fmt.Errorf("controlnet: control image has %d values, want %d×%d×%d (conditioning_channels × the latent size × %d)",
			len(cond), cfg.ConditioningChannels, h*f, w*f, f)
	}
	in := map[string][]float32{
		"sample":    sample,
		"time_proj": timestepEmbedding(t, cfg.BlockOutChannels[0], cfg.FlipSinToCos, cfg.FreqShift),
		"text":      text,
		"cond":      cond,
	}
	outs, err := c.runner.Run(ctx, latentSize{h, w}, in)
	if err != nil {
		return nil, err
	}
	res := &Residuals{Mid: outs["control_mid"]}
	for j := 0; ; j++ {
		r, ok := outs[fmt.Sprintf("control_down.%d", j)]
		if !ok {
			break
		}
		res.Down = append(res.Down, r)
	}
	if scale != 1 {
		s := float32(scale)
		for _, r := range append(slices.Clone(res.Down), res.Mid) {
			for i := range r {
				r[i] *= s
			}
		}
	}
	return res, nil
}

// buildControlNet describes ControlNetModel.forward in diffusers' steps: 1. time,
// 2. pre-process (conv_in + the conditioning embedding), 3. down, 4. mid, 5. the zero
// convolutions. Its outputs are "control_down.{j}" and "control_mid", not yet scaled.
func buildControlNet(b *nn.Builder, cfg *weights.ControlNetConfig, h, w int) map[string]*nn.Node {
	g := &graph{cfg: &cfg.UNetBlocks}
	boc := cfg.BlockOutChannels
	f := 1 << (len(cfg.ConditioningEmbeddingOutChannels) - 1)
	sample := b.Input("sample", cfg.InChannels, h, w)
	cond := b.Input("cond", cfg.ConditioningChannels, h*f, w*f)

	// 1. time
	g.inputs(b)

	// 2. pre-process
	x := b.ConvLayer("conv_in", sample, boc[0], 3, 1, 1, true)
	e := condEmbedding(b.Sub("controlnet_cond_embedding"), cond, cfg.ConditioningEmbeddingOutChannels, boc[0])
	if es, xs := e.Shape(), x.Shape(); es[1] != xs[1] || es[2] != xs[2] {
		b.Fail(fmt.Errorf("controlnet: the conditioning embedding gives %v for a %d×%d control image, conv_in %v", []int(es), h*f, w*f, []int(xs)))
	}
	x = b.Add(x, e)

	// 3. down
	x, skips := g.down(b, x)

	// 4. mid
	x = g.mid(b, x)

	// 5. zero convolutions
	outs := make(map[string]*nn.Node, len(skips)+1)
	for j, s := range skips {
		name := fmt.Sprintf("controlnet_down_blocks.%d", j)
		outs[fmt.Sprintf("control_down.%d", j)] = b.ConvLayer(name, s, s.Shape()[0], 1, 1, 0, true)
	}
	outs["control_mid"] = b.ConvLayer("controlnet_mid_block", x, x.Shape()[0], 1, 1, 0, true)
	return outs
}

// condEmbedding is ControlNetConditioningEmbedding: conv_in, SiLU; for each step of the channel
// list a 3×3 convolution keeping the channels and a stride-2 one changing them (blocks.{2i},
// blocks.{2i+1}), each followed by SiLU; then conv_out (a zero convolution) to out channels.
func condEmbedding(b *nn.Builder, x *nn.Node, chans []int, out int) *nn.Node {
	silu := nn.ConvOpts{Act: nn.ActSiLU}
	x = b.ConvLayerOpts("conv_in", x, chans[0], 3, 1, 1, true, silu)
	for i := 0; i < len(chans)-1; i++ {
		x = b.ConvLayerOpts(fmt.Sprintf("blocks.%d", 2*i), x, chans[i], 3, 1, 1, true, silu)
		x = b.ConvLayerOpts(fmt.Sprintf("blocks.%d", 2*i+1), x, chans[i+1], 3, 2, 1, true, silu)
	}
	return b.ConvLayer("conv_out", x, out, 3, 1, 1, true)
}
