// Command _gen generates the amd64 assembly of package kernels with avo,
// one file per kernel set:
//
//	cd internal/kernels/_gen && go run . -out ../sgemm_amd64.s -stubs ../sgemm_stub_amd64.go
//	cd internal/kernels/_gen && go run . -set norm -out ../norm_amd64.s -stubs ../norm_stub_amd64.go
package main

import (
	"flag"

	. "github.com/mmcloughlin/avo/build"
)

// set selects the kernels to generate: "sgemm" (the GEMM, vector and
// element-wise kernels) or "norm" (normalisation and residual kernels).
var set = flag.String("set", "sgemm", "kernel set to generate: sgemm or norm")

func main() {
	if err := flag.Set("pkg", "kernels"); err != nil {
		panic(err)
	}
	flag.Parse()
	ConstraintExpr("!noasm")
	switch *set {
	case "sgemm":
	case "norm":
		genNormAll()
		Generate()
		return
	default:
		panic("unknown kernel set " + *set)
	}
	for _, rows := range []int{12, 8, 4} {
		for _, nv := range []int{2, 1} {
			for _, ua := range []bool{false, true} {
				for _, ub := range []bool{false, true} {
					if ua && rows == 4 {
						continue // the last rows of A are always packed
					}
					genSgemmAVX512B(rows, nv, ua, ub)
				}
			}
		}
	}
	genSgemmAVX2()
	genElementwiseAll()
	genSoftmax()
	genSdot()
	genSaxpy()
	genTranspose16()
	genCopyPanel(1)
	genCopyPanel(2)
	Generate()
}
