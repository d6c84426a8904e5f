//go:build !amd64 || noasm

package kernels

// The assembly norm kernels do not exist in this build; these stubs are
// never called because useAVX512Elementwise is false.

func meanVarSumsAVX512(x *float32, n int, shift float64) (s1, s2 float64) { panic("unreachable") }
func scaleShiftAVX512(dst, src *float32, n int, a, b float32)             { panic("unreachable") }
func scaleShiftSiLUAVX512(dst, src *float32, n int, a, b float32)         { panic("unreachable") }
func layerNormRowAVX512(dst, src, gamma, beta *float32, n int, mean, rstd float32) {
	panic("unreachable")
}
func addAVX512(dst, a, b *float32, n int) { panic("unreachable") }
func mulAVX512(dst, a, b *float32, n int) { panic("unreachable") }
func reluAVX512(x *float32, n int)        { panic("unreachable") }
