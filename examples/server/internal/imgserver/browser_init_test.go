package imgserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestBrowserInitPicture chooses an init picture in the page (#init, as a file or a phone's
// camera gives it) and moves the strength slider with the keyboard: the picture shown is the
// pipeline's image to image picture for that init picture, size, seed, strength and steps; a
// stale edit is cancelled on the server; clearing the init picture goes back to text to image.
func TestBrowserInitPicture(t *testing.T) {
	p := oraclePipeline(t)
	gen := &recordingGen{p: p}
	_, ts := startServer(t, gen, Config{Model: "sdxs-dreamshaper-tiny (oracle, random weights)"})

	// The oracle's second init picture, 192×128, as the file a user picks.
	data, err := os.ReadFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "img2img", "init1.png"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	init := decodeInit(t, data)

	ctx := newBrowser(t)
	run(t, ctx, chromedp.EmulateViewport(960, 540), chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.ID("prompt")))
	waitJS(t, ctx, `document.getElementById("model").textContent !== ""`, 10*time.Second)
	if !eval[bool](t, ctx, `((i) => i.type === "file" && i.accept === "image/*" && i.hasAttribute("capture"))(document.getElementById("init"))`) {
		t.Error(`#init is not an <input type=file accept="image/*" capture>`)
	}
	if !eval[bool](t, ctx, `document.getElementById("strengthbox").hidden && document.getElementById("initclear").hidden`) {
		t.Error("the strength slider or the clear button shows without an init picture")
	}

	// Text to image first.
	const prompt = "a girl in the golden hour"
	run(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), prompt))
	g := waitPicture(t, ctx, 0, promptIs(prompt)+` && r.dataset.init === ""`)
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt, Seed: 42, Width: 256, Height: 256})

	// Choosing an init picture: the size follows it, the slider shows, and the picture is the
	// pipeline's image to image at the default strength 0.5 (2 steps: one step run).
	run(t, ctx, chromedp.SetUploadFiles(chromedp.ID("init"), []string{file}))
	g = waitPicture(t, ctx, g, `r.dataset.init === "1"`)
	if w, h := eval[string](t, ctx, `document.getElementById("width").value`), eval[string](t, ctx, `document.getElementById("height").value`); w != "192" || h != "128" {
		t.Errorf("the size fields show %s×%s, want the init picture's 192×128", w, h)
	}
	if eval[bool](t, ctx, `document.getElementById("strengthbox").hidden || document.getElementById("initclear").hidden`) {
		t.Error("the strength slider or the clear button is hidden with an init picture")
	}
	if st := eval[string](t, ctx, resultJS+`.dataset.strength + "/" + `+resultJS+`.dataset.steps`); st != "0.5/2" {
		t.Errorf("strength/steps sent %q, want 0.5/2", st)
	}
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt, Seed: 42, Width: 192, Height: 128, Init: init, Strength: 0.5, Steps: 2})

	// The slider, moved with the keyboard four steps right: strength 0.7, still 2 steps.
	run(t, ctx, chromedp.Focus(chromedp.ID("strength")), chromedp.KeyEvent(strings.Repeat(kb.ArrowRight, 4)))
	g = waitPicture(t, ctx, g, `r.dataset.init === "1" && r.dataset.strength === "0.7"`)
	if st := eval[string](t, ctx, resultJS+`.dataset.steps`); st != "2" {
		t.Errorf("strength 0.7 sent with %s steps, want 2", st)
	}
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt, Seed: 42, Width: 192, Height: 128, Init: init, Strength: 0.7, Steps: 2})

	// Eight steps left: strength 0.3, sent with 4 steps (int(4 × 0.3) = 1 step run).
	run(t, ctx, chromedp.Focus(chromedp.ID("strength")), chromedp.KeyEvent(strings.Repeat(kb.ArrowLeft, 8)))
	g = waitPicture(t, ctx, g, `r.dataset.init === "1" && r.dataset.strength === "0.3"`)
	if st := eval[string](t, ctx, resultJS+`.dataset.steps`); st != "4" {
		t.Errorf("strength 0.3 sent with %s steps, want 4", st)
	}
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt, Seed: 42, Width: 192, Height: 128, Init: init, Strength: 0.3, Steps: 4})

	// A stale edit is cancelled: a prompt change while the edit runs.
	gen.setDelay(3 * time.Second)
	const prompt2 = prompt + " by the sea"
	const prompt3 = prompt2 + " at night"
	run(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), " by the sea"))
	waitUntil(t, 20*time.Second, "the page sent no edit after the prompt changed", func() bool { return gen.wasStarted(prompt2) })
	gen.setDelay(0)
	run(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), " at night"))
	g = waitPicture(t, ctx, g, promptIs(prompt3)+` && r.dataset.init === "1"`)
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt3, Seed: 42, Width: 192, Height: 128, Init: init, Strength: 0.3, Steps: 4})
	waitUntil(t, 10*time.Second, "the stale edit was not cancelled on the server", func() bool { return gen.wasCancelled(prompt2) })
	if n := metricValue(t, ts.URL, `sdxs_http_requests_total{code="499",route="/v1/images/edits"}`); n < 1 {
		t.Errorf("%g edits counted as cancelled by their client, want at least 1", n)
	}
	if n := metricValue(t, ts.URL, `sdxs_http_requests_total{code="200",route="/v1/images/edits"}`); n < 4 {
		t.Errorf("%g edits answered, want at least 4", n)
	}

	// Clearing the init picture: back to text to image (at the size it left).
	run(t, ctx, chromedp.Click(chromedp.ID("initclear")))
	waitPicture(t, ctx, g, `r.dataset.init === ""`)
	samePixels(t, p, shownPicture(t, ctx), sdxs.Request{Prompt: prompt3, Seed: 42, Width: 192, Height: 128})
	if !eval[bool](t, ctx, `document.getElementById("strengthbox").hidden && document.getElementById("init").value === ""`) {
		t.Error("after clear, the strength slider shows or #init still holds the file")
	}
}
