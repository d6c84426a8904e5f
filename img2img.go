package sdxs

import (
	"context"
	"fmt"
	"image"

	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/vae"
)

// Image to image, as diffusers 0.31's StableDiffusionImg2ImgPipeline computes it with guidance
// 0: the init picture to [−1, 1] (its image processor), init_latents = encoder(picture) ×
// scaling_factor, the Euler schedule built for Steps and cut by Strength (get_timesteps),
// noise from the seed, add_noise at the first timestep run; then Generate's denoising loop and
// decoder from there.

// initLatents runs the image-to-image stages before the denoising loop: the init picture
// (res.InitImage, already a tensor) through the VAE encoder (StageVAEEncoder), then the noise
// and add_noise at step index start (StageNoise). It fills res.InitLatents, Noise and
// NoisyLatents and returns the latents the loop starts from.
func (p *Pipeline) initLatents(ctx context.Context, req Request, res *Result, sched *sampler.Euler, start int,
	stage func(Stage, func() error) error) ([]float32, error) {
	w, h := res.Width, res.Height
	f := p.vae.UpscaleFactor()
	lh, lw := h/f, w/f
	gen := sampler.NewGenerator(req.Seed)
	err := stage(StageVAEEncoder, func() (err error) {
		res.InitLatents, err = p.encode(ctx, res.InitImage, w, h, gen)
		return err
	})
	if err != nil {
		return nil, err
	}
	err = stage(StageNoise, func() error {
		if want := p.unet.Config().InChannels * lh * lw; len(res.InitLatents) != want {
			return fmt.Errorf("sdxs: the VAE encoder gives %d latent values for a %d×%d picture, the UNet takes %d×%d×%d",
				len(res.InitLatents), w, h, p.unet.Config().InChannels, lh, lw)
		}
		// prepare_latents: noise = randn(init_latents.shape, generator), after any draw the
		// encoder made from the same generator.
		res.Noise = gen.Randn(1, p.unet.Config().InChannels, lh, lw)
		var err error
		res.NoisyLatents, err = sched.AddNoise(res.InitLatents, res.Noise, start)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res.NoisyLatents, nil
}

// encode turns the init picture [3, h, w] in [−1, 1] into init_latents: the VAE encoder's
// latents × scaling_factor (diffusers' retrieve_latents then the multiplication in
// prepare_latents).
//
// The TAESD encoder is deterministic (AutoencoderTinyOutput has latents, not a distribution),
// so gen is not drawn from. The KL VAE's encoder gives a latent distribution, from which
// retrieve_latents with the pipeline's generator draws a sample (mean + std·randn(gen)) before
// the noise is drawn from the same generator (klInitLatents).
func (p *Pipeline) encode(ctx context.Context, img []float32, w, h int, gen *sampler.Generator) ([]float32, error) {
	var z []float32
	var err error
	switch v := any(p.vae).(type) {
	case *vae.Tiny:
		z, err = v.Encode(ctx, img, h, w)
	case *vae.KL:
		return klInitLatents(ctx, v, img, h, w, gen)
	default:
		return nil, fmt.Errorf("sdxs: the VAE (%T) has no encoder for image to image", p.vae)
	}
	if err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}
	sf := float32(p.vae.ScalingFactor())
	for i, v := range z {
		z[i] = sf * v
	}
	return z, nil
}

// initTensor turns the init picture into the encoder's input [3, h, w] in [−1, 1] as diffusers'
// VaeImageProcessor does: RGB (Pillow's convert("RGB")), resized to w×h with Pillow's Lanczos
// when its size differs, /255 in float32, then 2x − 1.
func initTensor(img image.Image, w, h int) ([]float32, error) {
	t := imageproc.InitTensor(img, w, h)
	if t == nil {
		return nil, fmt.Errorf("sdxs: init picture %v cannot be resized to %d×%d", img.Bounds(), w, h)
	}
	return t, nil
}

// vaeEncoder is what WarmEncoder and EncoderMACs need of a VAE's encoder.
type vaeEncoder interface {
	PrepareEncoder(ctx context.Context, h, w int) error
	EncoderMACs(ctx context.Context, h, w int) (int64, error)
}

var (
	_ vaeEncoder = (*vae.Tiny)(nil)
	_ vaeEncoder = (*vae.KL)(nil)
)

// encoder returns the pipeline's VAE as a vaeEncoder.
func (p *Pipeline) encoder() (vaeEncoder, error) {
	e, ok := any(p.vae).(vaeEncoder)
	if !ok {
		return nil, fmt.Errorf("sdxs: the VAE (%T) has no encoder for image to image", p.vae)
	}
	return e, nil
}

// WarmEncoder builds the VAE encoder's graph for image to image at width×height and checks every
// weight it needs, so that the first such Generate does not pay for it. If ctx ends first,
// WarmEncoder returns its error (the build completes in the background).
func (p *Pipeline) WarmEncoder(ctx context.Context, width, height int) error {
	if err := checkSize(width, height); err != nil {
		return err
	}
	cctx, exit, err := p.enter(ctx)
	if err != nil {
		return err
	}
	defer exit()
	enc, err := p.encoder()
	if err != nil {
		return err
	}
	if err := enc.PrepareEncoder(cctx, height, width); err != nil {
		return p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	return nil
}

// EncoderMACs returns the multiply-adds of the VAE encoder for a width×height init picture (all
// in convolutions), building its graph if needed.
func (p *Pipeline) EncoderMACs(ctx context.Context, width, height int) (int64, error) {
	if err := checkSize(width, height); err != nil {
		return 0, err
	}
	cctx, exit, err := p.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer exit()
	enc, err := p.encoder()
	if err != nil {
		return 0, err
	}
	m, err := enc.EncoderMACs(cctx, height, width)
	if err != nil {
		return 0, p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	return m, nil
}
