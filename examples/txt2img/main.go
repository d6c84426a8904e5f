// Command txt2img turns a prompt into a picture with an SDXS model, in one UNet pass
// (or -steps Euler steps, for SD-Turbo-class models that take 1–4).
//
//	go run ./examples/txt2img -model IDKiro/sdxs-512-dreamshaper -prompt "a lighthouse at dusk" -out out.png
//
// -model is a diffusers model folder or a Hugging Face repository id (org/name, optionally
// @revision), fetched into huggingface_hub's cache on first use (HF_ENDPOINT, HF_TOKEN,
// HF_HUB_CACHE, HF_HOME and HF_HUB_OFFLINE apply); a progress bar shows on a terminal.
//
// Without -seed a random seed is drawn and printed, so the picture can be made again. -vae large
// decodes with the full KL VAE of the folder's vae_large/ instead of TAESD. -dump
// writes every intermediate tensor under the names of the diffusers reference (input_ids,
// text_embeddings, noise, unet_input, unet_output, latents, decoded, image) as safetensors.
//
// With a ControlNet, a control image (PNG or JPEG, any size) guides the picture; the
// DreamShaper-Sketch ControlNet takes a sketch, black lines on white (-control-invert for white
// on black); -canny turns a photograph into its edges first, for a canny ControlNet:
//
//	go run ./examples/txt2img -model IDKiro/sdxs-512-dreamshaper -controlnet IDKiro/sdxs-512-dreamshaper-sketch -control sketch.png -prompt "a house by the lake"
//
// -lora PATH applies a LoRA adapter (a PEFT folder, a kohya / diffusers .safetensors file, or a
// Hugging Face repository id holding either) with strength -lora-scale S (default 1); both
// repeat, the i-th -lora-scale going with the i-th -lora:
//
//	go run ./examples/txt2img -model IDKiro/sdxs-512-dreamshaper -lora anime-lora -lora-scale 0.8 -prompt "a fox"
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
	"strconv"
	"strings"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/cliprogress"
	"github.com/sdxs-go/sdxs/weights"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "txt2img:", err)
		os.Exit(1)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// floatList is a repeatable float flag.
type floatList []float64

func (l *floatList) String() string { return fmt.Sprint([]float64(*l)) }
func (l *floatList) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return err
	}
	*l = append(*l, f)
	return nil
}

func run() error {
	var loras stringList
	var loraScales floatList
	flag.Var(&loras, "lora", "LoRA adapter: a PEFT folder, a kohya / diffusers .safetensors file, or a Hugging Face repository id (repeatable)")
	flag.Var(&loraScales, "lora-scale", "strength of the LoRA of the same position (repeatable, default 1)")
	var (
		model   = flag.String("model", "", "diffusers model folder, or Hugging Face repository id such as IDKiro/sdxs-512-dreamshaper[@revision] (required)")
		variant = flag.String("variant", "", "fetch this weights variant from the hub where there is one (fp16)")
		prompt  = flag.String("prompt", "", "the text to draw")
		seed    = flag.Uint64("seed", 0, "seed of the initial noise (default: random, printed)")
		width   = flag.Int("width", 0, "width in pixels, a multiple of 8 (default: the model's, 512 for SDXS-512)")
		height  = flag.Int("height", 0, "height in pixels, a multiple of 8 (default: the model's)")
		steps   = flag.Int("steps", 1, "Euler steps (1 for SDXS)")
		out     = flag.String("out", "out.png", "PNG file to write")
		dump    = flag.String("dump", "", "also write the intermediate tensors to this safetensors file")

		controlNet    = flag.String("controlnet", "", "diffusers ControlNetModel folder, or Hugging Face repository id")
		control       = flag.String("control", "", "control image (PNG or JPEG) for -controlnet")
		controlScale  = flag.Float64("control-scale", sdxs.DefaultControlScale, "ControlNet conditioning scale")
		controlInvert = flag.Bool("control-invert", false, "invert the control image (for white lines on black)")
		canny         = flag.Bool("canny", false, "use the Canny edges of the control image (thresholds 100, 200), for a canny ControlNet and a photograph")

		loraLenient = flag.Bool("lora-lenient", false, "skip (with a warning) the layers of a LoRA the model does not have, instead of failing")
		vaeOpt      = flag.String("vae", "tiny", `decoder: "tiny" (TAESD, vae/) or "large" (the full KL VAE, vae_large/)`)
		precStr     = flag.String("precision", "fp32", `UNet and text encoder arithmetic: "fp32" or "bf16" (bfloat16 weights and products, float32 accumulation)`)
	)
	flag.Parse()
	if *model == "" {
		flag.Usage()
		return errors.New("-model is required")
	}
	if len(loraScales) > len(loras) {
		return fmt.Errorf("%d -lora-scale values for %d -lora adapters", len(loraScales), len(loras))
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
	prec, err := sdxs.ParsePrecision(*precStr)
	if err != nil {
		return err
	}
	fmt.Printf("seed %d\n", *seed)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var req sdxs.Request
	var opts []sdxs.Option
	if *control != "" {
		if *controlNet == "" {
			return errors.New("-control needs -controlnet")
		}
		img, err := imageproc.DecodeFile(*control)
		if err != nil {
			return fmt.Errorf("control image: %w", err)
		}
		req.Control, req.ControlScale, req.ControlInvert = img, *controlScale, *controlInvert
		if *canny {
			req.ControlCanny = &imageproc.CannyOptions{}
		}
	} else if *canny || *controlInvert {
		return errors.New("-canny and -control-invert need a -control image")
	}
	if *controlNet != "" {
		if *control == "" {
			return errors.New("-controlnet needs a -control image")
		}
	}

	// Models named by a hub id are fetched first, so that the load time below is the load's.
	hubOpts := []sdxs.Option{sdxs.WithProgress(cliprogress.Stderr()), sdxs.WithVariant(*variant), sdxs.WithVAE(*vaeOpt)}
	dir, err := sdxs.Resolve(ctx, *model, sdxs.KindPipeline, hubOpts...)
	if err != nil {
		return err
	}
	if *controlNet != "" {
		cn, err := sdxs.Resolve(ctx, *controlNet, sdxs.KindControlNet, hubOpts...)
		if err != nil {
			return err
		}
		opts = append(opts, sdxs.WithControlNet(cn))
	}
	loraPaths := make([]string, len(loras))
	for i, l := range loras {
		if loraPaths[i], err = sdxs.Resolve(ctx, l, sdxs.KindLoRA, hubOpts...); err != nil {
			return err
		}
	}

	start := time.Now()
	opts = append(opts, sdxs.WithVAE(*vaeOpt), sdxs.WithPrecision(prec))
	p, err := sdxs.Load(dir, opts...)
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Printf("%-13s %8.3f s\n", "load", time.Since(start).Seconds())

	var loraOpts []sdxs.LoRAOption
	if *loraLenient {
		loraOpts = append(loraOpts, sdxs.LenientLoRA())
	}
	for i, path := range loraPaths {
		a, err := p.LoadLoRA(path, loraOpts...)
		if err != nil {
			return err
		}
		scale := 1.0
		if i < len(loraScales) {
			scale = loraScales[i]
		}
		fmt.Printf("lora          %s, scale %g\n", a, scale)
		if scale == 0 { // sdxs.LoRA reads a zero scale as 1; zero is no update at all
			continue
		}
		req.LoRAs = append(req.LoRAs, sdxs.LoRA{Adapter: a, Scale: scale})
	}

	genStart := time.Now()
	req.Prompt, req.Seed, req.Width, req.Height, req.Steps = *prompt, *seed, *width, *height, *steps
	req.Progress = func(s sdxs.Stage, d time.Duration) {
		fmt.Printf("%-13s %8.3f s\n", s, d.Seconds())
	}
	res, err := p.Generate(ctx, req)
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
