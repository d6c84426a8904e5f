// Command _gen generates the amd64 assembly of package kernels with avo.
//
//	cd internal/kernels/_gen && go run . -out ../sgemm_amd64.s -stubs ../sgemm_stub_amd64.go
package main

import (
	"flag"

	. "github.com/mmcloughlin/avo/build"
)

func main() {
	if err := flag.Set("pkg", "kernels"); err != nil {
		panic(err)
	}
	ConstraintExpr("!noasm")
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
