package kernels

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkBlocking sweeps block sizes given in $SGEMM_BLOCKS as
// "kc,mc,nc kc,mc,nc ..." (a tuning aid; skipped when unset).
func BenchmarkBlocking(b *testing.B) {
	spec := os.Getenv("SGEMM_BLOCKS")
	if spec == "" {
		b.Skip("SGEMM_BLOCKS not set")
	}
	saved := activeKernel
	defer func() { activeKernel = saved }()
	var fields []string
	for _, f := range splitSpace(spec) {
		fields = append(fields, f)
	}
	for _, f := range fields {
		var kc, mc, nc int
		if _, err := fmt.Sscanf(f, "%d,%d,%d", &kc, &mc, &nc); err != nil {
			b.Fatal(err)
		}
		activeKernel = saved
		activeKernel.kc, activeKernel.mc, activeKernel.nc = kc, mc, nc
		for _, s := range benchShapes {
			b.Run(fmt.Sprintf("%s/%s", f, s.name), func(b *testing.B) { benchGemm(b, s.transB, s.m, s.n, s.k) })
		}
	}
}

func splitSpace(s string) []string {
	var out []string
	start := -1
	for i, r := range s + " " {
		if r == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// BenchmarkPack measures the packing routines in ns per element.
func BenchmarkPack(b *testing.B) {
	kn := &activeKernel
	const rows, cols = 640, 5760
	src := make([]float32, rows*cols)
	ws := getWorkspace()
	defer putWorkspace(ws)
	for _, trans := range []bool{false, true} {
		b.Run(fmt.Sprintf("A/trans=%v", trans), func(b *testing.B) {
			n := 0
			for i := 0; i < b.N; i++ {
				ld := cols
				if trans {
					ld = rows
				}
				packA(ws.a, trans, src, ld, (i%3)*kn.mc, (i%7)*kn.kc, kn.mc, kn.kc, kn, 1)
				n += kn.mc * kn.kc
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/elem")
		})
		b.Run(fmt.Sprintf("B/trans=%v", trans), func(b *testing.B) {
			n := 0
			nc := min(kn.nc, 1024)
			for i := 0; i < b.N; i++ {
				ld := 1024
				if trans {
					ld = 2048
				}
				packB(ws.b, trans, src, ld, (i%7)*kn.kc, 0, kn.kc, nc, kn, 1)
				n += nc * kn.kc
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/elem")
		})
	}
}

func BenchmarkPartsPerThread(b *testing.B) {
	for _, ppt := range []int{1, 2} {
		for _, s := range []struct {
			transB  bool
			m, n, k int
		}{{true, 256, 4096, 40}, {false, 256, 40, 4096}, {false, 64, 3584, 576}, {false, 320, 4096, 2880}, {true, 4096, 320, 320}} {
			b.Run(fmt.Sprintf("%d/%dx%dx%d", ppt, s.m, s.n, s.k), func(b *testing.B) {
				saved := partsPerThread
				partsPerThread = ppt
				defer func() { partsPerThread = saved }()
				benchGemm(b, s.transB, s.m, s.n, s.k)
			})
		}
	}
}

func BenchmarkRowMajorTiles(b *testing.B) {
	for _, on := range []bool{true, false} {
		for _, s := range benchShapes {
			if s.k > 128 {
				continue
			}
			b.Run(fmt.Sprintf("%v/%s", on, s.name), func(b *testing.B) {
				rowMajorTiles = on
				defer func() { rowMajorTiles = true }()
				benchGemm(b, s.transB, s.m, s.n, s.k)
			})
		}
	}
}

func BenchmarkInPlaceB(b *testing.B) {
	for _, maxM := range []int{0, 1 << 20} {
		for _, s := range []struct{ m, n, k int }{{320, 704, 2880}, {640, 704, 2880}, {1280, 128, 11520}, {64, 3584, 576}, {320, 4096, 2880}, {4096, 320, 320}} {
			b.Run(fmt.Sprintf("%d/%dx%dx%d", maxM, s.m, s.n, s.k), func(b *testing.B) {
				saved := inPlaceBMaxM
				inPlaceBMaxM = maxM
				defer func() { inPlaceBMaxM = saved }()
				benchGemm(b, false, s.m, s.n, s.k)
			})
		}
	}
}

// BenchmarkPVStride compares the attention PV product with score rows
// 4096 apart (copied to an odd stride) and 4096+16 apart (read in place).
func BenchmarkPVStride(b *testing.B) {
	for _, m := range []int{256, 4096} {
		for _, lda := range []int{4096, 4096 + 16} {
			b.Run(fmt.Sprintf("M%d/lda%d", m, lda), func(b *testing.B) {
				const n, k, ldb = 40, 4096, 320
				a := make([]float32, m*lda)
				bb := make([]float32, k*ldb)
				c := make([]float32, m*ldb)
				for i := range a {
					a[i] = float32(i%7) * 0.1
				}
				for i := range bb {
					bb[i] = float32(i%5) * 0.1
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					Sgemm(false, false, m, n, k, 1, a, lda, bb, ldb, 0, c, ldb)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkQKStride compares the attention QKᵀ product (256 query rows at
// a time) writing score rows 4096 apart and 4096+16 apart.
func BenchmarkQKStride(b *testing.B) {
	for _, ldc := range []int{4096, 4096 + 16} {
		b.Run(fmt.Sprintf("ldc%d", ldc), func(b *testing.B) {
			const m, n, k, ld = 256, 4096, 40, 320
			a := make([]float32, m*ld)
			bb := make([]float32, n*ld)
			c := make([]float32, m*ldc)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				Sgemm(false, true, m, n, k, 0.15, a, ld, bb, ld, 0, c, ldc)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkSpinWait(b *testing.B) {
	for _, spin := range []time.Duration{0, 500 * time.Microsecond} {
		for _, s := range []struct {
			transB  bool
			m, n, k int
		}{{true, 256, 4096, 40}, {false, 256, 40, 4096}, {false, 64, 3584, 576}, {false, 320, 4096, 2880}} {
			b.Run(fmt.Sprintf("%v/%dx%dx%d", spin, s.m, s.n, s.k), func(b *testing.B) {
				saved := spinWait
				spinWait = spin
				defer func() { spinWait = saved }()
				benchGemm(b, s.transB, s.m, s.n, s.k)
			})
		}
	}
}

func BenchmarkAliasC8(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprint(on), func(b *testing.B) {
			aliasC8 = on
			defer func() { aliasC8 = true }()
			BenchmarkQKStride(b)
		})
	}
}
