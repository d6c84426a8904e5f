package weights

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Tensor is one tensor to write. The data goes in the field matching DType: F32 for F32, F16
// and BF16 (converted to half precision, rounding to nearest even, on write), I64 for I64, U8
// for U8. When DType is zero it is inferred from the one data field that is set.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	F32   []float32
	I64   []int64
	U8    []uint8
}

// resolve checks t and returns its dtype and element count.
func (t *Tensor) resolve() (DType, int, error) {
	set := 0
	for _, b := range []bool{t.F32 != nil, t.I64 != nil, t.U8 != nil} {
		if b {
			set++
		}
	}
	if set > 1 {
		return Invalid, 0, fmt.Errorf("tensor %q: more than one of F32, I64, U8 is set", t.Name)
	}
	dt := t.DType
	if dt == Invalid {
		switch {
		case t.I64 != nil:
			dt = I64
		case t.U8 != nil:
			dt = U8
		default:
			dt = F32
		}
	}
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return Invalid, 0, fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		if d != 0 && n > math.MaxInt/8/d {
			return Invalid, 0, fmt.Errorf("tensor %q: shape %v is too large", t.Name, t.Shape)
		}
		n *= d
	}
	var have int
	switch dt {
	case F32, F16, BF16:
		if t.I64 != nil || t.U8 != nil {
			return Invalid, 0, fmt.Errorf("tensor %q: dtype %s takes its data from F32", t.Name, dt)
		}
		have = len(t.F32)
	case I64:
		if t.F32 != nil || t.U8 != nil {
			return Invalid, 0, fmt.Errorf("tensor %q: dtype I64 takes its data from I64", t.Name)
		}
		have = len(t.I64)
	case U8:
		if t.F32 != nil || t.I64 != nil {
			return Invalid, 0, fmt.Errorf("tensor %q: dtype U8 takes its data from U8", t.Name)
		}
		have = len(t.U8)
	default:
		return Invalid, 0, fmt.Errorf("tensor %q: writing dtype %s is not supported (F32, F16, BF16, I64, U8 are)", t.Name, dt)
	}
	if have != n {
		return Invalid, 0, fmt.Errorf("tensor %q: shape %v has %d elements, data has %d", t.Name, t.Shape, n, have)
	}
	return dt, n, nil
}

// EncodeHeader returns the 8-byte length and the JSON header (padded with spaces to a multiple
// of 8 bytes) that Write emits before the tensor data, laid out in the order given.
func EncodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var js bytes.Buffer
	js.WriteByte('{')
	first := true
	comma := func() {
		if !first {
			js.WriteByte(',')
		}
		first = false
	}
	str := func(s string) {
		b, _ := json.Marshal(s) // a string always marshals
		js.Write(b)
	}
	if len(metadata) > 0 {
		comma()
		js.WriteString(`"__metadata__":{`)
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				js.WriteByte(',')
			}
			str(k)
			js.WriteByte(':')
			str(metadata[k])
		}
		js.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i := range tensors {
		t := &tensors[i]
		if t.Name == "" || t.Name == "__metadata__" {
			return nil, fmt.Errorf("weights: write: invalid tensor name %q", t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("weights: write: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		dt, n, err := t.resolve()
		if err != nil {
			return nil, fmt.Errorf("weights: write: %w", err)
		}
		size := int64(n) * int64(dt.Size())
		comma()
		str(t.Name)
		fmt.Fprintf(&js, `:{"dtype":"%s","shape":[`, dt)
		for j, d := range t.Shape {
			if j > 0 {
				js.WriteByte(',')
			}
			fmt.Fprintf(&js, "%d", d)
		}
		fmt.Fprintf(&js, `],"data_offsets":[%d,%d]}`, off, off+size)
		off += size
	}
	js.WriteByte('}')
	for js.Len()%8 != 0 {
		js.WriteByte(' ')
	}
	out := make([]byte, 8, 8+js.Len())
	binary.LittleEndian.PutUint64(out, uint64(js.Len()))
	return append(out, js.Bytes()...), nil
}

// Write writes tensors and metadata to w in the safetensors format: the 8-byte little-endian
// header length, the JSON header padded with spaces to a multiple of 8, then the tensors'
// little-endian data, contiguous, in the order given.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, err := EncodeHeader(tensors, metadata)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.Write(hdr); err != nil {
		return fmt.Errorf("weights: write: %w", err)
	}
	var scratch []byte
	for i := range tensors {
		t := &tensors[i]
		dt, _, _ := t.resolve() // checked by EncodeHeader
		var err error
		switch dt {
		case F32:
			if littleEndian {
				_, err = bw.Write(bytesOf(t.F32))
			} else {
				err = writeChunked(bw, &scratch, len(t.F32), 4, func(dst []byte, lo, hi int) {
					for j, v := range t.F32[lo:hi] {
						binary.LittleEndian.PutUint32(dst[4*j:], math.Float32bits(v))
					}
				})
			}
		case F16:
			err = writeChunked(bw, &scratch, len(t.F32), 2, func(dst []byte, lo, hi int) { encodeF16(dst, t.F32[lo:hi]) })
		case BF16:
			err = writeChunked(bw, &scratch, len(t.F32), 2, func(dst []byte, lo, hi int) { encodeBF16(dst, t.F32[lo:hi]) })
		case I64:
			if littleEndian {
				_, err = bw.Write(bytesOf(t.I64))
			} else {
				err = writeChunked(bw, &scratch, len(t.I64), 8, func(dst []byte, lo, hi int) {
					for j, v := range t.I64[lo:hi] {
						binary.LittleEndian.PutUint64(dst[8*j:], uint64(v))
					}
				})
			}
		case U8:
			_, err = bw.Write(t.U8)
		}
		if err != nil {
			return fmt.Errorf("weights: write: tensor %q: %w", t.Name, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("weights: write: %w", err)
	}
	return nil
}

// writeChunked encodes n elements of size bytes each through a reusable scratch buffer.
func writeChunked(w io.Writer, scratch *[]byte, n, size int, encode func(dst []byte, lo, hi int)) error {
	const chunk = 1 << 16
	if cap(*scratch) < chunk*8 {
		*scratch = make([]byte, chunk*8)
	}
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		buf := (*scratch)[:(hi-lo)*size]
		encode(buf, lo, hi)
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes a safetensors file at path (see Write). The file is written under a
// temporary name in the same folder and renamed into place, so a failed write leaves no
// partial file behind.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) (err error) {
	if _, err := EncodeHeader(tensors, metadata); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := Write(tmp, tensors, metadata); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	if err := tmp.Chmod(0o644); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("weights: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("weights: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	return nil
}
