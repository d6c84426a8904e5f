package conv

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchShapes are the hot 3×3 convolutions of the TAESD decoder and the
// SDXS UNet.
var benchShapes = []struct{ cin, cout, h, w int }{
	{64, 64, 512, 512},
	{64, 64, 256, 256},
	{64, 64, 128, 128},
	{320, 320, 64, 64},
	{640, 640, 32, 32},
	{1280, 1280, 16, 16},
	{960, 320, 64, 64},
}

// reportGFLOPS reports the effective rate, counting 2·Cout·Cin·9·H·W flops
// per convolution whatever the algorithm.
func reportGFLOPS(b *testing.B, cin, cout, h, w int) {
	flops := 2 * 9 * float64(cin) * float64(cout) * float64(h) * float64(w)
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkConv3x3(b *testing.B) {
	for _, s := range benchShapes {
		rng := rand.New(rand.NewPCG(7, 8))
		x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, true)
		out := make([]float32, s.cout*s.h*s.w)
		name := fmt.Sprintf("%dx%d_%dx%d", s.cin, s.cout, s.h, s.w)
		b.Run(name+"/winograd", func(b *testing.B) {
			p := NewWinograd(s.cin, s.cout, s.h, s.w)
			tw := p.TransformWeights(wt)
			scratch := make([]float32, p.ScratchSize())
			p.Run(out, x, tw, bias, scratch)
			b.ResetTimer()
			for range b.N {
				p.Run(out, x, tw, bias, scratch)
			}
			reportGFLOPS(b, s.cin, s.cout, s.h, s.w)
		})
		b.Run(name+"/im2col", func(b *testing.B) {
			q := newIm2col(s.cin, s.cout, s.h, s.w)
			scratch := make([]float32, q.scratchSize())
			q.run(out, x, wt, bias, scratch)
			b.ResetTimer()
			for range b.N {
				q.run(out, x, wt, bias, scratch)
			}
			reportGFLOPS(b, s.cin, s.cout, s.h, s.w)
		})
	}
}
