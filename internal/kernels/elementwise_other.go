//go:build !amd64 || noasm

package kernels

const useAVX512Elementwise = false

func expAVX512(x *float32, n int)  { panic("unreachable") }
func siluAVX512(x *float32, n int) { panic("unreachable") }
func geluAVX512(x *float32, n int) { panic("unreachable") }

func sdotAVX512(x, y *float32, n int) float32         { panic("unreachable") }
func saxpyAVX512(alpha float32, x, y *float32, n int) { panic("unreachable") }
