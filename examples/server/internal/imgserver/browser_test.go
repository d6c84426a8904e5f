package imgserver

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/internal/oracle"
)

// The browser tests drive the page in headless Chromium (Debian's chromium package, which
// .ci/run installs). Without a browser they skip, except under CI=true, where they fail.
// SDXS_CHROMIUM names the browser binary; SDXS_SCREENSHOT, a PNG file for the page's screenshot
// (the README's).

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SDXS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium found (apt-get install chromium, or set SDXS_CHROMIUM); the browser tests are required under CI=true")
	}
	t.Skip("no Chromium found (apt-get install chromium, or set SDXS_CHROMIUM)")
	return ""
}

// newBrowser starts headless Chromium and returns a tab's context.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.WindowSize(1100, 720),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// The first run starts the browser, which lives as long as the context of that run: run
	// nothing on the tab's own context; later runs may then use derived contexts with timeouts.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath(t), err)
	}
	return ctx
}

// recordingGen wraps the pipeline: it records the prompt of each generation started and of
// each one cancelled, and can hold every generation for a while (so that a newer request
// finds the older one still running).
type recordingGen struct {
	p         *sdxs.Pipeline // not embedded: the server must see Generate only
	mu        sync.Mutex
	delay     time.Duration
	started   []string
	cancelled []string
}

func (g *recordingGen) Generate(ctx context.Context, req sdxs.Request) (*sdxs.Result, error) {
	g.mu.Lock()
	g.started = append(g.started, req.Prompt)
	delay := g.delay
	g.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		g.mu.Lock()
		g.cancelled = append(g.cancelled, req.Prompt)
		g.mu.Unlock()
		return nil, ctx.Err()
	}
	return g.p.Generate(ctx, req)
}

func (g *recordingGen) DefaultSize() int { return g.p.DefaultSize() }

func (g *recordingGen) setDelay(d time.Duration) {
	g.mu.Lock()
	g.delay = d
	g.mu.Unlock()
}

func (g *recordingGen) wasStarted(prompt string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.started {
		if p == prompt {
			return true
		}
	}
	return false
}

func (g *recordingGen) wasCancelled(prompt string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.cancelled {
		if p == prompt {
			return true
		}
	}
	return false
}

// oraclePipeline loads the oracle's tiny DreamShaper-layout model (real CLIP tokenizer).
func oraclePipeline(t *testing.T) *sdxs.Pipeline {
	t.Helper()
	p, err := sdxs.Load(oracle.Path(t, "sdxs-dreamshaper-tiny", "model"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is truthy.
func waitJS(t *testing.T, ctx context.Context, expr string, timeout time.Duration) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(tctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("waiting for %s: %v", expr, err)
	}
}

// waitUntil polls cond until it holds, or fails with failure after timeout.
func waitUntil(t *testing.T, timeout time.Duration, failure string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const resultJS = `document.getElementById("result")`

// shownPicture returns the picture #result shows, decoded from its data URL.
func shownPicture(t *testing.T, ctx context.Context) *image.RGBA {
	t.Helper()
	src := eval[string](t, ctx, resultJS+`.src`)
	b64, ok := strings.CutPrefix(src, "data:image/png;base64,")
	if !ok {
		t.Fatalf("#result src is %.60q, want a PNG data URL", src)
	}
	return decodePNG(t, b64)
}

// waitGeneration waits until the page shows the picture of a request newer than after, and
// returns that request's number.
func waitGeneration(t *testing.T, ctx context.Context, after int) int {
	t.Helper()
	return waitPicture(t, ctx, after, "true")
}

// waitPicture waits until the page shows the picture of a request newer than after for which
// the JavaScript condition on r (#result) holds, and returns that request's number.
func waitPicture(t *testing.T, ctx context.Context, after int, cond string) int {
	t.Helper()
	waitJS(t, ctx, `((r) => r.dataset.generation > `+strconv.Itoa(after)+` && document.getElementById("status").textContent === "" && (`+cond+`))(`+resultJS+`)`, 30*time.Second)
	return eval[int](t, ctx, `Number(`+resultJS+`.dataset.generation)`)
}

// promptIs is the waitPicture condition that the picture is of prompt. (Typing sends a request
// whenever the typist pauses, so pictures of a prompt's beginning may come first.)
func promptIs(prompt string) string {
	b, _ := json.Marshal(prompt)
	return "r.dataset.prompt === " + string(b)
}

// TestBrowserPage types a prompt in the page, waits for the picture, checks that it is the
// pipeline's own for that prompt, seed and size, that a change of the prompt brings a new
// picture without a click, that a stale request is cancelled, and that the button works.
func TestBrowserPage(t *testing.T) {
	p := oraclePipeline(t)
	gen := &recordingGen{p: p}
	s, err := New(Config{Model: "sdxs-dreamshaper-tiny (oracle, random weights)", WarmSize: 64, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), gen); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	ctx := newBrowser(t)
	run(t, ctx, chromedp.EmulateViewport(960, 540), chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.ID("prompt")))
	// /v1/info sets the model's size; without a ControlNet the sketch stays hidden.
	waitJS(t, ctx, `document.getElementById("model").textContent !== ""`, 10*time.Second)
	if w := eval[string](t, ctx, `document.getElementById("width").value`); w != "256" {
		t.Errorf("#width is %q, want the model's 256", w)
	}
	if !eval[bool](t, ctx, `document.getElementById("sketchbox").hidden`) {
		t.Error("the sketch canvas shows although the server has no ControlNet")
	}

	// Typing a prompt makes a picture, without a click.
	const prompt1 = "a lighthouse at dusk, oil painting"
	run(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), prompt1))
	g1 := waitPicture(t, ctx, 0, promptIs(prompt1))
	if got := eval[string](t, ctx, resultJS+`.dataset.prompt`); got != prompt1 {
		t.Fatalf("the picture is of %q, want %q", got, prompt1)
	}
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt1, Seed: 42, Width: 256, Height: 256})
	if tm := eval[string](t, ctx, `document.getElementById("time").textContent`); !strings.Contains(tm, "s per picture") {
		t.Errorf("#time shows %q, want the time per picture", tm)
	}

	// A change of the prompt while a request runs: the stale request is cancelled, and the
	// picture that follows is of the newest prompt.
	gen.setDelay(3 * time.Second)
	const prompt2 = prompt1 + " in the rain"
	const prompt3 = prompt2 + " at night"
	run(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), " in the rain"))
	waitUntil(t, 20*time.Second, "the page sent no request after the prompt changed", func() bool { return gen.wasStarted(prompt2) })
	gen.setDelay(0)
	run(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), " at night"))
	g2 := waitPicture(t, ctx, g1, promptIs(prompt3))
	if got := eval[string](t, ctx, resultJS+`.dataset.prompt`); got != prompt3 {
		t.Fatalf("the picture is of %q, want the newest prompt %q", got, prompt3)
	}
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt3, Seed: 42, Width: 256, Height: 256})
	waitUntil(t, 10*time.Second, "the stale request was not cancelled on the server", func() bool { return gen.wasCancelled(prompt2) })
	if n := metricValue(t, ts.URL, `sdxs_http_requests_total{code="499",route="/v1/images/generations"}`); n < 1 {
		t.Errorf("%g requests counted as cancelled by their client, want at least 1", n)
	}

	// With live updates off, the button makes the picture: a new seed and size.
	run(t, ctx,
		chromedp.Click(chromedp.ID("live")),
		chromedp.SetValue(chromedp.ID("seed"), "7"),
		chromedp.SetValue(chromedp.ID("width"), "320"),
		chromedp.Click(chromedp.ID("generate")),
	)
	waitGeneration(t, ctx, g2)
	if got := eval[string](t, ctx, resultJS+`.dataset.seed`); got != "7" {
		t.Errorf("the picture's seed is %q, want 7", got)
	}
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt3, Seed: 7, Width: 320, Height: 256})

}

// screenshot captures the page, checks it is a PNG of the viewport, and writes it to
// $SDXS_SCREENSHOT when that is set (the README's screenshot).
func screenshot(t *testing.T, ctx context.Context, w, h int) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot is %v, want %d×%d", b, w, h)
	}
	if path := os.Getenv("SDXS_SCREENSHOT"); path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}

// TestBrowserSketch draws on the sketch canvas with the mouse and with touch, and checks that
// the drawing reaches the server as the control image (black lines on white, at the picture's
// size) and that the picture shown is the pipeline's with the oracle's ControlNet and that
// control image; the clear button removes it.
func TestBrowserSketch(t *testing.T) {
	p, err := sdxs.Load(oracle.Path(t, "sdxs-dreamshaper-tiny", "model"),
		sdxs.WithControlNet(oracle.Path(t, "sdxs-dreamshaper-tiny", "controlnet")))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rec := &controlRecorder{}
	control := func(req *sdxs.Request, img image.Image, scale float64) {
		rec.set(req, img, scale)
		PipelineControl(req, img, scale)
	}
	s, err := New(Config{Model: "sdxs-dreamshaper-tiny + ControlNet (oracle, random weights)", WarmSize: 64, Control: control, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	ctx := newBrowser(t)
	run(t, ctx, chromedp.EmulateViewport(1000, 760), chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.ID("sketch")))
	waitJS(t, ctx, `document.getElementById("width").value === "256"`, 10*time.Second)
	run(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), "a house"))
	g := waitPicture(t, ctx, 0, promptIs("a house"))
	if n := rec.count(); n != 1 { // the warm-up's blank sketch
		t.Fatalf("%d control images sent before anything was drawn, want only the warm-up's", n-1)
	}

	type rect struct{ Left, Top, Width, Height float64 }
	r := eval[rect](t, ctx, `(() => { const r = document.getElementById("sketch").getBoundingClientRect(); return {Left: r.left, Top: r.top, Width: r.width, Height: r.height}; })()`)
	at := func(fx, fy float64) (float64, float64) { return r.Left + fx*r.Width, r.Top + fy*r.Height }

	// A horizontal line with the mouse.
	var steps []chromedp.Action[chromedp.Void]
	x, y := at(0.2, 0.5)
	steps = append(steps, chromedp.MouseEvent(chromedp.MouseMoved, x, y), chromedp.MouseEvent(chromedp.MousePressed, x, y, chromedp.ButtonLeft))
	for f := 0.25; f <= 0.8; f += 0.05 {
		x, y := at(f, 0.5)
		steps = append(steps, chromedp.MouseEvent(chromedp.MouseMoved, x, y, chromedp.ButtonLeft))
	}
	x, y = at(0.8, 0.5)
	steps = append(steps, chromedp.MouseEvent(chromedp.MouseReleased, x, y, chromedp.ButtonLeft))
	run(t, ctx, steps...)
	g = waitPicture(t, ctx, g, `r.dataset.control === "1"`)
	img, scale := rec.last(t)
	if scale != 0.8 {
		t.Errorf("control scale %g, want the page's default 0.8", scale)
	}
	checkSketch(t, img, 256, 256, [][2]float64{{0.3, 0.5}, {0.5, 0.5}, {0.7, 0.5}}, [][2]float64{{0.5, 0.2}, {0.05, 0.05}, {0.95, 0.95}})
	// The picture shown is the pipeline's for the prompt, seed, size and that control image.
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: "a house", Seed: 42, Width: 256, Height: 256, Control: img, ControlScale: scale})

	// A vertical line with a finger.
	touch := func(typ input.DispatchTouchEventType, fx, fy float64) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			p := input.DispatchTouchEventParams{Type: typ, TouchPoints: []*input.TouchPoint{}}
			if typ != input.DispatchTouchEventTypeTouchEnd {
				x, y := at(fx, fy)
				id := 1.0
				p.TouchPoints = []*input.TouchPoint{{X: x, Y: y, ID: &id}}
			}
			_, err := cdp.Call(ctx, t, input.DispatchTouchEvent, p)
			return err
		})
	}
	steps = []chromedp.Action[chromedp.Void]{touch(input.DispatchTouchEventTypeTouchStart, 0.5, 0.15)}
	for f := 0.2; f <= 0.4; f += 0.05 {
		steps = append(steps, touch(input.DispatchTouchEventTypeTouchMove, 0.5, f))
	}
	steps = append(steps, touch(input.DispatchTouchEventTypeTouchEnd, 0, 0))
	before := rec.count()
	run(t, ctx, steps...)
	g = waitGeneration(t, ctx, g)
	if rec.count() <= before {
		t.Fatal("drawing with touch sent no control image")
	}
	img, _ = rec.last(t)
	checkSketch(t, img, 256, 256, [][2]float64{{0.5, 0.2}, {0.5, 0.3}, {0.5, 0.5}}, [][2]float64{{0.05, 0.05}, {0.3, 0.2}})
	// The README's screenshot: the page with a sketch and the picture the ControlNet made of it.
	screenshot(t, ctx, 1000, 760)

	// A new size: the control image follows it.
	eval[bool](t, ctx, `(() => { const w = document.getElementById("width"); w.value = "384"; return w.dispatchEvent(new Event("input")); })()`)
	waitJS(t, ctx, resultJS+`.dataset.size === "384x256"`, 30*time.Second)
	g = eval[int](t, ctx, `Number(`+resultJS+`.dataset.generation)`)
	img, _ = rec.last(t)
	checkSketch(t, img, 384, 256, [][2]float64{{0.5, 0.5}, {0.3, 0.5}}, [][2]float64{{0.3, 0.2}})

	// Clear: the next picture has no control image.
	before = rec.count()
	run(t, ctx, chromedp.Click(chromedp.ID("clear")))
	waitGeneration(t, ctx, g)
	if n := rec.count(); n != before {
		t.Errorf("after clear, %d more control images were sent, want none", n-before)
	}
	if white := eval[bool](t, ctx, `(() => { const c = document.getElementById("sketch"); const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; return d.every(v => v === 255); })()`); !white {
		t.Error("the sketch is not white after clear")
	}
}

func (c *controlRecorder) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.images)
}

// checkSketch checks a control image's size, that it is black at the points on the lines and
// white at the points off them (points as fractions of the width and height).
func checkSketch(t *testing.T, img image.Image, w, h int, black, white [][2]float64) {
	t.Helper()
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("control image is %v, want %d×%d", b, w, h)
	}
	lum := func(f [2]float64) uint32 {
		r, g, b, _ := img.At(int(f[0]*float64(w)), int(f[1]*float64(h))).RGBA()
		return (r + g + b) / 3 >> 8
	}
	for _, f := range black {
		if l := lum(f); l > 64 {
			t.Errorf("control image at %v: luminance %d, want black (a line was drawn there)", f, l)
		}
	}
	for _, f := range white {
		if l := lum(f); l < 250 {
			t.Errorf("control image at %v: luminance %d, want white", f, l)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
