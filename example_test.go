package sdxs_test

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/internal/testmodel"
	"github.com/sdxs-go/sdxs/weights"
)

// Load a diffusers model folder once, generate a picture and save it as PNG. (It needs a
// downloaded model, so it is compiled but not run by go test.)
func Example() {
	p, err := sdxs.Load("sdxs-512-dreamshaper")
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	res, err := p.Generate(context.Background(), sdxs.Request{
		Prompt: "a lighthouse at dusk, oil painting",
		Seed:   42,
		Width:  512,
		Height: 512,
	})
	if err != nil {
		log.Fatal(err)
	}

	f, err := os.Create("lighthouse.png")
	if err != nil {
		log.Fatal(err)
	}
	if err := png.Encode(f, res.Image); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%dx%d picture, seed %d, UNet took %v\n", res.Width, res.Height, res.Seed, res.Timings[sdxs.StageUNet])
}

// A complete, tiny SDXS-shaped model folder (random weights, written on the fly) goes through
// the same API as a release: load once, then generate.
func Example_tinyModel() {
	dir, err := os.MkdirTemp("", "sdxs-tiny")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := testmodel.WriteTiny(dir, weights.F16); err != nil {
		log.Fatal(err)
	}

	p, err := sdxs.Load(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	var stages []sdxs.Stage
	res, err := p.Generate(context.Background(), sdxs.Request{
		Prompt:   "a red fox in the snow",
		Seed:     42,
		Width:    64,
		Height:   72,
		Progress: func(s sdxs.Stage, _ time.Duration) { stages = append(stages, s) },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Image.Bounds().Dx(), res.Image.Bounds().Dy(), len(res.InputIDs), res.InputIDs[0], stages)
	// Output: 64 72 77 513 [tokenize text_encoder noise unet vae_decoder]
}

// A ControlNet guides the picture with a control image: here a sketch, black lines on white,
// for a tiny model and ControlNet (random weights, written on the fly). With the releases, load
// "sdxs-512-dreamshaper" and the "sdxs-512-dreamshaper-sketch" ControlNet the same way.
func ExampleWithControlNet() {
	dir, err := os.MkdirTemp("", "sdxs-tiny")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cnDir := filepath.Join(dir, "controlnet")
	if err := testmodel.WriteTiny(dir, weights.F32); err != nil {
		log.Fatal(err)
	}
	if err := testmodel.WriteTinyControlNet(cnDir, weights.F32); err != nil {
		log.Fatal(err)
	}

	p, err := sdxs.Load(dir, sdxs.WithControlNet(cnDir))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	// A sketch of any size (here 100×50): it is resized to the picture's size.
	sketch := image.NewGray(image.Rect(0, 0, 100, 50))
	for i := range sketch.Pix {
		sketch.Pix[i] = 255
	}
	for x := 10; x < 90; x++ {
		sketch.SetGray(x, 25, color.Gray{})
	}
	var stages []sdxs.Stage
	res, err := p.Generate(context.Background(), sdxs.Request{
		Prompt:       "a house by the lake",
		Seed:         1,
		Width:        64,
		Height:       64,
		Control:      sketch,
		ControlScale: 0.8,
		Progress:     func(s sdxs.Stage, _ time.Duration) { stages = append(stages, s) },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Image.Bounds().Dx(), res.Image.Bounds().Dy(), len(res.ControlCond), len(res.ControlDown), stages)
	// Output: 64 64 12288 4 [tokenize text_encoder noise controlnet unet vae_decoder]
}

// Load a LoRA adapter once (a PEFT folder, or a kohya or diffusers .safetensors file), then
// apply it, with a strength, to the requests that ask for it; other requests on the same
// pipeline are unchanged. (It needs a downloaded model and adapter, so it is compiled but not
// run by go test.)
func ExamplePipeline_LoadLoRA() {
	p, err := sdxs.Load("sdxs-512-dreamshaper")
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	style, err := p.LoadLoRA("my-style-lora") // checks every layer it updates against the model
	if err != nil {
		log.Fatal(err)
	}
	res, err := p.Generate(context.Background(), sdxs.Request{
		Prompt: "a lighthouse at dusk",
		Seed:   42,
		LoRAs:  []sdxs.LoRA{{Adapter: style, Scale: 0.8}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(style, res.Width, res.Height)
}
