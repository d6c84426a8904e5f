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
	genSgemmAVX512(12, 2, false)
	genSgemmAVX512(12, 1, false)
	genSgemmAVX512(12, 2, true)
	genSgemmAVX512(12, 1, true)
	genSgemmAVX512(8, 2, false)
	genSgemmAVX512(8, 1, false)
	genSgemmAVX512(4, 2, false)
	genSgemmAVX512(4, 1, false)
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
