package nn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkConvPrecision times UNet-sized convolutions and linear layers in fp32 (Winograd
// where useWinograd picks it, else im2col + SGEMM) and bf16 (im2col + bf16 products).
func BenchmarkConvPrecision(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct{ cin, cout, hw, k int }{
		{320, 320, 64, 3}, {640, 320, 64, 3}, {640, 640, 32, 3}, {1280, 1280, 16, 3}, {320, 320, 64, 1},
	} {
		// "bf16-im2col" forces the bf16 im2col product on layers that take Winograd (which
		// stays float32 in bf16 mode), to compare the two.
		for _, mode := range []string{"fp32", "bf16", "bf16-im2col"} {
			b.Run(fmt.Sprintf("conv%dx%d_%dx%d_k%d/%s", tc.cin, tc.cout, tc.hw, tc.hw, tc.k, mode), func(b *testing.B) {
				src := memSource{}
				src.add(r, "c.weight", tc.cout, tc.cin, tc.k, tc.k)
				src.add(r, "c.bias", tc.cout)
				params := NewParams(src)
				if mode != "fp32" {
					params.SetPrecision(BF16)
				}
				prog, err := Build(params, func(bd *Builder) map[string]*Node {
					x := bd.Input("x", tc.cin, tc.hw, tc.hw)
					if mode == "bf16-im2col" {
						return map[string]*Node{"y": bd.convBF16("c", x, []int{tc.cout, tc.cin, tc.k, tc.k}, bd.Param("c.bias", tc.cout), 1, tc.k/2, ConvOpts{})}
					}
					return map[string]*Node{"y": bd.ConvLayer("c", x, tc.cout, tc.k, 1, tc.k/2, true)}
				})
				if err != nil {
					b.Fatal(err)
				}
				x := randn(r, tc.cin*tc.hw*tc.hw)
				y := make([]float32, tc.cout*tc.hw*tc.hw)
				in, out := map[string][]float32{"x": x}, map[string][]float32{"y": y}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := prog.Run(context.Background(), in, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(tc.cin*tc.k*tc.k*tc.cout*tc.hw*tc.hw)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
	for _, tc := range []struct{ n, in, out int }{{4096, 320, 320}, {4096, 320, 2560}, {1024, 640, 640}, {256, 1280, 5120}} {
		for _, pr := range []Precision{FP32, BF16} {
			b.Run(fmt.Sprintf("linear%dx%dx%d/%v", tc.n, tc.in, tc.out, pr), func(b *testing.B) {
				src := memSource{}
				src.add(r, "l.weight", tc.out, tc.in)
				params := NewParams(src)
				params.SetPrecision(pr)
				prog, err := Build(params, func(bd *Builder) map[string]*Node {
					return map[string]*Node{"y": bd.LinearLayer("l", bd.Input("x", tc.n, tc.in), tc.out, false)}
				})
				if err != nil {
					b.Fatal(err)
				}
				x := randn(r, tc.n*tc.in)
				y := make([]float32, tc.n*tc.out)
				in, out := map[string][]float32{"x": x}, map[string][]float32{"y": y}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := prog.Run(context.Background(), in, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(tc.n*tc.in*tc.out)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkAttention times the DreamShaper UNet's self-attention at the 32×32 and 16×16 levels
// (1024 tokens × 640 channels, 256 × 1280, 8 heads) in fp32 and bf16.
func BenchmarkAttention(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct{ n, c, heads int }{{1024, 640, 8}, {256, 1280, 8}} {
		for _, pr := range []Precision{FP32, BF16} {
			b.Run(fmt.Sprintf("attn%dx%d/%v", tc.n, tc.c, pr), func(b *testing.B) {
				params := NewParams(memSource{})
				params.SetPrecision(pr)
				prog, err := Build(params, func(bd *Builder) map[string]*Node {
					q, k, v := bd.Input("q", tc.n, tc.c), bd.Input("k", tc.n, tc.c), bd.Input("v", tc.n, tc.c)
					return map[string]*Node{"y": bd.Attention(q, k, v, tc.heads, false)}
				})
				if err != nil {
					b.Fatal(err)
				}
				in := map[string][]float32{"q": randn(r, tc.n*tc.c), "k": randn(r, tc.n*tc.c), "v": randn(r, tc.n*tc.c)}
				out := map[string][]float32{"y": make([]float32, tc.n*tc.c)}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := prog.Run(context.Background(), in, out); err != nil {
						b.Fatal(err)
					}
				}
				flops := 4 * float64(tc.n) * float64(tc.n) * float64(tc.c)
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
