package conv

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
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

// BenchmarkPhases times the three phases of the first chunk of a run
// (input transform and output transform on one goroutine, the 36 products
// as the plan runs them), to show where the time goes.
func BenchmarkPhases(b *testing.B) {
	for _, s := range benchShapes {
		rng := rand.New(rand.NewPCG(7, 8))
		x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, true)
		out := make([]float32, s.cout*s.h*s.w)
		p := NewWinograd(s.cin, s.cout, s.h, s.w)
		tw := p.TransformWeights(wt)
		nv, nm := p.chunkFloats()
		sc := make([]float32, nv+nm)
		v, m := sc[:nv], sc[nv:]
		t0, nt := 0, p.chunk
		name := fmt.Sprintf("%dx%d_%dx%d_chunk%d_of_%d", s.cin, s.cout, s.h, s.w, p.chunk, p.tiles)
		// Effective GFLOP/s of the whole convolution if every chunk took as
		// long as this phase does on one core.
		rate := func(b *testing.B) {
			flops := 2 * 9 * float64(s.cin*s.cout) * float64(nt) * 16
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		}
		b.Run(name+"/input", func(b *testing.B) {
			for range b.N {
				p.inputChunk(v, x, t0, nt, 0, p.cin)
			}
			rate(b)
		})
		b.Run(name+"/products", func(b *testing.B) {
			for range b.N {
				if p.private || !p.packed {
					p.products(v, m, tw, p.uStride(), nt, 0, nXi)
					continue
				}
				r := getRun()
				r.p, r.tw, r.s, r.t0, r.nt = p, tw, sc, t0, nt
				r.phase = phaseProducts
				r.parallel(nXi, p.workers)
				putRun(r)
			}
			rate(b)
		})
		b.Run(name+"/output", func(b *testing.B) {
			for range b.N {
				p.outputChunk(out, m, bias, t0, nt, 0, p.cout, 0)
			}
			rate(b)
		})
	}
}

// BenchmarkChunk runs whole convolutions with forced chunk sizes, in both
// modes, to tune the planner.
func BenchmarkChunk(b *testing.B) {
	for _, s := range benchShapes {
		rng := rand.New(rand.NewPCG(7, 8))
		x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, true)
		out := make([]float32, s.cout*s.h*s.w)
		for _, private := range []bool{true, false} {
			for _, chunk := range []int{48, 64, 96, 144, 192, 240, 288, 384} {
				name := fmt.Sprintf("%dx%d_%dx%d/private=%v/chunk%d", s.cin, s.cout, s.h, s.w, private, chunk)
				b.Run(name, func(b *testing.B) {
					withKnobs(private, 1, 1<<30, func() {
						forceChunk = chunk
						defer func() { forceChunk = 0 }()
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
				})
			}
		}
	}
}

// BenchmarkGemmKB compares depths of the summation blocks of the products
// (each needs its own packing of the weights).
func BenchmarkGemmKB(b *testing.B) {
	for _, s := range benchShapes[3:] {
		rng := rand.New(rand.NewPCG(7, 8))
		x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, true)
		out := make([]float32, s.cout*s.h*s.w)
		for _, kb := range gemmKBs {
			name := fmt.Sprintf("%dx%d_%dx%d/kb%d", s.cin, s.cout, s.h, s.w, kb)
			b.Run(name, func(b *testing.B) {
				saved := gemmKB
				gemmKB = kb
				defer func() { gemmKB = saved }()
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
		}
	}
}

var gemmKBs = []int{128, 256, 1 << 20}

// BenchmarkGemmShapes times the products of one chunk on one goroutine
// (all 36 positions, weights streaming from memory as in a real run), for
// depths of the summation blocks.
func BenchmarkGemmShapes(b *testing.B) {
	for _, s := range []struct{ cin, cout, n int }{{1280, 1280, 16}, {640, 640, 64}, {320, 320, 128}, {64, 64, 144}} {
		for _, kb := range gemmKBs {
			b.Run(fmt.Sprintf("%dx%d_n%d/kb%d", s.cin, s.cout, s.n, kb), func(b *testing.B) {
				saved := gemmKB
				gemmKB = kb
				defer func() { gemmKB = saved }()
				rp := padRows(s.cout)
				ldt := (s.n + 15) &^ 15
				ld := nXi * ldt
				u := make([]float32, nXi*rp*s.cin)
				v := make([]float32, s.cin*ld)
				m := make([]float32, s.cout*ld)
				for i := range u {
					u[i] = 0.01
				}
				for i := range v {
					v[i] = 1
				}
				b.ResetTimer()
				for range b.N {
					for xi := 0; xi < nXi; xi++ {
						gemmPacked(u[xi*rp*s.cin:], v[xi*ldt:], m[xi*ldt:], ld, s.cin, s.cout, s.n)
					}
				}
				flops := 2 * float64(nXi*s.cin*s.cout*s.n)
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkEpilogue compares a residual block's tail, out = relu(res +
// conv(x) + bias), done as Run and a separate residual-add + ReLU pass with
// RunEpilogue doing it in the output transform (64→64 channels, 512×512);
// run is the plain convolution for reference.
func BenchmarkEpilogue(b *testing.B) {
	const cin, cout, h, w = 64, 64, 512, 512
	rng := rand.New(rand.NewPCG(7, 8))
	x, wt, bias := randomProblem(rng, cin, cout, h, w, true)
	res, _, _ := randomProblem(rng, cout, 1, h, w, false)
	p := NewWinograd(cin, cout, h, w)
	tw := p.TransformWeights(wt)
	scratch := make([]float32, p.ScratchSize())
	out := make([]float32, cout*h*w)
	b.Run("run+pass", func(b *testing.B) {
		for range b.N {
			p.Run(out, x, tw, bias, scratch)
			for i, v := range out {
				v += res[i]
				if v < 0 {
					v = 0
				}
				out[i] = v
			}
		}
		reportGFLOPS(b, cin, cout, h, w)
	})
	b.Run("run+parallel-pass", func(b *testing.B) {
		workers := runtime.GOMAXPROCS(0)
		var wg sync.WaitGroup
		for range b.N {
			p.Run(out, x, tw, bias, scratch)
			for k := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					lo, hi := k*len(out)/workers, (k+1)*len(out)/workers
					o, r := out[lo:hi], res[lo:hi]
					for i, v := range o {
						v += r[i]
						if v < 0 {
							v = 0
						}
						o[i] = v
					}
				}()
			}
			wg.Wait()
		}
		reportGFLOPS(b, cin, cout, h, w)
	})
	b.Run("epilogue", func(b *testing.B) {
		for range b.N {
			// The residual would already be in out: put it back, untimed.
			b.StopTimer()
			copy(out, res)
			b.StartTimer()
			p.RunEpilogue(out, x, tw, bias, scratch, Epilogue{Accumulate: true, ReLU: true})
		}
		reportGFLOPS(b, cin, cout, h, w)
	})
	b.Run("run", func(b *testing.B) {
		for range b.N {
			p.Run(out, x, tw, bias, scratch)
		}
		reportGFLOPS(b, cin, cout, h, w)
	})
}
