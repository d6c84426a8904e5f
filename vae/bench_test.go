package vae

import (
	"context"
	"testing"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// fullTAESD is the configuration of the TAESD decoder the SDXS-512 releases ship.
const fullTAESD = `{"_class_name":"AutoencoderTiny","act_fn":"relu","block_out_channels":[64,64,64,64],
"decoder_block_out_channels":[64,64,64,64],"encoder_block_out_channels":[64,64,64,64],
"latent_channels":4,"num_decoder_blocks":[3,3,3,1],"num_encoder_blocks":[1,3,3,3],
"out_channels":3,"scaling_factor":1.0,"upsampling_scaling_factor":2}`

// fullTiny builds the full-size TAESD of fullTAESD with random weights.
func fullTiny(b *testing.B) *Tiny {
	b.Helper()
	cfg, err := weights.ParseTinyVAEConfig([]byte(fullTAESD))
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewTiny(cfg, &nn.RandomSource{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// benchCodec runs a decoder or encoder (run, with its multiply-accumulate count macs) once on
// in of size h×w untimed, then b.N times timed, and reports GFLOP/s.
func benchCodec(b *testing.B, run func(context.Context, []float32, int, int) ([]float32, error),
	macsOf func(context.Context, int, int) (int64, error), in []float32, h, w int) {
	b.Helper()
	if _, err := run(context.Background(), in, h, w); err != nil {
		b.Fatal(err)
	}
	macs, _ := macsOf(context.Background(), h, w)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := run(context.Background(), in, h, w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(macs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// benchLatent is a 4×64×64 latent of fixed values.
func benchLatent() []float32 {
	z := make([]float32, 4*64*64)
	for i := range z {
		z[i] = float32(i%17)/17 - 0.5
	}
	return z
}

// BenchmarkTinyDecode512 decodes a 64×64 latent into a 512×512 picture with the full-size TAESD
// decoder (random weights; time does not depend on their values).
func BenchmarkTinyDecode512(b *testing.B) {
	d := fullTiny(b)
	benchCodec(b, d.Decode, d.MACs, benchLatent(), 64, 64)
}

// BenchmarkTinyEncode512 encodes a 512×512 picture into a 64×64 latent with the full-size TAESD
// encoder (random weights; time does not depend on their values).
func BenchmarkTinyEncode512(b *testing.B) {
	d := fullTiny(b)
	img := make([]float32, 3*512*512)
	for i := range img {
		img[i] = float32(i%23)/11 - 1
	}
	benchCodec(b, d.Encode, d.EncoderMACs, img, 512, 512)
}

// BenchmarkKLDecode512 decodes a 64×64 latent into a 512×512 picture with the full-size KL
// decoder of the SD VAE (configs/sdxs-512-dreamshaper/vae_large, random weights), in one piece.
func BenchmarkKLDecode512(b *testing.B) {
	d := fullKL(b)
	benchCodec(b, d.Decode, d.MACs, benchLatent(), 64, 64)
}
