package lora

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
	"github.com/x448/float16"
)

// A PyTorch checkpoint written by torch.save (PyTorch 1.6 and later) is a zip archive: a
// pickle "<prefix>/data.pkl" describing the object, and one record "<prefix>/data/<key>" per
// tensor storage, raw little-endian values. The pickle is read by gopickle's interpreter, which
// never runs Python; on top of that, only the globals a state dict of tensors needs are
// resolved, and any other global is an error naming it, so a pickle that asks for os.system or
// a class of its own is refused before anything is built from it.

// storageTypes are the storage classes a checkpoint may name, by their global. With
// _rebuild_tensor_v2, _rebuild_parameter and collections.OrderedDict (which gopickle resolves
// itself) they are the only globals a state dict of tensors needs.
var storageTypes = map[string]storageType{
	"torch.FloatStorage":    {name: "FloatStorage", size: 4},
	"torch.HalfStorage":     {name: "HalfStorage", size: 2},
	"torch.BFloat16Storage": {name: "BFloat16Storage", size: 2},
	"torch.DoubleStorage":   {name: "DoubleStorage", size: 8},
}

// storageType is a tensor storage class named by the pickle (torch.FloatStorage, ...).
type storageType struct {
	name string
	size int // bytes per element
}

// storage is the float32 contents of one storage record.
type storage struct {
	data []float32
}

// rawTensor is a tensor of the checkpoint: float32 values in row-major order and a shape.
type rawTensor struct {
	shape []int
	data  []float32
}

// ForeignGlobalError reports a pickle that names a global other than the few a tensor state
// dict needs. Such a file is refused: it is not a plain checkpoint.
type ForeignGlobalError struct {
	Path   string
	Global string
}

func (e *ForeignGlobalError) Error() string {
	return fmt.Sprintf("lora: %s: the pickle asks for %s, which is not tensor storage; refusing to load it (only torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch.*Storage and collections.OrderedDict are allowed)", e.Path, e.Global)
}

// readTorchZip reads a torch.save zip archive holding a dict of tensors and returns them by
// name. Tensors of dtypes other than float32, float16, bfloat16 and float64 are refused.
func readTorchZip(file string) (out map[string]rawTensor, err error) {
	zr, err := zip.OpenReader(file)
	if err != nil {
		return nil, fmt.Errorf("lora: %s is not a PyTorch zip archive (the torch.save format since PyTorch 1.6), or it is truncated: %w", file, err)
	}
	defer zr.Close()
	var pkl *zip.File
	records := make(map[string]*zip.File)
	for _, f := range zr.File {
		records[f.Name] = f
		if path.Base(f.Name) == "data.pkl" && strings.Count(f.Name, "/") == 1 {
			if pkl != nil {
				return nil, fmt.Errorf("lora: %s: two data.pkl records (%s and %s)", file, pkl.Name, f.Name)
			}
			pkl = f
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("lora: %s: a zip archive without <name>/data.pkl is not a PyTorch checkpoint", file)
	}
	prefix := path.Dir(pkl.Name)
	if pkl.UncompressedSize64 > maxPickle {
		return nil, fmt.Errorf("lora: %s: %s is %d bytes, more than a state dict's pickle needs (%d)", file, pkl.Name, pkl.UncompressedSize64, maxPickle)
	}
	rc, err := pkl.Open()
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %s: %w", file, pkl.Name, err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxPickle+1))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %s: %w", file, pkl.Name, err)
	}
	if err := scanPickle(data); err != nil {
		return nil, fmt.Errorf("lora: %s: %s is not a valid pickle: %w", file, pkl.Name, err)
	}

	loaded := make(map[string]*storage)
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = func(module, name string) (any, error) {
		g := module + "." + name
		if st, ok := storageTypes[g]; ok {
			return st, nil
		}
		switch g {
		case "torch._utils._rebuild_tensor_v2":
			return rebuildTensor{}, nil
		case "torch._utils._rebuild_parameter":
			return rebuildParameter{}, nil
		}
		return nil, &ForeignGlobalError{Path: file, Global: g}
	}
	u.PersistentLoad = func(id any) (any, error) {
		t, ok := id.(*types.Tuple)
		if !ok || t.Len() < 5 {
			return nil, fmt.Errorf("persistent id %v is not a storage tuple", id)
		}
		kind, _ := t.Get(0).(string)
		st, okT := t.Get(1).(storageType)
		key, okK := t.Get(2).(string)
		numel, okN := t.Get(4).(int)
		if kind != "storage" || !okT || !okK || !okN || numel < 0 {
			return nil, fmt.Errorf("persistent id %v is not a storage of a supported float type", id)
		}
		if s, ok := loaded[key]; ok {
			return s, nil
		}
		name := prefix + "/data/" + key
		rec, ok := records[name]
		if !ok {
			return nil, fmt.Errorf("storage record %s is missing", name)
		}
		want := uint64(numel) * uint64(st.size)
		if rec.UncompressedSize64 < want {
			return nil, fmt.Errorf("storage record %s holds %d bytes, the pickle says %d %s elements (%d bytes)", name, rec.UncompressedSize64, numel, st.name, want)
		}
		r, err := rec.Open()
		if err != nil {
			return nil, fmt.Errorf("storage record %s: %w", name, err)
		}
		raw := make([]byte, want)
		_, err = io.ReadFull(r, raw)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("storage record %s: %w", name, err)
		}
		s := &storage{data: decode(raw, st)}
		loaded[key] = s
		return s, nil
	}

	defer func() {
		// gopickle indexes its stack and input without checking them everywhere: a malformed
		// pickle must be an error, not a crash.
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("lora: %s: malformed pickle: %v", file, r)
		}
	}()
	obj, err := u.Load()
	if err != nil {
		var fg *ForeignGlobalError
		if errors.As(err, &fg) {
			return nil, fg
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("lora: %s: the pickle %s ends before its STOP opcode (truncated?): %w", file, pkl.Name, err)
		}
		return nil, fmt.Errorf("lora: %s: reading the pickle: %w", file, err)
	}
	out = make(map[string]rawTensor)
	add := func(k, v any) error {
		name, ok := k.(string)
		if !ok {
			return fmt.Errorf("lora: %s: state dict key %v is not a string", file, k)
		}
		t, ok := v.(rawTensor)
		if !ok {
			return fmt.Errorf("lora: %s: state dict entry %q is %T, not a tensor", file, name, v)
		}
		out[name] = t
		return nil
	}
	switch d := obj.(type) {
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			ent := e.Value.(*types.OrderedDictEntry)
			if err := add(ent.Key, ent.Value); err != nil {
				return nil, err
			}
		}
	case *types.Dict:
		for _, ent := range *d {
			if err := add(ent.Key, ent.Value); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("lora: %s: the pickle holds %T, not a dict of tensors", file, obj)
	}
	return out, nil
}

func decode(raw []byte, st storageType) []float32 {
	n := len(raw) / st.size
	out := make([]float32, n)
	for i := range out {
		b := raw[i*st.size:]
		switch st.name {
		case "FloatStorage":
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b))
		case "HalfStorage":
			out[i] = float16.Frombits(binary.LittleEndian.Uint16(b)).Float32()
		case "BFloat16Storage":
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16)
		case "DoubleStorage":
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		}
	}
	return out
}

// rebuildTensor is torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
// requires_grad, backward_hooks[, metadata]): a strided view of a storage, copied out here
// into a row-major tensor.
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %d arguments, want at least 4", len(args))
	}
	s, ok1 := args[0].(*storage)
	off, ok2 := args[1].(int)
	size, ok3 := args[2].(*types.Tuple)
	stride, ok4 := args[3].(*types.Tuple)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: unexpected arguments %T, %T, %T, %T", args[0], args[1], args[2], args[3])
	}
	shape, err := ints(size)
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor_v2: size: %w", err)
	}
	strides, err := ints(stride)
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor_v2: stride: %w", err)
	}
	if len(shape) != len(strides) {
		return nil, fmt.Errorf("_rebuild_tensor_v2: size %v and stride %v differ in length", shape, strides)
	}
	n := 1
	last := off // the largest offset the view reaches
	for i, d := range shape {
		if d < 0 || strides[i] < 0 || d > len(s.data) || strides[i] > len(s.data) {
			return nil, fmt.Errorf("_rebuild_tensor_v2: size %v, stride %v do not fit a storage of %d elements", shape, strides, len(s.data))
		}
		if d > 0 {
			last += (d - 1) * strides[i]
		}
		n *= d
		if n > len(s.data) {
			// Only a broadcast view (a zero stride) holds more elements than its storage; a
			// state dict of weights has none, and a forged one must not make us allocate.
			return nil, fmt.Errorf("_rebuild_tensor_v2: a view of size %v, stride %v has more elements than its storage of %d", shape, strides, len(s.data))
		}
	}
	if off < 0 || (n > 0 && last >= len(s.data)) {
		return nil, fmt.Errorf("_rebuild_tensor_v2: a view of size %v, stride %v at offset %d overruns its storage of %d elements", shape, strides, off, len(s.data))
	}
	data := make([]float32, n)
	idx := make([]int, len(shape))
	for i := range data {
		p := off
		for d, v := range idx {
			p += v * strides[d]
		}
		data[i] = s.data[p]
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return rawTensor{shape: shape, data: data}, nil
}

// rebuildParameter is torch._utils._rebuild_parameter(data, requires_grad, backward_hooks):
// an nn.Parameter around a tensor, which is all a state dict needs of it.
type rebuildParameter struct{}

func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, errors.New("_rebuild_parameter: no arguments")
	}
	t, ok := args[0].(rawTensor)
	if !ok {
		return nil, fmt.Errorf("_rebuild_parameter: argument is %T, not a tensor", args[0])
	}
	return t, nil
}

func ints(t *types.Tuple) ([]int, error) {
	out := make([]int, t.Len())
	for i := range out {
		v, ok := t.Get(i).(int)
		if !ok {
			return nil, fmt.Errorf("element %d is %T, not an int", i, t.Get(i))
		}
		out[i] = v
	}
	return out, nil
}
