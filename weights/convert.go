package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"unsafe"

	"github.com/x448/float16"
)

// littleEndian reports whether the host stores integers little-endian, which is the byte
// order of safetensors data; then F32 and I64 tensors are plain byte copies.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

var (
	f16Once  sync.Once
	f16Table *[1 << 16]float32
)

// halfTable returns the float16 -> float32 table, built on first use.
func halfTable() *[1 << 16]float32 {
	f16Once.Do(func() {
		t := new([1 << 16]float32)
		for i := range t {
			t[i] = float16.Frombits(uint16(i)).Float32()
		}
		f16Table = t
	})
	return f16Table
}

// parallelMin is the number of elements below which conversions stay on one goroutine.
const parallelMin = 1 << 18

// parallelFor calls fn on disjoint ranges covering [0, n), on up to GOMAXPROCS goroutines
// when n is large. Range boundaries are multiples of 64.
func parallelFor(n int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < parallelMin || workers < 2 {
		fn(0, n)
		return
	}
	if max := n / (parallelMin / 4); workers > max {
		workers = max
	}
	chunk := (n/workers + 63) &^ 63
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// bytesOf views a slice's backing array as bytes.
func bytesOf[T float32 | int64 | uint16](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// decodeF32 copies little-endian float32 data: a memory copy on little-endian hosts.
func decodeF32(dst []float32, src []byte) {
	db := bytesOf(dst)
	parallelFor(len(dst), func(lo, hi int) {
		copy(db[4*lo:4*hi], src[4*lo:4*hi])
		if !littleEndian {
			d := dst[lo:hi]
			for i := range d {
				d[i] = math.Float32frombits(bits.ReverseBytes32(math.Float32bits(d[i])))
			}
		}
	})
}

// decodeF16 converts little-endian float16 data through the 65536-entry table.
func decodeF16(dst []float32, src []byte) {
	t := halfTable()
	parallelFor(len(dst), func(lo, hi int) {
		d := dst[lo:hi]
		s := src[2*lo : 2*hi]
		i := 0
		for ; i+4 <= len(d); i += 4 {
			v := binary.LittleEndian.Uint64(s[2*i:])
			d4 := d[i : i+4 : i+4]
			d4[0] = t[uint16(v)]
			d4[1] = t[uint16(v>>16)]
			d4[2] = t[uint16(v>>32)]
			d4[3] = t[uint16(v>>48)]
		}
		for ; i < len(d); i++ {
			d[i] = t[binary.LittleEndian.Uint16(s[2*i:])]
		}
	})
}

// decodeBF16 converts little-endian bfloat16 data (the upper 16 bits of a float32).
func decodeBF16(dst []float32, src []byte) {
	parallelFor(len(dst), func(lo, hi int) {
		d := dst[lo:hi]
		s := src[2*lo : 2*hi]
		for i := range d {
			d[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(s[2*i:])) << 16)
		}
	})
}

// decodeF64 converts little-endian float64 data, rounding to float32.
func decodeF64(dst []float32, src []byte) {
	parallelFor(len(dst), func(lo, hi int) {
		d := dst[lo:hi]
		s := src[8*lo : 8*hi]
		for i := range d {
			d[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(s[8*i:])))
		}
	})
}

// decodeFloat converts src of type dt into dst; dt must satisfy IsFloat and the sizes agree.
func decodeFloat(dst []float32, src []byte, dt DType) {
	switch dt {
	case F32:
		decodeF32(dst, src)
	case F16:
		decodeF16(dst, src)
	case BF16:
		decodeBF16(dst, src)
	case F64:
		decodeF64(dst, src)
	default:
		panic("weights: decodeFloat called with " + dt.String())
	}
}

// decodeI64 copies little-endian int64 data.
func decodeI64(dst []int64, src []byte) {
	copy(bytesOf(dst), src)
	if !littleEndian {
		for i, v := range dst {
			dst[i] = int64(bits.ReverseBytes64(uint64(v)))
		}
	}
}

// HalfToFloat32 converts float16 values given as their bit patterns to float32, using the
// same table (and goroutines for large inputs) as the reader. It returns an error unless
// len(dst) == len(src).
func HalfToFloat32(dst []float32, src []uint16) error {
	if len(dst) != len(src) {
		return fmt.Errorf("weights: HalfToFloat32: %d destination values for %d halves", len(dst), len(src))
	}
	if len(src) == 0 {
		return nil
	}
	if littleEndian {
		decodeF16(dst, bytesOf(src))
		return nil
	}
	t := halfTable()
	parallelFor(len(dst), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = t[src[i]]
		}
	})
	return nil
}

// encodeF16 writes the float16 encodings (round to nearest even) of src little-endian into dst.
func encodeF16(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], float16.Fromfloat32(v).Bits())
	}
}

// bf16Bits rounds v to bfloat16 (nearest, ties to even), keeping NaNs quiet.
func bf16Bits(v float32) uint16 {
	b := math.Float32bits(v)
	if v != v {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// encodeBF16 writes the bfloat16 encodings of src little-endian into dst.
func encodeBF16(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], bf16Bits(v))
	}
}
