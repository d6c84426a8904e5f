package imgserver

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/imageproc"
)

// editFile is a file field of an edit request.
type editFile struct {
	field, name string
	data        []byte
}

// editBody is a multipart/form-data body with the text fields (in order, as name, value pairs)
// and the files.
func editBody(t testing.TB, fields []string, files ...editFile) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := mw.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		fw, err := mw.CreateFormFile(f.field, f.name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(f.data)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

func postEdit(t testing.TB, url string, fields []string, files ...editFile) apiResult {
	t.Helper()
	body, ct := editBody(t, fields, files...)
	return postTo(t, context.Background(), url+"/v1/images/edits", ct, body)
}

// initPicture is a w×h test picture: colour gradients and a disc, so that the encoder sees
// structure.
func initPicture(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(255 * x / w), uint8(255 * y / h), 90, 255}
			if dx, dy := x-w/2, y-h/2; dx*dx+dy*dy < w*h/16 {
				c = color.RGBA{240, 230, 40, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

// decodeInit decodes an uploaded picture as the server does.
func decodeInit(t testing.TB, data []byte) image.Image {
	t.Helper()
	img, err := imageproc.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestEditsMatchPipeline sends init pictures to /v1/images/edits: the pictures are
// sdxs.Generate's for the same init picture, seed, size, strength and steps (seeds seed+i for
// n > 1); without a size the picture takes the init picture's size rounded down to multiples of
// 8; the defaults are strength 0.5 and 2 steps; OpenAI's mask, model, user and quality are
// accepted and ignored.
func TestEditsMatchPipeline(t *testing.T) {
	p := oraclePipeline(t) // the tiny test model has no VAE encoder
	_, ts := startServer(t, p, Config{})
	initPNG := pngBytes(t, initPicture(100, 75))
	init := decodeInit(t, initPNG)

	r := postEdit(t, ts.URL, []string{"prompt", "a lighthouse at dusk", "n", "2", "seed", "42", "strength", "0.75", "steps", "4",
		"response_format", "b64_json", "model", "dall-e-2", "user", "someone", "quality", "standard"},
		editFile{"image", "photo.png", initPNG}, editFile{"mask", "mask.png", pngBytes(t, image.NewAlpha(image.Rect(0, 0, 100, 75)))})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if len(r.resp.Data) != 2 {
		t.Fatalf("%d pictures, want 2", len(r.resp.Data))
	}
	for i, d := range r.resp.Data {
		if d.Seed != 42+uint64(i) {
			t.Errorf("picture %d: seed %d, want %d", i, d.Seed, 42+i)
		}
		img := decodePNG(t, d.B64JSON)
		if b := img.Bounds(); b.Dx() != 96 || b.Dy() != 72 {
			t.Fatalf("picture %d is %v, want the init picture's 100×75 rounded down to 96×72", i, b)
		}
		samePixels(t, p, img, sdxs.Request{Prompt: "a lighthouse at dusk", Seed: d.Seed, Init: init, Strength: 0.75, Steps: 4})
	}
	// Not text to image: the same prompt and seed without the init picture differ.
	t2i, err := p.Generate(context.Background(), sdxs.Request{Prompt: "a lighthouse at dusk", Seed: 42, Width: 96, Height: 72})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(decodePNG(t, r.resp.Data[0].B64JSON).Pix, t2i.Image.Pix) {
		t.Error("the edit's picture is text to image's")
	}

	// A JPEG with a size and the defaults (strength 0.5, 2 steps); a random seed is reported.
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, initPicture(80, 80), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	r = postEdit(t, ts.URL, []string{"prompt", "a cat", "size", "64x128"}, editFile{"image", "photo.jpg", jb.Bytes()})
	if r.status != http.StatusOK {
		t.Fatalf("JPEG: status %d: %s", r.status, r.raw)
	}
	d := r.resp.Data[0]
	samePixels(t, p, decodePNG(t, d.B64JSON), sdxs.Request{Prompt: "a cat", Seed: d.Seed, Width: 64, Height: 128,
		Init: decodeInit(t, jb.Bytes()), Strength: DefaultEditStrength, Steps: DefaultEditSteps})
	if n := metricValue(t, ts.URL, `sdxs_http_requests_total{code="200",route="/v1/images/edits"}`); n != 2 {
		t.Errorf("%g edits counted, want 2", n)
	}
}

// TestEditsBadInputs sends bad edit requests: each gets a 4xx with an OpenAI-style error
// naming the field, and the server still answers.
func TestEditsBadInputs(t *testing.T) {
	p := oraclePipeline(t) // the tiny test model has no VAE encoder
	_, ts := startServer(t, p, Config{MaxBodyBytes: 256 << 10, MaxControlSide: 2048})
	good := pngBytes(t, initPicture(64, 64))
	img := func(data []byte) editFile { return editFile{"image", "photo.png", data} }
	cases := []struct {
		name   string
		fields []string
		files  []editFile
		status int
		param  string
		msg    string
	}{
		{"no image", []string{"prompt", "a"}, nil, 400, "image", "image is required"},
		{"no prompt", []string{"strength", "0.5"}, []editFile{img(good)}, 400, "prompt", "prompt is required"},
		{"not a picture", []string{"prompt", "a"}, []editFile{img([]byte("hello, not a picture"))}, 400, "image", "not a PNG, JPEG or GIF"},
		{"truncated picture", []string{"prompt", "a"}, []editFile{img(good[:len(good)/2])}, 400, "image", "png picture"},
		{"decompression bomb", []string{"prompt", "a"}, []editFile{img(hugePNG(t, 100000, 100000))}, 400, "image", "each side must be from 1 to 2048"},
		{"too large without size", []string{"prompt", "a"}, []editFile{img(pngBytes(t, image.NewGray(image.Rect(0, 0, 1100, 64))))}, 400, "image", "send a size"},
		{"too small without size", []string{"prompt", "a"}, []editFile{img(pngBytes(t, image.NewGray(image.Rect(0, 0, 60, 64))))}, 400, "image", "gives a 56×64 picture"},
		{"strength zero", []string{"prompt", "a", "strength", "0"}, []editFile{img(good)}, 400, "strength", "more than 0 and at most 1"},
		{"strength negative", []string{"prompt", "a", "strength", "-0.5"}, []editFile{img(good)}, 400, "strength", "more than 0 and at most 1"},
		{"strength above 1", []string{"prompt", "a", "strength", "1.5"}, []editFile{img(good)}, 400, "strength", "more than 0 and at most 1"},
		{"strength NaN", []string{"prompt", "a", "strength", "NaN"}, []editFile{img(good)}, 400, "strength", "more than 0 and at most 1"},
		{"strength word", []string{"prompt", "a", "strength", "half"}, []editFile{img(good)}, 400, "strength", "strength must be a number"},
		{"strength runs no step", []string{"prompt", "a", "strength", "0.4", "steps", "2"}, []editFile{img(good)}, 400, "strength", "runs no step"},
		{"steps zero", []string{"prompt", "a", "steps", "0"}, []editFile{img(good)}, 400, "steps", "between 1 and 50"},
		{"steps negative", []string{"prompt", "a", "steps", "-2"}, []editFile{img(good)}, 400, "steps", "between 1 and 50"},
		{"steps too many", []string{"prompt", "a", "steps", "51"}, []editFile{img(good)}, 400, "steps", "between 1 and 50"},
		{"steps fraction", []string{"prompt", "a", "steps", "1.5"}, []editFile{img(good)}, 400, "steps", "steps must be an integer"},
		{"bad size", []string{"prompt", "a", "size", "100x64"}, []editFile{img(good)}, 400, "size", "multiple of 8"},
		{"size too large", []string{"prompt", "a", "size", "64x2048"}, []editFile{img(good)}, 400, "size", "from 64 to 1024"},
		{"size words", []string{"prompt", "a", "size", "big"}, []editFile{img(good)}, 400, "size", "WIDTHxHEIGHT"},
		{"n zero", []string{"prompt", "a", "n", "0"}, []editFile{img(good)}, 400, "n", "between 1 and 4"},
		{"n five", []string{"prompt", "a", "n", "5"}, []editFile{img(good)}, 400, "n", "between 1 and 4"},
		{"url format", []string{"prompt", "a", "response_format", "url"}, []editFile{img(good)}, 400, "response_format", `"url" is not supported`},
		{"image twice", []string{"prompt", "a"}, []editFile{img(good), img(good)}, 400, "image", "given twice"},
		{"control without ControlNet", []string{"prompt", "a"}, []editFile{img(good), {"control_image", "s.png", good}}, 400, "control_image", "no ControlNet"},
		{"unknown field", []string{"prompt", "a", "guidance", "7"}, []editFile{img(good)}, 400, "guidance", "Unrecognized request argument supplied: guidance"},
		{"oversized body", []string{"prompt", "a"}, []editFile{img(bytes.Repeat([]byte{1}, 300<<10))}, 413, "", "larger than 262144 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkAPIError(t, postEdit(t, ts.URL, c.fields, c.files...), c.status, c.param, c.msg)
		})
	}
	// JSON is not an edit request; the edit fields are not generations' fields.
	r := postTo(t, context.Background(), ts.URL+"/v1/images/edits", "application/json", []byte(`{"prompt": "a"}`))
	if r.status != http.StatusUnsupportedMediaType || !strings.Contains(r.err.Error.Message, "multipart/form-data") {
		t.Errorf("JSON edit: status %d %q, want 415 asking for multipart/form-data", r.status, r.err.Error.Message)
	}
	for _, field := range []string{"strength", "steps"} {
		body, ct := editBody(t, []string{"prompt", "a", field, "1"})
		r = post(t, context.Background(), ts.URL, ct, body)
		if r.status != http.StatusBadRequest || !strings.Contains(r.err.Error.Message, "/v1/images/edits") {
			t.Errorf("generations with %s: status %d %q, want 400 pointing to /v1/images/edits", field, r.status, r.err.Error.Message)
		}
	}
	res, err := http.Get(ts.URL + "/v1/images/edits")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", res.StatusCode)
	}
	// The server is unharmed.
	r = postEdit(t, ts.URL, []string{"prompt", "still here", "seed", "3", "strength", "1", "steps", "1"}, img(good))
	if r.status != http.StatusOK {
		t.Fatalf("after the bad requests: status %d: %s", r.status, r.raw)
	}
	samePixels(t, p, decodePNG(t, r.resp.Data[0].B64JSON), sdxs.Request{Prompt: "still here", Seed: 3, Init: decodeInit(t, good), Strength: 1, Steps: 1})
}

// TestEditsWithControlImage: with a ControlNet, an edit takes a control_image too, and the
// request reaching the pipeline carries both pictures.
func TestEditsWithControlImage(t *testing.T) {
	p := oraclePipeline(t) // the tiny test model has no VAE encoder
	rec := &controlRecorder{}
	var mu sync.Mutex
	var got sdxs.Request
	control := func(req *sdxs.Request, img image.Image, scale float64) {
		rec.set(req, img, scale)
		mu.Lock()
		got = *req
		mu.Unlock()
	}
	_, ts := startServer(t, p, Config{Control: control})
	sketch := image.NewGray(image.Rect(0, 0, 64, 64))
	initPNG := pngBytes(t, initPicture(64, 64))
	r := postEdit(t, ts.URL, []string{"prompt", "a", "seed", "1", "control_scale", "0.6", "strength", "1", "steps", "1"},
		editFile{"image", "photo.png", initPNG}, editFile{"control_image", "sketch.png", pngBytes(t, sketch)})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	img, scale := rec.last(t)
	sameImage(t, img, sketch)
	mu.Lock()
	defer mu.Unlock()
	if scale != 0.6 || got.Init == nil || got.Strength != 1 || got.Steps != 1 {
		t.Errorf("the pipeline got scale %g, init %v, strength %g, steps %d; want 0.6, the picture, 1, 1", scale, got.Init != nil, got.Strength, got.Steps)
	}
	sameImage(t, got.Init, decodeInit(t, initPNG))
}

// TestEditsConcurrentClients sends edits and generations at once: each picture is the
// pipeline's own.
func TestEditsConcurrentClients(t *testing.T) {
	p := oraclePipeline(t) // the tiny test model has no VAE encoder
	_, ts := startServer(t, p, Config{Workers: 2, QueueSize: 16})
	initPNG := pngBytes(t, initPicture(72, 64))
	init := decodeInit(t, initPNG)
	concurrentClients(t, p, 6, func(i int) (apiResult, sdxs.Request) {
		req := sdxs.Request{Prompt: fmt.Sprintf("client %d", i), Seed: uint64(i), Width: 72, Height: 64}
		if i%2 == 1 {
			return postJSON(t, ts.URL, fmt.Sprintf(`{"prompt": "client %d", "size": "72x64", "seed": %d}`, i, i)), req
		}
		req.Init, req.Strength, req.Steps = init, DefaultEditStrength, DefaultEditSteps
		return postEdit(t, ts.URL, []string{"prompt", req.Prompt, "seed", fmt.Sprint(i)}, editFile{"image", "p.png", initPNG}), req
	})
}
