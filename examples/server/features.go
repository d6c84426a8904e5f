package main

import (
	"errors"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/examples/server/internal/imgserver"
)

// featureOptions turns -controlnet and -lora into load options, and says how a control image
// goes into a request (nil: the server refuses control images and the page hides its sketch).
func featureOptions(controlnet string, loras []string) ([]sdxs.Option, imgserver.ControlFunc, error) {
	var opts []sdxs.Option
	var control imgserver.ControlFunc
	if controlnet != "" {
		// Wired when the library's ControlNet lands: sdxs.WithControlNet(controlnet), and
		// control = func(r *sdxs.Request, img image.Image, scale float64) { r.Control, r.ControlScale = img, scale }.
		return nil, nil, errors.New("-controlnet: this build of the library has no ControlNet support yet")
	}
	if len(loras) > 0 {
		return nil, nil, errors.New("-lora: this build of the library has no LoRA support yet")
	}
	return opts, control, nil
}
