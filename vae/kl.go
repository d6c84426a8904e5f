package vae

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/sdxs-go/sdxs/internal/conv"
	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// KL is a diffusers AutoencoderKL, the full Stable Diffusion VAE that SDXS ships as vae_large/:
// its decoder (post_quant_conv, conv_in, a mid block of two ResNets around one single-head
// attention over every latent pixel, up blocks of ResNets and nearest-2× upsamplers, GroupNorm,
// SiLU, conv_out) and its encoder (the mirror image with stride-2 downsamplers, then
// quant_conv), built from the folder's config.json with diffusers' module paths as weight names.
//
// Decoding a large latent in one piece needs a lot of memory (about 1 GiB of activations for a
// 512×512 picture with the SD VAE, growing with the number of pixels), so a decode whose
// activations are estimated to exceed a budget (DefaultTileBudget unless TileBudget says
// otherwise) is done in overlapping tiles that are blended together, as diffusers'
// AutoencoderKL.tiled_decode does; the encoder does the same with its own estimate
// (tiled_encode). Tiled output differs from untiled output: the mid block's attention and the
// group norms then only see one tile.
//
// Graphs are built once per size and kept in the runner's program cache (its own, unbounded,
// unless SetCache shares a bounded one). A KL is safe for concurrent use.
type KL struct {
	cfg    *weights.KLVAEConfig
	runner *nn.Runner[klKey]

	tileBudget int64
	tileLatent int
}

// klKey names one graph of a KL: the decoder for an h×w latent or the encoder for an h×w
// picture, and whether it keeps the outputs of every part.
type klKey struct {
	encoder bool
	h, w    int
	trace   bool
}

func (k klKey) String() string {
	s := fmt.Sprintf("the KL decoder, a %d×%d latent", k.h, k.w)
	if k.encoder {
		s = fmt.Sprintf("the KL encoder, a %d×%d picture", k.h, k.w)
	}
	if k.trace {
		s += " (trace)"
	}
	return s
}

// DefaultTileBudget is the activation memory above which KL.Decode works in tiles: 3 GiB. With
// the SD VAE (block_out_channels 128/256/512/512) a 512×512 decode needs about 1.0 GiB and
// 768×768 2.3 GiB, and both run in one piece; 1024×1024 needs 4.1 GiB and is tiled (512×512
// tiles; a tiled decode holds the activations of at most two tiles). The weights come on top:
// 335 MB, plus 4× the 3×3 convolution weights that run as Winograd (their transform) at sizes
// where the planner chooses it.
const DefaultTileBudget int64 = 3 << 30

// KLOption adjusts a KL.
type KLOption func(*KL)

// TileBudget sets the activation memory, in bytes, above which Decode decodes in tiles (see
// KL.DecodeBytes) and EncodeDist encodes in tiles (KL.EncodeBytes). A budget ≤ 0 means
// DefaultTileBudget.
func TileBudget(bytes int64) KLOption { return func(k *KL) { k.tileBudget = bytes } }

// TileSize sets the edge of a decoder tile in latent pixels, rounded down to a multiple of 4
// (at least 4). The default is diffusers' tile_latent_min_size: sample_size divided by the
// upscale factor (64 for the SD VAE, whose tiles are 512×512 pixels); encoder tiles are that
// many latent pixels too. When even a tile of that size exceeds the budget, it is halved until
// it fits (down to 8).
func TileSize(latent int) KLOption { return func(k *KL) { k.tileLatent = latent } }

// NewKL returns an AutoencoderKL with the given config whose weights come from src (the tensors
// of a vae_large/ folder: "decoder.…", "encoder.…", "quant_conv.…", "post_quant_conv.…").
// Weights are read when a graph first needs them.
func NewKL(cfg *weights.KLVAEConfig, src weights.TensorSource, opts ...KLOption) (*KL, error) {
	if cfg == nil {
		return nil, fmt.Errorf("vae: nil config")
	}
	if src == nil {
		return nil, fmt.Errorf("vae: nil weight source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	k := &KL{cfg: cfg}
	k.runner = nn.NewRunner("vae", nn.NewParams(src), k.graph)
	for _, o := range opts {
		if o != nil {
			o(k)
		}
	}
	if k.tileBudget <= 0 {
		k.tileBudget = DefaultTileBudget
	}
	if k.tileLatent <= 0 {
		k.tileLatent = cfg.SampleSize / k.UpscaleFactor()
	}
	k.tileLatent = max(4, k.tileLatent&^3)
	return k, nil
}

// SetCache makes the autoencoder keep its compiled graphs in c, shared with the other models of
// a pipeline under one byte budget.
func (k *KL) SetCache(c *nn.ProgramCache) { k.runner.SetCache(c) }

// Config returns the autoencoder's configuration.
func (k *KL) Config() *weights.KLVAEConfig { return k.cfg }

// ScalingFactor is the factor latents are divided by before decoding (and encoded latents
// multiplied by): the config's scaling_factor, 0.18215 for the SD VAE.
func (k *KL) ScalingFactor() float64 { return k.cfg.ScalingFactor }

// UpscaleFactor is how many pixels one latent position becomes along each side: 2 to the number
// of blocks minus one (8 for the SD VAE).
func (k *KL) UpscaleFactor() int { return 1 << (len(k.cfg.BlockOutChannels) - 1) }

// LatentChannels is the number of channels of a latent.
func (k *KL) LatentChannels() int { return k.cfg.LatentChannels }

// Unused lists the tensors of the weights that no graph built so far has used. After decoding
// and encoding once it should be empty; after decoding only it lists the encoder's weights.
func (k *KL) Unused() []string { return k.runner.Params().Unused("", nil) }

// Prepare builds (once) the decoder graph Decode keeps for an h×w latent (the whole latent's,
// or its first tile's when it tiles) and checks every weight it needs.
func (k *KL) Prepare(ctx context.Context, h, w int) error {
	tiles, _, err := k.tiles(h, w)
	if err != nil {
		return err
	}
	_, err = k.runner.Program(ctx, klKey{h: tiles[0].h, w: tiles[0].w})
	return err
}

// MACs returns the multiply-adds in convolutions and linear layers of decoding an h×w latent
// the way Decode does (summed over tiles when it tiles); attention products are not counted. It
// builds the graph Prepare builds if needed. Every convolution of the decoder keeps its input's
// size and its linear layers work per latent pixel, so the count is the first tile's per latent
// pixel times the pixels decoded.
func (k *KL) MACs(ctx context.Context, h, w int) (int64, error) {
	tiles, _, err := k.tiles(h, w)
	if err != nil {
		return 0, err
	}
	first := tiles[0]
	c, _, err := k.runner.MACs(ctx, klKey{h: first.h, w: first.w})
	if err != nil {
		return 0, err
	}
	var pixels int64
	for _, t := range tiles {
		pixels += int64(t.h) * int64(t.w)
	}
	return c / int64(first.h*first.w) * pixels, nil
}

// AttentionMACs returns the multiply-adds of the attention score and value products of
// decoding an h×w latent in one piece (2·N²·C for N latent pixels and C channels).
func (k *KL) AttentionMACs(h, w int) int64 {
	if !k.cfg.MidBlockAddAttention {
		return 0
	}
	n := int64(h) * int64(w)
	return 2 * n * n * int64(k.cfg.BlockOutChannels[len(k.cfg.BlockOutChannels)-1])
}

// DecodeBytes estimates the memory, in bytes, of the activations (intermediate buffers and
// scratch) of decoding an h×w latent in one piece; the weights are not included. It is computed
// from the config without building the graph: at each resolution the buffer plan holds at most
// four tensors of the widest channel count there (measured: 3.8 at the finest), plus the
// attention's scores for 256 query rows and 16 MiB for the convolutions' scratch. For the SD VAE
// it is 1.0 GiB at 64×64 (a 512×512 picture), within 5% of what the plan allocates.
func (k *KL) DecodeBytes(h, w int) int64 {
	ch := k.cfg.BlockOutChannels
	n := len(ch)
	var peak, scratch int64
	for i := 0; i < n; i++ {
		// Up block i works at h·2^i × w·2^i; its input has ch[n-i] channels (ch[n-1] for the
		// first) and its output ch[n-1-i]; the previous block's upsampler wrote its input at this
		// size.
		s := int64(h<<i) * int64(w<<i)
		in := ch[n-1]
		if i > 0 {
			in = ch[n-i]
		}
		c := int64(max(in, ch[n-1-i]))
		peak = max(peak, 4*c*s)
		scratch = max(scratch, convScratch(int(c), int(c), h<<i, w<<i))
	}
	attn := int64(min(256, h*w)) * int64(h*w)
	return 4*(peak+attn) + scratch
}

// EncodeBytes estimates the memory, in bytes, of the activations of encoding an h×w picture in
// one piece (weights not included), as DecodeBytes does for the decoder: at each resolution the
// buffer plan holds about four tensors of the widest channel count there (measured: 4.04 at
// 512×512, the padding of the downsamplers included; the estimate takes 4.25), plus the
// attention's scores for 256 query rows and 16 MiB of scratch. For the SD VAE it is 0.55 GiB at
// 512×512.
func (k *KL) EncodeBytes(h, w int) int64 {
	ch := k.cfg.BlockOutChannels
	var peak, scratch int64
	hi, wi := h, w
	for i := range ch {
		c := ch[i]
		if i > 0 {
			c = max(c, ch[i-1])
		}
		peak = max(peak, int64(c)*int64(hi)*int64(wi))
		scratch = max(scratch, convScratch(c, c, hi, wi))
		hi, wi = downsampled(hi), downsampled(wi)
	}
	lh, lw := k.EncodedSize(h, w)
	n := int64(lh) * int64(lw)
	return 4*(peak*17/4+min(256, n)*n) + scratch
}

// convScratchBytes bounds the scratch memory of one convolution (im2col columns or Winograd
// chunks) in DecodeBytes.
const convScratchBytes = 16 << 20

// convScratch returns the scratch bytes of the widest 3×3 convolution of cin → cout channels on
// an h×w image: at least convScratchBytes, more where a lazy Winograd convolution transforms
// its weights once per run (large images).
func convScratch(cin, cout, h, w int) int64 {
	if !conv.LazyFast() || h < 1 || w < 1 {
		return convScratchBytes
	}
	return max(convScratchBytes, int64(conv.NewWinogradLazy(cin, cout, h, w, 1, false).ScratchSize())*4)
}

// Decode turns latents [latent_channels, h, w] (x₀ already divided by the scaling factor) into
// an image [out_channels, H, W] (H = h·UpscaleFactor) in [-1, 1] before clamping, as diffusers'
// AutoencoderKL.decode does. When DecodeBytes(h, w) exceeds the tile budget it decodes
// overlapping tiles and blends them as diffusers' tiled_decode does.
func (k *KL) Decode(ctx context.Context, latents []float32, h, w int) ([]float32, error) {
	if err := k.checkLatents(latents, h, w); err != nil {
		return nil, err
	}
	tiles, t, err := k.tiles(h, w)
	if err != nil {
		return nil, err
	}
	if t == 0 {
		outs, err := k.run(ctx, klKey{h: h, w: w}, "latents", latents)
		if err != nil {
			return nil, err
		}
		return outs["out"], nil
	}
	return k.decodeTiles(ctx, latents, h, w, tiles, t)
}

// Trace decodes in one piece like Decode and also returns the output of each part, named by
// its diffusers module path: "post_quant_conv", "decoder.conv_in", "decoder.mid_block.resnets.0",
// "decoder.mid_block.attentions.0", "decoder.mid_block", "decoder.up_blocks.{i}",
// "decoder.conv_act" (conv_norm_out then SiLU) and "out" (the decoded image), for tests and
// debugging.
func (k *KL) Trace(ctx context.Context, latents []float32, h, w int) (map[string][]float32, error) {
	if err := k.checkLatents(latents, h, w); err != nil {
		return nil, err
	}
	return k.run(ctx, klKey{h: h, w: w, trace: true}, "latents", latents)
}

func (k *KL) checkLatents(latents []float32, h, w int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("vae: latent size %d×%d is not positive", h, w)
	}
	if len(latents) != k.cfg.LatentChannels*h*w {
		return fmt.Errorf("vae: latents have %d values, want %d×%d×%d", len(latents), k.cfg.LatentChannels, h, w)
	}
	return nil
}

// Posterior is the diagonal Gaussian distribution over latents that the encoder predicts for
// one image (diffusers' DiagonalGaussianDistribution), before scaling.
type Posterior struct {
	// Mean and Std are [Channels, Height, Width]. Std = exp(logvar/2) with logvar clamped to
	// [-30, 20], as diffusers computes it.
	Mean, Std []float32
	// Channels, Height and Width give the latent's shape.
	Channels, Height, Width int
}

// Mode returns the distribution's mode, its mean (diffusers' latent_dist.mode()).
func (p *Posterior) Mode() []float32 {
	if p == nil {
		return nil
	}
	return p.Mean
}

// Sample returns Mean + Std·noise, diffusers' latent_dist.sample(generator) when noise is
// torch.randn of the latent's shape from that generator (sampler.Generator.Randn).
func (p *Posterior) Sample(noise []float32) ([]float32, error) {
	if p == nil {
		return nil, fmt.Errorf("vae: nil posterior")
	}
	if len(p.Std) != len(p.Mean) {
		return nil, fmt.Errorf("vae: posterior has %d means and %d standard deviations", len(p.Mean), len(p.Std))
	}
	if len(noise) != len(p.Mean) {
		return nil, fmt.Errorf("vae: noise has %d values, the latent %d×%d×%d", len(noise), p.Channels, p.Height, p.Width)
	}
	out := make([]float32, len(p.Mean))
	for i := range out {
		// The conversion rounds the product as PyTorch does (no fused multiply-add).
		out[i] = p.Mean[i] + float32(p.Std[i]*noise[i])
	}
	return out, nil
}

// DownscaleFactor is how many pixels along each side become one latent position in the
// encoder: 2 for each downsampler (8 for the SD VAE).
func (k *KL) DownscaleFactor() int { return k.UpscaleFactor() }

// EncodedSize returns the latent size the encoder makes of an h×w picture: each downsampler
// (pad one row and column at the bottom and right, 3×3 convolution of stride 2) halves a side
// rounding down, so h/8 × w/8 when both are multiples of 8. A side that reaches 1 before the
// last downsampler gives 0: such a picture is too small to encode.
func (k *KL) EncodedSize(h, w int) (lh, lw int) {
	lh, lw = h, w
	for i := 1; i < len(k.cfg.BlockOutChannels); i++ {
		lh, lw = downsampled(lh), downsampled(lw)
	}
	return lh, lw
}

// downsampled is the output size of Downsample2D(padding=0) on n: (n + 1 − 3) / 2 + 1, floored.
func downsampled(n int) int {
	if n < 2 {
		return 0
	}
	return (n-2)/2 + 1
}

// PrepareEncoder builds (once) the encoder graph EncodeDist keeps for an h×w picture (the whole
// picture's, or its first tile's when it tiles) and checks every weight it needs.
func (k *KL) PrepareEncoder(ctx context.Context, h, w int) error {
	if err := k.checkPicture(h, w); err != nil {
		return err
	}
	tiles, _ := k.encodeTiles(h, w)
	_, err := k.runner.Program(ctx, klKey{encoder: true, h: tiles[0].h, w: tiles[0].w})
	return err
}

// EncoderMACs returns the multiply-adds in convolutions and linear layers of encoding an h×w
// picture the way EncodeDist does (summed over tiles when it tiles); attention products are not
// counted.
func (k *KL) EncoderMACs(ctx context.Context, h, w int) (int64, error) {
	if err := k.checkPicture(h, w); err != nil {
		return 0, err
	}
	tiles, t := k.encodeTiles(h, w)
	first := tiles[0]
	c, _, err := k.runner.MACs(ctx, klKey{encoder: true, h: first.h, w: first.w})
	if err != nil || t == 0 {
		return c, err
	}
	// Tiles have sides that are multiples of the downscale factor, so every layer's output
	// scales with the tile's area: the count is the first tile's times the area ratio.
	var total float64
	for _, tl := range tiles {
		total += float64(c) * float64(tl.h*tl.w) / float64(first.h*first.w)
	}
	return int64(math.Round(total)), nil
}

// Encode turns an image [in_channels, h, w] in [-1, 1] (diffusers' image processor: RGB/255·2−1)
// into the mean of its latent distribution [latent_channels, EncodedSize(h, w)], NOT yet
// multiplied by the scaling factor: init latents = ScalingFactor()·Encode(…). This is
// diffusers' retrieve_latents with sample_mode "argmax". The image-to-image pipeline's default
// draws a sample with the request's generator instead: EncodeDist(…).Sample(noise), noise being
// the generator's first draw of the latent's shape (the noise added at the first timestep is
// its second). When EncodeBytes(h, w) exceeds the tile budget and h and w are multiples of
// DownscaleFactor, it encodes overlapping tiles and blends their moments (mean and log-variance)
// as diffusers' tiled_encode does.
func (k *KL) Encode(ctx context.Context, image []float32, h, w int) ([]float32, error) {
	p, err := k.EncodeDist(ctx, image, h, w)
	if err != nil {
		return nil, err
	}
	return p.Mean, nil
}

// EncodeDist is Encode returning the whole latent distribution.
func (k *KL) EncodeDist(ctx context.Context, image []float32, h, w int) (*Posterior, error) {
	if err := k.checkImage(image, h, w); err != nil {
		return nil, err
	}
	lh, lw := k.EncodedSize(h, w)
	tiles, t := k.encodeTiles(h, w)
	if t > 0 {
		m, err := k.encodeMomentsTiled(ctx, image, h, w, tiles, t)
		if err != nil {
			return nil, err
		}
		return posterior(m, k.cfg.LatentChannels, lh, lw), nil
	}
	outs, err := k.run(ctx, klKey{encoder: true, h: h, w: w}, "image", image)
	if err != nil {
		return nil, err
	}
	return posterior(outs["moments"], k.cfg.LatentChannels, lh, lw), nil
}

// TraceEncode encodes in one piece like Encode and returns the output of each part, named by
// its diffusers module path ("encoder.conv_in", "encoder.down_blocks.{i}", "encoder.mid_block",
// "encoder.conv_out", "quant_conv") and "moments" (mean and logvar before clamping).
func (k *KL) TraceEncode(ctx context.Context, image []float32, h, w int) (map[string][]float32, error) {
	if err := k.checkImage(image, h, w); err != nil {
		return nil, err
	}
	return k.run(ctx, klKey{encoder: true, h: h, w: w, trace: true}, "image", image)
}

// checkPicture checks that an h×w picture can be encoded.
func (k *KL) checkPicture(h, w int) error {
	if lh, lw := k.EncodedSize(h, w); lh <= 0 || lw <= 0 {
		return fmt.Errorf("vae: a %d×%d picture is too small for the KL encoder (%d downsamplers)", h, w, len(k.cfg.BlockOutChannels)-1)
	}
	return nil
}

// checkImage checks an encoder input.
func (k *KL) checkImage(image []float32, h, w int) error {
	if err := k.checkPicture(h, w); err != nil {
		return err
	}
	if len(image) != k.cfg.InChannels*h*w {
		return fmt.Errorf("vae: image has %d values, want %d×%d×%d", len(image), k.cfg.InChannels, h, w)
	}
	return nil
}

// posterior splits moments [2C, h, w] into the mean and the standard deviation.
func posterior(moments []float32, c, h, w int) *Posterior {
	n := c * h * w
	p := &Posterior{Mean: append([]float32(nil), moments[:n]...), Std: make([]float32, n), Channels: c, Height: h, Width: w}
	for i, lv := range moments[n : 2*n] {
		lv = min(max(lv, -30), 20)
		p.Std[i] = float32(math.Exp(float64(0.5 * lv)))
	}
	return p
}

// run runs the graph of key on one input and returns every output; trace graphs are built
// for the run and not kept.
func (k *KL) run(ctx context.Context, key klKey, input string, x []float32) (map[string][]float32, error) {
	in := map[string][]float32{input: x}
	if key.trace {
		return k.runner.RunOnce(ctx, key, in)
	}
	return k.runner.Run(ctx, key, in)
}

// graph describes the decoder or the encoder of key.
func (k *KL) graph(b *nn.Builder, key klKey) (map[string]*nn.Node, error) {
	outs := map[string]*nn.Node{}
	record := func(name string, n *nn.Node) {
		if key.trace {
			outs[name] = n
		}
	}
	if key.encoder {
		x := k.encoder(b, key.h, key.w, record)
		if lh, lw := k.EncodedSize(key.h, key.w); !slices.Equal(x.Shape(), []int{2 * k.cfg.LatentChannels, lh, lw}) {
			return nil, fmt.Errorf("vae: the KL encoder makes %v of a %d×%d picture, EncodedSize says %d×%d", x.Shape(), key.h, key.w, lh, lw)
		}
		outs["moments"] = x
	} else {
		outs["out"] = k.decoder(b, key.h, key.w, record)
	}
	return outs, nil
}

// The GroupNorm epsilon of every normalisation in diffusers' Encoder and Decoder.
const klEps = 1e-6

// decoder is diffusers' post_quant_conv then Decoder.forward, for an h×w latent.
func (k *KL) decoder(b *nn.Builder, h, w int, record func(string, *nn.Node)) *nn.Node {
	cfg := k.cfg
	ch := cfg.BlockOutChannels
	n := len(ch)
	x := b.Input("latents", cfg.LatentChannels, h, w)
	if cfg.UsePostQuantConv {
		x = b.ConvLayer("post_quant_conv", x, cfg.LatentChannels, 1, 1, 0, true)
		record("post_quant_conv", x)
	}
	d := b.Sub("decoder")
	x = d.ConvLayer("conv_in", x, ch[n-1], 3, 1, 1, true)
	record("decoder.conv_in", x)
	x = k.midBlock(d.Sub("mid_block"), x, "decoder.mid_block", record)
	record("decoder.mid_block", x)
	for i := 0; i < n; i++ {
		out := ch[n-1-i]
		ub := d.Sub("up_blocks").Subf("%d", i)
		for j := 0; j < cfg.LayersPerBlock+1; j++ {
			x = k.resnet(ub.Sub("resnets").Subf("%d", j), x, out)
		}
		if i < n-1 {
			s := x.Shape()
			x = b.Upsample(x, 2*s[1], 2*s[2])
			x = ub.ConvLayer("upsamplers.0.conv", x, out, 3, 1, 1, true)
		}
		record(fmt.Sprintf("decoder.up_blocks.%d", i), x)
	}
	x = d.GroupNorm("conv_norm_out", x, cfg.NormNumGroups, klEps, true)
	record("decoder.conv_act", x)
	return d.ConvLayer("conv_out", x, cfg.OutChannels, 3, 1, 1, true)
}

// encoder is diffusers' Encoder.forward then quant_conv, for an h×w picture. It returns the
// moments [2·latent_channels, EncodedSize(h, w)].
func (k *KL) encoder(b *nn.Builder, h, w int, record func(string, *nn.Node)) *nn.Node {
	cfg := k.cfg
	ch := cfg.BlockOutChannels
	n := len(ch)
	x := b.Input("image", cfg.InChannels, h, w)
	e := b.Sub("encoder")
	x = e.ConvLayer("conv_in", x, ch[0], 3, 1, 1, true)
	record("encoder.conv_in", x)
	for i := 0; i < n; i++ {
		db := e.Sub("down_blocks").Subf("%d", i)
		for j := 0; j < cfg.LayersPerBlock; j++ {
			x = k.resnet(db.Sub("resnets").Subf("%d", j), x, ch[i])
		}
		if i < n-1 {
			// Downsample2D with padding 0: F.pad(x, (0, 1, 0, 1)), then a stride-2 3×3
			// convolution without padding.
			x = b.Pad(x, 0, 1, 0, 1)
			x = db.ConvLayer("downsamplers.0.conv", x, ch[i], 3, 2, 0, true)
		}
		record(fmt.Sprintf("encoder.down_blocks.%d", i), x)
	}
	x = k.midBlock(e.Sub("mid_block"), x, "encoder.mid_block", record)
	record("encoder.mid_block", x)
	x = e.GroupNorm("conv_norm_out", x, cfg.NormNumGroups, klEps, true)
	x = e.ConvLayer("conv_out", x, 2*cfg.LatentChannels, 3, 1, 1, true)
	record("encoder.conv_out", x)
	if cfg.UseQuantConv {
		x = b.ConvLayer("quant_conv", x, 2*cfg.LatentChannels, 1, 1, 0, true)
		record("quant_conv", x)
	}
	return x
}

// midBlock is UNetMidBlock2D without a time embedding: a ResNet, the attention (when
// mid_block_add_attention), a ResNet.
func (k *KL) midBlock(b *nn.Builder, x *nn.Node, path string, record func(string, *nn.Node)) *nn.Node {
	c := x.Shape()[0]
	x = k.resnet(b.Sub("resnets").Sub("0"), x, c)
	record(path+".resnets.0", x)
	if k.cfg.MidBlockAddAttention {
		x = k.attention(b.Sub("attentions").Sub("0"), x)
		record(path+".attentions.0", x)
	}
	return k.resnet(b.Sub("resnets").Sub("1"), x, c)
}

// resnet is ResnetBlock2D without a time embedding (output_scale_factor 1):
// conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x), the shortcut a 1×1 convolution when
// the channels change.
func (k *KL) resnet(b *nn.Builder, x *nn.Node, out int) *nn.Node {
	g := k.cfg.NormNumGroups
	skip := x
	if x.Shape()[0] != out {
		skip = b.ConvLayer("conv_shortcut", x, out, 1, 1, 0, true)
	}
	h := b.GroupNorm("norm1", x, g, klEps, true)
	h = b.ConvLayer("conv1", h, out, 3, 1, 1, true)
	h = b.GroupNorm("norm2", h, g, klEps, true)
	return b.ConvLayerOpts("conv2", h, out, 3, 1, 1, true, nn.ConvOpts{Residual: skip})
}

// attention is the mid block's Attention (heads = 1, head size = channels, residual
// connection, rescale_output_factor 1): the group-normed image as H·W tokens attends to itself,
// and the projected result is added to the input.
func (k *KL) attention(b *nn.Builder, x *nn.Node) *nn.Node {
	s := x.Shape()
	c, hw := s[0], s[1]*s[2]
	h := b.GroupNorm("group_norm", x, k.cfg.NormNumGroups, klEps, false)
	t := b.Transpose(h, hw, c)
	q := b.LinearLayer("to_q", t, c, true)
	kk := b.LinearLayer("to_k", t, c, true)
	v := b.LinearLayer("to_v", t, c, true)
	a := b.Attention(q, kk, v, 1, false)
	o := b.LinearLayer("to_out.0", a, c, true)
	return b.Add(b.Transpose(o, c, s[1], s[2]), x)
}

// ---- tiled decoding and encoding ----

// tile is one tile of a tiled decode or encode: input rows [y, y+h) and columns [x, x+w), at
// grid position (row, col).
type tile struct {
	row, col   int
	y, x, h, w int
}

// grid returns diffusers' tiles of an h×w input: t×t (fewer at the bottom and right edges),
// starting every ¾·t (int(t·(1 − 0.25)), exact when t is a multiple of 4).
func grid(h, w, t int) []tile {
	var tiles []tile
	step := t * 3 / 4
	for r, y := 0, 0; y < h; r, y = r+1, y+step {
		for c, x := 0, 0; x < w; c, x = c+1, x+step {
			tiles = append(tiles, tile{row: r, col: c, y: y, x: x, h: min(t, h-y), w: min(t, w-x)})
		}
	}
	return tiles
}

// tiles returns how Decode splits an h×w latent: one tile when its estimated memory fits the
// budget (t = 0), else diffusers' tiled_decode grid of t×t latent tiles.
func (k *KL) tiles(h, w int) (tiles []tile, t int, err error) {
	if h <= 0 || w <= 0 {
		return nil, 0, fmt.Errorf("vae: latent size %d×%d is not positive", h, w)
	}
	t = k.tileSize(h, w)
	if t == 0 {
		return []tile{{h: h, w: w}}, 0, nil
	}
	return grid(h, w, t), t, nil
}

// tileSize returns the tile edge for an h×w latent, or 0 to decode it in one piece.
func (k *KL) tileSize(h, w int) int {
	if k.DecodeBytes(h, w) <= k.tileBudget {
		return 0
	}
	t := k.tileLatent
	for t > 8 && k.DecodeBytes(t, t) > k.tileBudget {
		t = max(8, (t/2)&^3)
	}
	if t >= h && t >= w {
		return 0 // one tile is the whole latent
	}
	return t
}

// encodeTiles returns how EncodeDist splits an h×w picture: one tile when its estimated memory
// fits the budget or a side is not a multiple of the downscale factor (t = 0), else diffusers'
// tiled_encode grid of t×t pixel tiles, t = UpscaleFactor × the decoder's latent tile size
// (512 for the SD VAE), halved until a tile fits the budget.
func (k *KL) encodeTiles(h, w int) (tiles []tile, t int) {
	f := k.UpscaleFactor()
	if h%f != 0 || w%f != 0 || k.EncodeBytes(h, w) <= k.tileBudget {
		return []tile{{h: h, w: w}}, 0
	}
	lt := k.tileLatent
	for lt > 8 && k.EncodeBytes(lt*f, lt*f) > k.tileBudget {
		lt = max(8, (lt/2)&^3)
	}
	if t = lt * f; t >= h && t >= w {
		return []tile{{h: h, w: w}}, 0
	}
	return grid(h, w, t), t
}

// tileOut is the output [c, h, w] of one tile.
type tileOut struct {
	data []float32
	h, w int
}

// runTiles runs fn on each tile of src [c, h, w] (cut out) and returns the outputs in the order
// of tiles. first is whether the tile has the first tile's size (whose graph callers cache).
func runTiles(src []float32, c, h, w int, tiles []tile, fn func(in []float32, tl tile, first bool) (*tileOut, error)) ([]*tileOut, error) {
	outs := make([]*tileOut, len(tiles))
	for i, tl := range tiles {
		in := make([]float32, c*tl.h*tl.w)
		for ci := 0; ci < c; ci++ {
			for y := 0; y < tl.h; y++ {
				row := src[(ci*h+tl.y+y)*w+tl.x:]
				copy(in[(ci*tl.h+y)*tl.w:(ci*tl.h+y+1)*tl.w], row[:tl.w])
			}
		}
		o, err := fn(in, tl, tl.h == tiles[0].h && tl.w == tiles[0].w)
		if err != nil {
			return nil, err
		}
		outs[i] = o
	}
	return outs, nil
}

// blendTiles assembles the outputs of a tile grid into one [c, H, W] as diffusers'
// tiled_decode and tiled_encode do: in grid order, each output is blended (in place) with the
// already blended one above it (blend_v) and then with the one to its left (blend_h) over blend
// rows or columns, and its first limit rows and columns are kept.
func blendTiles(tiles []tile, outs []*tileOut, c, H, W, blend, limit int) []float32 {
	at := map[[2]int]*tileOut{}
	for i, tl := range tiles {
		at[[2]int{tl.row, tl.col}] = outs[i]
	}
	out := make([]float32, c*H*W)
	for _, tl := range tiles {
		cur := at[[2]int{tl.row, tl.col}]
		if up, ok := at[[2]int{tl.row - 1, tl.col}]; ok {
			// blend_v: rows y < e take a[-e+y]·(1 − y/e) + b[y]·(y/e).
			e := min(up.h, cur.h, blend)
			for ci := 0; ci < c; ci++ {
				for y := 0; y < e; y++ {
					wa, wb := blendWeights(y, e)
					arow := up.data[(ci*up.h+up.h-e+y)*up.w:]
					brow := cur.data[(ci*cur.h+y)*cur.w : (ci*cur.h+y+1)*cur.w]
					for x := range brow {
						brow[x] = float32(arow[x]*wa) + float32(brow[x]*wb)
					}
				}
			}
		}
		if left, ok := at[[2]int{tl.row, tl.col - 1}]; ok {
			// blend_h: columns x < e take a[:, -e+x]·(1 − x/e) + b[:, x]·(x/e).
			e := min(left.w, cur.w, blend)
			for ci := 0; ci < c; ci++ {
				for y := 0; y < cur.h; y++ {
					arow := left.data[(ci*left.h+y)*left.w:]
					brow := cur.data[(ci*cur.h+y)*cur.w:]
					for x := 0; x < e; x++ {
						wa, wb := blendWeights(x, e)
						brow[x] = float32(arow[left.w-e+x]*wa) + float32(brow[x]*wb)
					}
				}
			}
		}
		// Keep the first limit rows and columns, at the tile's place in the result.
		oy, ox := tl.row*limit, tl.col*limit
		kh, kw := min(limit, cur.h), min(limit, cur.w)
		for ci := 0; ci < c; ci++ {
			for y := 0; y < kh; y++ {
				copy(out[(ci*H+oy+y)*W+ox:(ci*H+oy+y)*W+ox+kw], cur.data[(ci*cur.h+y)*cur.w:])
			}
		}
	}
	return out
}

// decodeTiles decodes each tile of an h×w latent and blends them as diffusers' tiled_decode
// does, over blend = ¼ of a full tile's pixels, keeping t·f − blend rows and columns of each.
// The graph of the first tile's size, which most tiles have, is kept in the cache; the smaller
// tiles at the bottom and right edges are decoded by graphs built for the run and dropped, so
// that a tiled decode holds at most two tiles' activations.
func (k *KL) decodeTiles(ctx context.Context, latents []float32, h, w int, tiles []tile, t int) ([]float32, error) {
	f := k.UpscaleFactor()
	outs, err := runTiles(latents, k.cfg.LatentChannels, h, w, tiles, func(z []float32, tl tile, first bool) (*tileOut, error) {
		key := klKey{h: tl.h, w: tl.w}
		in := map[string][]float32{"latents": z}
		var o map[string][]float32
		var err error
		if first {
			o, err = k.runner.Run(ctx, key, in)
		} else {
			o, err = k.runner.RunOnce(ctx, key, in)
		}
		if err != nil {
			return nil, err
		}
		return &tileOut{data: o["out"], h: tl.h * f, w: tl.w * f}, nil
	})
	if err != nil {
		return nil, err
	}
	blend := t * f / 4 // int(tile_sample_min_size · 0.25)
	return blendTiles(tiles, outs, k.cfg.OutChannels, h*f, w*f, blend, t*f-blend), nil
}

// encodeMomentsTiled encodes each tile of an h×w picture and blends the moments as diffusers'
// tiled_encode does, over blend = ¼ of a full tile's latent pixels, keeping t/f − blend rows
// and columns of each; graphs are kept as decodeTiles keeps them.
func (k *KL) encodeMomentsTiled(ctx context.Context, image []float32, h, w int, tiles []tile, t int) ([]float32, error) {
	outs, err := runTiles(image, k.cfg.InChannels, h, w, tiles, func(x []float32, tl tile, first bool) (*tileOut, error) {
		key := klKey{encoder: true, h: tl.h, w: tl.w}
		in := map[string][]float32{"image": x}
		var o map[string][]float32
		var err error
		if first {
			o, err = k.runner.Run(ctx, key, in)
		} else {
			o, err = k.runner.RunOnce(ctx, key, in)
		}
		if err != nil {
			return nil, err
		}
		lh, lw := k.EncodedSize(tl.h, tl.w)
		return &tileOut{data: o["moments"], h: lh, w: lw}, nil
	})
	if err != nil {
		return nil, err
	}
	lt := t / k.UpscaleFactor()
	blend := lt / 4 // int(tile_latent_min_size · 0.25)
	lh, lw := k.EncodedSize(h, w)
	return blendTiles(tiles, outs, 2*k.cfg.LatentChannels, lh, lw, blend, lt-blend), nil
}

// blendWeights returns PyTorch's weights of position i of an e-wide blend: the Python floats
// 1 − i/e and i/e, rounded to float32 when they multiply a float32 tensor.
func blendWeights(i, e int) (wa, wb float32) {
	r := float64(i) / float64(e)
	return float32(1 - r), float32(r)
}
