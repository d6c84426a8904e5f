package sdxs

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/vae"
	"github.com/sdxs-go/sdxs/weights"
)

// klOracleModel is the oracle model with a KL VAE (vae_large/) and a case that decodes with it.
const klOracleModel = "sdxs-dreamshaper-tiny"

// TestTxt2ImgKLMatchesDiffusers runs the oracle's KL case (vae: "large") through the public API
// with WithVAE("large") and holds every stage to the oracle README's bounds.
func TestTxt2ImgKLMatchesDiffusers(t *testing.T) {
	p, err := Load(oracle.Path(t, klOracleModel, "model"), WithVAE(VAELarge))
	require.NoError(t, err)
	defer p.Close()
	kl, ok := p.vae.(*vae.KL)
	require.True(t, ok, "WithVAE(large) loads a %T", p.vae)
	assert.Equal(t, 0.18215, kl.ScalingFactor())

	ref := oracle.Tensors(t, klOracleModel, "reference.safetensors")
	ran := 0
	for i, c := range loadCases(t, klOracleModel) {
		if c.VAE != "large" {
			continue
		}
		require.Nil(t, c.LoraScale)
		require.False(t, c.ControlImage)
		ran++
		t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
			res, err := p.Generate(context.Background(), Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height})
			require.NoError(t, err)
			ts, err := res.Tensors()
			require.NoError(t, err)
			assert.True(t, oracle.AssertCase(t, ref, i, ts))
		})
	}
	require.Positive(t, ran, "the oracle has no case with vae: large")

	// Warm builds the KL decoder's graph, and MACs counts it.
	ctx := context.Background()
	require.NoError(t, p.Warm(ctx, 256, 256))
	want, err := kl.MACs(ctx, 32, 32)
	require.NoError(t, err)
	assert.Positive(t, want)
	macs, err := p.MACs(ctx, 256, 256)
	require.NoError(t, err)
	assert.Equal(t, want, macs[StageVAEDecoder])

	// The default decoder is still TAESD.
	pt, err := Load(oracle.Path(t, klOracleModel, "model"))
	require.NoError(t, err)
	defer pt.Close()
	_, ok = pt.vae.(*vae.Tiny)
	assert.True(t, ok, "default decoder is %T", pt.vae)
}

// TestKLTileBudgetOption: WithVAETileBudget reaches the KL decoder. A one-byte budget tiles
// case 2's latent (and changes the picture: each tile's attention and group norms see only the
// tile); math.MaxInt64 never tiles, and gives the reference.
func TestKLTileBudgetOption(t *testing.T) {
	dir := oracle.Path(t, klOracleModel, "model")
	ref := oracle.Tensors(t, klOracleModel, "reference.safetensors")
	want, _ := oracle.Float32(t, ref, "case2.decoded")
	c := loadCases(t, klOracleModel)[2]
	require.Equal(t, "large", c.VAE)
	decode := func(budget int64) []float32 {
		p, err := Load(dir, WithVAE(VAELarge), WithVAETileBudget(budget))
		require.NoError(t, err)
		defer p.Close()
		res, err := p.Generate(context.Background(), Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height})
		require.NoError(t, err)
		return res.Decoded
	}
	oracle.AssertMaxAbs(t, "never tiled", decode(math.MaxInt64), want, 2e-3)
	tiled := decode(1)
	require.Len(t, tiled, len(want))
	assert.Greater(t, oracle.MaxAbs(tiled, want), 1e-2, "a one-byte budget should tile")
}

func TestLoadKLErrors(t *testing.T) {
	t.Run("no vae_large", func(t *testing.T) {
		dir := oracle.Path(t, "sdxs-09-tiny", "model")
		p, err := Load(dir, WithVAE(VAELarge))
		require.Error(t, err)
		assert.Nil(t, p)
		assert.Contains(t, err.Error(), "no vae_large/ component")
		assert.Contains(t, err.Error(), `WithVAE("large")`)
	})
	t.Run("unknown name", func(t *testing.T) {
		p, err := Load(oracle.Path(t, klOracleModel, "model"), WithVAE("huge"))
		require.Error(t, err)
		assert.Nil(t, p)
		assert.Contains(t, err.Error(), `WithVAE("huge")`)
	})
	t.Run("tiny still loads without vae_large, large without vae", func(t *testing.T) {
		dir := linkModelCopy(t, klOracleModel)
		require.NoError(t, os.RemoveAll(filepath.Join(dir, "vae")))
		// Without model_index.json (which lists vae) the components are discovered.
		require.NoError(t, os.Remove(filepath.Join(dir, "model_index.json")))
		p, err := Load(dir, WithVAE(VAELarge))
		require.NoError(t, err)
		require.NoError(t, p.Close())
		_, msg := loadErr(t, dir)
		assert.Contains(t, msg, "vae")
	})
	for _, c := range []struct {
		field  string
		value  any
		config bool // a config error naming the field (else a mismatch between components)
	}{
		{"up_block_types", []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "AttnUpDecoderBlock2D"}, true},
		{"down_block_types", []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"}, true},
		{"block_out_channels", []int{8, 16, 16, 0}, true},
		{"act_fn", "gelu", true},
		{"norm_num_groups", 3, true},
		{"latent_channels", 8, false},
	} {
		t.Run(c.field, func(t *testing.T) {
			dir := linkModelCopy(t, klOracleModel)
			editConfig(t, dir, "vae_large", "config.json", map[string]any{c.field: c.value})
			p, err := Load(dir, WithVAE(VAELarge))
			require.Error(t, err)
			assert.Nil(t, p)
			msg := err.Error()
			t.Log(msg)
			assert.Contains(t, msg, c.field)
			var ce *weights.ConfigError
			if c.config {
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, c.field, ce.Field)
			} else {
				assert.Contains(t, msg, "vae latent_channels 8 does not match")
			}
		})
	}
	t.Run("weights missing", func(t *testing.T) {
		dir := linkModelCopy(t, klOracleModel)
		require.NoError(t, os.Remove(filepath.Join(dir, "vae_large", "diffusion_pytorch_model.safetensors")))
		p, err := Load(dir, WithVAE(VAELarge))
		require.Error(t, err)
		assert.Nil(t, p)
		assert.Contains(t, err.Error(), "vae_large")
	})
}

// TestKLInitLatents: image to image's init latents with the KL VAE are a sample of the encoder's
// distribution drawn first from the request's generator, times the scaling factor; the
// generator is left at its second draw, the noise's. (The oracle has no image-to-image reference
// with the KL VAE: this holds the order of the draws and the arithmetic to diffusers' code.)
func TestKLInitLatents(t *testing.T) {
	p, err := Load(oracle.Path(t, klOracleModel, "model"), WithVAE(VAELarge))
	require.NoError(t, err)
	defer p.Close()
	kl := p.vae.(*vae.KL)
	img, _ := oracle.Float32(t, oracle.Tensors(t, klOracleModel, "reference.safetensors"), "case2.decoded")
	for i, v := range img {
		img[i] = min(max(v, -1), 1)
	}
	ctx := context.Background()
	gen := sampler.NewGenerator(5)
	got, err := klInitLatents(ctx, kl, img, 256, 256, gen)
	require.NoError(t, err)

	post, err := kl.EncodeDist(ctx, img, 256, 256)
	require.NoError(t, err)
	fresh := sampler.NewGenerator(5)
	first := fresh.Randn(1, 4, 32, 32)
	sf := float32(0.18215)
	require.Len(t, got, len(first))
	for i := range got {
		require.Equal(t, sf*(post.Mean[i]+float32(post.Std[i]*first[i])), got[i], "init latent %d", i)
	}
	assert.Equal(t, fresh.Randn(1, 4, 32, 32), gen.Randn(1, 4, 32, 32), "the noise is the generator's second draw")

	_, err = klInitLatents(ctx, kl, img[:10], 256, 256, sampler.NewGenerator(5))
	require.ErrorContains(t, err, "image has")
}

// TestKLCacheBudget: with the KL VAE the default graph cache makes room for its decoder at the
// model's default size; WithCacheBudget still rules, and TAESD keeps the default.
func TestKLCacheBudget(t *testing.T) {
	dir := oracle.Path(t, klOracleModel, "model")
	p, err := Load(dir, WithVAE(VAELarge))
	require.NoError(t, err)
	defer p.Close()
	kl := p.vae.(*vae.KL)
	s := p.DefaultSize() / 8
	_, budget := p.CacheBytes()
	assert.Equal(t, DefaultCacheBudget+kl.DecodeBytes(s, s), budget)

	q, err := Load(dir, WithVAE(VAELarge), WithCacheBudget(12345))
	require.NoError(t, err)
	defer q.Close()
	_, budget = q.CacheBytes()
	assert.Equal(t, int64(12345), budget)

	tiny, err := Load(dir)
	require.NoError(t, err)
	defer tiny.Close()
	_, budget = tiny.CacheBytes()
	assert.Equal(t, DefaultCacheBudget, budget)
}

// TestNewNilDecoder: a nil *vae.KL or *vae.Tiny in Parts is refused like a nil VAE, not a panic
// later.
func TestNewNilDecoder(t *testing.T) {
	p, err := Load(oracle.Path(t, klOracleModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	for _, d := range []Decoder{nil, (*vae.KL)(nil), (*vae.Tiny)(nil)} {
		q, err := New(Parts{Tokenizer: p.tok, TextEncoder: p.text, UNet: p.unet, VAE: d, Scheduler: p.schedCfg})
		require.Error(t, err, "%T", d)
		assert.Nil(t, q)
	}
}

// TestKLImg2Img runs image to image with the KL VAE through Generate: the init latents are a
// sample of the encoder's distribution drawn first from the request's generator, times the
// scaling factor, and the noise is the generator's second draw, as diffusers'
// StableDiffusionImg2ImgPipeline computes them with a generator. (The oracle's image-to-image
// references use TAESD; with the KL VAE this holds the order of the draws and the arithmetic.)
func TestKLImg2Img(t *testing.T) {
	p, err := Load(oracle.Path(t, klOracleModel, "model"), WithVAE(VAELarge))
	require.NoError(t, err)
	defer p.Close()
	kl := p.vae.(*vae.KL)
	init := decodePNG(t, oracle.Path(t, klOracleModel, "img2img", "init0.png"))
	ctx := context.Background()
	var stages []Stage
	res, err := p.Generate(ctx, Request{Prompt: "a house", Seed: 5, Init: init, Strength: 0.5, Steps: 2,
		Progress: func(s Stage, _ time.Duration) { stages = append(stages, s) }})
	require.NoError(t, err)
	assert.Equal(t, []Stage{StageTokenize, StageTextEncoder, StageVAEEncoder, StageNoise, StageUNet, StageVAEDecoder}, stages)

	b := init.Bounds()
	post, err := kl.EncodeDist(ctx, res.InitImage, b.Dy(), b.Dx())
	require.NoError(t, err)
	gen := sampler.NewGenerator(5)
	first := gen.Randn(1, post.Channels, post.Height, post.Width)
	second := gen.Randn(1, post.Channels, post.Height, post.Width)
	require.Len(t, res.InitLatents, len(first))
	for i := range first {
		require.Equal(t, float32(0.18215)*(post.Mean[i]+float32(post.Std[i]*first[i])), res.InitLatents[i], "init latent %d", i)
	}
	assert.Equal(t, second, res.Noise)
	assert.Len(t, res.Decoded, 3*b.Dx()*b.Dy())

	require.NoError(t, p.WarmEncoder(ctx, b.Dx(), b.Dy()))
	m, err := p.EncoderMACs(ctx, b.Dx(), b.Dy())
	require.NoError(t, err)
	want, err := kl.EncoderMACs(ctx, b.Dy(), b.Dx())
	require.NoError(t, err)
	assert.Equal(t, want, m)
}
