//go:build amd64 && !noasm

package conv

func inputTransform(v []float32, ldv int, plane []float32, h, w, ys, xs, n int) {
	inputTransformGo(v, ldv, plane, h, w, ys, xs, n)
}

func outputTransform(dst []float32, ldd int, m []float32, ldm, nrows, ncols, n int, bias float32) {
	outputTransformGo(dst, ldd, m, ldm, nrows, ncols, n, bias)
}
