package nn

import (
	"math"

	"github.com/sdxs-go/sdxs/internal/conv"
	"github.com/sdxs-go/sdxs/internal/kernels"
	"runtime"
	"sync"
)

// parallelFor splits [0, n) into at most GOMAXPROCS contiguous chunks of at least minChunk and
// runs fn on each, concurrently.
func parallelFor(n, minChunk int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	p := runtime.GOMAXPROCS(0)
	if minChunk < 1 {
		minChunk = 1
	}
	if q := n / minChunk; q < p {
		p = q
	}
	if p <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + p - 1) / p
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, hi)
	}
	wg.Wait()
}

// ---- convolution ----

type convKernel struct {
	cin, h, w, cout, k, stride, pad, ho, wo int
	// Inputs after x and the weight, in this order when present: bias [Cout], an extra
	// per-channel bias [Cout] (a ResNet's time embedding), a residual [Cout, Ho, Wo] to add.
	bias, chanBias, residual bool
	// act is applied to the result ("" for none).
	act string

	// wino, when set, computes the convolution with Winograd F(4×4, 3×3); the weight input
	// then holds the transformed weights (see useWinograd). sumBias holds bias + channel bias
	// during a run.
	wino    *conv.Winograd
	sumBias []float32
	// bw, when set, holds the weight in bf16 (the weight input is then a placeholder).
	bw *kernels.BF16Matrix
}

// colBudget bounds the im2col buffer of one convolution chunk (in floats).
const colBudget = 1 << 21

func (c *convKernel) direct() bool { return c.k == 1 && c.stride == 1 && c.pad == 0 }

func (c *convKernel) tile() int {
	kdim := c.cin * c.k * c.k
	hw := c.ho * c.wo
	t := colBudget / kdim
	if t >= hw {
		return hw
	}
	t = max(64, t&^63)
	return min(t, hw)
}

func (c *convKernel) scratchSize() int {
	if c.wino != nil {
		return c.wino.ScratchSize()
	}
	if c.direct() {
		return 0
	}
	return c.cin * c.k * c.k * c.tile()
}

func (c *convKernel) inplace() int {
	if !c.residual {
		return -1
	}
	return c.residualIndex()
}

func (c *convKernel) residualIndex() int {
	i := 2
	if c.bias {
		i++
	}
	if c.chanBias {
		i++
	}
	return i
}

// initOut writes into out [rows, cols] what the product is added to: the residual (if any)
// plus the per-row biases. It returns the GEMM's beta: 0 when out needs no initial value.
func initOut(out []float32, rows, cols int, bias, chanBias, residual []float32) float32 {
	if residual == nil && bias == nil && chanBias == nil {
		return 0
	}
	parallelFor(rows, 8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := out[r*cols : (r+1)*cols]
			var bv float32
			if bias != nil {
				bv = bias[r]
			}
			if chanBias != nil {
				bv += chanBias[r]
			}
			if residual != nil {
				src := residual[r*cols : (r+1)*cols]
				if &src[0] != &row[0] {
					for i, v := range src {
						row[i] = v + bv
					}
				} else if bv != 0 {
					for i := range row {
						row[i] += bv
					}
				}
			} else {
				for i := range row {
					row[i] = bv
				}
			}
		}
	})
	return 1
}

// applyAct applies an activation to columns [p0, p0+n) of every row of out [rows, cols].
func applyAct(act string, out []float32, rows, cols, p0, n int) {
	if act == "" {
		return
	}
	f := activationFunc(act)
	parallelFor(rows, 4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			seg := out[r*cols+p0 : r*cols+p0+n]
			f(seg, seg)
		}
	})
}

func (c *convKernel) run(out []float32, in [][]float32, scratch []float32) {
	x, w := in[0], in[1]
	hw := c.ho * c.wo
	var bias, chanBias, residual []float32
	i := 2
	if c.bias {
		bias = in[i]
		i++
	}
	if c.chanBias {
		chanBias = in[i]
		i++
	}
	if c.residual {
		residual = in[i]
	}
	if c.wino != nil {
		c.runWinograd(out, x, w, bias, chanBias, residual, scratch)
		return
	}
	beta := initOut(out, c.cout, hw, bias, chanBias, residual)
	if c.bw != nil {
		c.runBF16(out, x, beta != 0, scratch)
		return
	}
	if c.direct() {
		sgemm(false, false, c.cout, hw, c.cin, 1, w, c.cin, x, hw, beta, out, hw)
		applyAct(c.act, out, c.cout, hw, 0, hw)
		return
	}
	kdim := c.cin * c.k * c.k
	t := c.tile()
	for p0 := 0; p0 < hw; p0 += t {
		n := min(t, hw-p0)
		col := scratch[:kdim*n]
		c.im2col(x, col, p0, n)
		sgemm(false, false, c.cout, n, kdim, 1, w, kdim, col, n, beta, out[p0:], hw)
		applyAct(c.act, out, c.cout, hw, p0, n)
	}
}

// runWinograd computes the convolution with Winograd transforms. A residual is put in out
// first (unless out already is the residual's buffer) and accumulated by the output transform,
// which also applies a ReLU; another activation takes one more pass.
func (c *convKernel) runWinograd(out, x, tw, bias, chanBias, residual, scratch []float32) {
	b := bias
	if chanBias != nil {
		b = c.sumBias
		for i := range b {
			b[i] = chanBias[i]
			if bias != nil {
				b[i] += bias[i]
			}
		}
	}
	var ep conv.Epilogue
	if residual != nil {
		if &residual[0] != &out[0] {
			parallelFor(len(out), 1<<16, func(lo, hi int) { copy(out[lo:hi], residual[lo:hi]) })
		}
		ep.Accumulate = true
	}
	act := c.act
	if act == ActReLU {
		ep.ReLU = true
		act = ""
	}
	c.wino.RunEpilogue(out, x, tw, b, scratch, ep)
	if act != "" {
		hw := c.ho * c.wo
		applyAct(act, out, c.cout, hw, 0, hw)
	}
}

// im2col fills col [Cin·k·k, n] with the input patches of output positions p0 … p0+n−1.
func (c *convKernel) im2col(x, col []float32, p0, n int) {
	kk := c.k * c.k
	parallelFor(c.cin*kk, 8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			ci, kr := r/kk, r%kk
			ky, kx := kr/c.k, kr%c.k
			dst := col[r*n : (r+1)*n]
			src := x[ci*c.h*c.w : (ci+1)*c.h*c.w]
			oy, ox := p0/c.wo, p0%c.wo
			for i := 0; i < n; {
				iy := oy*c.stride + ky - c.pad
				run := min(c.wo-ox, n-i)
				if iy < 0 || iy >= c.h {
					clear(dst[i : i+run])
				} else {
					srow := src[iy*c.w : (iy+1)*c.w]
					if c.stride == 1 {
						// Output column ox+j reads input column ox+j+kx−pad: one copy for the
						// part inside the row, zeros for the padding at either end.
						d := dst[i : i+run]
						off := ox + kx - c.pad
						lo := max(0, -off)
						hi := min(run, c.w-off)
						if hi <= lo {
							clear(d)
						} else {
							clear(d[:lo])
							copy(d[lo:hi], srow[off+lo:off+hi])
							clear(d[hi:])
						}
					} else {
						for j := 0; j < run; j++ {
							ix := (ox+j)*c.stride + kx - c.pad
							if ix >= 0 && ix < c.w {
								dst[i+j] = srow[ix]
							} else {
								dst[i+j] = 0
							}
						}
					}
				}
				i += run
				ox = 0
				oy++
			}
		}
	})
}

// ---- linear ----

type linearKernel struct {
	n, in, out int
	// bias [Out] and a residual [N, Out] to add follow x and the weight when present.
	bias, residual bool
	// bw, when set, holds the weight in bf16 (the weight input is then a placeholder).
	bw *kernels.BF16Matrix
}

func (l *linearKernel) scratchSize() int { return 0 }
func (l *linearKernel) inplace() int {
	if !l.residual {
		return -1
	}
	if l.bias {
		return 3
	}
	return 2
}

func (l *linearKernel) run(out []float32, in [][]float32, _ []float32) {
	x, w := in[0], in[1]
	var bias, residual []float32
	if l.bias {
		bias = in[2]
	}
	if l.residual {
		residual = in[l.inplace()]
	}
	beta := float32(0)
	switch {
	case residual != nil:
		if &residual[0] != &out[0] {
			copy(out, residual)
		}
		if bias != nil {
			for i := 0; i < l.n; i++ {
				row := out[i*l.out : (i+1)*l.out]
				for j, b := range bias {
					row[j] += b
				}
			}
		}
		beta = 1
	case bias != nil:
		for i := 0; i < l.n; i++ {
			copy(out[i*l.out:(i+1)*l.out], bias)
		}
		beta = 1
	}
	if l.bw != nil {
		kernels.GemmBF16Right(x, l.n, l.in, l.bw, out, l.out, beta != 0)
		return
	}
	sgemm(false, true, l.n, l.out, l.in, 1, x, l.in, w, l.in, beta, out, l.out)
}

// runBF16 computes the convolution with its bf16 weight, im2col chunk by chunk (accumulate
// tells that out already holds biases or a residual to add to).
func (c *convKernel) runBF16(out, x []float32, accumulate bool, scratch []float32) {
	hw := c.ho * c.wo
	if c.direct() {
		kernels.GemmBF16Left(c.bw, x, hw, hw, out, hw, accumulate)
		applyAct(c.act, out, c.cout, hw, 0, hw)
		return
	}
	kdim := c.cin * c.k * c.k
	t := c.tile()
	for p0 := 0; p0 < hw; p0 += t {
		n := min(t, hw-p0)
		col := scratch[:kdim*n]
		c.im2col(x, col, p0, n)
		kernels.GemmBF16Left(c.bw, col, n, n, out[p0:], hw, accumulate)
		applyAct(c.act, out, c.cout, hw, p0, n)
	}
}

// ---- normalisation ----

type groupNormKernel struct {
	c, s, groups int
	eps          float64
	silu         bool
}

func (g *groupNormKernel) scratchSize() int { return 0 }
func (g *groupNormKernel) inplace() int     { return 0 }

func (g *groupNormKernel) run(out []float32, in [][]float32, _ []float32) {
	x, gamma, beta := in[0], in[1], in[2]
	cg := g.c / g.groups
	parallelFor(g.groups, 1, func(lo, hi int) {
		for gi := lo; gi < hi; gi++ {
			seg := x[gi*cg*g.s : (gi+1)*cg*g.s]
			mean, rstd := meanRstd(seg, g.eps)
			for cc := 0; cc < cg; cc++ {
				ch := gi*cg + cc
				a := float32(rstd) * gamma[ch]
				b := beta[ch] - float32(mean)*a
				src := x[ch*g.s : (ch+1)*g.s]
				dst := out[ch*g.s : (ch+1)*g.s]
				if g.silu {
					kernels.ScaleShiftSiLU(dst, src, a, b)
				} else {
					kernels.ScaleShift(dst, src, a, b)
				}
			}
		}
	})
}

// meanRstd returns the mean and 1/sqrt(var+eps) of x (biased variance), summed in float64.
func meanRstd(x []float32, eps float64) (float64, float64) {
	mean, variance := kernels.MeanVar(x)
	return mean, 1 / math.Sqrt(variance+eps)
}

type layerNormKernel struct {
	rows, c int
	eps     float64
}

func (l *layerNormKernel) scratchSize() int { return 0 }
func (l *layerNormKernel) inplace() int     { return 0 }

func (l *layerNormKernel) run(out []float32, in [][]float32, _ []float32) {
	x, gamma, beta := in[0], in[1], in[2]
	parallelFor(l.rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			src := x[r*l.c : (r+1)*l.c]
			dst := out[r*l.c : (r+1)*l.c]
			mean, rstd := meanRstd(src, l.eps)
			kernels.LayerNormRow(dst, src, gamma, beta, float32(mean), float32(rstd))
		}
	})
}

// ---- attention ----

type attentionKernel struct {
	nq, nk, c, heads int
	causal           bool
	// bf16 computes both products with bf16 operands (queries, keys, probabilities and
	// values rounded to bfloat16, as torch.bfloat16 does) and float32 accumulation, for up to
	// attnRowsBF16 query rows at once; kb and vb hold one head's keys and values packed for
	// them (a Program runs one at a time).
	bf16   bool
	kb, vb kernels.BF16Matrix
}

// attnRows is the number of query rows whose scores are held at once (attnRowsBF16 in bf16:
// the keys and values are packed once per head, so fewer, larger products pay).
const (
	attnRows     = 256
	attnRowsBF16 = 1024
	// attnMinBF16 is the fewest scores (query rows × keys) for which bf16 mode runs attention's
	// products in bf16 (BenchmarkAttention).
	attnMinBF16 = 512 * 512
)

func (a *attentionKernel) rows() int {
	if a.bf16 {
		return min(attnRowsBF16, a.nq)
	}
	return min(attnRows, a.nq)
}

func (a *attentionKernel) scratchSize() int { return a.rows() * a.nk }
func (a *attentionKernel) inplace() int     { return -1 }

func (a *attentionKernel) run(out []float32, in [][]float32, scratch []float32) {
	q, k, v := in[0], in[1], in[2]
	d := a.c / a.heads
	scale := float32(1 / math.Sqrt(float64(d)))
	n := a.rows()
	for h := 0; h < a.heads; h++ {
		if a.bf16 { // this head's keys and values, packed once for all its query rows
			a.kb.PackRight(k[h*d:], a.nk, d, a.c)
			a.vb.PackRightTransposed(v[h*d:], a.nk, d, a.c)
		}
		for r0 := 0; r0 < a.nq; r0 += n {
			rows := min(n, a.nq-r0)
			s := scratch[:rows*a.nk]
			o := out[r0*a.c+h*d:]
			if a.bf16 {
				kernels.GemmBF16Right(q[r0*a.c+h*d:], rows, a.c, &a.kb, s, a.nk, false)
				a.softmax(s, rows, r0, scale)
				kernels.GemmBF16Right(s, rows, a.nk, &a.vb, o, a.c, false)
				continue
			}
			sgemm(false, true, rows, a.nk, d, scale, q[r0*a.c+h*d:], a.c, k[h*d:], a.c, 0, s, a.nk)
			a.softmax(s, rows, r0, 1)
			sgemm(false, false, rows, d, a.nk, 1, s, a.nk, v[h*d:], a.c, 0, o, a.c)
		}
	}
}

// softmax replaces each of the rows of scores s (query rows r0, r0+1, …) with the softmax of
// scale times it (scale 1: as it is), masking the keys after the query in a causal kernel.
func (a *attentionKernel) softmax(s []float32, rows, r0 int, scale float32) {
	parallelFor(rows, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := s[r*a.nk : (r+1)*a.nk]
			if scale != 1 {
				kernels.ScaleShift(row, row, scale, 0)
			}
			if a.causal {
				for j := r0 + r + 1; j < a.nk; j++ {
					row[j] = float32(math.Inf(-1))
				}
			}
			softmaxRow(row)
		}
	})
}

// softmaxRow replaces row with its softmax (vectorised, max-subtracted; −Inf entries become 0).
func softmaxRow(row []float32) { kernels.SoftmaxInPlace(row) }

// ---- element-wise ----

type addKernel struct{}

func (addKernel) scratchSize() int { return 0 }
func (addKernel) inplace() int     { return 0 }
func (addKernel) run(out []float32, in [][]float32, _ []float32) {
	a, b := in[0], in[1]
	parallelFor(len(out), 1<<14, func(lo, hi int) { kernels.Add(out[lo:hi], a[lo:hi], b[lo:hi]) })
}

type addChannelKernel struct{ c, s int }

func (addChannelKernel) scratchSize() int { return 0 }
func (addChannelKernel) inplace() int     { return 0 }
func (k addChannelKernel) run(out []float32, in [][]float32, _ []float32) {
	x, v := in[0], in[1]
	for c := 0; c < k.c; c++ {
		bv := v[c]
		kernels.ScaleShift(out[c*k.s:(c+1)*k.s], x[c*k.s:(c+1)*k.s], 1, bv)
	}
}

type unaryKernel struct{ f func(dst, src []float32) }

func (unaryKernel) scratchSize() int { return 0 }
func (unaryKernel) inplace() int     { return 0 }
func (u unaryKernel) run(out []float32, in [][]float32, _ []float32) {
	src := in[0]
	parallelFor(len(out), 1<<14, func(lo, hi int) { u.f(out[lo:hi], src[lo:hi]) })
}

func siluSlice(dst, src []float32) {
	if len(src) > 0 && &dst[0] != &src[0] {
		copy(dst, src)
	}
	kernels.SiLUInPlace(dst[:len(src)])
}

func geluSlice(dst, src []float32) {
	if len(src) > 0 && &dst[0] != &src[0] {
		copy(dst, src)
	}
	kernels.GELUInPlace(dst[:len(src)])
}

// quickGELUSlice computes x·σ(1.702x) as SiLU(1.702x)/1.702 on the vectorised SiLU (a few
// float32 roundings from the direct formula: relative 3e-7).
func quickGELUSlice(dst, src []float32) {
	dst = dst[:len(src)]
	kernels.ScaleShift(dst, src, 1.702, 0)
	kernels.SiLUInPlace(dst)
	kernels.ScaleShift(dst, dst, 1/1.702, 0)
}

func reluSlice(dst, src []float32) {
	if len(src) > 0 && &dst[0] != &src[0] {
		copy(dst, src)
	}
	kernels.ReLUInPlace(dst[:len(src)])
}

type gegluKernel struct{ n, f int }

func (gegluKernel) scratchSize() int { return 0 }
func (gegluKernel) inplace() int     { return -1 }
func (g gegluKernel) run(out []float32, in [][]float32, _ []float32) {
	x := in[0]
	parallelFor(g.n, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			val := x[r*2*g.f : r*2*g.f+g.f]
			gate := x[r*2*g.f+g.f : (r+1)*2*g.f]
			dst := out[r*g.f : (r+1)*g.f]
			geluSlice(dst, gate)
			kernels.Mul(dst, dst, val)
		}
	})
}

// ---- data movement ----

type transposeKernel struct{ rows, cols int }

func (transposeKernel) scratchSize() int { return 0 }
func (transposeKernel) inplace() int     { return -1 }
func (t transposeKernel) run(out []float32, in [][]float32, _ []float32) {
	x := in[0]
	const bs = 16
	parallelFor((t.rows+bs-1)/bs, 4, func(lo, hi int) {
		kernels.TransposeRows(out, x, t.rows, t.cols, lo*bs, min(hi*bs, t.rows))
	})
}

type copyKernel struct{}

func (copyKernel) scratchSize() int { return 0 }
func (copyKernel) inplace() int     { return 0 }
func (copyKernel) run(out []float32, in [][]float32, _ []float32) {
	if &out[0] != &in[0][0] {
		copy(out, in[0])
	}
}

type concatKernel struct{ sizes []int }

func (concatKernel) scratchSize() int { return 0 }
func (concatKernel) inplace() int     { return -1 }
func (c concatKernel) run(out []float32, in [][]float32, _ []float32) {
	off := 0
	for i, x := range in {
		dst, src := out[off:off+c.sizes[i]], x[:c.sizes[i]]
		parallelFor(len(dst), 1<<16, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
		off += c.sizes[i]
	}
}

type upsampleKernel struct{ c, h, w, ho, wo int }

func (upsampleKernel) scratchSize() int { return 0 }
func (upsampleKernel) inplace() int     { return -1 }
func (u upsampleKernel) run(out []float32, in [][]float32, _ []float32) {
	x := in[0]
	xi := nearestIndex(u.w, u.wo)
	yi := nearestIndex(u.h, u.ho)
	parallelFor(u.c, 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			src := x[c*u.h*u.w : (c+1)*u.h*u.w]
			dst := out[c*u.ho*u.wo : (c+1)*u.ho*u.wo]
			for oy := 0; oy < u.ho; oy++ {
				drow := dst[oy*u.wo : (oy+1)*u.wo]
				if oy > 0 && yi[oy] == yi[oy-1] { // the row above, again
					copy(drow, dst[(oy-1)*u.wo:oy*u.wo])
					continue
				}
				srow := src[yi[oy]*u.w : (yi[oy]+1)*u.w]
				if u.wo == 2*u.w {
					for i, v := range srow {
						drow[2*i], drow[2*i+1] = v, v
					}
					continue
				}
				for ox := range drow {
					drow[ox] = srow[xi[ox]]
				}
			}
		}
	})
}

// nearestIndex maps each of out positions to its source among in positions the way PyTorch's
// "nearest" interpolation does: floor(dst · in/out) computed in float32, clamped.
func nearestIndex(in, out int) []int {
	idx := make([]int, out)
	scale := float32(in) / float32(out)
	for i := range idx {
		s := int(float32(math.Floor(float64(float32(i) * scale))))
		if out == 2*in {
			s = i / 2
		}
		idx[i] = min(s, in-1)
	}
	return idx
}

type padKernel struct{ c, h, w, top, left, ho, wo int }

func (padKernel) scratchSize() int { return 0 }
func (padKernel) inplace() int     { return -1 }
func (k padKernel) run(out []float32, in [][]float32, _ []float32) {
	x := in[0]
	parallelFor(k.c, 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			dst := out[c*k.ho*k.wo : (c+1)*k.ho*k.wo]
			src := x[c*k.h*k.w : (c+1)*k.h*k.w]
			clear(dst[:k.top*k.wo])
			for y := 0; y < k.h; y++ {
				row := dst[(y+k.top)*k.wo : (y+k.top+1)*k.wo]
				clear(row[:k.left])
				copy(row[k.left:], src[y*k.w:(y+1)*k.w])
				clear(row[k.left+k.w:])
			}
			clear(dst[(k.top+k.h)*k.wo:])
		}
	})
}

type embeddingKernel struct{ v, d int }

func (embeddingKernel) scratchSize() int { return 0 }
func (embeddingKernel) inplace() int     { return -1 }
func (e embeddingKernel) run(out []float32, in [][]float32, _ []float32) {
	table, ids := in[0], in[1]
	for i, f := range ids {
		id := int(f)
		if id < 0 || id >= e.v {
			// Ids are checked before a run; an out-of-range id gives a zero row, never a panic.
			clear(out[i*e.d : (i+1)*e.d])
			continue
		}
		copy(out[i*e.d:(i+1)*e.d], table[id*e.d:(id+1)*e.d])
	}
}
