// Package vae holds the autoencoders between pixels and latents: the AutoencoderTiny (TAESD)
// that SDXS ships as vae/, whose decoder turns latents into pixels and whose encoder turns an
// init picture into latents for image to image, and the full AutoencoderKL of vae_large/ (KL),
// decoder and encoder.
package vae

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// Tiny is the AutoencoderTiny (TAESD) decoder and encoder with their weights. Graphs are built
// once per size and kept in the runners' program cache (their own, unbounded, unless SetCache
// shares a bounded one). It is safe for concurrent use.
type Tiny struct {
	cfg    *weights.TinyVAEConfig
	runner *nn.Runner[tinyKey] // the decoder
	enc    *nn.Runner[encKey]  // the encoder (tiny_encoder.go), on the same weights
}

// tinyKey names a decoder graph: a latent size, and whether it keeps every layer's output.
type tinyKey struct {
	h, w  int
	trace bool
}

func (k tinyKey) String() string {
	if k.trace {
		return fmt.Sprintf("a %d×%d latent (trace)", k.h, k.w)
	}
	return fmt.Sprintf("a %d×%d latent", k.h, k.w)
}

// NewTiny returns a TAESD autoencoder with the given config whose weights come from src. The
// decoder's weights are "decoder.layers.{j}", the encoder's "encoder.layers.{j}"; each is read
// when its graph is first built, so a folder without encoder weights still decodes.
func NewTiny(cfg *weights.TinyVAEConfig, src weights.TensorSource) (*Tiny, error) {
	if cfg == nil {
		return nil, fmt.Errorf("vae: nil config")
	}
	if src == nil {
		return nil, fmt.Errorf("vae: nil weight source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	t := &Tiny{cfg: cfg}
	params := nn.NewParams(src)
	t.runner = nn.NewRunner("vae", params, t.build)
	t.enc = nn.NewRunner("vae_encoder", params, t.buildEncoder)
	return t, nil
}

// SetCache makes the decoder and the encoder keep their compiled graphs in c, shared with the
// other models of a pipeline under one byte budget.
func (t *Tiny) SetCache(c *nn.ProgramCache) {
	t.runner.SetCache(c)
	t.enc.SetCache(c)
}

// Config returns the decoder's configuration.
func (t *Tiny) Config() *weights.TinyVAEConfig { return t.cfg }

// ScalingFactor is the factor latents are divided by before decoding.
func (t *Tiny) ScalingFactor() float64 { return t.cfg.ScalingFactor }

// UpscaleFactor is how many pixels one latent position becomes along each side.
func (t *Tiny) UpscaleFactor() int {
	f := 1
	for i := 0; i < len(t.cfg.NumDecoderBlocks)-1; i++ {
		f *= t.cfg.UpsamplingScalingFactor
	}
	return f
}

// LatentChannels is the number of channels of a latent.
func (t *Tiny) LatentChannels() int { return t.cfg.LatentChannels }

// Unused lists the decoder tensors of the weights that the decoder does not use.
func (t *Tiny) Unused() []string { return t.runner.Params().Unused("decoder.", nil) }

// checkSize checks a latent size.
func (t *Tiny) checkSize(h, w int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("vae: latent size %d×%d is not positive", h, w)
	}
	return nil
}

// Prepare builds (once) the graph for an h×w latent and checks every weight it needs.
func (t *Tiny) Prepare(ctx context.Context, h, w int) error {
	if err := t.checkSize(h, w); err != nil {
		return err
	}
	_, err := t.runner.Program(ctx, tinyKey{h: h, w: w})
	return err
}

// MACs returns the multiply-adds of decoding an h×w latent (all in convolutions).
func (t *Tiny) MACs(ctx context.Context, h, w int) (int64, error) {
	if err := t.checkSize(h, w); err != nil {
		return 0, err
	}
	c, _, err := t.runner.MACs(ctx, tinyKey{h: h, w: w})
	return c, err
}

// Decode turns x₀ [latent_channels, h, w] (already divided by the scaling factor) into an
// image [out_channels, H, W] in [-1, 1] (before clamping).
func (t *Tiny) Decode(ctx context.Context, latents []float32, h, w int) ([]float32, error) {
	outs, err := t.run(ctx, latents, h, w, false)
	if err != nil {
		return nil, err
	}
	return outs["out"], nil
}

// Trace decodes like Decode and also returns the output of every layer, "layers.{j}", for tests
// and debugging.
func (t *Tiny) Trace(ctx context.Context, latents []float32, h, w int) (map[string][]float32, error) {
	return t.run(ctx, latents, h, w, true)
}

func (t *Tiny) run(ctx context.Context, latents []float32, h, w int, trace bool) (map[string][]float32, error) {
	if err := t.checkSize(h, w); err != nil {
		return nil, err
	}
	if len(latents) != t.cfg.LatentChannels*h*w {
		return nil, fmt.Errorf("vae: latents have %d values, want %d×%d×%d", len(latents), t.cfg.LatentChannels, h, w)
	}
	key := tinyKey{h: h, w: w, trace: trace}
	in := map[string][]float32{"latents": latents}
	if trace {
		return t.runner.RunOnce(ctx, key, in)
	}
	return t.runner.Run(ctx, key, in)
}

// build describes the decoder graph for key: its output "out" and, when tracing, every layer's
// output "layers.{j}".
func (t *Tiny) build(b *nn.Builder, key tinyKey) (map[string]*nn.Node, error) {
	cfg := t.cfg
	h, w, trace := key.h, key.w, key.trace
	outs := map[string]*nn.Node{}
	layers := b.Sub("decoder").Sub("layers")
	x := b.Input("latents", cfg.LatentChannels, h, w)
	x = b.TanhScale(x, 3)
	idx := 0
	next := func() *nn.Builder { l := layers.Subf("%d", idx); return l }
	record := func(n *nn.Node) {
		if trace {
			outs[fmt.Sprintf("layers.%d", idx)] = n
		}
		idx++
	}
	ch := cfg.DecoderBlockOutChannels
	if trace {
		x = layers.ConvLayer(strconv.Itoa(idx), x, ch[0], 3, 1, 1, true)
		record(x)
		x = b.Act(cfg.ActFn, x)
		record(x)
	} else {
		x = layers.ConvLayerOpts(strconv.Itoa(idx), x, ch[0], 3, 1, 1, true, nn.ConvOpts{Act: cfg.ActFn})
		idx += 2
	}
	for i, nb := range cfg.NumDecoderBlocks {
		final := i == len(cfg.NumDecoderBlocks)-1
		c := ch[i]
		for j := 0; j < nb; j++ {
			x = tinyBlock(next(), x, c, cfg.ActFn)
			record(x)
		}
		if !final {
			s := x.Shape()
			f := cfg.UpsamplingScalingFactor
			x = b.Upsample(x, s[1]*f, s[2]*f)
			record(x)
		}
		outCh := c
		if final {
			outCh = cfg.OutChannels
		}
		x = layers.ConvLayer(strconv.Itoa(idx), x, outCh, 3, 1, 1, final)
		record(x)
	}
	outs["out"] = b.Affine(x, 2, -1)
	return outs, nil
}

// tinyBlock is AutoencoderTinyBlock: ReLU(conv(x) + skip(x)) where conv is three 3×3
// convolutions with the activation between them and skip is a 1×1 convolution when the channels
// change.
func tinyBlock(b *nn.Builder, x *nn.Node, out int, act string) *nn.Node {
	skip := x
	if x.Shape()[0] != out {
		skip = b.ConvLayer("skip", x, out, 1, 1, 0, false)
	}
	h := b.ConvLayerOpts("conv.0", x, out, 3, 1, 1, true, nn.ConvOpts{Act: act})
	h = b.ConvLayerOpts("conv.2", h, out, 3, 1, 1, true, nn.ConvOpts{Act: act})
	return b.ConvLayerOpts("conv.4", h, out, 3, 1, 1, true, nn.ConvOpts{Residual: skip, Act: nn.ActReLU})
}
