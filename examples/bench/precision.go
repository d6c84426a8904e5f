package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/internal/kernels"
)

var comparePrecision = flag.Bool("compare-precision", false, "with a preset and -precision fp32: also build the bf16 pipeline of the same random weights and time the two UNets alternately, with the bf16 output's distance from the fp32 one")

// benchPrecision times the fp32 pipeline p against a bf16 pipeline of the same preset (the same
// random weights), alternating their requests so that load from other processes falls on both
// alike, and reports how far the bf16 UNet output and picture land from the fp32 ones.
func benchPrecision(ctx context.Context, p *sdxs.Pipeline, preset, vaeKind string, req sdxs.Request, runs int) error {
	if p.Precision() != sdxs.PrecisionFP32 {
		return errors.New("-compare-precision needs -precision fp32")
	}
	before := currentRSS()
	q, _, _, err := fromPreset(preset, vaeKind, sdxs.WithPrecision(sdxs.PrecisionBF16))
	if err != nil {
		return err
	}
	defer q.Close()
	if err := q.Warm(ctx, req.Width, req.Height); err != nil {
		return err
	}
	fmt.Printf("\nprecision: bf16 pipeline loaded (RSS +%.0f MiB); UNet weights fp32 %.2f GiB, bf16 %.2f GiB; bf16 products on %s; load average %s\n",
		float64(currentRSS()-before)/(1<<20), float64(p.ParamBytes())/(1<<30), float64(q.ParamBytes())/(1<<30), kernels.BF16Kernel(), loadavg())
	ref, err := p.Generate(ctx, req)
	if err != nil {
		return err
	}
	wall := map[string][]float64{}
	cpu := map[string][]float64{}
	var last *sdxs.Result
	for i := 0; i < runs; i++ {
		for _, c := range []struct {
			name string
			p    *sdxs.Pipeline
		}{{"fp32", p}, {"bf16", q}} {
			c0 := cpuSeconds()
			res, err := c.p.Generate(ctx, req)
			if err != nil {
				return err
			}
			cpu[c.name] = append(cpu[c.name], cpuSeconds()-c0)
			wall[c.name] = append(wall[c.name], res.Timings[sdxs.StageUNet].Seconds())
			if c.name == "bf16" {
				last = res
			}
		}
	}
	fmt.Printf("UNet stage, median of %d alternations: fp32 %.3f s, bf16 %.3f s, bf16/fp32 %.2f (load average %s)\n",
		runs, median(wall["fp32"]), median(wall["bf16"]), median(wall["bf16"])/median(wall["fp32"]), loadavg())
	fmt.Printf("  all: fp32 %.3f\n       bf16 %.3f\n", wall["fp32"], wall["bf16"])
	fmt.Printf("request CPU time, median: fp32 %.3f s, bf16 %.3f s, bf16/fp32 %.2f\n", median(cpu["fp32"]), median(cpu["bf16"]), median(cpu["bf16"])/median(cpu["fp32"]))
	fmt.Printf("bf16 vs fp32 (random weights): UNet output rel L2 %.3g, picture PSNR %.1f dB\n", relL2(last.UNetOutput, ref.UNetOutput), psnr(last.Image.Pix, ref.Image.Pix))
	return nil
}

func relL2(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		e := float64(a[i]) - float64(b[i])
		d += e * e
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// psnr compares two RGBA pixel buffers on their colour channels.
func psnr(a, b []uint8) float64 {
	var se float64
	var n int
	for i := range a {
		if i%4 == 3 {
			continue
		}
		d := float64(a[i]) - float64(b[i])
		se += d * d
		n++
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(n)))
}
