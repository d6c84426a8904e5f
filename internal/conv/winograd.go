package conv

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/sdxs-go/sdxs/internal/kernels"
)

// Tile geometry of F(4×4, 3×3).
const (
	tileOut = 4               // output tile side
	tileIn  = tileOut + 2     // input patch side
	nXi     = tileIn * tileIn // transformed tile positions ξ
)

// Tuning knobs (variables so that benchmarks can try other values; see
// BenchmarkChunk).
var (
	// privateMaxMACs is the largest Cin·Cout for which each goroutine runs
	// its own chunks, products included; above it all goroutines share each
	// chunk.
	privateMaxMACs = 160 * 160
	// privateChunk is the chunk size in the private mode (a multiple of 48,
	// the width of the product kernel): 64 to 144 tiles run equally fast
	// with 64 channels, larger chunks spill out of the L2 cache.
	privateChunk = 96
	// sharedBudget bounds the bytes of V and M of one shared chunk (it should
	// fit the shared L3 cache); the speed hardly depends on it.
	sharedBudget = 12 << 20
	// minChunk and maxChunk bound the tiles of one chunk.
	minChunk = 32
	maxChunk = 512
	// forceChunk, when positive, overrides the chunk size (for tuning).
	forceChunk = 0
	// sgemmSerialMACs is the size below which kernels.Sgemm stays on one
	// goroutine; without the assembly kernels, private chunks keep each
	// product below it.
	sgemmSerialMACs = 1 << 20
)

// Winograd is a plan for the 3×3, stride-1 convolution of a [Cin, H, W]
// float32 image into [Cout, OutH, OutW] with F(4×4, 3×3) Winograd
// transforms. A plan holds only sizes: it is safe to use from several
// goroutines at once, each with its own scratch memory.
type Winograd struct {
	cin, cout, h, w, pad int
	oh, ow               int
	nth, ntw, tiles      int // tile rows, tile columns, tiles
	chunk                int // tiles per chunk
	ldt                  int // stride between the ξ rows of V and M (≥ chunk, multiple of 16)
	private              bool
	packed               bool // U packed for gemmPacked (else row-major for Sgemm)
	lazy, lazy16         bool // the lazy mode (lazy.go), with bfloat16 taps
	cached               bool // lazy, with the weights transformed once per run (lazy.go)
	workers              int
}

// NewWinograd plans the convolution of a [cin, h, w] image with 3×3 kernels,
// stride 1 and one pixel of zero padding on every side, into [cout, h, w].
// It panics when a size is not positive.
func NewWinograd(cin, cout, h, w int) *Winograd { return NewWinogradPad(cin, cout, h, w, 1) }

// NewWinogradPad is NewWinograd with pad (0 or 1) pixels of zero padding:
// the output is [cout, h+2·pad−2, w+2·pad−2]. It panics when a size is not
// positive, pad is not 0 or 1, or the output would be empty.
func NewWinogradPad(cin, cout, h, w, pad int) *Winograd {
	if cin < 1 || cout < 1 || h < 1 || w < 1 {
		panic(fmt.Sprintf("conv: NewWinograd: sizes must be positive (cin %d, cout %d, h %d, w %d)", cin, cout, h, w))
	}
	if pad != 0 && pad != 1 {
		panic(fmt.Sprintf("conv: NewWinograd: pad must be 0 or 1, not %d", pad))
	}
	p := &Winograd{cin: cin, cout: cout, h: h, w: w, pad: pad}
	p.oh, p.ow = h+2*pad-2, w+2*pad-2
	if p.oh < 1 || p.ow < 1 {
		panic(fmt.Sprintf("conv: NewWinograd: a %d×%d image without padding has no 3×3 output", h, w))
	}
	p.nth = (p.oh + tileOut - 1) / tileOut
	p.ntw = (p.ow + tileOut - 1) / tileOut
	p.tiles = p.nth * p.ntw
	p.workers = max(1, min(runtime.GOMAXPROCS(0), 64))
	p.plan()
	p.packed = useAVX512
	return p
}

// plan chooses the execution mode and the chunk size.
func (p *Winograd) plan() {
	p.private = p.cin*p.cout <= privateMaxMACs
	var t int
	if p.private {
		t = privateChunk
		if !useAVX512 {
			t = min(t, (sgemmSerialMACs-1)/(p.cin*p.cout))
		}
		// Give every worker a few chunks when the image is small.
		t = min(t, ceilDiv(p.tiles, 2*p.workers))
	} else {
		t = sharedBudget / (nXi * (p.cin + p.cout) * 4)
	}
	t = max(minChunk, min(t, maxChunk))
	if forceChunk > 0 {
		t = forceChunk
	}
	if t >= p.tiles {
		t = p.tiles
	} else {
		// Even out the chunks.
		n := ceilDiv(p.tiles, t)
		t = ceilDiv(p.tiles, n)
	}
	p.chunk = t
	p.ldt = (t + 15) &^ 15
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// OutH returns the height of the output.
func (p *Winograd) OutH() int { return p.oh }

// OutW returns the width of the output.
func (p *Winograd) OutW() int { return p.ow }

// TransformedSize returns the length of the transformed weights: 36·Cout·Cin
// floats, or a little more when Cout is not a multiple of 24.
func (p *Winograd) TransformedSize() int { return nXi * p.uStride() }

// uStride returns the floats of one position ξ of the transformed weights.
func (p *Winograd) uStride() int {
	if p.packed {
		return padRows(p.cout) * p.cin
	}
	return p.cout * p.cin
}

// uIndex returns the position of U_ξ[o][i] in the transformed weights.
func (p *Winograd) uIndex(xi, o, i int) int {
	if p.packed {
		return xi*p.uStride() + packedIndex(o, i, p.cin, padRows(p.cout))
	}
	return xi*p.uStride() + o*p.cin + i
}

// TransformWeights returns the Winograd transform U = G g Gᵀ of the weights w
// ([Cout, Cin, 3, 3], as in PyTorch), laid out for Run: 36 [Cout, Cin]
// matrices, in zero-padded panels of 8 rows (row-major without AVX-512).
// The result depends only on Cin and Cout, so plans for other image sizes
// with the same channel counts can share it. It is computed in float64 and rounded once; call it
// once per weight tensor and keep the result. It panics when w has the wrong
// length.
func (p *Winograd) TransformWeights(w []float32) []float32 {
	if len(w) != p.cout*p.cin*9 {
		panic(fmt.Sprintf("conv: TransformWeights: %d weights, want %d·%d·9 = %d", len(w), p.cout, p.cin, p.cout*p.cin*9))
	}
	u := make([]float32, p.TransformedSize())
	for o := 0; o < p.cout; o++ {
		for i := 0; i < p.cin; i++ {
			g := w[(o*p.cin+i)*9 : (o*p.cin+i)*9+9]
			// t = G g (6×3), then U = t Gᵀ (6×6).
			var t [tileIn][3]float64
			for r := 0; r < tileIn; r++ {
				for c := 0; c < 3; c++ {
					var s float64
					for k := 0; k < 3; k++ {
						s += matG[r][k] * float64(g[k*3+c])
					}
					t[r][c] = s
				}
			}
			for r := 0; r < tileIn; r++ {
				for c := 0; c < tileIn; c++ {
					var s float64
					for k := 0; k < 3; k++ {
						s += t[r][k] * matG[c][k]
					}
					u[p.uIndex(r*tileIn+c, o, i)] = float32(s)
				}
			}
		}
	}
	return u
}

// matG is the weight transform G of F(4, 3) on the points 0, 1, −1, 2, −2, ∞.
var matG = [tileIn][3]float64{
	{1.0 / 4, 0, 0},
	{-1.0 / 6, -1.0 / 6, -1.0 / 6},
	{-1.0 / 6, 1.0 / 6, -1.0 / 6},
	{1.0 / 24, 1.0 / 12, 1.0 / 6},
	{1.0 / 24, -1.0 / 12, 1.0 / 6},
	{0, 0, 1},
}

// chunkFloats returns the floats of V and M of one chunk.
func (p *Winograd) chunkFloats() (v, m int) {
	return p.cin * nXi * p.ldt, p.cout * nXi * p.ldt
}

// ScratchSize returns the number of float32 values of scratch memory Run
// needs. It depends on runtime.GOMAXPROCS at the time the plan was made.
func (p *Winograd) ScratchSize() int {
	v, m := p.chunkFloats()
	n := v + m
	if p.private {
		n *= min(p.workers, ceilDiv(p.tiles, p.chunk))
	}
	switch {
	case p.cached:
		n += nXi * p.cachedStride()
	case p.lazy:
		n += p.workers * lazyScratch()
	}
	return n + 16 // room to align to 64 bytes
}

// Run writes out [Cout, OutH, OutW] = the convolution of x [Cin, H, W] with
// the weights tw transformed by TransformWeights, plus bias [Cout] (nil for
// none). scratch must hold at least ScratchSize floats; out must not overlap
// x, tw, bias or scratch. Run uses up to GOMAXPROCS goroutines and does not
// allocate. It panics when a slice is too short.
//
// Run is RunEpilogue with the zero Epilogue.
func (p *Winograd) Run(out, x, tw, bias, scratch []float32) {
	p.RunEpilogue(out, x, tw, bias, scratch, Epilogue{})
}

// Epilogue says what Run does with each output value v = conv(x)+bias before storing it.
type Epilogue struct {
	Accumulate bool // store out[i] + v instead of v (out holds a residual on entry)
	ReLU       bool // store max(·, 0) of the result (after accumulating)
}

// Epilogue bits, as the output transforms take them.
const (
	epAccumulate = 1
	epReLU       = 2
)

func (e Epilogue) bits() int {
	b := 0
	if e.Accumulate {
		b |= epAccumulate
	}
	if e.ReLU {
		b |= epReLU
	}
	return b
}

// RunEpilogue is Run with the epilogue ep applied in the output transform,
// without another pass over the output: each output value v (convolution
// plus bias) is stored as
//
//	out[i] = v                  // zero Epilogue (Run)
//	out[i] = out[i] + v         // Accumulate: out holds a residual on entry
//	out[i] = max(out[i]+v, 0)   // Accumulate and ReLU
//	out[i] = max(v, 0)          // ReLU
//
// exactly as Run followed by a separate pass would compute it (the ReLU
// turns negative values into 0 and keeps NaN). Only the OutH·OutW values of
// each output channel are read and written, each once. out may hold the
// residual but must not overlap x, tw, bias or scratch (for an in-place
// residual block, x and out must be different buffers). It panics when a
// slice is too short.
func (p *Winograd) RunEpilogue(out, x, tw, bias, scratch []float32, ep Epilogue) {
	check := func(name string, s []float32, n int) {
		if len(s) < n {
			panic(fmt.Sprintf("conv: Winograd.Run: %s has %d floats, need %d", name, len(s), n))
		}
	}
	check("out", out, p.cout*p.oh*p.ow)
	check("x", x, p.cin*p.h*p.w)
	check("tw", tw, p.WeightsSize())
	if bias != nil {
		check("bias", bias, p.cout)
	}
	check("scratch", scratch, p.ScratchSize())
	// Align the scratch to 64 bytes so that 16-float rows are cache lines.
	off := int(uintptr(unsafe.Pointer(&scratch[0]))&63) / 4
	if off != 0 {
		off = 16 - off
	}
	s := scratch[off : off+p.ScratchSize()-16]

	r := getRun()
	r.p, r.out, r.x, r.tw, r.bias, r.s = p, out, x, tw, bias, s
	r.ep = ep.bits()
	nchunks := ceilDiv(p.tiles, p.chunk)
	workers := min(p.workers, runtime.GOMAXPROCS(0))
	if p.private {
		r.phase = phasePrivate
		r.parallel(nchunks, min(workers, nchunks))
	} else {
		nv, _ := p.chunkFloats()
		v, m := s[:nv], s[nv:]
		if p.cached {
			r.phase = phaseCache
			r.parallel(padRows(p.cout)/8*ceilDiv(p.cin, gemmKB), workers)
		}
		for c := 0; c < nchunks; c++ {
			t0 := c * p.chunk
			r.t0, r.nt = t0, min(p.chunk, p.tiles-t0)
			r.phase = phaseInput
			r.parallel(min(p.cin, 4*workers), workers)
			if p.cached {
				r.phase = phaseProducts
				r.parallel(nXi, workers)
			} else if p.lazy {
				r.phase = phaseLazy
				r.parallel(ceilDiv(p.cout, lazyRows), workers)
			} else if p.packed {
				r.phase = phaseProducts
				r.parallel(nXi, workers)
			} else {
				p.products(v, m, tw, p.uStride(), r.nt, 0, nXi) // Sgemm is parallel
			}
			r.phase = phaseOutput
			r.parallel(min(p.cout, 4*workers), workers)
		}
	}
	putRun(r)
}

// products computes the matrix products M_ξ = U_ξ·V_ξ of a chunk of nt
// tiles for ξ in [xi0, xi1), U_ξ at tw[ξ·plane].
func (p *Winograd) products(v, m, tw []float32, plane, nt, xi0, xi1 int) {
	ld := nXi * p.ldt
	for xi := xi0; xi < xi1; xi++ {
		u := tw[xi*plane : (xi+1)*plane]
		if p.packed {
			gemmPacked(u, v[xi*p.ldt:], m[xi*p.ldt:], ld, p.cin, p.cout, nt)
			continue
		}
		kernels.Sgemm(false, false, p.cout, nt, p.cin, 1, u, p.cin, v[xi*p.ldt:], ld, 0, m[xi*p.ldt:], ld)
	}
}

// inputChunk transforms channels [c0, c1) of the tiles [t0, t0+nt) of x
// into v ([Cin][36][ldt]).
func (p *Winograd) inputChunk(v, x []float32, t0, nt, c0, c1 int) {
	hw := p.h * p.w
	// The rows and columns of the input the tiles read (clipped to the image), to prefetch for
	// the next channel while this one is transformed: the planes are a channel apart in
	// memory, too many streams for the hardware prefetcher (7–12 % of a 64-channel layer at
	// 256² to 512²).
	tr0, tr1 := t0/p.ntw, (t0+nt-1)/p.ntw
	y0, y1 := max(0, tr0*tileOut-p.pad), min(p.h, tr1*tileOut-p.pad+tileIn)
	x0, x1 := 0, p.w
	if tr0 == tr1 {
		x0, x1 = max(0, t0%p.ntw*tileOut-p.pad), min(p.w, (t0+nt-1)%p.ntw*tileOut-p.pad+tileIn)
	}
	for ci := c0; ci < c1; ci++ {
		if ci+1 < c1 {
			prefetchRows(x[(ci+1)*hw:(ci+2)*hw], p.w, y0, y1, x0, x1)
		}
		plane := x[ci*hw : (ci+1)*hw]
		vc := v[ci*nXi*p.ldt : (ci+1)*nXi*p.ldt]
		for i := 0; i < nt; {
			t := t0 + i
			tr, tc := t/p.ntw, t%p.ntw
			n := min(p.ntw-tc, nt-i)
			inputTransform(vc[i:], p.ldt, plane, p.h, p.w, tr*tileOut-p.pad, tc*tileOut-p.pad, n)
			i += n
		}
	}
}

// outputChunk inverse-transforms channels [c0, c1) of the tiles
// [t0, t0+nt) from m ([Cout][36][ldt]) into out, adding the bias and
// applying the epilogue bits ep.
func (p *Winograd) outputChunk(out, m, bias []float32, t0, nt, c0, c1, ep int) {
	ohw := p.oh * p.ow
	for co := c0; co < c1; co++ {
		var b float32
		if bias != nil {
			b = bias[co]
		}
		plane := out[co*ohw : (co+1)*ohw]
		mc := m[co*nXi*p.ldt : (co+1)*nXi*p.ldt]
		for i := 0; i < nt; {
			t := t0 + i
			tr, tc := t/p.ntw, t%p.ntw
			n := min(p.ntw-tc, nt-i)
			y, xx := tr*tileOut, tc*tileOut
			rows := min(tileOut, p.oh-y)
			cols := min(tileOut*n, p.ow-xx)
			outputTransform(plane[y*p.ow+xx:], p.ow, mc[i:], p.ldt, rows, cols, n, b, ep)
			i += n
		}
	}
}
