package sdxs

import (
	"context"
	"fmt"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/vae"
	"github.com/sdxs-go/sdxs/weights"
)

// Decoder turns latents into pixels: the TAESD decoder (*vae.Tiny, the default) or the full KL
// VAE (*vae.KL, WithVAE("large")).
type Decoder interface {
	// Decode turns latents [LatentChannels, h, w], already divided by ScalingFactor, into an
	// image [3, h·UpscaleFactor, w·UpscaleFactor] in [-1, 1] before clamping.
	Decode(ctx context.Context, latents []float32, h, w int) ([]float32, error)
	// ScalingFactor is the factor x₀ is divided by before decoding.
	ScalingFactor() float64
	// UpscaleFactor is how many pixels one latent position becomes along each side.
	UpscaleFactor() int
	// LatentChannels is the number of channels of a latent.
	LatentChannels() int
	// Prepare builds the graphs for an h×w latent and checks the weights they need.
	Prepare(ctx context.Context, h, w int) error
	// MACs returns the multiply-adds of convolutions and linear layers of decoding an h×w
	// latent.
	MACs(ctx context.Context, h, w int) (int64, error)
	// SetCache makes the decoder keep its compiled graphs in the pipeline's cache.
	SetCache(c *nn.ProgramCache)
}

var (
	_ Decoder = (*vae.Tiny)(nil)
	_ Decoder = (*vae.KL)(nil)
)

// nilDecoder reports whether d is nil, or a nil *vae.Tiny or *vae.KL in the interface.
func nilDecoder(d Decoder) bool {
	switch v := d.(type) {
	case nil:
		return true
	case *vae.Tiny:
		return v == nil
	case *vae.KL:
		return v == nil
	}
	return false
}

// The decoders WithVAE can choose.
const (
	// VAETiny is TAESD (AutoencoderTiny), the vae/ folder: fast, the default.
	VAETiny = "tiny"
	// VAELarge is the full KL VAE (AutoencoderKL), the vae_large/ folder: the picture quality of
	// Stable Diffusion's own decoder, at many times the cost.
	VAELarge = "large"
)

// WithVAE chooses the decoder: "tiny" (TAESD from vae/, the default) or "large" (the full KL VAE
// from vae_large/, whose scaling factor comes from its config.json). Load fails with a clear
// error when the folder has no vae_large/ component, or for any other name. Unless
// WithCacheBudget sets it, the graph cache's budget grows by the KL decoder's activations at the
// model's default size (1 GiB at 512×512), so that its graph does not push the UNet's out.
func WithVAE(name string) Option {
	return func(o *loadOptions) { o.vae = name }
}

// WithVAETileBudget sets the activation memory, in bytes, above which the KL VAE
// (WithVAE("large")) decodes and encodes in overlapping tiles, as diffusers' tiled_decode and
// tiled_encode do. The default is vae.DefaultTileBudget, 3 GiB: with the SD VAE, pictures up to
// 880×880 decode in one piece (and up to about 1200×1200 encode in one piece). math.MaxInt64
// never tiles, as diffusers without enable_tiling. TAESD ignores it.
func WithVAETileBudget(bytes int64) Option {
	return func(o *loadOptions) { o.vaeTileBudget = bytes }
}

// fitCache makes room for the KL decoder in a default-sized graph cache: its graph for the
// model's default picture size (1 GiB of activations at 512×512) comes on top of
// DefaultCacheBudget, so that it and the UNet's graph both stay cached from one generation to
// the next. A budget set with WithCacheBudget is left alone. It runs before the models share
// the cache.
func (p *Pipeline) fitCache(o *loadOptions) {
	kl, ok := p.vae.(*vae.KL)
	if !ok || o.cacheBudget != nil {
		return
	}
	s := p.DefaultSize() / kl.UpscaleFactor()
	p.cache = nn.NewProgramCache(DefaultCacheBudget + kl.DecodeBytes(s, s))
}

// loadDecoder loads the decoder that the options ask for.
func loadDecoder(p *Pipeline, folder *weights.Folder, dir string, comp func(string) (string, error), o *loadOptions) (Decoder, error) {
	switch o.vae {
	case "", VAETiny:
		return component(p, comp, "vae", weights.LoadTinyVAEConfig, vae.NewTiny)
	case VAELarge:
		if !folder.Has("vae_large") {
			return nil, fmt.Errorf("sdxs: WithVAE(%q): model folder %s has no vae_large/ component (an AutoencoderKL config.json and weights)", o.vae, dir)
		}
		return component(p, comp, "vae_large", weights.LoadKLVAEConfig, func(c *weights.KLVAEConfig, src weights.TensorSource) (*vae.KL, error) {
			return vae.NewKL(c, src, vae.TileBudget(o.vaeTileBudget))
		})
	default:
		return nil, fmt.Errorf("sdxs: WithVAE(%q): unknown decoder, want %q or %q", o.vae, VAETiny, VAELarge)
	}
}

// klInitLatents returns image to image's init latents with the KL VAE, as diffusers'
// StableDiffusionImg2ImgPipeline computes them with the request's generator: retrieve_latents
// draws a sample of the latent distribution, mean + std·randn (the generator's first draw, of
// the latent's shape), and prepare_latents multiplies it by the scaling factor. The noise added
// at the first timestep is the generator's next draw. img is [3, h, w] in [-1, 1].
func klInitLatents(ctx context.Context, kl *vae.KL, img []float32, h, w int, gen *sampler.Generator) ([]float32, error) {
	post, err := kl.EncodeDist(ctx, img, h, w)
	if err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}
	z, err := post.Sample(gen.Randn(1, post.Channels, post.Height, post.Width))
	if err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}
	sf := float32(kl.ScalingFactor())
	for i, v := range z {
		z[i] = sf * v
	}
	return z, nil
}
