package sdxs

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// img2imgModel is the oracle model with image-to-image references.
const img2imgModel = "sdxs-dreamshaper-tiny"

// img2imgCase is one entry of img2img/cases.json.
type img2imgCase struct {
	Prompt    string    `json:"prompt"`
	Seed      uint64    `json:"seed"`
	Width     int       `json:"width"`
	Height    int       `json:"height"`
	Strength  float64   `json:"strength"`
	Steps     int       `json:"steps"`
	Timesteps []float64 `json:"timesteps"`
	InitPNG   string    `json:"init_png"`
	ImagePNG  string    `json:"image_png"`
}

func loadImg2ImgCases(t *testing.T) []img2imgCase {
	t.Helper()
	data, err := os.ReadFile(oracle.Path(t, img2imgModel, "img2img", "cases.json"))
	require.NoError(t, err)
	var cases []img2imgCase
	require.NoError(t, json.Unmarshal(data, &cases))
	require.Len(t, cases, 2)
	return cases
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	return img
}

// assertImageClose holds a picture to the oracle README's bound: every pixel within ±1 of the
// reference and a mean absolute difference of at most 0.05.
func assertImageClose(t *testing.T, got *image.RGBA, want []uint8, w, h int) {
	t.Helper()
	require.Equal(t, image.Rect(0, 0, w, h), got.Bounds())
	require.Len(t, want, w*h*3)
	var sum float64
	worst := 0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for ch := 0; ch < 3; ch++ {
				d := int(got.Pix[got.PixOffset(x, y)+ch]) - int(want[(y*w+x)*3+ch])
				worst = max(worst, d, -d)
				sum += float64(max(d, -d))
			}
		}
	}
	mean := sum / float64(w*h*3)
	t.Logf("image: worst pixel difference %d, mean %.4f", worst, mean)
	assert.LessOrEqual(t, worst, 1, "image: a pixel differs by more than 1")
	assert.LessOrEqual(t, mean, 0.05, "image: mean absolute difference")
}

// checkImg2ImgTensors holds every tensor of an image-to-image result, by its reference name, to
// the oracle README's bounds, and checks that Tensors() names them as the reference does.
func checkImg2ImgTensors(t *testing.T, i int, c img2imgCase, tensors []weights.Tensor) {
	t.Helper()
	ref := oracle.Tensors(t, img2imgModel, "img2img", "reference.safetensors")
	name := func(s string) string { return fmt.Sprintf("case%d.%s", i, s) }
	got := map[string]weights.Tensor{}
	for _, tn := range tensors {
		got[tn.Name] = tn
		info, ok := ref.Info(name(tn.Name))
		if !ok {
			// The text-to-image names the image-to-image file does not repeat.
			assert.Contains(t, []string{"input_ids", "text_embeddings"}, tn.Name, "a tensor the reference does not name")
			continue
		}
		assert.Equal(t, info.Shape, tn.Shape, tn.Name)
		assert.Equal(t, info.DType, tn.DType, tn.Name)
	}
	for _, full := range ref.Names() {
		var short string
		if _, err := fmt.Sscanf(full, fmt.Sprintf("case%d.%%s", i), &short); err != nil {
			continue
		}
		_, ok := got[short]
		assert.True(t, ok, "Tensors() lacks the reference's %s", short)
	}
	f32 := func(s string) []float32 {
		tn, ok := got[s]
		require.True(t, ok, s)
		return tn.F32
	}
	want := func(s string) []float32 { v, _ := oracle.Float32(t, ref, name(s)); return v }
	oracle.AssertMaxAbs(t, "init_image", f32("init_image"), want("init_image"), 1e-6)
	oracle.AssertMaxAbs(t, "init_latents", f32("init_latents"), want("init_latents"), 2e-3)
	oracle.AssertMaxAbs(t, "noise", f32("noise"), want("noise"), 1e-5)
	oracle.AssertMaxAbs(t, "noisy_latents", f32("noisy_latents"), want("noisy_latents"), 2e-3)
	assert.Equal(t, want("timesteps"), f32("timesteps"), "timesteps")
	oracle.AssertRelL2(t, "unet_input", f32("unet_input"), want("unet_input"), 1e-5)
	oracle.AssertRelL2(t, "unet_output", f32("unet_output"), want("unet_output"), 1e-4)
	oracle.AssertMaxAbs(t, "latents", f32("latents"), want("latents"), 2e-3)
	oracle.AssertMaxAbs(t, "decoded", f32("decoded"), want("decoded"), 2e-3)
	img, shape := oracle.Uint8(t, ref, name("image"))
	require.Equal(t, []int{c.Height, c.Width, 3}, shape)
	pic := image.NewRGBA(image.Rect(0, 0, c.Width, c.Height))
	tn := got["image"]
	require.Len(t, tn.U8, c.Width*c.Height*3)
	for p := 0; p < c.Width*c.Height; p++ {
		copy(pic.Pix[4*p:4*p+3], tn.U8[3*p:3*p+3])
		pic.Pix[4*p+3] = 255
	}
	assertImageClose(t, pic, img, c.Width, c.Height)
}

// TestImg2ImgMatchesDiffusers runs both image-to-image references (one step; four steps of a
// five-step schedule) through the public API, from the init PNGs, and holds every stage to the
// oracle README's bounds.
func TestImg2ImgMatchesDiffusers(t *testing.T) {
	p, err := Load(oracle.Path(t, img2imgModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	cases := loadImg2ImgCases(t)
	assert.Len(t, cases[0].Timesteps, 1)
	assert.Len(t, cases[1].Timesteps, 4)
	for i, c := range cases {
		t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
			init := decodePNG(t, oracle.Path(t, img2imgModel, "img2img", c.InitPNG))
			require.Equal(t, image.Pt(c.Width, c.Height), init.Bounds().Size())
			var stages []Stage
			res, err := p.Generate(context.Background(), Request{
				Prompt: c.Prompt, Seed: c.Seed, Init: init, Strength: c.Strength, Steps: c.Steps,
				Progress: func(s Stage, _ time.Duration) { stages = append(stages, s) },
			})
			require.NoError(t, err)
			wantStages := []Stage{StageTokenize, StageTextEncoder, StageVAEEncoder, StageNoise}
			for range c.Timesteps {
				wantStages = append(wantStages, StageUNet)
			}
			assert.Equal(t, append(wantStages, StageVAEDecoder), stages)
			assert.Equal(t, c.Width, res.Width)
			assert.Equal(t, c.Height, res.Height)
			assert.Equal(t, c.Timesteps, res.Timesteps)
			ts, err := res.Tensors()
			require.NoError(t, err)
			checkImg2ImgTensors(t, i, c, ts)
		})
	}
}
