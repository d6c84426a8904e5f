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

// BenchmarkTinyDecode512 decodes a 64×64 latent into a 512×512 picture with the full-size TAESD
// decoder (random weights; time does not depend on their values).
func BenchmarkTinyDecode512(b *testing.B) {
	cfg, err := weights.ParseTinyVAEConfig([]byte(fullTAESD))
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewTiny(cfg, &nn.RandomSource{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	z := make([]float32, 4*64*64)
	for i := range z {
		z[i] = float32(i%17)/17 - 0.5
	}
	if _, err := d.Decode(context.Background(), z, 64, 64); err != nil {
		b.Fatal(err)
	}
	macs, _ := d.MACs(context.Background(), 64, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(context.Background(), z, 64, 64); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(macs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkTinyEncode512 encodes a 512×512 picture into a 64×64 latent with the full-size TAESD
// encoder (random weights; time does not depend on their values).
func BenchmarkTinyEncode512(b *testing.B) {
	cfg, err := weights.ParseTinyVAEConfig([]byte(fullTAESD))
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewTiny(cfg, &nn.RandomSource{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	img := make([]float32, 3*512*512)
	for i := range img {
		img[i] = float32(i%23)/11 - 1
	}
	if _, err := d.Encode(context.Background(), img, 512, 512); err != nil {
		b.Fatal(err)
	}
	macs, _ := d.EncoderMACs(context.Background(), 512, 512)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Encode(context.Background(), img, 512, 512); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(macs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkKLDecode512 decodes a 64×64 latent into a 512×512 picture with the full-size KL
// decoder of the SD VAE (configs/sdxs-512-dreamshaper/vae_large, random weights), in one piece.
func BenchmarkKLDecode512(b *testing.B) {
	d := fullKL(b)
	z := make([]float32, 4*64*64)
	for i := range z {
		z[i] = float32(i%17)/17 - 0.5
	}
	if _, err := d.Decode(context.Background(), z, 64, 64); err != nil {
		b.Fatal(err)
	}
	macs, _ := d.MACs(context.Background(), 64, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(context.Background(), z, 64, 64); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(macs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
