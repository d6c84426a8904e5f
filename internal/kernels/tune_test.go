package kernels

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkBlocking sweeps block sizes given in $SGEMM_BLOCKS as
// "kc,mc,nc kc,mc,nc ..." (a tuning aid; skipped when unset).
func BenchmarkBlocking(b *testing.B) {
	spec := os.Getenv("SGEMM_BLOCKS")
	if spec == "" {
		b.Skip("SGEMM_BLOCKS not set")
	}
	saved := activeKernel
	defer func() { activeKernel = saved; workspaces = syncPoolReset() }()
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
		workspaces = syncPoolReset()
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
