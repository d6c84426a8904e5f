package nn

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

type memSource map[string]struct {
	d []float32
	s []int
}

func (m memSource) Float32(name string) ([]float32, []int, error) {
	v, ok := m[name]
	if !ok {
		return nil, nil, fmt.Errorf("no tensor %q", name)
	}
	return append([]float32(nil), v.d...), v.s, nil
}

func (m memSource) Names() []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func randn(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func (m memSource) add(r *rand.Rand, name string, shape ...int) []float32 {
	d := randn(r, len1(shape))
	m[name] = struct {
		d []float32
		s []int
	}{d, shape}
	return d
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if d > m || math.IsNaN(d) {
			m = d
		}
	}
	return m
}

// naiveConv is a direct convolution in float64.
func naiveConv(x []float32, cin, h, w int, wt []float32, cout, k int, bias []float32, stride, pad int) ([]float32, int, int) {
	ho := (h+2*pad-k)/stride + 1
	wo := (w+2*pad-k)/stride + 1
	out := make([]float32, cout*ho*wo)
	for co := 0; co < cout; co++ {
		for oy := 0; oy < ho; oy++ {
			for ox := 0; ox < wo; ox++ {
				var s float64
				if bias != nil {
					s = float64(bias[co])
				}
				for ci := 0; ci < cin; ci++ {
					for ky := 0; ky < k; ky++ {
						for kx := 0; kx < k; kx++ {
							iy, ix := oy*stride+ky-pad, ox*stride+kx-pad
							if iy < 0 || iy >= h || ix < 0 || ix >= w {
								continue
							}
							s += float64(x[(ci*h+iy)*w+ix]) * float64(wt[((co*cin+ci)*k+ky)*k+kx])
						}
					}
				}
				out[(co*ho+oy)*wo+ox] = float32(s)
			}
		}
	}
	return out, ho, wo
}

func TestConvMatchesDirect(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ cin, h, w, cout, k, stride, pad int }{
		{3, 7, 5, 4, 3, 1, 1},
		{5, 9, 11, 7, 3, 2, 1},
		{4, 6, 6, 3, 1, 1, 0},
		{2, 5, 8, 3, 3, 1, 0},
		{17, 13, 3, 5, 3, 2, 1},
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			src := memSource{}
			wt := src.add(r, "c.weight", tc.cout, tc.cin, tc.k, tc.k)
			bias := src.add(r, "c.bias", tc.cout)
			x := randn(r, tc.cin*tc.h*tc.w)
			prog, err := Build(NewParams(src), func(b *Builder) map[string]*Node {
				in := b.Input("x", tc.cin, tc.h, tc.w)
				return map[string]*Node{"y": b.ConvLayer("c", in, tc.cout, tc.k, tc.stride, tc.pad, true)}
			})
			require.NoError(t, err)
			want, ho, wo := naiveConv(x, tc.cin, tc.h, tc.w, wt, tc.cout, tc.k, bias, tc.stride, tc.pad)
			require.Equal(t, []int{tc.cout, ho, wo}, prog.OutputShape("y"))
			got := make([]float32, len(want))
			require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"y": got}))
			require.Less(t, maxAbsDiff(got, want), 1e-4)
		})
	}
}

func TestConvTiledIm2col(t *testing.T) {
	// Enough input channels that the im2col buffer is split into several column tiles.
	r := rand.New(rand.NewPCG(3, 4))
	cin, h, w, cout := 1000, 37, 41, 3
	src := memSource{}
	wt := src.add(r, "c.weight", cout, cin, 3, 3)
	x := randn(r, cin*h*w)
	require.Greater(t, (&convKernel{cin: cin, h: h, w: w, cout: cout, k: 3, stride: 1, pad: 1, ho: h, wo: w}).scratchSize(), 0)
	require.Less(t, (&convKernel{cin: cin, h: h, w: w, cout: cout, k: 3, stride: 1, pad: 1, ho: h, wo: w}).tile(), h*w, "the test must split im2col into tiles")
	prog, err := Build(NewParams(src), func(b *Builder) map[string]*Node {
		return map[string]*Node{"y": b.ConvLayer("c", b.Input("x", cin, h, w), cout, 3, 1, 1, false)}
	})
	require.NoError(t, err)
	want, _, _ := naiveConv(x, cin, h, w, wt, cout, 3, nil, 1, 1)
	got := make([]float32, len(want))
	require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"y": got}))
	require.Less(t, maxAbsDiff(got, want), 5e-3) // sums of 9000 products of size ~95
}

func naiveAttention(q, k, v []float32, nq, nk, c, heads int, causal bool) []float32 {
	d := c / heads
	out := make([]float32, nq*c)
	for h := 0; h < heads; h++ {
		for i := 0; i < nq; i++ {
			s := make([]float64, nk)
			m := math.Inf(-1)
			for j := 0; j < nk; j++ {
				if causal && j > i {
					s[j] = math.Inf(-1)
					continue
				}
				var dot float64
				for e := 0; e < d; e++ {
					dot += float64(q[i*c+h*d+e]) * float64(k[j*c+h*d+e])
				}
				s[j] = dot / math.Sqrt(float64(d))
				m = math.Max(m, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - m)
				sum += s[j]
			}
			for e := 0; e < d; e++ {
				var acc float64
				for j := 0; j < nk; j++ {
					acc += s[j] / sum * float64(v[j*c+h*d+e])
				}
				out[i*c+h*d+e] = float32(acc)
			}
		}
	}
	return out
}

func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		nq, nk, c, heads int
		causal           bool
	}{
		{7, 7, 12, 3, true},
		{300, 13, 16, 2, false},
		{33, 300, 10, 5, false},
	} {
		q, k, v := randn(r, tc.nq*tc.c), randn(r, tc.nk*tc.c), randn(r, tc.nk*tc.c)
		prog, err := Build(NewParams(memSource{}), func(b *Builder) map[string]*Node {
			return map[string]*Node{"o": b.Attention(b.Input("q", tc.nq, tc.c), b.Input("k", tc.nk, tc.c), b.Input("v", tc.nk, tc.c), tc.heads, tc.causal)}
		})
		require.NoError(t, err)
		got := make([]float32, tc.nq*tc.c)
		require.NoError(t, prog.Run(context.Background(), map[string][]float32{"q": q, "k": k, "v": v}, map[string][]float32{"o": got}))
		require.Less(t, maxAbsDiff(got, naiveAttention(q, k, v, tc.nq, tc.nk, tc.c, tc.heads, tc.causal)), 1e-4, "%+v", tc)
	}
}

func TestGroupNormAndLayerNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	src := memSource{}
	c, h, w, groups := 12, 5, 3, 4
	g := src.add(r, "gn.weight", c)
	bb := src.add(r, "gn.bias", c)
	lg := src.add(r, "ln.weight", w)
	lb := src.add(r, "ln.bias", w)
	x := randn(r, c*h*w)
	prog, err := Build(NewParams(src), func(b *Builder) map[string]*Node {
		in := b.Input("x", c, h, w)
		return map[string]*Node{
			"gn": b.GroupNorm("gn", in, groups, 1e-5, true),
			"ln": b.LayerNorm("ln", b.Reshape(in, c*h, w), 1e-5),
		}
	})
	require.NoError(t, err)
	gn := make([]float32, c*h*w)
	ln := make([]float32, c*h*w)
	require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"gn": gn, "ln": ln}))
	cg := c / groups
	for gi := 0; gi < groups; gi++ {
		seg := x[gi*cg*h*w : (gi+1)*cg*h*w]
		var m, v float64
		for _, e := range seg {
			m += float64(e)
		}
		m /= float64(len(seg))
		for _, e := range seg {
			v += (float64(e) - m) * (float64(e) - m)
		}
		v /= float64(len(seg))
		for i := range seg {
			ch := gi*cg + i/(h*w)
			y := (float64(seg[i])-m)/math.Sqrt(v+1e-5)*float64(g[ch]) + float64(bb[ch])
			y = y / (1 + math.Exp(-y))
			require.InDelta(t, y, gn[gi*cg*h*w+i], 1e-5)
		}
	}
	for row := 0; row < c*h; row++ {
		seg := x[row*w : (row+1)*w]
		var m, v float64
		for _, e := range seg {
			m += float64(e)
		}
		m /= float64(w)
		for _, e := range seg {
			v += (float64(e) - m) * (float64(e) - m)
		}
		v /= float64(w)
		for i := range seg {
			y := (float64(seg[i])-m)/math.Sqrt(v+1e-5)*float64(lg[i]) + float64(lb[i])
			require.InDelta(t, y, ln[row*w+i], 1e-5)
		}
	}
}

func TestUpsampleNearest(t *testing.T) {
	require.Equal(t, []int{0, 0, 1, 1, 2, 2}, nearestIndex(3, 6))
	// PyTorch: floor(i·(5/7)) in float32.
	require.Equal(t, []int{0, 0, 1, 2, 2, 3, 4}, nearestIndex(5, 7))

	// The kernel (2× rows and columns, and other ratios) against the definition.
	r := rand.New(rand.NewPCG(81, 82))
	const c, h, w = 3, 5, 7
	x := randn(r, c*h*w)
	for _, s := range [][2]int{{10, 14}, {7, 9}, {10, 9}, {5, 14}} {
		ho, wo := s[0], s[1]
		out := make([]float32, c*ho*wo)
		upsampleKernel{c: c, h: h, w: w, ho: ho, wo: wo}.run(out, [][]float32{x}, nil)
		yi, xi := nearestIndex(h, ho), nearestIndex(w, wo)
		for ch := 0; ch < c; ch++ {
			for y := 0; y < ho; y++ {
				for xx := 0; xx < wo; xx++ {
					require.Equal(t, x[ch*h*w+yi[y]*w+xi[xx]], out[ch*ho*wo+y*wo+xx], "%d×%d: (%d, %d, %d)", ho, wo, ch, y, xx)
				}
			}
		}
	}
}

// TestProgramMatchesTapeMachine runs one graph under Gorgonia's TapeMachine and under the
// Program, whose buffers are planned and reused, and expects the same numbers.
func TestProgramMatchesTapeMachine(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	src := memSource{}
	src.add(r, "conv.weight", 8, 4, 3, 3)
	src.add(r, "conv.bias", 8)
	src.add(r, "norm.weight", 8)
	src.add(r, "norm.bias", 8)
	src.add(r, "proj.weight", 8, 8)
	src.add(r, "proj.bias", 8)
	x := randn(r, 4*6*5)
	var out *Node
	prog, err := Build(NewParams(src), func(b *Builder) map[string]*Node {
		in := b.Input("x", 4, 6, 5)
		h := b.ConvLayer("conv", in, 8, 3, 1, 1, true)
		res := h
		h = b.GroupNorm("norm", h, 2, 1e-5, true)
		tok := b.Transpose(h, 30, 8)
		tok = b.LinearLayer("proj", tok, 8, true)
		tok = b.Attention(tok, tok, tok, 2, false)
		h = b.Transpose(tok, 8, 6, 5)
		h = b.Add(h, res)
		h = b.Upsample(b.Act(ActSiLU, h), 12, 10)
		out = b.Concat(h, h)
		return map[string]*Node{"y": out}
	})
	require.NoError(t, err)
	require.Equal(t, 10, prog.Steps(), "conv, norm, transpose, linear, attention, transpose, add, silu, upsample, concat")
	require.Positive(t, prog.ArenaBytes())
	got := make([]float32, 16*12*10)
	require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"y": got}))

	in := prog.Graph().ByName("input:x")[0]
	require.NoError(t, gorgonia.Let(in, tensor.New(tensor.WithShape(4, 6, 5), tensor.WithBacking(append([]float32(nil), x...)))))
	vm := gorgonia.NewTapeMachine(prog.Graph())
	defer vm.Close()
	require.NoError(t, vm.RunAll())
	want := out.Value().(*tensor.Dense).Float32s()
	require.Less(t, maxAbsDiff(got, want), 1e-5)

	// Running again gives the same result (buffers are reused, not corrupted).
	again := make([]float32, len(got))
	require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"y": again}))
	require.Equal(t, got, again)
}

func TestBuildErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	src := memSource{}
	src.add(r, "conv.weight", 8, 3, 3, 3)
	_, err := Build(NewParams(src), func(b *Builder) map[string]*Node {
		return map[string]*Node{"y": b.ConvLayer("conv", b.Input("x", 4, 6, 5), 8, 3, 1, 1, false)}
	})
	require.ErrorContains(t, err, `"conv.weight"`)
	require.ErrorContains(t, err, "[8 3 3 3]")
	require.ErrorContains(t, err, "[8 4 3 3]")
	_, err = Build(NewParams(src), func(b *Builder) map[string]*Node {
		return map[string]*Node{"y": b.ConvLayer("missing", b.Input("x", 3, 6, 5), 8, 3, 1, 1, false)}
	})
	require.ErrorContains(t, err, `"missing.weight" is missing`)
}

func TestRunCancelled(t *testing.T) {
	prog, err := Build(NewParams(memSource{}), func(b *Builder) map[string]*Node {
		return map[string]*Node{"y": b.Act(ActReLU, b.Input("x", 3))}
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = prog.Run(ctx, map[string][]float32{"x": {1, 2, 3}}, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, prog.Run(context.Background(), map[string][]float32{"x": {1}}, nil), `input "x"`)
}

// TestGorgoniaUsesFastSgemm checks that Gorgonia's own matrix product, run by its TapeMachine,
// goes through the fast SGEMM and gives the right numbers.
func TestGorgoniaUsesFastSgemm(t *testing.T) {
	useFastBLAS()
	r := rand.New(rand.NewPCG(13, 14))
	m, k, n := 37, 29, 41
	a, b := randn(r, m*k), randn(r, k*n)
	g := gorgonia.NewGraph()
	an := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(m, k), gorgonia.WithValue(tensor.New(tensor.WithShape(m, k), tensor.WithBacking(a))))
	bn := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(k, n), gorgonia.WithValue(tensor.New(tensor.WithShape(k, n), tensor.WithBacking(b))))
	cn, err := gorgonia.Mul(an, bn)
	require.NoError(t, err)
	vm := gorgonia.NewTapeMachine(g)
	defer vm.Close()
	require.NoError(t, vm.RunAll())
	got := cn.Value().(*tensor.Dense).Float32s()
	_, isFast := gorgonia.WhichBLAS().(fastBLAS)
	require.True(t, isFast)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			require.InDelta(t, s, got[i*n+j], 1e-4)
		}
	}
}

// TestConvFusedEpilogues checks convolutions with a channel bias, a residual and an activation
// fused in, on the im2col path and on the Winograd path (enough 4×4 tiles), against a direct
// convolution followed by the same steps.
func TestConvFusedEpilogues(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, tc := range []struct {
		cin, h, w, cout, k, pad int
		winograd                bool
	}{
		{5, 9, 7, 6, 3, 1, false},
		{3, 64, 64, 8, 3, 1, true},
		{7, 67, 61, 5, 3, 1, true},  // odd sizes: tiles straddle the edges
		{4, 70, 66, 3, 3, 0, true},  // no padding
		{6, 20, 20, 9, 1, 0, false}, // 1×1
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			src := memSource{}
			wt := src.add(r, "c.weight", tc.cout, tc.cin, tc.k, tc.k)
			bias := src.add(r, "c.bias", tc.cout)
			x := randn(r, tc.cin*tc.h*tc.w)
			want, ho, wo := naiveConv(x, tc.cin, tc.h, tc.w, wt, tc.cout, tc.k, bias, 1, tc.pad)
			cb := randn(r, tc.cout)
			res := randn(r, tc.cout*ho*wo)
			for c := 0; c < tc.cout; c++ {
				for i := 0; i < ho*wo; i++ {
					v := want[c*ho*wo+i] + cb[c] + res[c*ho*wo+i]
					want[c*ho*wo+i] = max(v, 0)
				}
			}
			var isWino bool
			prog, err := Build(NewParams(src), func(b *Builder) map[string]*Node {
				in := b.Input("x", tc.cin, tc.h, tc.w)
				ch := b.Input("cb", tc.cout)
				rn := b.Input("res", tc.cout, ho, wo)
				y := b.ConvLayerOpts("c", in, tc.cout, tc.k, 1, tc.pad, true, ConvOpts{ChannelBias: ch, Residual: rn, Act: ActReLU})
				isWino = y.Op().(*op).k.(*convKernel).wino != nil
				return map[string]*Node{"y": y}
			})
			require.NoError(t, err)
			require.Equal(t, tc.winograd, isWino, "Winograd path")
			got := make([]float32, len(want))
			require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x, "cb": cb, "res": res}, map[string][]float32{"y": got}))
			require.Less(t, maxAbsDiff(got, want), 1e-4)
		})
	}
}

// TestWinogradResidualInPlace gives a Winograd convolution a residual that dies with it, so the
// planner lets the convolution write over the residual's buffer and accumulate into it.
func TestWinogradResidualInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	cin, h, w, cout := 3, 66, 70, 5
	src := memSource{}
	wt := src.add(r, "c.weight", cout, cin, 3, 3)
	bias := src.add(r, "c.bias", cout)
	x := randn(r, cin*h*w)
	res := randn(r, cout*h*w)
	want, _, _ := naiveConv(x, cin, h, w, wt, cout, 3, bias, 1, 1)
	for i := range want {
		want[i] = max(want[i]+max(res[i], 0), 0)
	}
	var conv *Node
	prog, err := Build(NewParams(src), func(b *Builder) map[string]*Node {
		rn := b.Act(ActReLU, b.Input("res", cout, h, w)) // an intermediate, dead after the conv
		conv = b.ConvLayerOpts("c", b.Input("x", cin, h, w), cout, 3, 1, 1, true, ConvOpts{Residual: rn, Act: ActReLU})
		return map[string]*Node{"y": conv}
	})
	require.NoError(t, err)
	require.NotNil(t, conv.Op().(*op).k.(*convKernel).wino, "Winograd path")
	last := prog.steps[len(prog.steps)-1]
	require.Same(t, &last.ins[len(last.ins)-1][0], &last.out[0], "the convolution writes over its residual")
	got := make([]float32, len(want))
	for i := 0; i < 2; i++ {
		require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x, "res": res}, map[string][]float32{"y": got}))
		require.Less(t, maxAbsDiff(got, want), 1e-4)
	}
}

func TestPad(t *testing.T) {
	// x is 2 channels of 2×3: 1…6 and 7…12.
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	for _, tc := range []struct {
		top, bottom, left, right int
		want                     []float32
	}{
		// The KL encoder's downsampler: F.pad(x, (0, 1, 0, 1)).
		{0, 1, 0, 1, []float32{
			1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0, 0,
			7, 8, 9, 0, 10, 11, 12, 0, 0, 0, 0, 0}},
		{1, 0, 2, 0, []float32{
			0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 4, 5, 6,
			0, 0, 0, 0, 0, 0, 0, 7, 8, 9, 0, 0, 10, 11, 12}},
		{0, 0, 0, 0, x},
	} {
		t.Run(fmt.Sprint(tc.top, tc.bottom, tc.left, tc.right), func(t *testing.T) {
			prog, err := Build(NewParams(memSource{}), func(b *Builder) map[string]*Node {
				in := b.Input("x", 2, 2, 3)
				return map[string]*Node{"y": b.Pad(b.Affine(in, 1, 0), tc.top, tc.bottom, tc.left, tc.right)}
			})
			require.NoError(t, err)
			shape := []int{2, 2 + tc.top + tc.bottom, 3 + tc.left + tc.right}
			require.Equal(t, shape, prog.OutputShape("y"))
			got := make([]float32, len(tc.want))
			require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"y": got}))
			require.Equal(t, tc.want, got)
		})
	}
	_, err := Build(NewParams(memSource{}), func(b *Builder) map[string]*Node {
		return map[string]*Node{"y": b.Pad(b.Input("x", 2, 2, 3), -1, 0, 0, 0)}
	})
	require.ErrorContains(t, err, "negative padding")
}

// TestQuickGELU checks the vectorised quick GELU against x·σ(1.702x) in float64, on random
// values of several scales and the extremes (5e-6 relative: the vectorised exp of the SiLU kernel
// in the far negative tail, where the values are below 1e-13).
func TestQuickGELU(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	src := []float32{0, -0, 1, -1, 100, -100, 1e-30, -1e-30, 88, -88, float32(math.Inf(1))}
	for i := 0; i < 1000; i++ {
		src = append(src, float32(r.NormFloat64()*math.Exp(2*r.NormFloat64())))
	}
	dst := make([]float32, len(src))
	quickGELUSlice(dst, src)
	for i, x := range src {
		want := float64(x) / (1 + math.Exp(-1.702*float64(x)))
		if math.IsInf(float64(x), 1) {
			want = math.Inf(1)
		}
		if d := math.Abs(float64(dst[i]) - want); d > 5e-6*math.Abs(want)+1e-37 && !(math.IsInf(want, 1) && math.IsInf(float64(dst[i]), 1)) {
			t.Errorf("quickGELU(%g) = %g, want %g", x, dst[i], want)
		}
	}
}
