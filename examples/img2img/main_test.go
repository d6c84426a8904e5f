package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

const model = "sdxs-dreamshaper-tiny"

type testCase struct {
	Prompt   string  `json:"prompt"`
	Seed     uint64  `json:"seed"`
	Width    int     `json:"width"`
	Height   int     `json:"height"`
	Strength float64 `json:"strength"`
	Steps    int     `json:"steps"`
	InitPNG  string  `json:"init_png"`
}

// readCases reads the oracle's image-to-image cases.
func readCases(t *testing.T) []testCase {
	t.Helper()
	var cases []testCase
	oracle.JSON(t, &cases, model, "img2img", "cases.json")
	return cases
}

// caseArgs gives c's -init, -prompt, -seed, -strength and -steps flags.
func caseArgs(t *testing.T, c testCase) []string {
	return []string{"-init", oracle.Path(t, model, "img2img", c.InitPNG),
		"-prompt", c.Prompt, "-seed", fmt.Sprint(c.Seed), "-strength", fmt.Sprint(c.Strength), "-steps", fmt.Sprint(c.Steps)}
}

// runDump runs the command with args and -out and -dump in a fresh temporary folder, requires
// it to succeed, and returns the paths of the dump and the PNG.
func runDump(t *testing.T, args ...string) (dumpPath, outPNG string) {
	t.Helper()
	dir := t.TempDir()
	outPNG, dumpPath = filepath.Join(dir, "out.png"), filepath.Join(dir, "dump.safetensors")
	var stdout bytes.Buffer
	require.NoError(t, run(context.Background(), append(args, "-out", outPNG, "-dump", dumpPath), &stdout), stdout.String())
	return dumpPath, outPNG
}

// openDump opens a -dump file, closed when the test ends.
func openDump(t *testing.T, path string) *weights.File {
	t.Helper()
	dump, err := weights.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { dump.Close() })
	return dump
}

// TestDumpMatchesDiffusers runs both image-to-image references through the command with -dump
// and holds every tensor of the dump, and the PNG it writes, to the oracle README's bounds.
func TestDumpMatchesDiffusers(t *testing.T) {
	cases := readCases(t)
	require.Len(t, cases, 2)
	ref := oracle.Tensors(t, model, "img2img", "reference.safetensors")
	for i, c := range cases {
		t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
			dumpPath, outPNG := runDump(t, append([]string{"-model", oracle.Path(t, model, "model")}, caseArgs(t, c)...)...)
			dump := openDump(t, dumpPath)
			name := func(s string) string { return fmt.Sprintf("case%d.%s", i, s) }
			compared := 0
			for _, full := range ref.Names() {
				var short string
				if _, err := fmt.Sscanf(full, fmt.Sprintf("case%d.%%s", i), &short); err != nil {
					continue
				}
				info, ok := dump.Info(short)
				require.True(t, ok, "the dump lacks %s", short)
				want, _ := ref.Info(full)
				require.Equal(t, want.Shape, info.Shape, short)
				require.Equal(t, want.DType, info.DType, short)
				compared++
			}
			require.Equal(t, 10, compared)
			got := func(s string) []float32 {
				v, _, err := dump.Float32(s)
				require.NoError(t, err, s)
				return v
			}
			want := func(s string) []float32 { v, _ := oracle.Float32(t, ref, name(s)); return v }
			oracle.AssertMaxAbs(t, "init_image", got("init_image"), want("init_image"), 1e-6)
			oracle.AssertMaxAbs(t, "init_latents", got("init_latents"), want("init_latents"), 2e-3)
			oracle.AssertMaxAbs(t, "noise", got("noise"), want("noise"), 1e-5)
			oracle.AssertMaxAbs(t, "noisy_latents", got("noisy_latents"), want("noisy_latents"), 2e-3)
			assert.Equal(t, want("timesteps"), got("timesteps"), "timesteps")
			oracle.AssertRelL2(t, "unet_input", got("unet_input"), want("unet_input"), 1e-5)
			oracle.AssertRelL2(t, "unet_output", got("unet_output"), want("unet_output"), 1e-4)
			oracle.AssertMaxAbs(t, "latents", got("latents"), want("latents"), 2e-3)
			oracle.AssertMaxAbs(t, "decoded", got("decoded"), want("decoded"), 2e-3)

			// The image in the dump and the PNG written, against the reference picture.
			refImg, _ := oracle.Uint8(t, ref, name("image"))
			dumpImg, _, err := dump.Uint8("image")
			require.NoError(t, err)
			f, err := os.Open(outPNG)
			require.NoError(t, err)
			defer f.Close()
			pic, err := png.Decode(f)
			require.NoError(t, err)
			require.Equal(t, image.Rect(0, 0, c.Width, c.Height), pic.Bounds())
			pngPix := make([]uint8, 0, len(refImg))
			for y := 0; y < c.Height; y++ {
				for x := 0; x < c.Width; x++ {
					px := color.NRGBAModel.Convert(pic.At(x, y)).(color.NRGBA)
					pngPix = append(pngPix, px.R, px.G, px.B)
				}
			}
			for _, g := range []struct {
				what string
				pix  []uint8
			}{{"dump image", dumpImg}, {"PNG", pngPix}} {
				require.Len(t, g.pix, len(refImg), g.what)
				worst, sum := 0, 0
				for k := range refImg {
					d := int(g.pix[k]) - int(refImg[k])
					d = max(d, -d)
					worst, sum = max(worst, d), sum+d
				}
				mean := float64(sum) / float64(len(refImg))
				t.Logf("%s: worst pixel difference %d, mean %.4f", g.what, worst, mean)
				assert.LessOrEqual(t, worst, 1, "%s: a pixel differs by more than 1", g.what)
				assert.LessOrEqual(t, mean, 0.05, "%s: mean absolute difference", g.what)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notImage := filepath.Join(dir, "notes.png")
	require.NoError(t, os.WriteFile(notImage, []byte("this is not a picture"), 0o644))
	truncated := filepath.Join(dir, "truncated.png")
	init0, err := os.ReadFile(oracle.Path(t, model, "img2img", "init0.png"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(truncated, init0[:len(init0)/2], 0o644))
	small := filepath.Join(dir, "small.png")
	f, err := os.Create(small)
	require.NoError(t, err)
	require.NoError(t, png.Encode(f, image.NewGray(image.Rect(0, 0, 48, 80))))
	require.NoError(t, f.Close())
	good := oracle.Path(t, model, "img2img", "init0.png")
	m := oracle.Path(t, model, "model")

	for _, c := range []struct {
		name   string
		args   []string
		substr string
	}{
		{"not an image", []string{"-model", m, "-init", notImage}, notImage + ": not a PNG or JPEG image"},
		{"truncated", []string{"-model", m, "-init", truncated}, "init picture: imageproc: " + truncated},
		{"missing", []string{"-model", m, "-init", filepath.Join(dir, "nope.png")}, "init picture"},
		{"strength 0", []string{"-model", m, "-init", good, "-strength", "0"}, "strength 0: must be in (0, 1]"},
		{"strength 1.2", []string{"-model", m, "-init", good, "-strength", "1.2"}, "strength 1.2: must be in (0, 1]"},
		{"steps 0", []string{"-model", m, "-init", good, "-steps", "0"}, "-steps 0: must be at least 1"},
		{"steps -3", []string{"-model", m, "-init", good, "-steps", "-3"}, "-steps -3: must be at least 1"},
		{"no step runs", []string{"-model", m, "-init", good, "-steps", "1", "-strength", "0.5"}, "runs no step"},
		{"too small", []string{"-model", m, "-init", small}, "init picture 48×80 gives a 48×80 picture: the minimum is 64×64"},
		{"no init", []string{"-model", m}, "-model and -init are required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+c.name+".png")
			var stdout bytes.Buffer
			err := run(context.Background(), append(c.args, "-seed", "1", "-out", out), &stdout)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.substr)
			assert.NoFileExists(t, out)
		})
	}
}

// TestJPEGInit runs the command on a JPEG init picture whose size is not a multiple of 8: the
// output has the size rounded down.
func TestJPEGInit(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Open(oracle.Path(t, model, "img2img", "init0.png"))
	require.NoError(t, err)
	pic, err := png.Decode(src)
	src.Close()
	require.NoError(t, err)
	crop := image.NewRGBA(image.Rect(0, 0, 203, 150))
	for y := 0; y < 150; y++ {
		for x := 0; x < 203; x++ {
			crop.Set(x, y, pic.At(x, y))
		}
	}
	jpg := filepath.Join(dir, "init.jpg")
	f, err := os.Create(jpg)
	require.NoError(t, err)
	require.NoError(t, jpeg.Encode(f, crop, &jpeg.Options{Quality: 90}))
	require.NoError(t, f.Close())
	out := filepath.Join(dir, "out.png")
	var stdout bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-model", oracle.Path(t, model, "model"), "-init", jpg,
		"-prompt", "a lighthouse", "-seed", "3", "-strength", "0.75", "-steps", "4", "-out", out}, &stdout))
	assert.Contains(t, stdout.String(), "(200×144, timesteps [749 499 249])")
	g, err := os.Open(out)
	require.NoError(t, err)
	defer g.Close()
	cfg, err := png.DecodeConfig(g)
	require.NoError(t, err)
	assert.Equal(t, [2]int{200, 144}, [2]int{cfg.Width, cfg.Height})
}

// TestKLVAE runs the command with -vae large: the init latents then come from the KL VAE's
// encoder (a sample of its distribution), and the dump holds them and the decoded picture.
func TestKLVAE(t *testing.T) {
	dumpPath, outPNG := runDump(t, "-model", oracle.Path(t, model, "model"), "-vae", "large",
		"-init", oracle.Path(t, model, "img2img", "init0.png"),
		"-prompt", "a house", "-seed", "5", "-strength", "0.5", "-steps", "2")
	assert.FileExists(t, outPNG)
	dump := openDump(t, dumpPath)
	for _, name := range []string{"init_latents", "noisy_latents", "decoded"} {
		v, _, err := dump.Float32(name)
		require.NoError(t, err, name)
		assert.NotEmpty(t, v, name)
	}

	var stdout bytes.Buffer
	err := run(context.Background(), []string{"-model", oracle.Path(t, model, "model"), "-vae", "medium",
		"-init", oracle.Path(t, model, "img2img", "init0.png"), "-seed", "1", "-out", outPNG}, &stdout)
	require.ErrorContains(t, err, `WithVAE("medium")`)
}
