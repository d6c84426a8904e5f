// Package vae holds the image decoders that turn latents into pixels: the AutoencoderTiny
// (TAESD) decoder that SDXS ships as vae/.
package vae

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// Tiny is the AutoencoderTiny (TAESD) decoder with its weights. It is safe for concurrent use.
type Tiny struct {
	cfg    *weights.TinyVAEConfig
	params *nn.Params

	mu    sync.Mutex
	progs map[[3]int]*nn.Program
}

// NewTiny returns a TAESD decoder with the given config whose weights come from src.
func NewTiny(cfg *weights.TinyVAEConfig, src weights.TensorSource) (*Tiny, error) {
	if cfg == nil {
		return nil, fmt.Errorf("vae: nil config")
	}
	return &Tiny{cfg: cfg, params: nn.NewParams(src), progs: make(map[[3]int]*nn.Program)}, nil
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

// Unused lists the decoder tensors of the weights that the decoder does not use.
func (t *Tiny) Unused() []string { return t.params.Unused("decoder.", nil) }

// Prepare builds (once) the graph for an h×w latent and checks every weight it needs.
func (t *Tiny) Prepare(h, w int) error {
	_, err := t.program(h, w, false)
	return err
}

// MACs returns the multiply-adds of decoding an h×w latent (all in convolutions).
func (t *Tiny) MACs(h, w int) (int64, error) {
	p, err := t.program(h, w, false)
	if err != nil {
		return 0, err
	}
	c, _ := p.MACs()
	return c, nil
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
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("vae: latent size %d×%d is not positive", h, w)
	}
	if len(latents) != t.cfg.LatentChannels*h*w {
		return nil, fmt.Errorf("vae: latents have %d values, want %d×%d×%d", len(latents), t.cfg.LatentChannels, h, w)
	}
	prog, err := t.program(h, w, trace)
	if err != nil {
		return nil, err
	}
	outs := make(map[string][]float32)
	for _, name := range prog.OutputNames() {
		s := prog.OutputShape(name)
		outs[name] = make([]float32, s[0]*s[1]*s[2])
	}
	if err := prog.Run(ctx, map[string][]float32{"latents": latents}, outs); err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	return outs, nil
}

func (t *Tiny) program(h, w int, trace bool) (*nn.Program, error) {
	key := [3]int{h, w, 0}
	if trace {
		key[2] = 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.progs[key]; ok {
		return p, nil
	}
	cfg := t.cfg
	p, err := nn.Build(t.params, func(b *nn.Builder) map[string]*nn.Node {
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
		return outs
	})
	if err != nil {
		return nil, fmt.Errorf("vae: building the decoder graph for a %d×%d latent: %w", h, w, err)
	}
	if !trace {
		t.progs[key] = p
	}
	return p, nil
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
