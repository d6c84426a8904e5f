package vae_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"

	"github.com/sdxs-go/sdxs/vae"
	"github.com/sdxs-go/sdxs/weights"
)

// Decoding latents with the full KL VAE of a model folder's vae_large/.
func ExampleNewKL() {
	dir := filepath.Join("sdxs-512-dreamshaper", "vae_large")
	cfg, err := weights.LoadKLVAEConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		log.Fatal(err)
	}
	src, err := weights.OpenComponent(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	kl, err := vae.NewKL(cfg, src)
	if err != nil {
		log.Fatal(err)
	}
	x0 := make([]float32, 4*64*64) // the UNet's x₀ for a 512×512 picture
	z := make([]float32, len(x0))
	for i, v := range x0 {
		z[i] = v / float32(kl.ScalingFactor())
	}
	img, err := kl.Decode(context.Background(), z, 64, 64) // [3, 512, 512] in [-1, 1]
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(img))
}
