package sdxs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// oracleCase is one entry of an oracle model's cases.json.
type oracleCase struct {
	Prompt       string   `json:"prompt"`
	Seed         uint64   `json:"seed"`
	Height       int      `json:"height"`
	Width        int      `json:"width"`
	VAE          string   `json:"vae"`
	LoraScale    *float64 `json:"lora_scale"`
	ControlImage bool     `json:"control_image"`
	ControlScale float64  `json:"control_scale"`
}

func loadCases(t *testing.T, model string) []oracleCase {
	data, err := os.ReadFile(oracle.Path(t, model, "cases.json"))
	require.NoError(t, err)
	var cases []oracleCase
	require.NoError(t, json.Unmarshal(data, &cases))
	require.NotEmpty(t, cases)
	return cases
}

// TestTxt2ImgMatchesDiffusers runs every plain text-to-image case of both oracle models through
// the public API and holds each stage to the oracle README's bounds.
func TestTxt2ImgMatchesDiffusers(t *testing.T) {
	for _, model := range []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"} {
		t.Run(model, func(t *testing.T) {
			p, err := Load(oracle.Path(t, model, "model"))
			require.NoError(t, err)
			defer p.Close()
			ref := oracle.Tensors(t, model, "reference.safetensors")
			ran := 0
			for i, c := range loadCases(t, model) {
				if c.VAE == "large" || c.LoraScale != nil || c.ControlImage {
					continue
				}
				ran++
				t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
					res, err := p.Generate(context.Background(), Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height})
					require.NoError(t, err)
					name := func(s string) string { return fmt.Sprintf("case%d.%s", i, s) }
					ids, _ := oracle.Int64(t, ref, name("input_ids"))
					require.Equal(t, ids, res.InputIDs, "input_ids")
					want := func(s string) []float32 { v, _ := oracle.Float32(t, ref, name(s)); return v }
					oracle.AssertMaxAbs(t, "text_embeddings", res.TextEmbeddings, want("text_embeddings"), 1e-4)
					oracle.AssertMaxAbs(t, "noise", res.Noise, want("noise"), 1e-5)
					oracle.AssertRelL2(t, "unet_input", res.UNetInput, want("unet_input"), 1e-5)
					oracle.AssertRelL2(t, "unet_output", res.UNetOutput, want("unet_output"), 1e-4)
					oracle.AssertMaxAbs(t, "latents", res.Latents, want("latents"), 2e-3)
					oracle.AssertMaxAbs(t, "decoded", res.Decoded, want("decoded"), 2e-3)
					img, shape := oracle.Uint8(t, ref, name("image"))
					require.Equal(t, []int{c.Height, c.Width, 3}, shape)
					var sum float64
					worst := 0
					for y := 0; y < c.Height; y++ {
						for x := 0; x < c.Width; x++ {
							for ch := 0; ch < 3; ch++ {
								got := int(res.Image.Pix[res.Image.PixOffset(x, y)+ch])
								d := got - int(img[(y*c.Width+x)*3+ch])
								if d < 0 {
									d = -d
								}
								worst = max(worst, d)
								sum += float64(d)
							}
						}
					}
					require.LessOrEqual(t, worst, 1, "image: a pixel differs by more than 1")
					require.LessOrEqual(t, sum/float64(c.Height*c.Width*3), 0.05, "image: mean absolute difference")

					// The dump of examples/txt2img uses the reference's names, shapes and dtypes.
					tensors, err := res.Tensors()
					require.NoError(t, err)
					for _, tn := range tensors {
						info, ok := ref.Info(name(tn.Name))
						require.True(t, ok, tn.Name)
						require.Equal(t, info.Shape, tn.Shape, tn.Name)
						require.Equal(t, info.DType, tn.DType, tn.Name)
					}
					path := filepath.Join(t.TempDir(), "dump.safetensors")
					require.NoError(t, weights.WriteFile(path, tensors, nil))
					f, err := weights.Open(path)
					require.NoError(t, err)
					defer f.Close()
					back, _, err := f.Float32("unet_output")
					require.NoError(t, err)
					require.Equal(t, res.UNetOutput, back)
				})
			}
			require.Positive(t, ran)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope"))
	require.Error(t, err)
}
