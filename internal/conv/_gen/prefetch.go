package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// genPrefetch emits prefetchRowsAVX512, which asks for rows cache lines of 64 bytes, lines of
// them in each of rows rows stride floats apart, from p on (PREFETCHT0; no architectural
// effect).
func genPrefetch() {
	TEXT("prefetchRowsAVX512", NOSPLIT, "func(p *float32, stride, rows, lines int)")
	Pragma("noescape")
	Doc("prefetchRowsAVX512 prefetches lines cache lines from each of rows rows, stride floats apart, from p on.")
	p := Load(Param("p"), GP64())
	stride := Load(Param("stride"), GP64())
	SHLQ(Imm(2), stride)
	rows := Load(Param("rows"), GP64())
	lines := Load(Param("lines"), GP64())
	TESTQ(rows, rows)
	JLE(LabelRef("prefetch_done"))
	TESTQ(lines, lines)
	JLE(LabelRef("prefetch_done"))
	Label("prefetch_row")
	q := GP64()
	MOVQ(p, q)
	n := GP64()
	MOVQ(lines, n)
	Label("prefetch_line")
	PREFETCHT0(Mem{Base: q})
	ADDQ(Imm(64), q)
	DECQ(n)
	JNZ(LabelRef("prefetch_line"))
	ADDQ(stride, p)
	DECQ(rows)
	JNZ(LabelRef("prefetch_row"))
	Label("prefetch_done")
	RET()
}
