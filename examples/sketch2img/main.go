// Command sketch2img turns a sketch and a prompt into a picture with SDXS-512-DreamShaper and
// its sketch ControlNet, in one UNet pass: the whole flow in a few lines.
//
//	go run ./examples/sketch2img -sketch house.png -prompt "a house by the lake"
//
// -model and -controlnet are folders or Hugging Face repository ids (by default the released
// IDKiro/sdxs-512-dreamshaper and IDKiro/sdxs-512-dreamshaper-sketch, fetched into
// huggingface_hub's cache on first use).
//
// The sketch is black lines on white, as drawn on paper (-invert for white on black); PNG or
// JPEG of any size: it is resized to the picture's size.
package main

import (
	"context"
	"flag"
	"fmt"
	"image/png"
	"os"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/cliprogress"
)

func main() {
	model := flag.String("model", "IDKiro/sdxs-512-dreamshaper", "SDXS model folder or hub repository id")
	controlNet := flag.String("controlnet", "IDKiro/sdxs-512-dreamshaper-sketch", "sketch ControlNet folder or hub repository id")
	sketch := flag.String("sketch", "sketch.png", "the sketch (PNG or JPEG)")
	prompt := flag.String("prompt", "a house by the lake", "what to draw")
	seed := flag.Uint64("seed", 42, "seed")
	invert := flag.Bool("invert", false, "the sketch is white lines on black")
	out := flag.String("out", "out.png", "PNG to write")
	flag.Parse()
	if err := run(*model, *controlNet, *sketch, *prompt, *seed, *invert, *out); err != nil {
		fmt.Fprintln(os.Stderr, "sketch2img:", err)
		os.Exit(1)
	}
}

func run(model, controlNet, sketch, prompt string, seed uint64, invert bool, out string) error {
	p, err := sdxs.Load(model, sdxs.WithControlNet(controlNet), sdxs.WithProgress(cliprogress.Stderr()))
	if err != nil {
		return err
	}
	defer p.Close()

	img, err := imageproc.DecodeFile(sketch)
	if err != nil {
		return err
	}

	res, err := p.Generate(context.Background(), sdxs.Request{Prompt: prompt, Seed: seed, Control: img, ControlInvert: invert})
	if err != nil {
		return err
	}
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := png.Encode(w, res.Image); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
