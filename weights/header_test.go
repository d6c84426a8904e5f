package weights

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawFile builds a safetensors file from a JSON header (unpadded) and dataLen bytes of data.
func rawFile(header string, dataLen int) []byte {
	b := make([]byte, 8, 8+len(header)+dataLen)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

func TestParseHeaderValid(t *testing.T) {
	hdr := `{"__metadata__":{"format":"pt"},` +
		`"b":{"dtype":"F16","shape":[2,3],"data_offsets":[16,28]},` +
		`"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},` +
		`"s":{"dtype":"I64","shape":[],"data_offsets":[28,36]},` +
		`"z":{"dtype":"U8","shape":[0,5],"data_offsets":[36,36]}}   `
	h, err := ParseHeader(rawFile(hdr, 36), -1)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"format": "pt"}, h.Metadata)
	require.Len(t, h.Tensors, 4)
	assert.Equal(t, TensorInfo{Name: "a", DType: F32, Shape: []int{4}, Begin: 0, End: 16}, h.Tensors[0])
	assert.Equal(t, TensorInfo{Name: "b", DType: F16, Shape: []int{2, 3}, Begin: 16, End: 28}, h.Tensors[1])
	assert.Equal(t, TensorInfo{Name: "s", DType: I64, Shape: []int{}, Begin: 28, End: 36}, h.Tensors[2])
	assert.Equal(t, 1, h.Tensors[2].NumElements())
	assert.Equal(t, 0, h.Tensors[3].NumElements())
	assert.Equal(t, int64(8+len(hdr)), h.DataOffset)
	assert.Equal(t, int64(36), h.DataSize)

	// Data beyond the last tensor, and gaps, are tolerated; so is a prefix-only buffer.
	full := rawFile(`{"a":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}`, 10)
	h, err = ParseHeader(full[:len(full)-10], int64(len(full)))
	require.NoError(t, err)
	assert.Equal(t, BF16, h.Tensors[0].DType)

	// An empty header object is a valid (empty) file.
	h, err = ParseHeader(rawFile(`{}`, 0), -1)
	require.NoError(t, err)
	assert.Empty(t, h.Tensors)
	// Known but non-float dtypes parse.
	_, err = ParseHeader(rawFile(`{"x":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]},"y":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[3,4]}}`, 4), -1)
	require.NoError(t, err)
}

func TestParseHeaderMalformed(t *testing.T) {
	ok := func(h string) []byte { return rawFile(h, 16) }
	tooLong := make([]byte, 8)
	binary.LittleEndian.PutUint64(tooLong, 1<<40)
	longer := make([]byte, 20)
	binary.LittleEndian.PutUint64(longer, 100)
	overflowShape := `{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}`
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty file", nil, "shorter than the 8-byte"},
		{"7 bytes", []byte{1, 2, 3, 4, 5, 6, 7}, "shorter than the 8-byte"},
		{"absurd header length", tooLong, "exceeds the limit"},
		{"header longer than file", longer, "larger than the 12 bytes"},
		{"invalid JSON", ok(`{"a":`), "invalid JSON"},
		{"not an object", ok(`[1,2,3]`), "not a JSON object"},
		{"blank header", ok(`        `), "not a JSON object"},
		{"trailing garbage", ok(`{} x`), "invalid JSON"},
		{"trailing object", ok(`{}{}`), "trailing data"},
		{"entry not an object", ok(`{"a":5}`), `tensor "a": entry is not a JSON object`},
		{"entry null", ok(`{"a":null}`), `tensor "a": entry is not a JSON object`},
		{"missing dtype", ok(`{"a":{"shape":[1],"data_offsets":[0,4]}}`), "missing dtype"},
		{"dtype not a string", ok(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`), `tensor "a"`},
		{"unknown dtype", ok(`{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}`), `tensor "a": unknown dtype "F12"`},
		{"missing shape", ok(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`), "missing shape"},
		{"negative dim", ok(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`), "negative dimension"},
		{"fractional dim", ok(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`), "not an integer"},
		{"huge dim", ok(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}`), "not an integer"},
		{"shape overflow", ok(overflowShape), "overflows"},
		{"size mismatch", ok(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}`), "needs 12 bytes but data_offsets [0, 16] span 16"},
		{"one offset", ok(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`), "data_offsets must be [begin, end]"},
		{"negative offset", ok(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`), "not a non-negative integer"},
		{"begin after end", ok(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`), "begin is after end"},
		{"out of range", ok(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}`), "out of range of the 16-byte data section"},
		{"overlap", ok(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`), `"a" [0, 8) and "b" [4, 12) overlap`},
		{"duplicate name", ok(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`), `duplicate header entry "a"`},
		{"metadata not object", ok(`{"__metadata__":[1]}`), "__metadata__ is not a JSON object"},
		{"metadata non-string", ok(`{"__metadata__":{"format":1}}`), `__metadata__ value of "format" is not a string`},
		{"metadata nested", ok(`{"__metadata__":{"format":{"a":"b"}}}`), `__metadata__ value of "format" is not a string`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := ParseHeader(c.data, -1)
			require.Error(t, err)
			assert.Nil(t, h)
			assert.Contains(t, err.Error(), c.want)
			assert.True(t, strings.HasPrefix(err.Error(), "weights: safetensors header: "), err.Error())
		})
	}
}

func TestParseHeaderNamesFile(t *testing.T) {
	_, err := parseHeader("/x/model.safetensors", rawFile(`{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, 1), -1)
	require.Error(t, err)
	assert.Equal(t, `weights: /x/model.safetensors: tensor "w": unknown dtype "Q4"`, err.Error())
}

func FuzzParseHeader(f *testing.F) {
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`, 16))
	f.Add(rawFile(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"I64","shape":[],"data_offsets":[6,14]}}`, 14))
	f.Add(rawFile(`{}`, 0))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}`, 16))
	f.Add(rawFile(`{"a":5,"__metadata__":{"k":1}}`, 0))
	f.Add(rawFile(`{"a":{"dtype":"XX","shape":[1],"data_offsets":[0,4]}}`, 4))
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data, -1)
		if err != nil {
			if h != nil {
				t.Fatal("header returned with an error")
			}
			return
		}
		// Invariants of an accepted header.
		for i, ti := range h.Tensors {
			if i > 0 && h.Tensors[i-1].Name >= ti.Name {
				t.Fatalf("tensors not sorted: %q, %q", h.Tensors[i-1].Name, ti.Name)
			}
			if ti.Begin < 0 || ti.Begin > ti.End || ti.End > h.DataSize {
				t.Fatalf("tensor %q offsets [%d, %d) outside [0, %d)", ti.Name, ti.Begin, ti.End, h.DataSize)
			}
			if int64(ti.NumElements())*int64(ti.DType.Size()) != ti.End-ti.Begin {
				t.Fatalf("tensor %q size disagrees", ti.Name)
			}
		}
		if h.DataOffset+h.DataSize != int64(len(data)) {
			t.Fatalf("data section %d+%d != file size %d", h.DataOffset, h.DataSize, len(data))
		}
	})
}
