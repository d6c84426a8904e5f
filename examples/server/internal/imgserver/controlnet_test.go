package imgserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestControlNetMatchesPipeline sends the oracle's ControlNet case (its control image, as a
// data URL and as an upload) to a server whose pipeline has the oracle's ControlNet: the
// pictures are the pipeline's own for the same request.
func TestControlNetMatchesPipeline(t *testing.T) {
	p, err := sdxs.Load(oracle.Path(t, "sdxs-dreamshaper-tiny", "model"),
		sdxs.WithControlNet(oracle.Path(t, "sdxs-dreamshaper-tiny", "controlnet")))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, ts := startServer(t, p, Config{Control: PipelineControl})
	data, err := os.ReadFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "case5_control.png"))
	if err != nil {
		t.Fatal(err)
	}
	control, err := imageproc.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "a house by the lake"
	want := func(seed uint64, scale float64) []byte {
		res, err := p.Generate(context.Background(), sdxs.Request{Prompt: prompt, Seed: seed, Width: 256, Height: 256, Control: control, ControlScale: scale})
		if err != nil {
			t.Fatal(err)
		}
		return res.Image.Pix
	}
	body := fmt.Sprintf(`{"prompt": %q, "size": "256x256", "seed": 5, "control_image": "data:image/png;base64,%s", "control_scale": 0.8}`,
		prompt, base64.StdEncoding.EncodeToString(data))
	r := postJSON(t, ts.URL, body)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	got := decodePNG(t, r.resp.Data[0].B64JSON)
	if !bytes.Equal(got.Pix, want(5, 0.8)) {
		t.Error("the server's ControlNet picture differs from sdxs.Generate's")
	}
	// The control image changes the picture.
	plain, err := p.Generate(context.Background(), sdxs.Request{Prompt: prompt, Seed: 5, Width: 256, Height: 256})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got.Pix, plain.Image.Pix) {
		t.Error("the picture with a control image equals the one without")
	}

	mp, ct := multipartBody(t, map[string]string{"prompt": prompt, "size": "256x256", "seed": "6", "control_scale": "0.5"}, "control_image", data)
	r = post(t, context.Background(), ts.URL, ct, mp)
	if r.status != http.StatusOK {
		t.Fatalf("multipart: status %d: %s", r.status, r.raw)
	}
	if !bytes.Equal(decodePNG(t, r.resp.Data[0].B64JSON).Pix, want(6, 0.5)) {
		t.Error("multipart: the server's ControlNet picture differs from sdxs.Generate's")
	}
}

// TestLoRAs serves the pipeline with the oracle's LoRA applied to every request: the pictures
// are the pipeline's own with that adapter, and differ from those without it.
func TestLoRAs(t *testing.T) {
	p := oraclePipeline(t)
	a, err := p.LoadLoRA(oracle.Path(t, "sdxs-dreamshaper-tiny", "lora", "peft"))
	if err != nil {
		t.Fatal(err)
	}
	loras := []sdxs.LoRA{{Adapter: a, Scale: 0.7}}
	_, ts := startServer(t, WithLoRAs(p, loras), Config{})
	r := postJSON(t, ts.URL, `{"prompt": "a cyborg", "size": "128x128", "seed": 11, "n": 2}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	for i, d := range r.resp.Data {
		got := decodePNG(t, d.B64JSON)
		req := sdxs.Request{Prompt: "a cyborg", Seed: 11 + uint64(i), Width: 128, Height: 128}
		plain, err := p.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got.Pix, plain.Image.Pix) {
			t.Errorf("picture %d: the LoRA changed nothing", i)
		}
		req.LoRAs = loras
		samePixels(t, p, got, req)
	}
	if _, ok := WithLoRAs(p, loras).(batchGenerator); !ok {
		t.Error("WithLoRAs hides the pipeline's GenerateBatch")
	}
	if _, ok := WithLoRAs(&blockingGen{p: p}, loras).(batchGenerator); ok {
		t.Error("WithLoRAs invents a GenerateBatch")
	}
}

// TestEditsControlNetMatchesPipeline sends an edit with the oracle's init picture and control
// image to a server whose pipeline has the oracle's ControlNet: the picture is the pipeline's
// own image to image picture with that control image, and differs from the one without it.
func TestEditsControlNetMatchesPipeline(t *testing.T) {
	p, err := sdxs.Load(oracle.Path(t, "sdxs-dreamshaper-tiny", "model"),
		sdxs.WithControlNet(oracle.Path(t, "sdxs-dreamshaper-tiny", "controlnet")))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, ts := startServer(t, p, Config{Control: PipelineControl})
	controlPNG, err := os.ReadFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "case5_control.png"))
	if err != nil {
		t.Fatal(err)
	}
	initPNG, err := os.ReadFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "img2img", "init0.png"))
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "a house by the lake"
	r := postEdit(t, ts.URL, []string{"prompt", prompt, "seed", "5", "strength", "0.75", "steps", "4", "control_scale", "0.6"},
		editFile{"image", "init0.png", initPNG}, editFile{"control_image", "sketch.png", controlPNG})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	req := sdxs.Request{Prompt: prompt, Seed: 5, Init: decodeInit(t, initPNG), Strength: 0.75, Steps: 4,
		Control: decodeInit(t, controlPNG), ControlScale: 0.6}
	got := decodePNG(t, r.resp.Data[0].B64JSON)
	samePixels(t, p, got, req)
	req.Control, req.ControlScale = nil, 0
	plain, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got.Pix, plain.Image.Pix) {
		t.Error("the edit with a control image equals the one without")
	}
}
