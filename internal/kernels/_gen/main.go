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
	genSgemmAVX512(12, 2)
	genSgemmAVX512(8, 2)
	genSgemmAVX512(14, 2)
	genSgemmAVX512(6, 4)
	genSgemmAVX512(8, 3)
	genSgemmAVX2()
	Generate()
}
