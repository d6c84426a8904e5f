package sdxs_test

import (
	"context"
	"fmt"
	"image/png"
	"log"
	"os"

	"github.com/sdxs-go/sdxs"
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
