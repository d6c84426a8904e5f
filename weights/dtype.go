package weights

import "fmt"

// DType is the element type of a safetensors tensor.
type DType uint8

// The safetensors element types. F32, F16, BF16 (and F64) convert to float32; I64 and U8 have
// their own accessors; the remaining types are recognised but cannot be converted.
const (
	// Invalid is the zero DType; it never appears in a parsed header.
	Invalid DType = iota
	// F32 is IEEE 754 binary32.
	F32
	// F16 is IEEE 754 binary16.
	F16
	// BF16 is bfloat16 (the upper half of a binary32).
	BF16
	// I64 is a signed 64-bit integer.
	I64
	// U8 is an unsigned byte (used for images).
	U8
	// F64 is IEEE 754 binary64.
	F64
	// I32 is a signed 32-bit integer.
	I32
	// I16 is a signed 16-bit integer.
	I16
	// I8 is a signed byte.
	I8
	// U16 is an unsigned 16-bit integer.
	U16
	// U32 is an unsigned 32-bit integer.
	U32
	// U64 is an unsigned 64-bit integer.
	U64
	// Bool is a one-byte boolean.
	Bool
	// F8E4M3 is the 8-bit float with 4 exponent and 3 mantissa bits.
	F8E4M3
	// F8E5M2 is the 8-bit float with 5 exponent and 2 mantissa bits.
	F8E5M2
)

var dtypeNames = [...]string{
	Invalid: "INVALID",
	F32:     "F32",
	F16:     "F16",
	BF16:    "BF16",
	I64:     "I64",
	U8:      "U8",
	F64:     "F64",
	I32:     "I32",
	I16:     "I16",
	I8:      "I8",
	U16:     "U16",
	U32:     "U32",
	U64:     "U64",
	Bool:    "BOOL",
	F8E4M3:  "F8_E4M3",
	F8E5M2:  "F8_E5M2",
}

var dtypeSizes = [...]int{
	F32: 4, F16: 2, BF16: 2, I64: 8, U8: 1, F64: 8, I32: 4, I16: 2, I8: 1,
	U16: 2, U32: 4, U64: 8, Bool: 1, F8E4M3: 1, F8E5M2: 1,
}

// ParseDType returns the DType named s as in a safetensors header ("F32", "F16", "BF16",
// "I64", "U8", "F64", "I32", "I16", "I8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2").
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// String returns the safetensors name of d.
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size returns the size of one element in bytes (0 for Invalid or an out-of-range value).
func (d DType) Size() int {
	if int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// IsFloat reports whether Float32 can convert tensors of this type (F32, F16, BF16, F64).
func (d DType) IsFloat() bool {
	return d == F32 || d == F16 || d == BF16 || d == F64
}
