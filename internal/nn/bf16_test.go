package nn

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/kernels"
	"github.com/sdxs-go/sdxs/weights"
)

func roundBF16(s []float32) []float32 {
	out := make([]float32, len(s))
	for i, v := range s {
		out[i] = kernels.FromBF16(kernels.ToBF16(v))
	}
	return out
}

// TestConvLinearBF16 checks bf16 convolutions (3×3 padded, strided, 1×1, with fused channel
// bias, residual and ReLU; also sizes that would take Winograd in float32) and a linear layer
// with bias and residual against float64-accurate references computed from the bf16-rounded
// weights and inputs, and that the bf16 parameters hold half the bytes with no float32 copy.
func TestConvLinearBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct {
		cin, h, w, cout, k, stride, pad int
		winograd                        bool
	}{
		{5, 9, 7, 6, 3, 1, 1, false},
		{3, 64, 64, 8, 3, 1, 1, true},
		{7, 23, 19, 13, 3, 2, 1, false},
		{6, 20, 20, 9, 1, 1, 0, false}, // 1×1
		{33, 16, 16, 40, 3, 1, 1, false},
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			src := memSource{}
			wt := src.add(r, "c.weight", tc.cout, tc.cin, tc.k, tc.k)
			bias := src.add(r, "c.bias", tc.cout)
			x := randn(r, tc.cin*tc.h*tc.w)
			want, ho, wo := naiveConv(roundBF16(x), tc.cin, tc.h, tc.w, roundBF16(wt), tc.cout, tc.k, bias, tc.stride, tc.pad)
			exact, _, _ := naiveConv(x, tc.cin, tc.h, tc.w, wt, tc.cout, tc.k, bias, tc.stride, tc.pad)
			cb := randn(r, tc.cout)
			res := randn(r, tc.cout*ho*wo)
			for c := 0; c < tc.cout; c++ {
				for i := 0; i < ho*wo; i++ {
					want[c*ho*wo+i] += cb[c]
					exact[c*ho*wo+i] += cb[c]
				}
			}
			for i := range want {
				// The residual and the ReLU are float32: measure the products' error alone
				// against the exact result, before them.
				want[i], exact[i] = max(want[i]+res[i], 0), max(exact[i]+res[i], 0)
			}
			params := NewParams(src)
			params.SetPrecision(BF16)
			prog, err := Build(params, func(b *Builder) map[string]*Node {
				in := b.Input("x", tc.cin, tc.h, tc.w)
				ch := b.Input("cb", tc.cout)
				rn := b.Input("res", tc.cout, ho, wo)
				y := b.ConvLayerOpts("c", in, tc.cout, tc.k, tc.stride, tc.pad, true, ConvOpts{ChannelBias: ch, Residual: rn, Act: ActReLU})
				k := y.Op().(*op).k.(*convKernel)
				if tc.winograd {
					require.NotNil(t, k.wino, "Winograd")
					require.Nil(t, k.bw, "bf16 weight of a Winograd convolution")
				} else {
					require.NotNil(t, k.bw, "bf16 weight")
					require.Nil(t, k.wino, "Winograd")
				}
				return map[string]*Node{"y": y}
			})
			require.NoError(t, err)
			got := make([]float32, len(want))
			require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x, "cb": cb, "res": res}, map[string][]float32{"y": got}))
			if tc.winograd {
				// Winograd convolutions stay float32 in bf16 mode.
				require.Less(t, relL2(got, exact), 1e-5)
				return
			}
			require.Less(t, relL2(want, exact), 1e-2, "the bf16 reference")
			require.Less(t, maxAbsDiff(got, want), 1e-4)
			// Weights as bf16 (padded to 12 rows, pairs of k), the bias in float32, no float32 weight.
			kq := (tc.cin*tc.k*tc.k + 1) / 2
			wantBytes := int64((tc.cout+11)/12*12*kq*4 + tc.cout*4)
			require.Equal(t, wantBytes, params.Bytes())
		})
	}

	t.Run("linear", func(t *testing.T) {
		const n, in, out = 37, 45, 70
		src := memSource{}
		w := src.add(r, "l.weight", out, in)
		bias := src.add(r, "l.bias", out)
		x := randn(r, n*in)
		res := randn(r, n*out)
		xr, wr := roundBF16(x), roundBF16(w)
		want := make([]float32, n*out)
		for i := 0; i < n; i++ {
			for j := 0; j < out; j++ {
				s := float64(bias[j]) + float64(res[i*out+j])
				for p := 0; p < in; p++ {
					s += float64(xr[i*in+p]) * float64(wr[j*in+p])
				}
				want[i*out+j] = float32(s)
			}
		}
		params := NewParams(src)
		params.SetPrecision(BF16)
		prog, err := Build(params, func(b *Builder) map[string]*Node {
			return map[string]*Node{"y": b.LinearResidual("l", b.Input("x", n, in), out, true, b.Input("res", n, out))}
		})
		require.NoError(t, err)
		got := make([]float32, n*out)
		require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x, "res": res}, map[string][]float32{"y": got}))
		require.Less(t, maxAbsDiff(got, want), 1e-4)
		require.Equal(t, int64(96*((in+1)/2)*4+out*4), params.Bytes())
		require.Equal(t, BF16, params.Overlay(nil, nil).Precision())
	})
}

func relL2(got, want []float32) float64 {
	var d, n float64
	for i := range got {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		n += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / n)
}

// TestBF16FromFile loads bf16 weights from a safetensors file (decoded into the build's scratch
// buffer, which is dropped after the build): the product matches, and a weight of the wrong
// shape or a missing one is an error naming it.
func TestBF16FromFile(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	w := randn(r, 40*24)
	path := filepath.Join(t.TempDir(), "w.safetensors")
	require.NoError(t, weights.WriteFile(path, []weights.Tensor{
		{Name: "l.weight", DType: weights.F32, Shape: []int{40, 24}, F32: w},
		{Name: "bad.weight", DType: weights.F32, Shape: []int{24, 40}, F32: w},
	}, nil))
	f, err := weights.Open(path)
	require.NoError(t, err)
	defer f.Close()
	params := NewParams(f)
	params.SetPrecision(BF16)
	x := randn(r, 3*24)
	prog, err := Build(params, func(b *Builder) map[string]*Node {
		return map[string]*Node{"y": b.LinearLayer("l", b.Input("x", 3, 24), 40, false)}
	})
	require.NoError(t, err)
	require.Nil(t, params.scratch, "scratch kept after the build")
	got := make([]float32, 3*40)
	require.NoError(t, prog.Run(context.Background(), map[string][]float32{"x": x}, map[string][]float32{"y": got}))
	xr, wr := roundBF16(x), roundBF16(w)
	for i := 0; i < 3; i++ {
		for j := 0; j < 40; j++ {
			var s float64
			for p := 0; p < 24; p++ {
				s += float64(xr[i*24+p]) * float64(wr[j*24+p])
			}
			require.InDelta(t, s, got[i*40+j], 1e-5)
		}
	}
	require.Empty(t, params.Unused("l.", nil))
	for _, name := range []string{"bad", "missing"} {
		_, err = Build(params, func(b *Builder) map[string]*Node {
			return map[string]*Node{"y": b.LinearLayer(name, b.Input("x", 3, 24), 40, false)}
		})
		require.ErrorContains(t, err, name+".weight")
	}
}

// TestAttentionBF16 checks attention's bf16 products: on a score matrix of attnMinBF16 entries
// or more they run in bf16 (the result differs from float32 by bfloat16 rounding, no more), with
// and without the causal mask and with query rows past one block; smaller ones stay float32.
func TestAttentionBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(91, 92))
	for _, tc := range []struct {
		nq, nk, c, heads int
		causal, bf16     bool
	}{
		{1030, 512, 96, 3, false, true},
		{600, 600, 64, 2, true, true},
		{256, 256, 64, 2, false, false},
	} {
		q, k, v := randn(r, tc.nq*tc.c), randn(r, tc.nk*tc.c), randn(r, tc.nk*tc.c)
		run := func(pr Precision) []float32 {
			params := NewParams(memSource{})
			params.SetPrecision(pr)
			prog, err := Build(params, func(b *Builder) map[string]*Node {
				return map[string]*Node{"y": b.Attention(b.Input("q", tc.nq, tc.c), b.Input("k", tc.nk, tc.c), b.Input("v", tc.nk, tc.c), tc.heads, tc.causal)}
			})
			require.NoError(t, err)
			y := make([]float32, tc.nq*tc.c)
			require.NoError(t, prog.Run(context.Background(), map[string][]float32{"q": q, "k": k, "v": v}, map[string][]float32{"y": y}))
			return y
		}
		want, got := run(FP32), run(BF16)
		e := relL2(got, want)
		t.Logf("%d×%d, %d channels, %d heads, causal %v: bf16 rel L2 %.2e", tc.nq, tc.nk, tc.c, tc.heads, tc.causal, e)
		if tc.bf16 {
			require.Greater(t, e, 0.0, "the bf16 products ran")
			require.Less(t, e, 1e-2)
		} else {
			require.Zero(t, e, "small score matrices stay float32")
		}
	}
}
