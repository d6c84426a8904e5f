//go:build !amd64 || noasm

package conv

// useAVX512 is false: there are no assembly transforms on this build.
var useAVX512 = false

// prefetchRows does nothing without assembly.
func prefetchRows(plane []float32, w, y0, y1, x0, x1 int) {}

// useLazyAsm is false: there are no assembly weight transforms on this build.
var useLazyAsm = false

func weightPairs(dst []float32, ldp int, src []float32, n int) { weightPairsGo(dst, ldp, src, n) }

func weightPairsBF16(dst []float32, ldp int, src []uint16, n int) {
	weightPairsBF16Go(dst, ldp, src, n)
}

func inputTransform(v []float32, ldv int, plane []float32, h, w, ys, xs, n int) {
	inputTransformGo(v, ldv, plane, h, w, ys, xs, n)
}

func outputTransform(dst []float32, ldd int, m []float32, ldm, nrows, ncols, n int, bias float32, ep int) {
	outputTransformGo(dst, ldd, m, ldm, nrows, ncols, n, bias, ep)
}

func inputTransformAVX512(v *float32, ldv int, plane *float32, h, w, ys, xs, n int) {
	panic("unreachable")
}

func outputTransformAVX512(dst *float32, ldd int, m *float32, ldm, nrows, ncols, n int, bias float32, ep int) {
	panic("unreachable")
}

func gemm8x48PAVX512(a, b, c *float32, ld, k, rows, n, acc int)  { panic("unreachable") }
func gemm24x16PAVX512(a, b, c *float32, ld, k, rows, n, acc int) { panic("unreachable") }

func weightPairsAVX512(dst *float32, ldp int, src *float32, n int)    { panic("unreachable") }
func weightPairsBF16AVX512(dst *float32, ldp int, src *uint16, n int) { panic("unreachable") }

func prefetchRowsAVX512(p *float32, stride, rows, lines int) { panic("unreachable") }
