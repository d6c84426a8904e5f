package conv

import (
	"fmt"
	"unsafe"

	"github.com/sdxs-go/sdxs/internal/kernels"
)

// The lazy mode.
//
// Transformed weights take 36 floats per (output, input) channel pair against the 9 of the
// weight: a plan in the lazy mode (NewWinogradLazy) keeps only the 9 taps, packed for the
// transform (PrepareWeights), and transforms them again on every run, one group of lazyRows
// output channels and lazyKB input channels at a time, into a worker's scratch (under 1 MB, so
// that it stays in the L2 cache for the 36 products that read it back). The transform is about
// 9 vector operations per channel pair, against 36·tiles multiply-adds of the products. Only
// plans that would share their chunks between goroutines (Cin·Cout above privateMaxMACs) go
// lazy: the small layers' transformed weights are small.

// Blocking of the lazy mode (variables so that benchmarks can try others; see BenchmarkLazy):
// a worker transforms the weights of lazyRows output channels (a multiple of gemmGroup) and
// lazyKB input channels (even) at a time, and runs their 36 products before the next block.
// More rows read the transformed tiles V fewer times; fewer input channels keep the block in
// the L2 cache.
var (
	lazyRows = 48
	lazyKB   = 128
)

// lazyScratch returns the floats of one worker's transformed-weight block in the lazy mode.
// The planes of the 36 positions ξ lie lazyPad floats more than a block apart: at a stride that
// is a multiple of 4 KiB, the transform's 36 stores of each step would fall into one set of the
// L1 cache and evict one another.
func lazyScratch() int { return nXi * (lazyRows*lazyKB + lazyPad) }

const lazyPad = 16

// NewWinogradLazy is NewWinogradPad for a plan that keeps its weights untransformed (see the
// lazy mode above), as float32 or, with bf16, as bfloat16 values (half the bytes; the plan then
// computes with the weights rounded to bfloat16, exactly, in float32). The plan goes lazy only
// when Cin·Cout is above the private size and Cin is even; Lazy reports whether it did. Either
// way, PrepareWeights gives the weights Run takes.
func NewWinogradLazy(cin, cout, h, w, pad int, bf16 bool) *Winograd {
	p := NewWinogradPad(cin, cout, h, w, pad)
	if !p.private && cin%2 == 0 {
		p.lazy, p.lazy16 = true, bf16
		p.packed = true // the products run on the packed kernels (or their plain-Go twin)
		p.cached = ceilDiv(p.tiles, p.chunk) >= lazyCacheMinChunks && int64(nXi*p.cachedStride())*4 <= lazyCacheMaxBytes
	}
	return p
}

// A lazy plan whose image takes lazyCacheMinChunks chunks or more transforms all its weights
// once per run into its scratch (at most lazyCacheMaxBytes), and runs its products on them as a
// plan with transformed weights does: transforming them again for every chunk, and reading
// every chunk's transformed tiles once per group of output channels, cost a large image (the KL
// VAE's 512 channels at 128×128: 13 chunks) a quarter of its time.
var (
	lazyCacheMinChunks       = 8
	lazyCacheMaxBytes  int64 = 64 << 20
)

// cachedStride returns the floats between the planes of the weights a cached lazy plan
// transforms: one position ξ of packed weights, 64 bytes more so that the 36 planes do not fall
// into one cache set.
func (p *Winograd) cachedStride() int { return padRows(p.cout)*p.cin + lazyPad }

// cacheWeights transforms the taps src of panel part/nk (8 output channels) and block part%nk
// of gemmKB input channels into u (36 planes of cachedStride floats, laid out as
// TransformWeights lays them out in a plane).
func (p *Winograd) cacheWeights(u, src []float32, part int) {
	nk := ceilDiv(p.cin, gemmKB)
	panel, k0 := part/nk, part%nk*gemmKB
	klen := min(gemmKB, p.cin-k0)
	p.transformPanel(u[k0*padRows(p.cout)+panel*klen*8:], p.cachedStride(), src, panel, k0, klen)
}

// transformPanel transforms the taps src of output channels [8·panel, 8·panel+8) and input
// channels [k0, k0+klen) (klen even) into dst: position ξ of input channel k0+i and output
// channel 8·panel+l at dst[ξ·ldp + 8i + l], as blockIndex lays out one panel of a block.
func (p *Winograd) transformPanel(dst []float32, ldp int, src []float32, panel, k0, klen int) {
	off := (panel*(p.cin/2) + k0/2) * 9 * 16
	n := klen / 2
	if p.lazy16 {
		weightPairsBF16(dst, ldp, taps16(src)[off:off+n*9*16], n)
		return
	}
	weightPairs(dst, ldp, src[off:off+n*9*16], n)
}

// taps16 returns the bfloat16 taps a lazy bf16 plan keeps, two to each float32 slot of s.
func taps16(s []float32) []uint16 {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&s[0])), 2*len(s))
}

// LazyFast reports whether the lazy mode runs on assembly kernels on this CPU: without them
// its products run on plain Go, far slower than a transformed-weight plan on kernels.Sgemm.
func LazyFast() bool { return useAVX512 && useLazyAsm }

// Lazy reports whether the plan keeps its weights untransformed.
func (p *Winograd) Lazy() bool { return p.lazy }

// WeightsSize returns the length of the weights PrepareWeights returns for this plan.
func (p *Winograd) WeightsSize() int {
	if !p.lazy {
		return p.TransformedSize()
	}
	n := padRows(p.cout) * p.cin * 9
	if p.lazy16 {
		return n / 2
	}
	return n
}

// WeightsKind names the form PrepareWeights gives ("winograd4x4", "winograd-taps" or
// "winograd-taps-bf16"): plans of one kind over the same channel counts take the same weights,
// whatever their image size.
func (p *Winograd) WeightsKind() string {
	switch {
	case !p.lazy:
		return "winograd4x4"
	case p.lazy16:
		return "winograd-taps-bf16"
	}
	return "winograd-taps"
}

// PrepareWeights returns the weights Run takes, made from w ([Cout, Cin, 3, 3], as in PyTorch):
// the transformed weights (TransformWeights), or in the lazy mode the taps packed for the
// transform (as float32, or two bfloat16 values in each float32 slot: an opaque layout). Call
// it once per weight tensor and keep the result. It panics when w has the wrong length.
func (p *Winograd) PrepareWeights(w []float32) []float32 {
	if !p.lazy {
		return p.TransformWeights(w)
	}
	if len(w) != p.cout*p.cin*9 {
		panic(fmt.Sprintf("conv: PrepareWeights: %d weights, want %d·%d·9 = %d", len(w), p.cout, p.cin, p.cout*p.cin*9))
	}
	out := make([]float32, p.WeightsSize())
	o16 := taps16(out)
	for o := 0; o < p.cout; o++ {
		for i := 0; i < p.cin; i++ {
			for tap := 0; tap < 9; tap++ {
				v := w[(o*p.cin+i)*9+tap]
				j := tapIndex(o, i, tap, p.cin)
				if p.lazy16 {
					o16[j] = kernels.ToBF16(v)
				} else {
					out[j] = v
				}
			}
		}
	}
	return out
}

// tapIndex returns the position of tap of the weight (o, i) in packed taps: panels of 8 output
// channels, each holding pairs of input channels, each 9 taps of 16 lanes (the pair's first
// channel's 8 rows, then its second's).
func tapIndex(o, i, tap, cin int) int {
	return (((o/8)*(cin/2)+i/2)*9+tap)*16 + (i%2)*8 + o%8
}

// Constants of the weight transform.
var (
	wc4  = float32(1.0 / 4)
	wcm6 = float32(-1.0 / 6)
	wc24 = float32(1.0 / 24)
	wc6  = float32(1.0 / 6)
	wc12 = float32(1.0 / 12)
)

// gTriple applies G to (a, b, c): the six values G·(a, b, c)ᵀ, rounded after every operation
// as the assembly kernels compute them.
func gTriple(a, b, c float32) [6]float32 {
	s := a + c
	q := float32(a*wc24) + float32(c*wc6)
	w := b * wc12
	return [6]float32{a * wc4, float32(s+b) * wcm6, float32(s-b) * wcm6, q + w, q - w, c}
}

// weightPairsGo transforms n pairs of input channels of one panel of 8 output channels from
// packed taps src (see tapIndex) into dst: transformed position ξ of lane l (the pair's first
// channel's 8 rows, then its second's) of pair j at dst[ξ·ldp + 16j + l].
func weightPairsGo(dst []float32, ldp int, src []float32, n int) {
	weightPairsOf(dst, ldp, n, func(k int) float32 { return src[k] })
}

// weightPairsBF16Go is weightPairsGo on bfloat16 taps.
func weightPairsBF16Go(dst []float32, ldp int, src []uint16, n int) {
	weightPairsOf(dst, ldp, n, func(k int) float32 { return kernels.FromBF16(src[k]) })
}

// weightPairsOf is weightPairsGo with tap k of the packed taps given by tap.
func weightPairsOf(dst []float32, ldp, n int, tap func(k int) float32) {
	for j := 0; j < n; j++ {
		for l := 0; l < 16; l++ {
			var g [9]float32
			for t := range g {
				g[t] = tap((j*9+t)*16 + l)
			}
			weightLane(dst[16*j+l:], ldp, &g)
		}
	}
}

// weightLane writes U = G g Gᵀ of one 3×3 weight g to dst[ξ·ldp].
func weightLane(dst []float32, ldp int, g *[9]float32) {
	var t [6][3]float32
	for c := 0; c < 3; c++ {
		y := gTriple(g[c], g[3+c], g[6+c])
		for r := range y {
			t[r][c] = y[r]
		}
	}
	for r := 0; r < 6; r++ {
		y := gTriple(t[r][0], t[r][1], t[r][2])
		for c, v := range y {
			dst[(r*6+c)*ldp] = v
		}
	}
}

// lazyGroup computes the products M_ξ = U_ξ·V_ξ of the output channels [lazyRows·g,
// lazyRows·(g+1)) for every ξ, transforming their weights block by block into us (lazyScratch
// floats).
func (p *Winograd) lazyGroup(v, m, src, us []float32, nt, g int) {
	o0 := g * lazyRows
	rows := min(lazyRows, p.cout-o0)
	rp := padRows(rows)
	ld := nXi * p.ldt
	for k0 := 0; k0 < p.cin; k0 += lazyKB {
		klen := min(lazyKB, p.cin-k0)
		ldp := rp*klen + lazyPad
		for q := 0; q < rp/8; q++ {
			p.transformPanel(us[q*klen*8:(nXi-1)*ldp+(q+1)*klen*8], ldp, src, o0/8+q, k0, klen)
		}
		for xi := 0; xi < nXi; xi++ {
			gemmBlock(us[xi*ldp:xi*ldp+rp*klen], v[xi*p.ldt+k0*ld:], m[o0*ld+xi*p.ldt:], ld, klen, rows, nt, k0 > 0)
		}
	}
}
