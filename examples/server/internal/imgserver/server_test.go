package imgserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/internal/testmodel"
	"github.com/sdxs-go/sdxs/weights"
)

// tinyPipeline loads the tiny test model (64×64 pictures in milliseconds).
func tinyPipeline(t testing.TB) *sdxs.Pipeline {
	t.Helper()
	dir := t.TempDir()
	if err := testmodel.WriteTiny(dir, weights.F32); err != nil {
		t.Fatal(err)
	}
	p, err := sdxs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// startServer starts a ready server for gen on a loopback listener.
func startServer(t testing.TB, gen Generator, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.WarmSize == 0 {
		cfg.WarmSize = 64
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), gen); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

type apiResult struct {
	status int
	header http.Header
	resp   Response
	err    errorBody
	raw    []byte
}

func post(t testing.TB, ctx context.Context, url, contentType string, body []byte) apiResult {
	t.Helper()
	return postTo(t, ctx, url+"/v1/images/generations", contentType, body)
}

// postTo posts body to the full URL and reads an image response or an OpenAI-style error.
func postTo(t testing.TB, ctx context.Context, url, contentType string, body []byte) apiResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := apiResult{status: res.StatusCode, header: res.Header, raw: raw}
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &out.resp); err != nil {
			t.Fatalf("200 with a body that is not a response: %v: %.200s", err, raw)
		}
	} else if err := json.Unmarshal(raw, &out.err); err != nil || out.err.Error.Message == "" || out.err.Error.Type == "" {
		t.Fatalf("status %d without an OpenAI-style error body: %.300s", res.StatusCode, raw)
	}
	return out
}

func postJSON(t testing.TB, url string, body string) apiResult {
	t.Helper()
	return post(t, context.Background(), url, "application/json", []byte(body))
}

func decodePNG(t testing.TB, b64 string) *image.RGBA {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out := image.NewRGBA(img.Bounds())
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			out.Set(x, y, img.At(x, y))
		}
	}
	return out
}

// samePixels compares the server's picture with the pipeline's own for the same request.
func samePixels(t testing.TB, p *sdxs.Pipeline, got *image.RGBA, req sdxs.Request) {
	t.Helper()
	want, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != want.Image.Bounds() {
		t.Fatalf("seed %d: picture %v, want %v", req.Seed, got.Bounds(), want.Image.Bounds())
	}
	if !bytes.Equal(got.Pix, want.Image.Pix) {
		t.Fatalf("seed %d %dx%d: the server's pixels differ from sdxs.Generate's", req.Seed, req.Width, req.Height)
	}
}

func TestGenerationsMatchPipeline(t *testing.T) {
	p := tinyPipeline(t)
	_, ts := startServer(t, p, Config{})
	r := postJSON(t, ts.URL, `{"prompt": "a lighthouse at dusk", "n": 3, "size": "96x64", "seed": 42, "response_format": "b64_json",
		"model": "dall-e-2", "quality": "standard", "style": "vivid", "user": "someone"}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if len(r.resp.Data) != 3 || r.resp.Created == 0 {
		t.Fatalf("response: %d pictures, created %d; want 3 and a time", len(r.resp.Data), r.resp.Created)
	}
	for i, d := range r.resp.Data {
		if d.Seed != 42+uint64(i) {
			t.Errorf("picture %d: seed %d, want %d", i, d.Seed, 42+i)
		}
		img := decodePNG(t, d.B64JSON)
		if b := img.Bounds(); b.Dx() != 96 || b.Dy() != 64 {
			t.Fatalf("picture %d is %v, want 96×64", i, b)
		}
		samePixels(t, p, img, sdxs.Request{Prompt: "a lighthouse at dusk", Seed: d.Seed, Width: 96, Height: 64})
	}
	// Without a size the model's default size is used; seeds near 2^64 wrap as uint64 does.
	r = postJSON(t, ts.URL, `{"prompt": "x", "seed": 18446744073709551615, "n": 2}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if r.resp.Data[0].Seed != 1<<64-1 || r.resp.Data[1].Seed != 0 {
		t.Errorf("seeds %d, %d; want 2^64-1, 0", r.resp.Data[0].Seed, r.resp.Data[1].Seed)
	}
	samePixels(t, p, decodePNG(t, r.resp.Data[1].B64JSON), sdxs.Request{Prompt: "x", Seed: 0, Width: p.DefaultSize(), Height: p.DefaultSize()})
}

func TestRandomSeedIsReported(t *testing.T) {
	p := tinyPipeline(t)
	_, ts := startServer(t, p, Config{})
	seeds := map[uint64]bool{}
	for i := 0; i < 3; i++ {
		r := postJSON(t, ts.URL, `{"prompt": "a red door", "size": "64x64"}`)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.raw)
		}
		d := r.resp.Data[0]
		if d.Seed >= 1<<53 {
			t.Errorf("random seed %d is not exact in JavaScript", d.Seed)
		}
		seeds[d.Seed] = true
		samePixels(t, p, decodePNG(t, d.B64JSON), sdxs.Request{Prompt: "a red door", Seed: d.Seed, Width: 64, Height: 64})
	}
	if len(seeds) < 2 {
		t.Errorf("three requests without a seed used the seeds %v", seeds)
	}
}

func pngBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugePNG is a valid PNG header declaring a picture of w×h pixels, without its pixels.
func hugePNG(t testing.TB, w, h int) []byte {
	data := pngBytes(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	// IHDR's width and height are bytes 16–23, followed by the chunk's CRC (of type and data).
	copy(data[16:], []byte{byte(w >> 24), byte(w >> 16), byte(w >> 8), byte(w), byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)})
	crc := crc32.ChecksumIEEE(data[12:29])
	copy(data[29:33], []byte{byte(crc >> 24), byte(crc >> 16), byte(crc >> 8), byte(crc)})
	return data
}

func TestBadInputs(t *testing.T) {
	p := tinyPipeline(t)
	_, ts := startServer(t, p, Config{MaxBodyBytes: 64 << 10, MaxPromptRunes: 50})
	long := strings.Repeat("é", 51)
	notImage := "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte("this is not a picture"))
	cases := []struct {
		name, ct, body string
		status         int
		param, message string
	}{
		{"not JSON", "application/json", `prompt=a cat`, 400, "", "not valid JSON"},
		{"truncated JSON", "application/json", `{"prompt": "a cat"`, 400, "", "ends too early"},
		{"array", "application/json", `["a cat"]`, 400, "", "JSON object"},
		{"two objects", "application/json", `{"prompt": "a"} {"prompt": "b"}`, 400, "", "nothing after it"},
		{"empty body", "application/json", ``, 400, "", "empty request body"},
		{"no prompt", "application/json", `{"n": 1}`, 400, "prompt", "prompt is required"},
		{"null prompt", "application/json", `{"prompt": null}`, 400, "prompt", "prompt is required"},
		{"prompt number", "application/json", `{"prompt": 12}`, 400, "prompt", "prompt must be a string"},
		{"empty prompt", "application/json", `{"prompt": ""}`, 400, "prompt", "prompt is empty"},
		{"blank prompt", "application/json", `{"prompt": "  \n\t "}`, 400, "prompt", "prompt is empty"},
		{"long prompt", "application/json", `{"prompt": "` + long + `"}`, 400, "prompt", "51 characters long; the limit is 50"},
		{"n zero", "application/json", `{"prompt": "a", "n": 0}`, 400, "n", "between 1 and 4"},
		{"n five", "application/json", `{"prompt": "a", "n": 5}`, 400, "n", "between 1 and 4"},
		{"n string", "application/json", `{"prompt": "a", "n": "2"}`, 400, "n", "n must be an integer"},
		{"n fraction", "application/json", `{"prompt": "a", "n": 1.5}`, 400, "n", "n must be an integer"},
		{"size no x", "application/json", `{"prompt": "a", "size": "512"}`, 400, "size", "WIDTHxHEIGHT"},
		{"size words", "application/json", `{"prompt": "a", "size": "bigxsmall"}`, 400, "size", "whole numbers"},
		{"size number", "application/json", `{"prompt": "a", "size": 512}`, 400, "size", "size must be"},
		{"size not multiple of 8", "application/json", `{"prompt": "a", "size": "100x64"}`, 400, "size", "multiple of 8"},
		{"size too small", "application/json", `{"prompt": "a", "size": "32x64"}`, 400, "size", "multiple of 8 from 64 to 1024"},
		{"size too large", "application/json", `{"prompt": "a", "size": "64x1032"}`, 400, "size", "height 1032"},
		{"size negative", "application/json", `{"prompt": "a", "size": "-64x64"}`, 400, "size", "width -64"},
		{"size overflow", "application/json", `{"prompt": "a", "size": "99999999999999999999x64"}`, 400, "size", "whole numbers"},
		{"url format", "application/json", `{"prompt": "a", "response_format": "url"}`, 400, "response_format", `"url" is not supported`},
		{"other format", "application/json", `{"prompt": "a", "response_format": "jpeg"}`, 400, "response_format", `must be "b64_json"`},
		{"negative seed", "application/json", `{"prompt": "a", "seed": -1}`, 400, "seed", "seed must be an integer"},
		{"seed too large", "application/json", `{"prompt": "a", "seed": 18446744073709551616}`, 400, "seed", "seed must be an integer"},
		{"seed fraction", "application/json", `{"prompt": "a", "seed": 1.5}`, 400, "seed", "seed must be an integer"},
		{"seed string", "application/json", `{"prompt": "a", "seed": "7"}`, 400, "seed", "seed must be an integer"},
		{"unknown field", "application/json", `{"prompt": "a", "steps": 4}`, 400, "steps", "Unrecognized request argument supplied: steps"},
		{"control without ControlNet", "application/json", `{"prompt": "a", "control_image": "` + notImage + `"}`, 400, "control_image", "no ControlNet"},
		{"oversized body", "application/json", `{"prompt": "` + strings.Repeat("a", 70<<10) + `"}`, 413, "", "larger than 65536 bytes"},
		{"wrong content type", "text/plain", `{"prompt": "a"}`, 415, "", "not supported"},
		{"bad content type", "application/json; charset", `{"prompt": "a"}`, 415, "", "Content-Type"},
		{"multipart without boundary", "multipart/form-data", `x`, 400, "", "boundary"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkAPIError(t, post(t, context.Background(), ts.URL, c.ct, []byte(c.body)), c.status, c.param, c.message)
		})
	}
	// Other methods and paths.
	res, err := http.Get(ts.URL + "/v1/images/generations")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "POST" {
		t.Errorf("GET: status %d, Allow %q; want 405, POST", res.StatusCode, res.Header.Get("Allow"))
	}
	// The server is unharmed.
	r := postJSON(t, ts.URL, `{"prompt": "still here", "size": "64x64", "seed": 1}`)
	if r.status != http.StatusOK {
		t.Fatalf("after the bad requests: status %d: %s", r.status, r.raw)
	}
	samePixels(t, p, decodePNG(t, r.resp.Data[0].B64JSON), sdxs.Request{Prompt: "still here", Seed: 1, Width: 64, Height: 64})
}

// checkAPIError checks that r is a client error with the status, an OpenAI-style body of type
// invalid_request_error naming param (unless empty) and a message saying message.
func checkAPIError(t testing.TB, r apiResult, status int, param, message string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	e := r.err.Error
	if !strings.Contains(e.Message, message) {
		t.Errorf("message %q does not say %q", e.Message, message)
	}
	if e.Type != "invalid_request_error" {
		t.Errorf("type %q, want invalid_request_error", e.Type)
	}
	if param != "" && (e.Param == nil || *e.Param != param) {
		t.Errorf("param %v, want %q", e.Param, param)
	}
}

func multipartBody(t testing.TB, fields map[string]string, fileField string, file []byte) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if fileField != "" {
		fw, err := mw.CreateFormFile(fileField, "sketch.png")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// controlRecorder stands in for a ControlNet: it records the control image and scale each
// request carries (the pipeline itself ignores them).
type controlRecorder struct {
	mu     sync.Mutex
	images []image.Image
	scales []float64
}

func (c *controlRecorder) set(req *sdxs.Request, img image.Image, scale float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.images = append(c.images, img)
	c.scales = append(c.scales, scale)
}

func (c *controlRecorder) last(t testing.TB) (image.Image, float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.images) == 0 {
		t.Fatal("no control image reached the pipeline")
	}
	return c.images[len(c.images)-1], c.scales[len(c.scales)-1]
}

func sameImage(t testing.TB, got, want image.Image) {
	t.Helper()
	if got.Bounds() != want.Bounds() {
		t.Fatalf("control image %v, want %v", got.Bounds(), want.Bounds())
	}
	for y := want.Bounds().Min.Y; y < want.Bounds().Max.Y; y++ {
		for x := want.Bounds().Min.X; x < want.Bounds().Max.X; x++ {
			r1, g1, b1, a1 := got.At(x, y).RGBA()
			r2, g2, b2, a2 := want.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				t.Fatalf("control image differs at (%d,%d)", x, y)
			}
		}
	}
}

func TestControlImage(t *testing.T) {
	p := tinyPipeline(t)
	rec := &controlRecorder{}
	_, ts := startServer(t, p, Config{Control: rec.set, MaxControlSide: 1024})
	// The warm-up made a picture with a blank control image too (the ControlNet's graphs).
	warm, _ := rec.last(t)
	if b := warm.Bounds(); rec.count() != 1 || b.Dx() != 64 || b.Dy() != 64 {
		t.Errorf("warm-up: %d control images, the last %v; want one of 64×64", rec.count(), b)
	}
	checkSketch(t, warm, 64, 64, nil, [][2]float64{{0, 0}, {0.5, 0.5}, {0.99, 0.99}})
	sketch := image.NewGray(image.Rect(0, 0, 64, 48))
	for i := range sketch.Pix {
		sketch.Pix[i] = 255
	}
	for x := 10; x < 50; x++ {
		sketch.SetGray(x, 20, color.Gray{0})
	}
	data := pngBytes(t, sketch)

	// As a data URL in JSON, with a scale.
	body := fmt.Sprintf(`{"prompt": "a house", "size": "64x64", "seed": 3, "control_image": "data:image/png;base64,%s", "control_scale": 0.5}`,
		base64.StdEncoding.EncodeToString(data))
	if r := postJSON(t, ts.URL, body); r.status != http.StatusOK {
		t.Fatalf("data URL: status %d: %s", r.status, r.raw)
	}
	img, scale := rec.last(t)
	sameImage(t, img, sketch)
	if scale != 0.5 {
		t.Errorf("scale %g, want 0.5", scale)
	}

	// As a multipart upload, without a scale (0: the library's default).
	mp, ct := multipartBody(t, map[string]string{"prompt": "a house", "size": "64x64", "seed": "3", "n": "2", "model": "dall-e-2"}, "control_image", data)
	r := post(t, context.Background(), ts.URL, ct, mp)
	if r.status != http.StatusOK || len(r.resp.Data) != 2 || r.resp.Data[1].Seed != 4 {
		t.Fatalf("multipart: status %d: %.300s", r.status, r.raw)
	}
	img, scale = rec.last(t)
	sameImage(t, img, sketch)
	if scale != 0 {
		t.Errorf("scale %g, want 0 (the default)", scale)
	}

	// Bad control images and scales.
	text := base64.StdEncoding.EncodeToString([]byte("hello, not a picture"))
	huge := base64.StdEncoding.EncodeToString(hugePNG(t, 100000, 100000))
	good := base64.StdEncoding.EncodeToString(data)
	truncated := base64.StdEncoding.EncodeToString(data[:len(data)*2/3])
	bad := []struct{ name, body, message string }{
		{"not an image", `{"prompt": "a", "control_image": "data:image/png;base64,` + text + `"}`, "not a PNG, JPEG or GIF"},
		{"not base64", `{"prompt": "a", "control_image": "data:image/png;base64,@@@"}`, "not valid base64"},
		{"not a data URL of an image", `{"prompt": "a", "control_image": "data:text/plain;base64,` + good + `"}`, "not an image type"},
		{"not base64 data URL", `{"prompt": "a", "control_image": "data:image/png,abc"}`, "only base64 data URLs"},
		{"declares a huge picture", `{"prompt": "a", "control_image": "data:image/png;base64,` + huge + `"}`, "100000×100000"},
		{"truncated picture", `{"prompt": "a", "control_image": "data:image/png;base64,` + truncated + `"}`, "png picture: decoding"},
		{"control image number", `{"prompt": "a", "control_image": 5}`, "control_image must be a string"},
		{"scale without image", `{"prompt": "a", "control_scale": 0.5}`, "without a control_image"},
		{"scale out of range", `{"prompt": "a", "control_scale": 3, "control_image": "data:image/png;base64,` + good + `"}`, "between 0 and 2"},
		{"scale negative", `{"prompt": "a", "control_scale": -0.1, "control_image": "data:image/png;base64,` + good + `"}`, "between 0 and 2"},
	}
	for _, c := range bad {
		r := postJSON(t, ts.URL, c.body)
		if r.status != http.StatusBadRequest || !strings.Contains(r.err.Error.Message, c.message) {
			t.Errorf("%s: status %d, message %q; want 400 saying %q", c.name, r.status, r.err.Error.Message, c.message)
		}
	}
	mp, ct = multipartBody(t, map[string]string{"prompt": "a"}, "control_image", []byte("not a picture"))
	if r := post(t, context.Background(), ts.URL, ct, mp); r.status != http.StatusBadRequest || !strings.Contains(r.err.Error.Message, "not a PNG") {
		t.Errorf("multipart text as control image: status %d, %q", r.status, r.err.Error.Message)
	}
	mp, ct = multipartBody(t, map[string]string{"prompt": "a", "n": "two"}, "", nil)
	if r := post(t, context.Background(), ts.URL, ct, mp); r.status != http.StatusBadRequest || !strings.Contains(r.err.Error.Message, "n must be an integer") {
		t.Errorf("multipart n=two: status %d, %q", r.status, r.err.Error.Message)
	}
	mp, ct = multipartBody(t, map[string]string{"prompt": "a", "guidance": "7"}, "", nil)
	if r := post(t, context.Background(), ts.URL, ct, mp); r.status != http.StatusBadRequest || !strings.Contains(r.err.Error.Message, "Unrecognized request argument supplied: guidance") {
		t.Errorf("multipart unknown field: status %d, %q", r.status, r.err.Error.Message)
	}
}

// blockingGen holds each generation until released (or its context ends), then runs the real
// pipeline; it reports each context's end.
type blockingGen struct {
	p       *sdxs.Pipeline // not embedded: the server must see Generate only, not GenerateBatch
	started chan struct{}
	release chan struct{}
	ended   chan error
}

func newBlockingGen(p *sdxs.Pipeline) *blockingGen {
	return &blockingGen{p: p, started: make(chan struct{}, 16), release: make(chan struct{}), ended: make(chan error, 16)}
}

func (g *blockingGen) Generate(ctx context.Context, req sdxs.Request) (*sdxs.Result, error) {
	if req.Prompt == "warm-up" {
		return g.p.Generate(ctx, req)
	}
	g.started <- struct{}{}
	select {
	case <-g.release:
		return g.p.Generate(ctx, req)
	case <-ctx.Done():
		g.ended <- ctx.Err()
		return nil, ctx.Err()
	}
}

func (g *blockingGen) DefaultSize() int { return g.p.DefaultSize() }

// waitStarted waits for a generation to start.
func (g *blockingGen) waitStarted(t testing.TB) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(30 * time.Second):
		t.Fatal("no generation started")
	}
}

func metricsText(t testing.TB, url string) string {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", res.StatusCode)
	}
	return string(b)
}

// metricValue returns the value of the sample named (with its labels) in /metrics, or 0.
func metricValue(t testing.TB, url, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, url), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// waitMetric waits until /metrics has the line want.
func waitMetric(t testing.TB, url, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := metricsText(t, url)
		for _, line := range strings.Split(m, "\n") {
			if line == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q", want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQueueFullGives429(t *testing.T) {
	p := tinyPipeline(t)
	g := newBlockingGen(p)
	_, ts := startServer(t, g, Config{Workers: 1, QueueSize: 1})
	body := `{"prompt": "a", "size": "64x64", "seed": 5}`
	results := make(chan apiResult, 2)
	go func() { results <- postJSON(t, ts.URL, body) }()
	g.waitStarted(t) // the first runs
	waitMetric(t, ts.URL, "sdxs_busy_workers 1")
	go func() { results <- postJSON(t, ts.URL, body) }()
	waitMetric(t, ts.URL, "sdxs_queue_depth 1") // the second waits

	r := postJSON(t, ts.URL, body) // the third finds the queue full
	if r.status != http.StatusTooManyRequests || r.err.Error.Type != "rate_limit_error" {
		t.Fatalf("status %d %s, want 429 rate_limit_error", r.status, r.raw)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want whole seconds ≥ 1", r.header.Get("Retry-After"))
	}
	close(g.release)
	for i := 0; i < 2; i++ {
		if r := <-results; r.status != http.StatusOK {
			t.Errorf("queued request: status %d %s", r.status, r.raw)
		}
	}
	waitMetric(t, ts.URL, "sdxs_queue_depth 0")
	waitMetric(t, ts.URL, "sdxs_busy_workers 0")
	// A request is counted once its answer is sent.
	for _, want := range []string{
		`sdxs_http_requests_total{code="200",route="/v1/images/generations"} 2`,
		`sdxs_http_requests_total{code="429",route="/v1/images/generations"} 1`,
		`sdxs_images_generated_total 2`,
	} {
		waitMetric(t, ts.URL, want)
	}
}

func TestClientGoingAwayCancels(t *testing.T) {
	p := tinyPipeline(t)
	g := newBlockingGen(p)
	_, ts := startServer(t, g, Config{Workers: 1, QueueSize: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/images/generations", strings.NewReader(`{"prompt": "a", "size": "64x64"}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	g.waitStarted(t)
	cancel()
	select {
	case err := <-g.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the generation's context ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the generation was not cancelled when its client went away")
	}
	if err := <-done; err == nil {
		t.Error("the cancelled client got an answer")
	}
	waitMetric(t, ts.URL, `sdxs_http_requests_total{code="499",route="/v1/images/generations"} 1`)
	waitMetric(t, ts.URL, "sdxs_busy_workers 0")
	// The worker is free again.
	close(g.release)
	if r := postJSON(t, ts.URL, `{"prompt": "a", "size": "64x64"}`); r.status != http.StatusOK {
		t.Fatalf("after a cancelled request: status %d %s", r.status, r.raw)
	}
}

// TestClientGoingAwayWhileQueued: a request cancelled by its client while it waits for a worker
// leaves the queue, and never runs.
func TestClientGoingAwayWhileQueued(t *testing.T) {
	p := tinyPipeline(t)
	g := newBlockingGen(p)
	_, ts := startServer(t, g, Config{Workers: 1, QueueSize: 2})
	first := make(chan apiResult, 1)
	go func() { first <- postJSON(t, ts.URL, `{"prompt": "first", "size": "64x64"}`) }()
	g.waitStarted(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/images/generations", strings.NewReader(`{"prompt": "second", "size": "64x64"}`))
		req.Header.Set("Content-Type", "application/json")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	waitMetric(t, ts.URL, "sdxs_queue_depth 1")
	cancel()
	<-done
	waitMetric(t, ts.URL, "sdxs_queue_depth 0")
	waitMetric(t, ts.URL, `sdxs_http_requests_total{code="499",route="/v1/images/generations"} 1`)
	close(g.release)
	if r := <-first; r.status != http.StatusOK {
		t.Fatalf("the running request: status %d %s", r.status, r.raw)
	}
	select {
	case <-g.started:
		t.Error("the cancelled request ran")
	default:
	}
}

func TestDeadline(t *testing.T) {
	p := tinyPipeline(t)
	g := newBlockingGen(p)
	_, ts := startServer(t, g, Config{Workers: 1, QueueSize: 2, Timeout: 200 * time.Millisecond})
	start := time.Now()
	r := postJSON(t, ts.URL, `{"prompt": "a", "size": "64x64"}`)
	if r.status != http.StatusGatewayTimeout || r.err.Error.Type != "timeout_error" {
		t.Fatalf("status %d %s, want 504 timeout_error", r.status, r.raw)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the deadline of 200ms took %s", d)
	}
	select {
	case err := <-g.ended:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("generation ended with %v, want DeadlineExceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the generation did not end at its deadline")
	}
}

func TestHealthAndInfo(t *testing.T) {
	p := tinyPipeline(t)
	s, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), WarmSize: 64, Model: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	status := func(path string) int {
		res, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := status("/healthz"); c != http.StatusServiceUnavailable {
		t.Errorf("/healthz before the model: %d, want 503", c)
	}
	if r := postJSON(t, ts.URL, `{"prompt": "a"}`); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("a request before the model: %d (Retry-After %q), want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	if err := s.Start(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if c := status("/healthz"); c != http.StatusOK {
		t.Errorf("/healthz when ready: %d, want 200", c)
	}
	res, err := http.Get(ts.URL + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	var info Info
	json.NewDecoder(res.Body).Decode(&info)
	res.Body.Close()
	want := Info{Model: "tiny", Ready: true, DefaultSize: p.DefaultSize(), MinSide: 64, MaxSide: 1024, MaxN: 4, MaxPrompt: 1000,
		EditStrength: 0.5, EditSteps: 2, MaxSteps: 50}
	if info != want {
		t.Errorf("/v1/info = %+v, want %+v", info, want)
	}
	s.Drain()
	if c := status("/healthz"); c != http.StatusServiceUnavailable {
		t.Errorf("/healthz when draining: %d, want 503", c)
	}
}

func TestMetricsAndLogLines(t *testing.T) {
	p := tinyPipeline(t)
	var logBuf syncBuffer
	_, ts := startServer(t, p, Config{Logger: slog.New(slog.NewJSONHandler(&logBuf, nil))})
	postJSON(t, ts.URL, `{"prompt": "a", "size": "64x64", "seed": 9, "n": 2}`)
	postJSON(t, ts.URL, `{"prompt": ""}`)
	waitMetric(t, ts.URL, `sdxs_http_requests_total{code="400",route="/v1/images/generations"} 1`) // counted once answered
	m := metricsText(t, ts.URL)
	for _, want := range []string{
		`sdxs_http_requests_total{code="200",route="/v1/images/generations"} 1`,
		`sdxs_http_requests_total{code="400",route="/v1/images/generations"} 1`,
		`sdxs_stage_duration_seconds_count{stage="unet"} 2`,
		`sdxs_stage_duration_seconds_count{stage="vae_decoder"} 2`,
		`sdxs_stage_duration_seconds_count{stage="text_encoder"} 1`, // a batch encodes its prompt once
		`sdxs_stage_duration_seconds_count{stage="queue"} 1`,
		`sdxs_stage_duration_seconds_count{stage="generate"} 1`,
		`sdxs_stage_duration_seconds_count{stage="encode"} 1`,
		`sdxs_http_request_duration_seconds_count{route="/v1/images/generations"} 2`,
		`sdxs_queue_depth 0`,
		`sdxs_busy_workers 0`,
		`sdxs_images_generated_total 2`,
		`# TYPE go_goroutines gauge`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// One JSON log line per request (the scrape of /metrics is not logged). A request's line is
	// written once its answer is sent: wait for both.
	var reqs []map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; {
		reqs = nil
		for _, l := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("log line is not JSON: %q", l)
			}
			if rec["msg"] == "request" {
				reqs = append(reqs, rec)
			}
		}
		if len(reqs) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a third line, if any, would show now
	if n := strings.Count(logBuf.String(), `"msg":"request"`); n != 2 {
		t.Fatalf("%d request log lines, want 2:\n%s", n, logBuf.String())
	}
	if len(reqs) != 2 {
		t.Fatalf("%d request log lines, want 2:\n%s", len(reqs), logBuf.String())
	}
	if reqs[0]["status"] != 200.0 || reqs[0]["seed"] != 9.0 || reqs[0]["n"] != 2.0 || reqs[0]["size"] != "64x64" || reqs[0]["path"] != "/v1/images/generations" {
		t.Errorf("first log line: %v", reqs[0])
	}
	if reqs[1]["status"] != 400.0 || reqs[1]["error"] != "prompt is empty" {
		t.Errorf("second log line: %v", reqs[1])
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConcurrentClients(t *testing.T) {
	p := tinyPipeline(t)
	_, ts := startServer(t, p, Config{Workers: 2, QueueSize: 16})
	concurrentClients(t, p, 8, func(i int) (apiResult, sdxs.Request) {
		return postJSON(t, ts.URL, fmt.Sprintf(`{"prompt": "client %d", "size": "%dx64", "seed": %d}`, i%3, 64+8*(i%2), i)),
			sdxs.Request{Prompt: fmt.Sprintf("client %d", i%3), Seed: uint64(i), Width: 64 + 8*(i%2), Height: 64}
	})
}

// concurrentClients runs n clients at once: client i sends its request with send, which also
// returns the sdxs.Request whose picture p must give; each picture is then compared.
func concurrentClients(t *testing.T, p *sdxs.Pipeline, n int, send func(i int) (apiResult, sdxs.Request)) {
	var wg sync.WaitGroup
	imgs := make([]*image.RGBA, n)
	reqs := make([]sdxs.Request, n)
	for i := range imgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, req := send(i)
			if r.status != http.StatusOK {
				t.Errorf("client %d: status %d %s", i, r.status, r.raw)
				return
			}
			imgs[i], reqs[i] = decodePNG(t, r.resp.Data[0].B64JSON), req
		}()
	}
	wg.Wait()
	for i, img := range imgs {
		if img != nil {
			samePixels(t, p, img, reqs[i])
		}
	}
}

// TestMemoryFlat sends rounds of requests of many sizes: after the first round has built each
// size's graphs, later rounds must not grow the heap.
func TestMemoryFlat(t *testing.T) {
	p := tinyPipeline(t)
	_, ts := startServer(t, p, Config{})
	sizes := []string{"64x64", "128x64", "64x192", "256x256", "200x136", "320x96"}
	round := func() {
		for i, s := range sizes {
			r := postJSON(t, ts.URL, fmt.Sprintf(`{"prompt": "round", "size": %q, "seed": %d, "n": 2}`, s, i))
			if r.status != http.StatusOK {
				t.Fatalf("%s: status %d %s", s, r.status, r.raw)
			}
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	round()
	round()
	before := heap()
	for i := 0; i < 5; i++ {
		round()
	}
	after := heap()
	t.Logf("heap after 2 rounds %.1f MiB, after 7 rounds %.1f MiB", float64(before)/(1<<20), float64(after)/(1<<20))
	if after > before+4<<20 {
		t.Errorf("the heap grew from %d to %d bytes over 5 rounds of the same sizes", before, after)
	}
}

// TestMemoryFlatManySizes sends pictures of sizes never seen before, round after round, to a
// pipeline with a small graph budget: the graphs of old sizes give way, and the heap stays flat.
func TestMemoryFlatManySizes(t *testing.T) {
	dir := t.TempDir()
	if err := testmodel.WriteTiny(dir, weights.F32); err != nil {
		t.Fatal(err)
	}
	const budget = 32 << 20
	p, err := sdxs.Load(dir, sdxs.WithCacheBudget(budget))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, ts := startServer(t, p, Config{MaxSide: 512})
	next := 0
	round := func() {
		for i := 0; i < 12; i++ {
			// Sides from 64 to 512, a new pair each time (20·20 pairs before any repeats).
			w, h := 64+8*((next*7)%57), 64+8*((next*13+5)%57)
			next++
			r := postJSON(t, ts.URL, fmt.Sprintf(`{"prompt": "sizes", "size": "%dx%d", "seed": %d}`, w, h, next))
			if r.status != http.StatusOK {
				t.Fatalf("%dx%d: status %d %s", w, h, r.status, r.raw)
			}
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	round()
	round()
	before := heap()
	for i := 0; i < 4; i++ {
		round()
	}
	after := heap()
	used, _ := p.CacheBytes()
	t.Logf("heap after 24 sizes %.1f MiB, after 72 sizes %.1f MiB; graph cache %.1f MiB of %d MiB", float64(before)/(1<<20), float64(after)/(1<<20), float64(used)/(1<<20), budget>>20)
	if used > budget {
		t.Errorf("the graph cache holds %d bytes, over its budget of %d", used, budget)
	}
	if after > before+budget/2 {
		t.Errorf("the heap grew from %d to %d bytes over 48 new sizes", before, after)
	}
}

func TestStaticPage(t *testing.T) {
	p := tinyPipeline(t)
	_, ts := startServer(t, p, Config{})
	for _, c := range []struct{ path, ctype string }{{"/", "text/html"}, {"/app.js", "javascript"}, {"/style.css", "text/css"}} {
		res, err := http.Get(ts.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("%s: status %d, Content-Type %q", c.path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		// Nothing is loaded from elsewhere: the machine may be offline.
		for _, ext := range []string{"http://", "https://", "//cdn", "@import"} {
			if bytes.Contains(body, []byte(ext)) {
				t.Errorf("%s refers to %q: the page must load nothing from elsewhere", c.path, ext)
			}
		}
		if c.path == "/" {
			for _, id := range []string{"prompt", "seed", "width", "height", "generate", "result", "sketch", "init", "initclear", "strength"} {
				if !bytes.Contains(body, []byte(`id="`+id+`"`)) {
					t.Errorf("the page has no #%s", id)
				}
			}
		}
	}
	res, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var e errorBody
	json.NewDecoder(res.Body).Decode(&e)
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || !strings.Contains(e.Error.Message, "no such endpoint") {
		t.Errorf("/v1/models: status %d, %+v; want a 404 with an OpenAI-style error", res.StatusCode, e)
	}
	res, err = http.Get(ts.URL + "/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("/nothing-here: status %d, want 404", res.StatusCode)
	}
}

// failingGen fails every generation but the warm-up.
type failingGen struct{ p *sdxs.Pipeline }

func (g failingGen) Generate(ctx context.Context, req sdxs.Request) (*sdxs.Result, error) {
	if req.Prompt == "warm-up" {
		return g.p.Generate(ctx, req)
	}
	return nil, errors.New("the unet ran out of luck")
}

func (g failingGen) DefaultSize() int { return g.p.DefaultSize() }

func TestGenerationErrorIs500(t *testing.T) {
	var logBuf syncBuffer
	_, ts := startServer(t, failingGen{tinyPipeline(t)}, Config{Logger: slog.New(slog.NewJSONHandler(&logBuf, nil))})
	r := postJSON(t, ts.URL, `{"prompt": "a", "size": "64x64"}`)
	if r.status != http.StatusInternalServerError || r.err.Error.Type != "server_error" || !strings.Contains(r.err.Error.Message, "out of luck") {
		t.Fatalf("status %d %s, want 500 server_error naming the cause", r.status, r.raw)
	}
	waitMetric(t, ts.URL, `sdxs_http_requests_total{code="500",route="/v1/images/generations"} 1`)
	if n := strings.Count(logBuf.String(), `"msg":"request"`); n != 1 || !strings.Contains(logBuf.String(), `"level":"ERROR","msg":"request"`) {
		t.Errorf("want one ERROR request line:\n%s", logBuf.String())
	}
	waitMetric(t, ts.URL, "sdxs_busy_workers 0")
	if r := postJSON(t, ts.URL, `{"prompt": "", "size": "64x64"}`); r.status != http.StatusBadRequest {
		t.Errorf("after a failure: status %d", r.status)
	}
}
