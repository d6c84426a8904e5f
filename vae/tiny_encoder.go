package vae

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sdxs-go/sdxs/internal/nn"
)

// The TAESD encoder (diffusers' EncoderTiny): (x + 1) / 2 maps the picture from [−1, 1] to
// TAESD's [0, 1]; then, for each level i, a 3×3 convolution (level 0: in_channels → channels[0]
// with bias; later levels: stride 2, no bias) followed by num_encoder_blocks[i] TAESD blocks;
// then a 3×3 convolution to latent_channels with bias. The layers are numbered as diffusers'
// nn.Sequential numbers them: "encoder.layers.{j}". AutoencoderTiny.encode applies no scaling:
// the image-to-image pipeline multiplies the result by scaling_factor.

// DownscaleFactor is how many pixels along each side become one latent position in the
// encoder: 2 for each stride-2 convolution (8 for every released TAESD).
func (t *Tiny) DownscaleFactor() int {
	f := 1
	for i := 1; i < len(t.cfg.NumEncoderBlocks); i++ {
		f *= 2
	}
	return f
}

// EncodedSize returns the latent size the encoder makes of an h×w picture: each stride-2
// convolution (3×3, padding 1) halves a side rounding up, so h/8 × w/8 when both are multiples
// of 8.
func (t *Tiny) EncodedSize(h, w int) (lh, lw int) {
	lh, lw = h, w
	for i := 1; i < len(t.cfg.NumEncoderBlocks); i++ {
		lh, lw = (lh-1)/2+1, (lw-1)/2+1
	}
	return lh, lw
}

// encKey names an encoder graph: a picture size, and whether it keeps every layer's output.
type encKey struct {
	h, w  int
	trace bool
}

func (k encKey) String() string {
	if k.trace {
		return fmt.Sprintf("a %d×%d picture (trace)", k.h, k.w)
	}
	return fmt.Sprintf("a %d×%d picture", k.h, k.w)
}

// checkPictureSize checks a picture size for the encoder.
func (t *Tiny) checkPictureSize(h, w int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("vae: encoder: picture size %d×%d is not positive", h, w)
	}
	return nil
}

// PrepareEncoder builds (once) the encoder's graph for an h×w picture and checks every weight
// it needs.
func (t *Tiny) PrepareEncoder(ctx context.Context, h, w int) error {
	if err := t.checkPictureSize(h, w); err != nil {
		return err
	}
	_, err := t.enc.Program(ctx, encKey{h: h, w: w})
	return err
}

// EncoderMACs returns the multiply-adds of encoding an h×w picture (all in convolutions).
func (t *Tiny) EncoderMACs(ctx context.Context, h, w int) (int64, error) {
	if err := t.checkPictureSize(h, w); err != nil {
		return 0, err
	}
	c, _, err := t.enc.MACs(ctx, encKey{h: h, w: w})
	return c, err
}

// Encode turns a picture [in_channels, h, w] in [−1, 1] into latents [latent_channels,
// EncodedSize(h, w)], not yet multiplied by the scaling factor (AutoencoderTiny.encode).
func (t *Tiny) Encode(ctx context.Context, image []float32, h, w int) ([]float32, error) {
	outs, err := t.runEncoder(ctx, image, h, w, false)
	if err != nil {
		return nil, err
	}
	return outs["out"], nil
}

// TraceEncode encodes like Encode and also returns the output of every layer, "layers.{j}" (the
// names of diffusers' encoder.layers), for tests and debugging.
func (t *Tiny) TraceEncode(ctx context.Context, image []float32, h, w int) (map[string][]float32, error) {
	return t.runEncoder(ctx, image, h, w, true)
}

func (t *Tiny) runEncoder(ctx context.Context, image []float32, h, w int, trace bool) (map[string][]float32, error) {
	if err := t.checkPictureSize(h, w); err != nil {
		return nil, err
	}
	if len(image) != t.cfg.InChannels*h*w {
		return nil, fmt.Errorf("vae: encoder: picture has %d values, want %d×%d×%d", len(image), t.cfg.InChannels, h, w)
	}
	key := encKey{h: h, w: w, trace: trace}
	in := map[string][]float32{"image": image}
	if trace {
		return t.enc.RunOnce(ctx, key, in)
	}
	return t.enc.Run(ctx, key, in)
}

// buildEncoder describes EncoderTiny for key's picture size: the input "image", the output
// "out" and, when tracing, each layer's output "layers.{j}".
func (t *Tiny) buildEncoder(b *nn.Builder, key encKey) (map[string]*nn.Node, error) {
	cfg := t.cfg
	h, w, trace := key.h, key.w, key.trace
	outs := map[string]*nn.Node{}
	layers := b.Sub("encoder").Sub("layers")
	x := b.Input("image", cfg.InChannels, h, w)
	// x.add(1).div(2): exactly x·0.5 + 0.5 in float32 (halving is exact).
	x = b.Affine(x, 0.5, 0.5)
	idx := 0
	record := func(n *nn.Node) {
		if trace {
			outs["layers."+strconv.Itoa(idx)] = n
		}
		idx++
	}
	for i, nb := range cfg.NumEncoderBlocks {
		c := cfg.EncoderBlockOutChannels[i]
		if i == 0 {
			x = layers.ConvLayer(strconv.Itoa(idx), x, c, 3, 1, 1, true)
		} else {
			// diffusers builds this convolution with num_channels inputs: a config whose
			// channels change between levels fails here with both shapes, as in PyTorch.
			if in := x.Shape()[0]; in != c {
				return nil, fmt.Errorf("vae: encoder layer %d: stride-2 convolution of level %d takes %d channels, the previous level gives %d (encoder_block_out_channels must not change between levels)", idx, i, c, in)
			}
			x = layers.ConvLayer(strconv.Itoa(idx), x, c, 3, 2, 1, false)
		}
		record(x)
		for j := 0; j < nb; j++ {
			x = tinyBlock(layers.Sub(strconv.Itoa(idx)), x, c, cfg.ActFn)
			record(x)
		}
	}
	x = layers.ConvLayer(strconv.Itoa(idx), x, cfg.LatentChannels, 3, 1, 1, true)
	record(x)
	outs["out"] = x
	return outs, nil
}
