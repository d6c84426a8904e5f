package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// runArgs runs the command with the given arguments, as from a shell.
func runArgs(t *testing.T, args ...string) error {
	t.Helper()
	oldArgs, oldFlags := os.Args, flag.CommandLine
	t.Cleanup(func() { os.Args, flag.CommandLine = oldArgs, oldFlags })
	os.Args = append([]string{"txt2img"}, args...)
	flag.CommandLine = flag.NewFlagSet("txt2img", flag.ContinueOnError)
	return run()
}

// txtCase is one entry of the oracle model's cases.json, as these tests read it.
type txtCase struct {
	Prompt       string   `json:"prompt"`
	Seed         uint64   `json:"seed"`
	Height       int      `json:"height"`
	Width        int      `json:"width"`
	ControlScale float64  `json:"control_scale"`
	ControlPNG   string   `json:"control_png"`
	LoraScale    *float64 `json:"lora_scale"`
	VAE          string   `json:"vae"`
}

// readCases reads the oracle cases of model.
func readCases(t *testing.T, model string) []txtCase {
	t.Helper()
	var cases []txtCase
	oracle.JSON(t, &cases, model, "cases.json")
	return cases
}

// caseArgs gives c's -prompt, -seed, -width and -height flags.
func caseArgs(c txtCase) []string {
	return []string{"-prompt", c.Prompt, "-seed", fmt.Sprint(c.Seed), "-width", fmt.Sprint(c.Width), "-height", fmt.Sprint(c.Height)}
}

// runDump runs the command with args and -out and -dump in a fresh temporary folder, requires
// it to succeed, and returns the paths of the dump and the PNG.
func runDump(t *testing.T, args ...string) (dump, png string) {
	t.Helper()
	dir := t.TempDir()
	dump, png = filepath.Join(dir, "dump.safetensors"), filepath.Join(dir, "out.png")
	require.NoError(t, runArgs(t, append(args, "-out", png, "-dump", dump)...))
	return dump, png
}

// TestControlNetDump runs the oracle's ControlNet case through the command and holds every
// tensor of its -dump to the oracle README's bounds.
func TestControlNetDump(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	ran := 0
	for i, c := range readCases(t, model) {
		if c.ControlPNG == "" {
			continue
		}
		ran++
		dump, _ := runDump(t, append([]string{"-model", oracle.Path(t, model, "model"),
			"-controlnet", oracle.Path(t, model, "controlnet"),
			"-control", oracle.Path(t, model, c.ControlPNG), "-control-scale", fmt.Sprint(c.ControlScale)},
			caseArgs(c)...)...)
		ref := oracle.Tensors(t, model, "reference.safetensors")
		ts := oracle.ReadDump(t, dump)
		assert.True(t, oracle.AssertCase(t, ref, i, ts))
		names := map[string]bool{}
		for _, tn := range ts {
			names[tn.Name] = true
		}
		assert.True(t, names["control_cond"] && names["control_mid"] && names["control_down.0"], "control tensors in the dump")
	}
	require.Positive(t, ran)
}

func TestControlErrors(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	dir := t.TempDir()
	notImage := filepath.Join(dir, "sketch.png")
	require.NoError(t, os.WriteFile(notImage, []byte("this is not a picture\n"), 0o644))
	out := filepath.Join(dir, "out.png")
	err := runArgs(t, "-model", oracle.Path(t, model, "model"), "-controlnet", oracle.Path(t, model, "controlnet"),
		"-control", notImage, "-seed", "1", "-out", out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "control image: imageproc: "+notImage+": not a PNG or JPEG image")
	assert.NoFileExists(t, out)

	err = runArgs(t, "-model", oracle.Path(t, model, "model"), "-control", notImage, "-seed", "1", "-out", out)
	assert.EqualError(t, err, "-control needs -controlnet")
	err = runArgs(t, "-model", oracle.Path(t, model, "model"), "-controlnet", oracle.Path(t, model, "controlnet"), "-seed", "1", "-out", out)
	assert.EqualError(t, err, "-controlnet needs a -control image")
	err = runArgs(t, "-model", oracle.Path(t, model, "model"), "-controlnet", filepath.Join(dir, "missing"),
		"-control", oracle.Path(t, model, "case5_control.png"), "-seed", "1", "-out", out)
	assert.ErrorContains(t, err, filepath.Join(dir, "missing"))
	err = runArgs(t, "-model", oracle.Path(t, model, "model"), "-canny", "-seed", "1", "-out", out)
	assert.EqualError(t, err, "-canny and -control-invert need a -control image")
}

// TestCanny runs -canny on a photo-like picture of the oracle: the dump's control_cond is the
// picture's OpenCV Canny edges (white on black), resized to the picture's size.
func TestCanny(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	dump, _ := runDump(t, "-model", oracle.Path(t, model, "model"), "-controlnet", oracle.Path(t, model, "controlnet"),
		"-control", oracle.Path(t, "canny", "input0.png"), "-canny", "-width", "512", "-height", "512", "-seed", "3")
	edges, err := imageproc.DecodeFile(oracle.Path(t, "canny", "edges0_rgb.png"))
	require.NoError(t, err)
	want := imageproc.ControlTensor(edges, 512, 512, false)
	f, err := weights.Open(dump)
	require.NoError(t, err)
	defer f.Close()
	got, shape, err := f.Float32("control_cond")
	require.NoError(t, err)
	require.Equal(t, []int{1, 3, 512, 512}, shape)
	differ := 0
	for i := range got {
		if got[i] != want[i] {
			differ++
		}
	}
	assert.LessOrEqual(t, float64(differ)/float64(len(got)), 0.005, "control_cond values that differ from OpenCV's edges")
}

// TestLoRADump runs the command on the oracle's LoRA cases with the adapter in each of its
// three layouts and holds its -dump file to every bound of the oracle README.
func TestLoRADump(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	cases := readCases(t, model)
	ref := oracle.Tensors(t, model, "reference.safetensors")
	ran := 0
	for _, layout := range []string{"peft", "peft-bin", "kohya_lora.safetensors"} {
		for i, c := range cases {
			if c.LoraScale == nil {
				continue
			}
			ran++
			t.Run(fmt.Sprintf("%s/case%d", layout, i), func(t *testing.T) {
				dump, _ := runDump(t, append([]string{"-model", oracle.Path(t, model, "model"),
					"-lora", oracle.Path(t, model, "lora", layout), "-lora-scale", fmt.Sprint(*c.LoraScale)},
					caseArgs(c)...)...)
				assert.True(t, oracle.AssertCase(t, ref, i, oracle.ReadDump(t, dump)))
			})
		}
	}
	require.Equal(t, 6, ran)
}

// TestLoRAFlags: more scales than adapters, and an adapter that does not exist, are errors.
func TestLoRAFlags(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	m := oracle.Path(t, model, "model")
	out := filepath.Join(t.TempDir(), "o.png")
	err := runArgs(t, "-model", m, "-lora-scale", "0.5", "-seed", "1", "-out", out)
	assert.EqualError(t, err, "1 -lora-scale values for 0 -lora adapters")
	missing := filepath.Join(t.TempDir(), "nope")
	err = runArgs(t, "-model", m, "-lora", missing, "-seed", "1", "-out", out)
	assert.ErrorContains(t, err, missing)
	assert.NoFileExists(t, out)
}

// TestDumpKLMatchesDiffusers makes the oracle's KL case (sdxs-dreamshaper-tiny case 2, vae:
// "large") with -vae large -dump and holds every dumped tensor to the oracle README's bounds.
func TestDumpKLMatchesDiffusers(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	ran := 0
	for i, c := range readCases(t, model) {
		if c.VAE != "large" {
			continue
		}
		ran++
		dump, png := runDump(t, append([]string{"-model", oracle.Path(t, model, "model"), "-vae", "large"}, caseArgs(c)...)...)
		assert.FileExists(t, png)
		ref := oracle.Tensors(t, model, "reference.safetensors")
		assert.True(t, oracle.AssertCase(t, ref, i, oracle.ReadDump(t, dump)))
	}
	require.Positive(t, ran, "the oracle has no case with vae: large")
}

func TestBadVAEFlag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.png")
	err := runArgs(t, "-model", oracle.Path(t, "sdxs-dreamshaper-tiny", "model"), "-vae", "medium", "-seed", "1", "-out", out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `WithVAE("medium")`)
	assert.NoFileExists(t, out)
}
