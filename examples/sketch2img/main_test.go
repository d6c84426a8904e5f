package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestSketch2Img draws a sketch (black lines on white), runs the command's flow with the
// oracle's tiny model and ControlNet, and checks the picture it writes.
func TestSketch2Img(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	dir := t.TempDir()
	sketch := image.NewGray(image.Rect(0, 0, 300, 200))
	for i := range sketch.Pix {
		sketch.Pix[i] = 255
	}
	for x := 50; x < 250; x++ {
		sketch.SetGray(x, 150, color.Gray{})
		sketch.SetGray(x, 150-(x-50)/2, color.Gray{})
	}
	path := filepath.Join(dir, "sketch.png")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, png.Encode(f, sketch))
	require.NoError(t, f.Close())

	out := filepath.Join(dir, "out.png")
	require.NoError(t, run(oracle.Path(t, model, "model"), oracle.Path(t, model, "controlnet"), path, "a house by the lake", 1, false, out))
	f, err = os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, 256, 256), img.Bounds(), "the model's default size (sample_size 32)")

	err = run(oracle.Path(t, model, "model"), oracle.Path(t, model, "controlnet"), filepath.Join(dir, "nope.png"), "", 1, false, out)
	require.ErrorContains(t, err, "nope.png")
}
