package imgserver

import (
	"context"
	"image"
	"slices"

	"github.com/sdxs-go/sdxs"
)

// PipelineControl is the ControlFunc of an sdxs pipeline with a ControlNet loaded: the control
// image and its scale go into the request as they are (the pipeline resizes the image to the
// picture's size; a scale of 0 is sdxs.DefaultControlScale).
func PipelineControl(req *sdxs.Request, control image.Image, scale float64) {
	req.Control = control
	req.ControlScale = scale
}

// WithLoRAs returns a Generator that applies the adapters to every request (the warm-up
// picture included, so that their merged weights are ready before the server is). The result
// keeps gen's GenerateBatch when it has one.
func WithLoRAs(gen Generator, loras []sdxs.LoRA) Generator {
	l := loraGen{gen: gen, loras: slices.Clone(loras)}
	if _, ok := gen.(batchGenerator); ok {
		return loraBatchGen{l}
	}
	return l
}

type loraGen struct {
	gen   Generator
	loras []sdxs.LoRA
}

func (g loraGen) with(req sdxs.Request) sdxs.Request {
	req.LoRAs = append(slices.Clone(g.loras), req.LoRAs...)
	return req
}

func (g loraGen) Generate(ctx context.Context, req sdxs.Request) (*sdxs.Result, error) {
	return g.gen.Generate(ctx, g.with(req))
}

func (g loraGen) DefaultSize() int { return g.gen.DefaultSize() }

type loraBatchGen struct{ loraGen }

func (g loraBatchGen) GenerateBatch(ctx context.Context, req sdxs.Request, n int) ([]*sdxs.Result, error) {
	return g.gen.(batchGenerator).GenerateBatch(ctx, g.with(req), n)
}
