// Command img2img redraws a picture after a prompt with an SDXS model (image to image, as
// diffusers' StableDiffusionImg2ImgPipeline with guidance 0).
//
//	go run ./examples/img2img -model IDKiro/sdxs-512-dreamshaper -init photo.jpg -prompt "an oil painting" -strength 0.5 -steps 2 -out out.png
//
// -model is a diffusers model folder or a Hugging Face repository id (org/name[@revision]),
// fetched into huggingface_hub's cache on first use, with a progress bar on a terminal.
//
// The init picture (PNG or JPEG) is encoded by the VAE, noised to the first timestep that
// -strength keeps of a -steps schedule (strength 0.5 of 2 steps runs t = 499 once; strength 1
// runs every step from t = 999), and denoised from there. The output has the init picture's
// size rounded down to multiples of 8 unless -width and -height say otherwise. Without -seed a
// random seed is drawn and printed. -vae large encodes and decodes with the full KL VAE of the
// folder's vae_large/ (its encoder's latents are a sample drawn with the seed's generator, as
// diffusers' retrieve_latents does). -dump writes every intermediate tensor under the names of
// the diffusers reference (input_ids, text_embeddings, init_image, init_latents, noise,
// noisy_latents, timesteps, unet_input and unet_output of the first step, latents, decoded,
// image) as safetensors.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/cliprogress"
	"github.com/sdxs-go/sdxs/weights"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "img2img:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("img2img", flag.ContinueOnError)
	var (
		model    = fs.String("model", "", "diffusers model folder, or Hugging Face repository id such as IDKiro/sdxs-512-dreamshaper[@revision] (required)")
		variant  = fs.String("variant", "", "fetch this weights variant from the hub where there is one (fp16)")
		initPath = fs.String("init", "", "init picture, PNG or JPEG (required)")
		prompt   = fs.String("prompt", "", "the text to draw")
		seed     = fs.Uint64("seed", 0, "seed of the noise (default: random, printed)")
		strength = fs.Float64("strength", 0.5, "how much of the schedule runs, in (0, 1]: 1 ignores most of the picture")
		steps    = fs.Int("steps", 2, "inference steps the schedule is built for; int(steps × strength) of them run")
		width    = fs.Int("width", 0, "width in pixels, a multiple of 8 (default: the init picture's, rounded down)")
		height   = fs.Int("height", 0, "height in pixels, a multiple of 8 (default: the init picture's, rounded down)")
		out      = fs.String("out", "out.png", "PNG file to write")
		dump     = fs.String("dump", "", "also write the intermediate tensors to this safetensors file")
		vaeKind  = fs.String("vae", "tiny", `autoencoder: "tiny" (TAESD, vae/) or "large" (the full KL VAE, vae_large/)`)
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *model == "" || *initPath == "" {
		fs.Usage()
		return errors.New("-model and -init are required")
	}
	if *steps < 1 {
		return fmt.Errorf("-steps %d: must be at least 1", *steps)
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) {
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
	init, err := readPicture(*initPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seed %d\n", *seed)

	// A model named by a hub id is fetched first, so that the load time below is the load's.
	dir, err := sdxs.Resolve(ctx, *model, sdxs.KindPipeline, sdxs.WithProgress(cliprogress.Stderr()), sdxs.WithVariant(*variant), sdxs.WithVAE(*vaeKind))
	if err != nil {
		return err
	}
	start := time.Now()
	p, err := sdxs.Load(dir, sdxs.WithVAE(*vaeKind))
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintf(stdout, "%-13s %8.3f s\n", "load", time.Since(start).Seconds())

	genStart := time.Now()
	res, err := p.Generate(ctx, sdxs.Request{
		Prompt: *prompt, Seed: *seed, Width: *width, Height: *height,
		Init: init, Strength: *strength, Steps: *steps,
		Progress: func(s sdxs.Stage, d time.Duration) {
			fmt.Fprintf(stdout, "%-13s %8.3f s\n", s, d.Seconds())
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-13s %8.3f s (%d×%d, timesteps %v)\n", "total", time.Since(genStart).Seconds(), res.Width, res.Height, res.Timesteps)

	if err := writePNG(*out, res.Image); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "wrote", *out)
	if *dump != "" {
		meta := map[string]string{"prompt": *prompt, "seed": fmt.Sprint(*seed), "init": *initPath,
			"strength": fmt.Sprint(*strength), "steps": fmt.Sprint(*steps)}
		tensors, err := res.Tensors()
		if err != nil {
			return err
		}
		if err := weights.WriteFile(*dump, tensors, meta); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "wrote", *dump)
	}
	return nil
}

// readPicture decodes a PNG or JPEG file (EXIF orientation applied, as diffusers' load_image
// does).
func readPicture(path string) (image.Image, error) {
	img, err := imageproc.DecodeFile(path)
	if err != nil {
		return nil, fmt.Errorf("init picture: %w", err)
	}
	return img, nil
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
