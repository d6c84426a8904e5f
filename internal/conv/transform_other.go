//go:build !amd64 || noasm

package conv

// useAVX512 is false: there are no assembly transforms on this build.
var useAVX512 = false

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
