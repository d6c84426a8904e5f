// Command txt2img turns a prompt into a picture with an SDXS model folder, in one UNet pass.
//
//	go run ./examples/txt2img -model sdxs-512-dreamshaper -prompt "a lighthouse at dusk" -out out.png
//
// Without -seed a random seed is drawn and printed, so the picture can be made again. -dump
// writes every intermediate tensor under the names of the diffusers reference (input_ids,
// text_embeddings, noise, unet_input, unet_output, latents, decoded, image) as safetensors.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"os"
	"os/signal"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/weights"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "txt2img:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		model  = flag.String("model", "", "diffusers model folder (required)")
		prompt = flag.String("prompt", "", "the text to draw")
		seed   = flag.Uint64("seed", 0, "seed of the initial noise (default: random, printed)")
		width  = flag.Int("width", 0, "width in pixels, a multiple of 8 (default: the model's, 512 for SDXS-512)")
		height = flag.Int("height", 0, "height in pixels, a multiple of 8 (default: the model's)")
		out    = flag.String("out", "out.png", "PNG file to write")
		dump   = flag.String("dump", "", "also write the intermediate tensors to this safetensors file")
	)
	flag.Parse()
	if *model == "" {
		flag.Usage()
		return errors.New("-model is required")
	}
	seedSet := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "seed" {
			seedSet = true
		}
	})
	if !seedSet {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		*seed = binary.LittleEndian.Uint64(b[:])
	}
	fmt.Printf("seed %d\n", *seed)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	start := time.Now()
	p, err := sdxs.Load(*model)
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Printf("%-13s %8.3f s\n", "load", time.Since(start).Seconds())

	genStart := time.Now()
	res, err := p.Generate(ctx, sdxs.Request{
		Prompt: *prompt, Seed: *seed, Width: *width, Height: *height,
		Progress: func(s sdxs.Stage, d time.Duration) {
			fmt.Printf("%-13s %8.3f s\n", s, d.Seconds())
		},
	})
	if err != nil {
		return err
	}
	fmt.Printf("%-13s %8.3f s (%d×%d)\n", "total", time.Since(genStart).Seconds(), res.Width, res.Height)

	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := png.Encode(f, res.Image); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println("wrote", *out)
	if *dump != "" {
		meta := map[string]string{"prompt": *prompt, "seed": fmt.Sprint(*seed)}
		tensors, err := res.Tensors()
		if err != nil {
			return err
		}
		if err := weights.WriteFile(*dump, tensors, meta); err != nil {
			return err
		}
		fmt.Println("wrote", *dump)
	}
	return nil
}
