package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
)

// MaxHeaderSize is the largest JSON header ParseHeader accepts (100 MB); larger values are
// taken as a corrupt or hostile file.
const MaxHeaderSize = 100 << 20

// TensorInfo describes one tensor of a safetensors file. Begin and End are byte offsets
// relative to the start of the data section (the byte after the JSON header).
type TensorInfo struct {
	Name       string
	DType      DType
	Shape      []int
	Begin, End int64
}

// NumElements returns the number of elements (the product of Shape; 1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// ByteSize returns End-Begin, the size of the tensor's data in bytes.
func (t TensorInfo) ByteSize() int64 { return t.End - t.Begin }

// Header is a parsed and validated safetensors header.
type Header struct {
	// HeaderSize is the length of the JSON header in bytes, as stored in the first 8 bytes.
	HeaderSize int64
	// DataOffset is the file offset of the data section (8 + HeaderSize).
	DataOffset int64
	// DataSize is the size of the data section in bytes (the file size - DataOffset).
	DataSize int64
	// Tensors lists every tensor, sorted by name.
	Tensors []TensorInfo
	// Metadata is the "__metadata__" map, nil when the header has none.
	Metadata map[string]string
}

// ParseHeader parses and validates the header of a safetensors file. data holds the start of
// the file: at least the 8-byte length and the JSON header (it may be the whole file);
// fileSize is the size of the whole file, or a negative value to mean len(data). Every
// structural problem (truncated file, absurd header length, invalid JSON, unknown dtype,
// negative dimensions, sizes that disagree with the offsets, offsets outside the data
// section, overlapping tensors, a malformed __metadata__) is reported as an error, never a panic.
func ParseHeader(data []byte, fileSize int64) (*Header, error) {
	return parseHeader("", data, fileSize)
}

// headerError formats a header error with the file name when known.
func headerError(file, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if file == "" {
		return errors.New("weights: safetensors header: " + msg)
	}
	return fmt.Errorf("weights: %s: %s", file, msg)
}

type rawEntry struct {
	DType       *string       `json:"dtype"`
	Shape       []json.Number `json:"shape"`
	DataOffsets []json.Number `json:"data_offsets"`
}

func parseHeader(file string, data []byte, fileSize int64) (*Header, error) {
	if fileSize < 0 {
		fileSize = int64(len(data))
	}
	if fileSize < 8 || len(data) < 8 {
		return nil, headerError(file, "file is %d bytes, shorter than the 8-byte header length", min(fileSize, int64(len(data))))
	}
	n64 := binary.LittleEndian.Uint64(data)
	if n64 > MaxHeaderSize {
		return nil, headerError(file, "header length %d exceeds the limit of %d bytes (corrupt or not a safetensors file)", n64, MaxHeaderSize)
	}
	n := int64(n64)
	if n > fileSize-8 {
		return nil, headerError(file, "header length %d is larger than the %d bytes after the length field", n, fileSize-8)
	}
	if n > int64(len(data))-8 {
		return nil, headerError(file, "header length %d but only %d header bytes available", n, len(data)-8)
	}
	h := &Header{HeaderSize: n, DataOffset: 8 + n, DataSize: fileSize - 8 - n}
	js := data[8 : 8+n]
	if len(bytes.TrimSpace(js)) == 0 || bytes.TrimLeft(js, " \t\r\n")[0] != '{' {
		return nil, headerError(file, "header is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	if _, err := dec.Token(); err != nil { // the opening brace, checked above
		return nil, headerError(file, "invalid JSON header: %v", err)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, headerError(file, "invalid JSON header: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, headerError(file, "invalid JSON header: unexpected %v", tok)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, headerError(file, "invalid JSON header at entry %q: %v", key, err)
		}
		if seen[key] {
			return nil, headerError(file, "duplicate header entry %q", key)
		}
		seen[key] = true
		if key == "__metadata__" {
			md, err := parseMetadata(raw)
			if err != nil {
				return nil, headerError(file, "%v", err)
			}
			h.Metadata = md
			continue
		}
		info, err := parseEntry(key, raw, h.DataSize)
		if err != nil {
			return nil, headerError(file, "%v", err)
		}
		h.Tensors = append(h.Tensors, info)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, headerError(file, "invalid JSON header: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, headerError(file, "invalid JSON header: %v", err)
		}
		return nil, headerError(file, "invalid JSON header: trailing data %v after the object", tok)
	}

	// Overlaps: sort the non-empty tensors by offset and check each begins after the previous.
	byBegin := make([]int, 0, len(h.Tensors))
	for i, t := range h.Tensors {
		if t.End > t.Begin {
			byBegin = append(byBegin, i)
		}
	}
	sort.Slice(byBegin, func(a, b int) bool {
		ta, tb := h.Tensors[byBegin[a]], h.Tensors[byBegin[b]]
		if ta.Begin != tb.Begin {
			return ta.Begin < tb.Begin
		}
		return ta.Name < tb.Name
	})
	for i := 1; i < len(byBegin); i++ {
		prev, cur := h.Tensors[byBegin[i-1]], h.Tensors[byBegin[i]]
		if cur.Begin < prev.End {
			return nil, headerError(file, "tensors %q [%d, %d) and %q [%d, %d) overlap", prev.Name, prev.Begin, prev.End, cur.Name, cur.Begin, cur.End)
		}
	}
	sort.Slice(h.Tensors, func(a, b int) bool { return h.Tensors[a].Name < h.Tensors[b].Name })
	return h, nil
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("__metadata__ is not a JSON object of strings: %s", truncate(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("__metadata__: %v", err)
	}
	md := make(map[string]string, len(m))
	for k, v := range m {
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return nil, fmt.Errorf("__metadata__ value of %q is not a string: %s", k, truncate(v))
		}
		md[k] = s
	}
	return md, nil
}

func parseEntry(name string, raw json.RawMessage, dataSize int64) (TensorInfo, error) {
	info := TensorInfo{Name: name}
	if len(raw) == 0 || raw[0] != '{' {
		return info, fmt.Errorf("tensor %q: entry is not a JSON object: %s", name, truncate(raw))
	}
	var e rawEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return info, fmt.Errorf("tensor %q: %v", name, err)
	}
	if e.DType == nil {
		return info, fmt.Errorf("tensor %q: missing dtype", name)
	}
	dt, err := ParseDType(*e.DType)
	if err != nil {
		return info, fmt.Errorf("tensor %q: %v", name, err)
	}
	info.DType = dt
	if e.Shape == nil {
		return info, fmt.Errorf("tensor %q: missing shape", name)
	}
	info.Shape = make([]int, len(e.Shape))
	elems := int64(1)
	overflow := false
	for i, num := range e.Shape {
		d, err := strconv.ParseInt(num.String(), 10, 64)
		if err != nil {
			return info, fmt.Errorf("tensor %q: shape %v: dimension %s is not an integer", name, e.Shape, num)
		}
		if d < 0 {
			return info, fmt.Errorf("tensor %q: shape %v: negative dimension %d", name, e.Shape, d)
		}
		if int64(int(d)) != d { // does not fit an int on this platform
			overflow = true
		}
		info.Shape[i] = int(d)
		if d != 0 && elems > math.MaxInt64/d {
			overflow = true
		}
		elems *= d
	}
	if len(e.DataOffsets) != 2 {
		return info, fmt.Errorf("tensor %q: data_offsets must be [begin, end], got %v", name, e.DataOffsets)
	}
	var off [2]int64
	for i, num := range e.DataOffsets {
		v, err := strconv.ParseInt(num.String(), 10, 64)
		if err != nil || v < 0 {
			return info, fmt.Errorf("tensor %q: data_offsets %v: %s is not a non-negative integer", name, e.DataOffsets, num)
		}
		off[i] = v
	}
	info.Begin, info.End = off[0], off[1]
	if info.Begin > info.End {
		return info, fmt.Errorf("tensor %q: data_offsets [%d, %d]: begin is after end", name, info.Begin, info.End)
	}
	if info.End > dataSize {
		return info, fmt.Errorf("tensor %q: data_offsets [%d, %d] out of range of the %d-byte data section", name, info.Begin, info.End, dataSize)
	}
	size := int64(dt.Size())
	// Any element count that overflows is far larger than the data section.
	if overflow || (elems != 0 && elems > math.MaxInt64/size) || elems > math.MaxInt {
		return info, fmt.Errorf("tensor %q: shape %v overflows (larger than the %d-byte data section)", name, info.Shape, dataSize)
	}
	if elems*size != info.End-info.Begin {
		return info, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes but data_offsets [%d, %d] span %d", name, info.Shape, dt, elems*size, info.Begin, info.End, info.End-info.Begin)
	}
	return info, nil
}

func truncate(b []byte) string {
	const max = 60
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
