package weights

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// ErrNotFound is wrapped by the errors returned for a tensor name a file or set does not hold.
var ErrNotFound = errors.New("tensor not found")

// File is an open safetensors file. Its contents are memory-mapped read-only (read into
// memory on systems without mmap); tensors are decoded on request. A File is safe for
// concurrent reads; Close must not run concurrently with other methods.
type File struct {
	path    string
	data    []byte
	release func([]byte) error
	header  *Header
	byName  map[string]int
	names   []string
}

// Open maps the safetensors file at path and validates its header. No tensor data is read
// until asked for.
func Open(path string) (*File, error) {
	data, release, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(path, data, int64(len(data)))
	if err != nil {
		_ = release(data)
		return nil, err
	}
	f := &File{path: path, data: data, release: release, header: h, byName: make(map[string]int, len(h.Tensors))}
	f.names = make([]string, len(h.Tensors))
	for i, t := range h.Tensors {
		f.byName[t.Name] = i
		f.names[i] = t.Name
	}
	return f, nil
}

// Close unmaps the file. Slices returned by Raw become invalid; converted tensors stay valid.
// Closing twice is harmless.
func (f *File) Close() error {
	if f.data == nil {
		return nil
	}
	data := f.data
	f.data = nil
	return f.release(data)
}

// Path returns the path the file was opened from.
func (f *File) Path() string { return f.path }

// Header returns the parsed header (shared; do not modify).
func (f *File) Header() *Header { return f.header }

// Names returns the tensor names, sorted.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Has reports whether the file holds a tensor called name.
func (f *File) Has(name string) bool {
	_, ok := f.byName[name]
	return ok
}

// Info returns the description of the tensor called name.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.header.Tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Metadata returns a copy of the header's __metadata__ map (nil when absent).
func (f *File) Metadata() map[string]string { return maps.Clone(f.header.Metadata) }

// Raw returns the stored little-endian bytes of the tensor called name. The slice aliases the
// read-only mapping: it must not be written to and is valid only until Close.
func (f *File) Raw(name string) ([]byte, TensorInfo, error) {
	i, ok := f.byName[name]
	if !ok {
		return nil, TensorInfo{}, fmt.Errorf("weights: %s: %w: %q", f.path, ErrNotFound, name)
	}
	if f.data == nil {
		return nil, TensorInfo{}, fmt.Errorf("weights: %s: file is closed (reading %q)", f.path, name)
	}
	t := f.header.Tensors[i]
	off := f.header.DataOffset
	return f.data[off+t.Begin : off+t.End : off+t.End], t, nil
}

// rawOf is Raw with a dtype check.
func (f *File) rawOf(name string, ok func(DType) bool, want string) ([]byte, TensorInfo, error) {
	raw, t, err := f.Raw(name)
	if err != nil {
		return nil, t, err
	}
	if !ok(t.DType) {
		return nil, t, fmt.Errorf("weights: %s: tensor %q has dtype %s, want %s", f.path, name, t.DType, want)
	}
	return raw, t, nil
}

// Float32 decodes the tensor called name (F32, F16, BF16 or F64) into a new slice and returns
// it with a copy of its shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	raw, t, err := f.rawOf(name, DType.IsFloat, "a float type (F32, F16, BF16, F64)")
	if err != nil {
		return nil, nil, err
	}
	dst := make([]float32, t.NumElements())
	decodeFloat(dst, raw, t.DType)
	dropPages(f.data, raw)
	return dst, slices.Clone(t.Shape), nil
}

// Float32Into decodes the tensor called name into dst, whose length must equal the tensor's
// element count.
func (f *File) Float32Into(name string, dst []float32) error {
	raw, t, err := f.rawOf(name, DType.IsFloat, "a float type (F32, F16, BF16, F64)")
	if err != nil {
		return err
	}
	if n := t.NumElements(); len(dst) != n {
		return fmt.Errorf("weights: %s: tensor %q has %d elements (shape %v), destination has %d", f.path, name, n, t.Shape, len(dst))
	}
	decodeFloat(dst, raw, t.DType)
	dropPages(f.data, raw)
	return nil
}

// Int64 returns a copy of the I64 tensor called name and its shape.
func (f *File) Int64(name string) ([]int64, []int, error) {
	raw, t, err := f.rawOf(name, func(d DType) bool { return d == I64 }, "I64")
	if err != nil {
		return nil, nil, err
	}
	dst := make([]int64, t.NumElements())
	decodeI64(dst, raw)
	return dst, slices.Clone(t.Shape), nil
}

// Uint8 returns a copy of the U8 tensor called name and its shape.
func (f *File) Uint8(name string) ([]uint8, []int, error) {
	raw, t, err := f.rawOf(name, func(d DType) bool { return d == U8 }, "U8")
	if err != nil {
		return nil, nil, err
	}
	return slices.Clone(raw), slices.Clone(t.Shape), nil
}

// Float32Rows decodes rows of the tensor called name, indexed along its first dimension, into
// dst (len(rows) × the size of one row), without converting the rest of the tensor: an
// embedding table can stay in the mapped file. The tensor must have the shape want.
func (f *File) Float32Rows(name string, want []int, rows []int, dst []float32) error {
	raw, t, err := f.rawOf(name, DType.IsFloat, "a float type (F32, F16, BF16, F64)")
	if err != nil {
		return err
	}
	if !slices.Equal(t.Shape, want) {
		return fmt.Errorf("weights: %s: tensor %q has shape %v, want %v", f.path, name, t.Shape, want)
	}
	if len(t.Shape) == 0 || t.Shape[0] == 0 {
		return fmt.Errorf("weights: %s: tensor %q of shape %v has no rows", f.path, name, t.Shape)
	}
	rowLen := t.NumElements() / t.Shape[0]
	if len(dst) != len(rows)*rowLen {
		return fmt.Errorf("weights: %s: %d rows of tensor %q need %d values, destination has %d", f.path, len(rows), name, len(rows)*rowLen, len(dst))
	}
	rowBytes := rowLen * t.DType.Size()
	for i, r := range rows {
		if r < 0 || r >= t.Shape[0] {
			return fmt.Errorf("weights: %s: row %d of tensor %q is outside [0, %d)", f.path, r, name, t.Shape[0])
		}
		decodeFloat(dst[i*rowLen:(i+1)*rowLen], raw[r*rowBytes:(r+1)*rowBytes], t.DType)
	}
	return nil
}
