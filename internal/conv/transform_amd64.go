//go:build !noasm

package conv

import "golang.org/x/sys/cpu"

// useAVX512 selects the assembly transforms.
var useAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasBMI2

// inputTransform is inputTransformGo, in assembly when the CPU allows.
func inputTransform(v []float32, ldv int, plane []float32, h, w, ys, xs, n int) {
	if !useAVX512 || n <= 0 {
		inputTransformGo(v, ldv, plane, h, w, ys, xs, n)
		return
	}
	// The kernel reads only the plane's h·w values and writes
	// v[ξ·ldv + i] for ξ < 36, i < n.
	_ = plane[h*w-1]
	_ = v[(nXi-1)*ldv+n-1]
	inputTransformAVX512(&v[0], ldv, &plane[0], h, w, ys, xs, n)
}

// outputTransform is outputTransformGo, in assembly when the CPU allows.
func outputTransform(dst []float32, ldd int, m []float32, ldm, nrows, ncols, n int, bias float32, ep int) {
	if !useAVX512 || n <= 0 || nrows <= 0 || ncols <= 0 {
		outputTransformGo(dst, ldd, m, ldm, nrows, ncols, n, bias, ep)
		return
	}
	// The kernel reads m[ξ·ldm + i] for i < n and writes dst[r·ldd + c]
	// for r < nrows ≤ 4, c < ncols ≤ 4n.
	if nrows > tileOut || ncols > tileOut*n {
		panic("conv: outputTransform: bad tile geometry")
	}
	_ = m[(nXi-1)*ldm+n-1]
	_ = dst[(nrows-1)*ldd+ncols-1]
	outputTransformAVX512(&dst[0], ldd, &m[0], ldm, nrows, ncols, n, bias, ep)
}

// useLazyAsm selects the assembly weight transforms of the lazy mode (which also need AVX-512 BW
// for the bfloat16 loads).
var useLazyAsm = cpu.X86.HasAVX512BW

// weightPairs is weightPairsGo, in assembly when the CPU allows.
func weightPairs(dst []float32, ldp int, src []float32, n int) {
	if !useAVX512 || !useLazyAsm || n <= 0 {
		weightPairsGo(dst, ldp, src, n)
		return
	}
	_ = dst[(nXi-1)*ldp+16*n-1]
	_ = src[n*9*16-1]
	weightPairsAVX512(&dst[0], ldp, &src[0], n)
}

// weightPairsBF16 is weightPairsBF16Go, in assembly when the CPU allows.
func weightPairsBF16(dst []float32, ldp int, src []uint16, n int) {
	if !useAVX512 || !useLazyAsm || n <= 0 {
		weightPairsBF16Go(dst, ldp, src, n)
		return
	}
	_ = dst[(nXi-1)*ldp+16*n-1]
	_ = src[n*9*16-1]
	weightPairsBF16AVX512(&dst[0], ldp, &src[0], n)
}

// prefetchRows asks for the cache lines of columns [x0, x1) of rows [y0, y1) of plane (w
// floats a row), ahead of a transform that will read them.
func prefetchRows(plane []float32, w, y0, y1, x0, x1 int) {
	if !useAVX512 || y0 >= y1 || x0 >= x1 {
		return
	}
	_ = plane[(y1-1)*w+x1-1]
	prefetchRowsAVX512(&plane[y0*w+x0], w, y1-y0, (x1-x0+15)/16+1)
}
