package sdxs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// bf16Case is one entry of an oracle model's bf16/cases.json: how far PyTorch's own bfloat16
// UNet lands from the float32 reference.
type bf16Case struct {
	Case      int     `json:"case"`
	UNetRelL2 float64 `json:"unet_output_rel_l2"`
	ImagePSNR float64 `json:"image_psnr_db"`
}

// psnr returns the peak signal-to-noise ratio in dB of two 8-bit pictures.
func psnr(a, b []uint8) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(len(a))))
}

// TestBF16AsFaithfulAsPyTorch runs every plain text-to-image oracle case of both models with a
// bf16 pipeline and holds it to PyTorch's own bfloat16 run of the same case: the UNet output's
// relative L2 error and the picture's PSNR against the float32 reference no worse than
// torch.bfloat16's. An fp32 pipeline of the same folder lives in the same process and still
// meets the float32 bounds, and the bf16 one holds its UNet weights in about half the bytes.
func TestBF16AsFaithfulAsPyTorch(t *testing.T) {
	for _, model := range []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"} {
		t.Run(model, func(t *testing.T) {
			data, err := os.ReadFile(oracle.Path(t, model, "bf16", "cases.json"))
			require.NoError(t, err)
			var torch []bf16Case
			require.NoError(t, json.Unmarshal(data, &torch))
			require.NotEmpty(t, torch)
			cases := loadCases(t, model)
			ref := oracle.Tensors(t, model, "reference.safetensors")
			torchRef := oracle.Tensors(t, model, "bf16", "reference.safetensors")

			p32, p16 := loadBothPrecisions(t, model)
			require.Equal(t, PrecisionBF16, p16.Precision())
			require.Equal(t, PrecisionFP32, p32.Precision())

			for _, tc := range torch {
				c := cases[tc.Case]
				require.False(t, c.VAE == "large" || c.LoraScale != nil || c.ControlImage, "case %d is not a plain case", tc.Case)
				t.Run(fmt.Sprintf("case%d", tc.Case), func(t *testing.T) {
					name := func(s string) string { return fmt.Sprintf("case%d.%s", tc.Case, s) }
					wantOut, _ := oracle.Float32(t, ref, name("unet_output"))
					wantImg, _ := oracle.Uint8(t, ref, name("image"))
					// The yardstick itself: PyTorch's bf16 picture has the PSNR cases.json says.
					torchImg, _ := oracle.Uint8(t, torchRef, name("image"))
					require.InDelta(t, tc.ImagePSNR, psnr(torchImg, wantImg), 1e-6, "PSNR of PyTorch's bf16 picture")
					torchOut, _ := oracle.Float32(t, torchRef, name("unet_output"))
					require.InDelta(t, tc.UNetRelL2, oracle.RelL2(torchOut, wantOut), 1e-6, "rel L2 of PyTorch's bf16 UNet output")

					req := Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height}
					r16, err := p16.Generate(context.Background(), req)
					require.NoError(t, err)
					r32, err := p32.Generate(context.Background(), req)
					require.NoError(t, err)
					oracle.AssertRelL2(t, "fp32 unet_output", r32.UNetOutput, wantOut, 1e-4)

					rel := oracle.RelL2(r16.UNetOutput, wantOut)
					img := make([]uint8, 0, c.Width*c.Height*3)
					for y := 0; y < c.Height; y++ {
						for x := 0; x < c.Width; x++ {
							o := r16.Image.PixOffset(x, y)
							img = append(img, r16.Image.Pix[o:o+3]...)
						}
					}
					db := psnr(img, wantImg)
					t.Logf("bf16: unet_output rel L2 %.4g (torch %.4g), image PSNR %.2f dB (torch %.2f dB)", rel, tc.UNetRelL2, db, tc.ImagePSNR)
					require.False(t, math.IsNaN(rel), "NaN in the bf16 UNet output")
					require.LessOrEqual(t, rel, tc.UNetRelL2, "bf16 unet_output rel L2 vs PyTorch's bf16")
					require.GreaterOrEqual(t, db, tc.ImagePSNR, "bf16 image PSNR vs PyTorch's bf16")
				})
			}
			b16, b32 := p16.ParamBytes(), p32.ParamBytes()
			t.Logf("UNet parameter bytes: bf16 %d, fp32 %d", b16, b32)
			require.Less(t, float64(b16), 0.6*float64(b32), "bf16 UNet weights should take about half the bytes")
		})
	}
}

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]Precision{"fp32": PrecisionFP32, "": PrecisionFP32, "bf16": PrecisionBF16} {
		got, err := ParsePrecision(s)
		require.NoError(t, err)
		require.Equal(t, want, got)
		if s != "" {
			require.Equal(t, s, got.String())
		}
	}
	_, err := ParsePrecision("fp16")
	require.ErrorContains(t, err, "fp16")
	_, err = Load(oracle.Path(t, "sdxs-dreamshaper-tiny", "model"), WithPrecision(Precision(7)))
	require.ErrorContains(t, err, "precision")
}

// TestBF16LoRA applies the oracle's adapter to a bf16 pipeline, merged and unfused: the LoRA
// cases land as close to their float32 references as PyTorch's bf16 lands on this model's plain
// cases (the worst of them), far closer than without the adapter, and the base UNet is
// unchanged afterwards.
func TestBF16LoRA(t *testing.T) {
	data, err := os.ReadFile(oracle.Path(t, loraModel, "bf16", "cases.json"))
	require.NoError(t, err)
	var torch []bf16Case
	require.NoError(t, json.Unmarshal(data, &torch))
	bound := 0.0
	for _, c := range torch {
		bound = max(bound, c.UNetRelL2)
	}
	ref := oracle.Tensors(t, loraModel, "reference.safetensors")
	idx, cases := loraCases(t)
	ctx := context.Background()
	for _, mode := range loraModes {
		t.Run(mode.name, func(t *testing.T) {
			p, err := Load(oracle.Path(t, loraModel, "model"), append(mode.opts, WithPrecision(PrecisionBF16))...)
			require.NoError(t, err)
			defer p.Close()
			before, err := p.Generate(ctx, request(cases[0]))
			require.NoError(t, err)
			a, err := p.LoadLoRA(oracle.Path(t, loraModel, "lora", "peft"))
			require.NoError(t, err)
			for _, i := range idx {
				c := cases[i]
				want, _ := oracle.Float32(t, ref, fmt.Sprintf("case%d.unet_output", i))
				plain, err := p.Generate(ctx, request(c))
				require.NoError(t, err)
				res, err := p.Generate(ctx, request(c, LoRA{Adapter: a, Scale: *c.LoraScale}))
				require.NoError(t, err)
				rel, without := oracle.RelL2(res.UNetOutput, want), oracle.RelL2(plain.UNetOutput, want)
				t.Logf("case %d: bf16 with the adapter rel L2 %.4g (bound %.4g), without it %.4g", i, rel, bound, without)
				require.LessOrEqual(t, rel, bound)
				require.Less(t, rel, without/2)
			}
			after, err := p.Generate(ctx, request(cases[0]))
			require.NoError(t, err)
			require.Equal(t, before.UNetOutput, after.UNetOutput, "the base UNet changed after LoRA requests")
		})
	}
}

// TestBF16Concurrent generates the plain oracle cases at once on a fresh bf16 pipeline (so its
// graphs and bf16 weights are built concurrently), beside an fp32 pipeline of the same folder
// doing the same, and gets exactly what one request at a time gives.
func TestBF16Concurrent(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	var reqs []Request
	for _, c := range loadCases(t, model) {
		if c.VAE == "large" || c.LoraScale != nil || c.ControlImage {
			continue
		}
		reqs = append(reqs, Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height})
	}
	reqs = append(reqs, Request{Prompt: reqs[0].Prompt, Seed: 5, Width: 96, Height: 64})
	ctx := context.Background()
	serial := map[Precision][][]float32{}
	for _, pr := range []Precision{PrecisionFP32, PrecisionBF16} {
		p, err := Load(oracle.Path(t, model, "model"), WithPrecision(pr))
		require.NoError(t, err)
		for _, r := range reqs {
			res, err := p.Generate(ctx, r)
			require.NoError(t, err)
			serial[pr] = append(serial[pr], res.UNetOutput)
		}
		p.Close()
	}
	pipes := map[Precision]*Pipeline{}
	for _, pr := range []Precision{PrecisionFP32, PrecisionBF16} {
		p, err := Load(oracle.Path(t, model, "model"), WithPrecision(pr))
		require.NoError(t, err)
		defer p.Close()
		pipes[pr] = p
	}
	type out struct {
		pr  Precision
		i   int
		res *Result
		err error
	}
	ch := make(chan out)
	for pr, p := range pipes {
		for i, r := range reqs {
			go func() {
				res, err := p.Generate(ctx, r)
				ch <- out{pr, i, res, err}
			}()
		}
	}
	for range 2 * len(reqs) {
		o := <-ch
		require.NoError(t, o.err)
		require.Equal(t, serial[o.pr][o.i], o.res.UNetOutput, "%v request %d", o.pr, o.i)
	}
	require.NotEqual(t, serial[PrecisionFP32][0], serial[PrecisionBF16][0])
}

// loadBothPrecisions loads the oracle model twice, in fp32 and in bf16, closed at test end.
func loadBothPrecisions(t *testing.T, model string) (p32, p16 *Pipeline) {
	t.Helper()
	p32, err := Load(oracle.Path(t, model, "model"))
	require.NoError(t, err)
	t.Cleanup(func() { p32.Close() })
	p16, err = Load(oracle.Path(t, model, "model"), WithPrecision(PrecisionBF16))
	require.NoError(t, err)
	t.Cleanup(func() { p16.Close() })
	return p32, p16
}
