package conv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// directConv64 is the reference: a float64 direct 3×3 convolution with
// stride 1 and the given zero padding.
func directConv64(x, w, bias []float32, cin, cout, h, wd, pad int) []float64 {
	oh, ow := h+2*pad-2, wd+2*pad-2
	out := make([]float64, cout*oh*ow)
	row := make([]float64, ow)
	for o := 0; o < cout; o++ {
		dst := out[o*oh*ow : (o+1)*oh*ow]
		if bias != nil {
			for i := range dst {
				dst[i] = float64(bias[o])
			}
		}
		for i := 0; i < cin; i++ {
			src := x[i*h*wd : (i+1)*h*wd]
			for ky := 0; ky < 3; ky++ {
				for kx := 0; kx < 3; kx++ {
					g := float64(w[((o*cin+i)*3+ky)*3+kx])
					for y := 0; y < oh; y++ {
						iy := y + ky - pad
						if iy < 0 || iy >= h {
							continue
						}
						srow := src[iy*wd : (iy+1)*wd]
						for xx := range row {
							row[xx] = 0
						}
						lo := max(0, pad-kx)
						hi := min(ow, wd+pad-kx)
						for xx := lo; xx < hi; xx++ {
							row[xx] = float64(srow[xx+kx-pad])
						}
						d := dst[y*ow : (y+1)*ow]
						for xx := range d {
							d[xx] += g * row[xx]
						}
					}
				}
			}
		}
	}
	return out
}

// randomProblem returns random normal inputs, weights of scale 1/√(9·cin)
// and (when withBias) a bias.
func randomProblem(rng *rand.Rand, cin, cout, h, w int, withBias bool) (x, wt, bias []float32) {
	x = make([]float32, cin*h*w)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	wt = make([]float32, cout*cin*9)
	s := 1 / math.Sqrt(float64(9*cin))
	for i := range wt {
		wt[i] = float32(rng.NormFloat64() * s)
	}
	if withBias {
		bias = make([]float32, cout)
		for i := range bias {
			bias[i] = float32(rng.NormFloat64())
		}
	}
	return x, wt, bias
}

// errors returns the relative L2 error and the largest absolute error of
// got against want.
func errors(got []float32, want []float64) (relL2, maxAbs float64) {
	var num, den float64
	for i, g := range got {
		d := float64(g) - want[i]
		num += d * d
		den += want[i] * want[i]
		maxAbs = max(maxAbs, math.Abs(d))
	}
	if den == 0 {
		return math.Sqrt(num), maxAbs
	}
	return math.Sqrt(num / den), maxAbs
}

// runWinograd convolves with a fresh plan, the output filled with NaN first.
func runWinograd(p *Winograd, x, wt, bias []float32) []float32 {
	out := make([]float32, p.cout*p.oh*p.ow)
	for i := range out {
		out[i] = float32(math.NaN())
	}
	p.Run(out, x, p.TransformWeights(wt), bias, make([]float32, p.ScratchSize()))
	return out
}

// withKnobs runs f with the planning knobs set to force a mode and chunk.
func withKnobs(private bool, chunkMin, chunkMax int, f func()) {
	saved := [...]int{privateMaxMACs, minChunk, maxChunk}
	defer func() { privateMaxMACs, minChunk, maxChunk = saved[0], saved[1], saved[2] }()
	if private {
		privateMaxMACs = math.MaxInt
	} else {
		privateMaxMACs = 0
	}
	minChunk, maxChunk = chunkMin, chunkMax
	f()
}

func TestWinogradSmallShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type shape struct{ cin, cout, h, w, pad int }
	shapes := []shape{
		{1, 1, 1, 1, 1}, {1, 1, 3, 3, 0}, {1, 2, 4, 4, 1}, {2, 1, 5, 7, 1}, {3, 5, 9, 11, 1},
		{3, 4, 9, 11, 0}, {7, 3, 1, 9, 1}, {5, 6, 13, 1, 1}, {16, 16, 16, 16, 1}, {130, 17, 6, 10, 1},
		{17, 130, 10, 6, 0}, {64, 64, 8, 8, 1}, {2, 3, 70, 3, 1}, {4, 4, 3, 70, 0},
	}
	for i := 0; i < 20; i++ {
		shapes = append(shapes, shape{1 + rng.IntN(130), 1 + rng.IntN(130), 1 + rng.IntN(40), 1 + rng.IntN(40), 1})
	}
	for i := 0; i < 6; i++ {
		shapes = append(shapes, shape{1 + rng.IntN(40), 1 + rng.IntN(40), 3 + rng.IntN(40), 3 + rng.IntN(40), 0})
	}
	modes := []struct {
		name               string
		private            bool
		chunkMin, chunkMax int
	}{
		{"plan", false, -1, -1},
		{"private/chunk5", true, 5, 5},
		{"shared/chunk7", false, 7, 7},
		{"shared/chunk100", false, 100, 100},
		{"plan/go-transforms", false, -2, -2},
	}
	for _, s := range shapes {
		for _, withBias := range []bool{false, true} {
			x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, withBias)
			want := directConv64(x, wt, bias, s.cin, s.cout, s.h, s.w, s.pad)
			for _, m := range modes {
				name := fmt.Sprintf("%dx%d/%dx%d/pad%d/bias=%v/%s", s.cin, s.cout, s.h, s.w, s.pad, withBias, m.name)
				var got []float32
				switch {
				case m.chunkMin == -1:
					got = runWinograd(NewWinogradPad(s.cin, s.cout, s.h, s.w, s.pad), x, wt, bias)
				case m.chunkMin == -2:
					saved := useAVX512
					useAVX512 = false
					got = runWinograd(NewWinogradPad(s.cin, s.cout, s.h, s.w, s.pad), x, wt, bias)
					useAVX512 = saved
				default:
					withKnobs(m.private, m.chunkMin, m.chunkMax, func() {
						got = runWinograd(NewWinogradPad(s.cin, s.cout, s.h, s.w, s.pad), x, wt, bias)
					})
				}
				rel, maxAbs := errors(got, want)
				if !(rel <= 1e-5) {
					t.Errorf("%s: relative L2 error %.3g (max abs %.3g)", name, rel, maxAbs)
				}
			}
		}
	}
}

// TestWinogradAccuracy measures the error on the shapes of the SDXS models
// (smaller images for the larger channel counts, to keep the float64
// reference quick).
func TestWinogradAccuracy(t *testing.T) {
	type shape struct{ cin, cout, h, w int }
	shapes := []shape{{64, 64, 64, 64}, {320, 320, 32, 32}, {960, 320, 16, 16}, {640, 640, 16, 16}, {1280, 1280, 16, 16}, {2560, 1280, 8, 8}}
	if testing.Short() {
		shapes = shapes[:2]
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range shapes {
		x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, true)
		want := directConv64(x, wt, bias, s.cin, s.cout, s.h, s.w, 1)
		got := runWinograd(NewWinograd(s.cin, s.cout, s.h, s.w), x, wt, bias)
		rel, maxAbs := errors(got, want)
		base := im2colConv(x, wt, bias, s.cin, s.cout, s.h, s.w)
		relD, maxAbsD := errors(base, want)
		t.Logf("%4d→%-4d %3d×%-3d  Winograd F(4×4,3×3): rel L2 %.2e, max abs %.2e | float32 im2col+Sgemm: rel L2 %.2e, max abs %.2e",
			s.cin, s.cout, s.h, s.w, rel, maxAbs, relD, maxAbsD)
		if !(rel <= 1e-5) {
			t.Errorf("%d→%d %d×%d: relative L2 error %.3g > 1e-5", s.cin, s.cout, s.h, s.w, rel)
		}
	}
}

func TestTransformWeightsExact(t *testing.T) {
	// One channel, a kernel with a single 1: the output is the input shifted.
	p := NewWinograd(1, 1, 9, 10)
	for k := 0; k < 9; k++ {
		wt := make([]float32, 9)
		wt[k] = 1
		x := make([]float32, 90)
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		got := runWinograd(p, x, wt, nil)
		want := directConv64(x, wt, nil, 1, 1, 9, 10, 1)
		if rel, maxAbs := errors(got, want); rel > 1e-5 {
			t.Errorf("kernel tap %d: rel %.3g max abs %.3g", k, rel, maxAbs)
		}
	}
}

func TestRunDoesNotAllocate(t *testing.T) {
	for _, private := range []bool{false, true} {
		withKnobs(private, 16, 64, func() {
			p := NewWinograd(8, 8, 40, 40)
			x, wt, bias := randomProblem(rand.New(rand.NewPCG(5, 6)), 8, 8, 40, 40, true)
			tw := p.TransformWeights(wt)
			out := make([]float32, 8*40*40)
			s := make([]float32, p.ScratchSize())
			p.Run(out, x, tw, bias, s)
			if n := testing.AllocsPerRun(20, func() { p.Run(out, x, tw, bias, s) }); n != 0 {
				t.Errorf("private=%v: Run allocates %v times", private, n)
			}
			ep := Epilogue{Accumulate: true, ReLU: true}
			if n := testing.AllocsPerRun(20, func() { p.RunEpilogue(out, x, tw, bias, s, ep) }); n != 0 {
				t.Errorf("private=%v: RunEpilogue allocates %v times", private, n)
			}
		})
	}
}

func TestRunPanicsOnShortSlices(t *testing.T) {
	p := NewWinograd(2, 3, 5, 5)
	x := make([]float32, 2*25)
	tw := make([]float32, p.TransformedSize())
	out := make([]float32, 3*25)
	s := make([]float32, p.ScratchSize())
	cases := map[string]func(){
		"out":     func() { p.Run(out[:74], x, tw, nil, s) },
		"x":       func() { p.Run(out, x[:49], tw, nil, s) },
		"tw":      func() { p.Run(out, x, tw[:10], nil, s) },
		"bias":    func() { p.Run(out, x, tw, []float32{1}, s) },
		"scratch": func() { p.Run(out, x, tw, nil, s[:len(s)-1]) },
	}
	for name, f := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("short %s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestNewWinogradPanics(t *testing.T) {
	for _, f := range []func(){
		func() { NewWinograd(0, 1, 1, 1) },
		func() { NewWinogradPad(1, 1, 2, 5, 0) },
		func() { NewWinogradPad(1, 1, 5, 5, 2) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

// TestConcurrentRuns runs one plan from several goroutines at once, each
// with its own scratch memory and output.
func TestConcurrentRuns(t *testing.T) {
	for _, s := range []struct{ cin, cout, h, w int }{{16, 24, 37, 29}, {200, 200, 12, 12}} {
		p := NewWinograd(s.cin, s.cout, s.h, s.w)
		x, wt, bias := randomProblem(rand.New(rand.NewPCG(15, 16)), s.cin, s.cout, s.h, s.w, true)
		tw := p.TransformWeights(wt)
		want := runWinograd(p, x, wt, bias)
		const n = 4
		outs := make([][]float32, n)
		done := make(chan int)
		for g := 0; g < n; g++ {
			go func(g int) {
				out := make([]float32, len(want))
				s := make([]float32, p.ScratchSize())
				for range 5 {
					p.Run(out, x, tw, bias, s)
				}
				outs[g] = out
				done <- g
			}(g)
		}
		for range n {
			<-done
		}
		for g, out := range outs {
			for i := range out {
				if out[i] != want[i] {
					t.Fatalf("%v: goroutine %d: out[%d] = %v, want %v", s, g, i, out[i], want[i])
				}
			}
		}
	}
}

// TestWeightsShared checks that plans with the same channel counts share
// transformed weights, whatever their image sizes, padding and chunks.
func TestWeightsShared(t *testing.T) {
	_, wt, _ := randomProblem(rand.New(rand.NewPCG(17, 18)), 70, 50, 1, 1, false)
	ref := NewWinograd(70, 50, 8, 8).TransformWeights(wt)
	for _, p := range []*Winograd{NewWinograd(70, 50, 64, 64), NewWinogradPad(70, 50, 33, 9, 0), NewWinograd(70, 50, 1, 200)} {
		u := p.TransformWeights(wt)
		for i := range u {
			if u[i] != ref[i] {
				t.Fatalf("%d×%d plan: weight %d = %v, 8×8 plan %v", p.h, p.w, i, u[i], ref[i])
			}
		}
	}
}

// TestRunEpilogue checks that RunEpilogue gives exactly Run followed by a
// separate out[i] = relu(old[i] + v) pass, in the planned, private and
// shared modes, with the assembly and the Go transforms, on random sizes
// (tiles straddling the edges, pad 0 and 1), without touching anything
// past the output; and that both paths agree within the Winograd error.
func TestRunEpilogue(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	type shape struct{ cin, cout, h, w, pad int }
	shapes := []shape{{1, 1, 1, 1, 1}, {1, 1, 3, 3, 0}, {3, 5, 9, 11, 1}, {130, 17, 7, 13, 0}, {17, 130, 13, 5, 1}, {64, 64, 21, 19, 1}}
	n := 24
	if testing.Short() {
		n = 6
	}
	for i := 0; i < n; i++ {
		pad := rng.IntN(2)
		lo := 3 - 2*pad
		shapes = append(shapes, shape{1 + rng.IntN(130), 1 + rng.IntN(130), lo + rng.IntN(71-lo), lo + rng.IntN(71-lo), pad})
	}
	modes := []struct {
		name               string
		private            bool
		chunkMin, chunkMax int
	}{
		{"plan", false, -1, -1},
		{"private/chunk5", true, 5, 5},
		{"shared/chunk7", false, 7, 7},
	}
	eps := []Epilogue{{}, {Accumulate: true}, {ReLU: true}, {Accumulate: true, ReLU: true}}
	const extra = 37 // floats past the output that must stay untouched
	for _, s := range shapes {
		x, wt, bias := randomProblem(rng, s.cin, s.cout, s.h, s.w, rng.IntN(2) == 0)
		oh, ow := s.h+2*s.pad-2, s.w+2*s.pad-2
		size := s.cout * oh * ow
		res := make([]float32, size+extra)
		for i := range res {
			res[i] = float32(rng.NormFloat64())
		}
		// byPath[avx][ep] holds the results of the last mode, to compare
		// the assembly and Go paths.
		var byPath [2][4][]float32
		for _, avx := range []bool{true, false} {
			if avx && !useAVX512 {
				continue
			}
			saved := useAVX512
			useAVX512 = avx
			for _, m := range modes {
				run := func() {
					p := NewWinogradPad(s.cin, s.cout, s.h, s.w, s.pad)
					tw := p.TransformWeights(wt)
					scratch := make([]float32, p.ScratchSize())
					conv := make([]float32, size)
					p.Run(conv, x, tw, bias, scratch)
					for k, ep := range eps {
						got := append([]float32(nil), res...)
						p.RunEpilogue(got, x, tw, bias, scratch, ep)
						for i := range got {
							want := res[i]
							if i < size {
								v := conv[i]
								if ep.Accumulate {
									v = res[i] + v
								}
								if ep.ReLU && v < 0 {
									v = 0
								}
								want = v
							}
							if math.Float32bits(got[i]) != math.Float32bits(want) {
								t.Fatalf("%dx%d/%dx%d/pad%d/avx=%v/%s/%+v: out[%d] = %v, want %v (of %d)",
									s.cin, s.cout, s.h, s.w, s.pad, avx, m.name, ep, i, got[i], want, size)
							}
						}
						b := 0
						if avx {
							b = 1
						}
						byPath[b][k] = got[:size]
					}
				}
				if m.chunkMin == -1 {
					run()
				} else {
					withKnobs(m.private, m.chunkMin, m.chunkMax, run)
				}
			}
			useAVX512 = saved
		}
		if byPath[1][0] == nil {
			continue
		}
		for k, ep := range eps {
			var num, den float64
			for i, g := range byPath[1][k] {
				d := float64(g) - float64(byPath[0][k][i])
				num += d * d
				den += float64(g) * float64(g)
			}
			if den > 0 && !(math.Sqrt(num/den) <= 1e-5) {
				t.Errorf("%dx%d/%dx%d/pad%d/%+v: assembly and Go paths differ by %.3g", s.cin, s.cout, s.h, s.w, s.pad, ep, math.Sqrt(num/den))
			}
		}
	}
}
