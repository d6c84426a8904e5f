package weights

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
)

func writeTemp(t testing.TB, name string, tensors []Tensor, md map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, WriteFile(p, tensors, md))
	return p
}

func TestRoundTrip(t *testing.T) {
	f32 := []float32{1, -2.5, float32(math.Inf(1)), 3.25e-8, 0, float32(math.Copysign(0, -1))}
	half := []float32{1, -2, 0.5, 65504, 1.0 / 1024}
	bhalf := []float32{1, -2, 0.5, 66048, 1.0 / 1024}
	i64 := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 49407}
	u8 := []uint8{0, 1, 127, 255}
	tensors := []Tensor{
		{Name: "f32", Shape: []int{2, 3}, F32: f32},
		{Name: "f16", DType: F16, Shape: []int{5}, F32: half},
		{Name: "bf16", DType: BF16, Shape: []int{1, 5}, F32: bhalf},
		{Name: "ids", Shape: []int{1, 6}, I64: i64},
		{Name: "img", Shape: []int{2, 2}, U8: u8},
		{Name: "scalar", Shape: []int{}, F32: []float32{7}},
		{Name: "empty", Shape: []int{0, 3}, F32: []float32{}},
	}
	md := map[string]string{"format": "pt", "note": `quote " and <tag>`}
	p := writeTemp(t, "rt.safetensors", tensors, md)

	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	hlen := binary.LittleEndian.Uint64(raw)
	assert.Zero(t, hlen%8, "header padded to a multiple of 8")

	f, err := Open(p)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, p, f.Path())
	assert.Equal(t, md, f.Metadata())
	assert.Equal(t, []string{"bf16", "empty", "f16", "f32", "ids", "img", "scalar"}, f.Names())

	got, shape, err := f.Float32("f32")
	require.NoError(t, err)
	assert.Equal(t, []int{2, 3}, shape)
	for i := range f32 {
		assert.Equal(t, math.Float32bits(f32[i]), math.Float32bits(got[i]), "f32[%d]", i)
	}
	got, _, err = f.Float32("f16")
	require.NoError(t, err)
	assert.Equal(t, half, got)
	got, shape, err = f.Float32("bf16")
	require.NoError(t, err)
	assert.Equal(t, bhalf, got)
	assert.Equal(t, []int{1, 5}, shape)
	ids, shape, err := f.Int64("ids")
	require.NoError(t, err)
	assert.Equal(t, i64, ids)
	assert.Equal(t, []int{1, 6}, shape)
	img, _, err := f.Uint8("img")
	require.NoError(t, err)
	assert.Equal(t, u8, img)
	sc, shape, err := f.Float32("scalar")
	require.NoError(t, err)
	assert.Equal(t, []float32{7}, sc)
	assert.Equal(t, []int{}, shape)
	e, shape, err := f.Float32("empty")
	require.NoError(t, err)
	assert.Empty(t, e)
	assert.Equal(t, []int{0, 3}, shape)

	info, ok := f.Info("f16")
	require.True(t, ok)
	assert.Equal(t, F16, info.DType)
	assert.Equal(t, int64(10), info.ByteSize())
	info.Shape[0] = 99 // a copy
	info, _ = f.Info("f16")
	assert.Equal(t, []int{5}, info.Shape)

	dst := make([]float32, 5)
	require.NoError(t, f.Float32Into("f16", dst))
	assert.Equal(t, half, dst)
	err = f.Float32Into("f16", make([]float32, 4))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `tensor "f16" has 5 elements`)
	assert.Contains(t, err.Error(), "destination has 4")

	_, _, err = f.Float32("ids")
	assert.ErrorContains(t, err, `tensor "ids" has dtype I64`)
	_, _, err = f.Int64("f32")
	assert.ErrorContains(t, err, `tensor "f32" has dtype F32, want I64`)
	_, _, err = f.Float32("nope")
	assert.True(t, errors.Is(err, ErrNotFound))
	assert.ErrorContains(t, err, p)

	require.NoError(t, f.Close())
	require.NoError(t, f.Close())
	_, _, err = f.Float32("f32")
	assert.ErrorContains(t, err, "closed")
}

func TestWriteMatchesBytes(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, []Tensor{{Name: "x", Shape: []int{2}, F32: []float32{1, 2}}}, nil))
	hdr := `{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	want := rawFile(hdr, 0)
	want = binary.LittleEndian.AppendUint32(want, math.Float32bits(1))
	want = binary.LittleEndian.AppendUint32(want, math.Float32bits(2))
	assert.Equal(t, want, buf.Bytes())
}

func TestWriteErrors(t *testing.T) {
	cases := []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"size", []Tensor{{Name: "a", Shape: []int{3}, F32: []float32{1}}}, `tensor "a": shape [3] has 3 elements, data has 1`},
		{"dup", []Tensor{{Name: "a", F32: []float32{1}}, {Name: "a", F32: []float32{1}}}, `duplicate tensor name "a"`},
		{"empty name", []Tensor{{F32: []float32{1}}}, "invalid tensor name"},
		{"metadata name", []Tensor{{Name: "__metadata__", F32: []float32{1}}}, "invalid tensor name"},
		{"two fields", []Tensor{{Name: "a", Shape: []int{1}, F32: []float32{1}, I64: []int64{1}}}, "more than one"},
		{"wrong field", []Tensor{{Name: "a", DType: I64, Shape: []int{1}, F32: []float32{1}}}, "takes its data from I64"},
		{"unsupported", []Tensor{{Name: "a", DType: F64, Shape: []int{1}, F32: []float32{1}}}, "writing dtype F64 is not supported"},
		{"negative", []Tensor{{Name: "a", Shape: []int{-1}, F32: []float32{}}}, "negative dimension"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, c.tensors, nil)
			assert.ErrorContains(t, err, c.want)
			p := filepath.Join(t.TempDir(), "x.safetensors")
			assert.Error(t, WriteFile(p, c.tensors, nil))
			_, statErr := os.Stat(p)
			assert.True(t, os.IsNotExist(statErr))
		})
	}
}

func TestHalfTableMatchesFloat16(t *testing.T) {
	src := make([]byte, 2<<16)
	for i := 0; i < 1<<16; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	// Repeat to cross the parallel threshold.
	big := bytes.Repeat(src, 8)
	dst := make([]float32, len(big)/2)
	decodeF16(dst, big)
	for i, v := range dst {
		want := float16.Frombits(uint16(i)).Float32()
		if math.Float32bits(v) != math.Float32bits(want) {
			t.Fatalf("f16 %#04x: got %v (%#08x), want %v (%#08x)", uint16(i), v, math.Float32bits(v), want, math.Float32bits(want))
		}
	}
	h := make([]uint16, 1<<16)
	for i := range h {
		h[i] = uint16(i)
	}
	out := make([]float32, len(h))
	require.NoError(t, HalfToFloat32(out, h))
	require.ErrorContains(t, HalfToFloat32(out[:3], h), "3 destination values for 65536 halves")
	require.NoError(t, HalfToFloat32(nil, nil))
	for i := range out {
		require.Equal(t, math.Float32bits(dst[i]), math.Float32bits(out[i]))
	}
}

func TestBF16(t *testing.T) {
	vals := []float32{1, -1, 3.140625, 1e-40, float32(math.Inf(-1)), 1.00390625 /* tie, rounds to even (1) */, 1.01171875 /* tie, rounds up */}
	want := []float32{1, -1, 3.140625, 0, float32(math.Inf(-1)), 1, 1.015625}
	for i, v := range vals {
		got := math.Float32frombits(uint32(bf16Bits(v)) << 16)
		if i == 3 {
			assert.InDelta(t, 1e-40, got, 1e-41)
			continue
		}
		assert.Equal(t, want[i], got, "bf16(%v)", v)
	}
	nan := math.Float32frombits(uint32(bf16Bits(float32(math.NaN()))) << 16)
	assert.True(t, nan != nan)
	// A bulk decode across the parallel threshold.
	n := 1 << 19
	src := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	dst := make([]float32, n)
	decodeBF16(dst, src)
	for i := 0; i < n; i++ {
		if math.Float32bits(dst[i]) != uint32(uint16(i))<<16 {
			t.Fatalf("bf16 %d", i)
		}
	}
}

func TestLargeF32RoundTrip(t *testing.T) {
	n := 1<<20 + 13
	data := make([]float32, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = r.Float32()*2 - 1
	}
	p := writeTemp(t, "big.safetensors", []Tensor{
		{Name: "pad", DType: U8, Shape: []int{3}, U8: []uint8{1, 2, 3}}, // misaligns what follows
		{Name: "w", Shape: []int{n}, F32: data},
		{Name: "h", DType: F16, Shape: []int{n}, F32: data},
	}, nil)
	f, err := Open(p)
	require.NoError(t, err)
	defer f.Close()
	got, _, err := f.Float32("w")
	require.NoError(t, err)
	require.Equal(t, data, got)
	got, _, err = f.Float32("h")
	require.NoError(t, err)
	for i := range data {
		if d := math.Abs(float64(got[i] - data[i])); d > 1.0/2048 {
			t.Fatalf("f16 round trip %d: %v vs %v", i, got[i], data[i])
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(filepath.Join(dir, "missing.safetensors"))
	assert.ErrorContains(t, err, "missing.safetensors")
	short := filepath.Join(dir, "short.safetensors")
	require.NoError(t, os.WriteFile(short, []byte{1, 2}, 0o644))
	_, err = Open(short)
	assert.ErrorContains(t, err, short+": file is 2 bytes")
	bad := filepath.Join(dir, "bad.safetensors")
	require.NoError(t, os.WriteFile(bad, rawFile(`{"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}`, 4), 0o644))
	_, err = Open(bad)
	assert.EqualError(t, err, "weights: "+bad+`: tensor "w": unknown dtype "F99"`)
	_, err = Open(dir)
	assert.ErrorContains(t, err, "not a regular file")
}

func TestSetAndOpenComponent(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, WriteFile(filepath.Join(dir, "model-00001-of-00002.safetensors"), []Tensor{
		{Name: "a", Shape: []int{2}, F32: []float32{1, 2}},
		{Name: "ids", Shape: []int{1}, I64: []int64{5}},
	}, nil))
	require.NoError(t, WriteFile(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{
		{Name: "b", DType: F16, Shape: []int{1, 1}, F32: []float32{3}},
	}, nil))
	_, err := OpenComponent(dir)
	require.Error(t, err)
	assert.ErrorContains(t, err, "no safetensors weights found")
	assert.ErrorContains(t, err, "diffusion_pytorch_model.safetensors, model.safetensors")

	idx := `{"metadata":{"total_size":14},"weight_map":{"a":"model-00001-of-00002.safetensors","ids":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(idx), 0o644))
	s, err := OpenComponent(dir)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, []string{"a", "b", "ids"}, s.Names())
	assert.True(t, s.Has("b"))
	assert.False(t, s.Has("c"))
	v, shape, err := s.Float32("b")
	require.NoError(t, err)
	assert.Equal(t, []float32{3}, v)
	assert.Equal(t, []int{1, 1}, shape)
	dst := make([]float32, 2)
	require.NoError(t, s.Float32Into("a", dst))
	assert.Equal(t, []float32{1, 2}, dst)
	ids, _, err := s.Int64("ids")
	require.NoError(t, err)
	assert.Equal(t, []int64{5}, ids)
	info, ok := s.Info("b")
	require.True(t, ok)
	assert.Equal(t, F16, info.DType)
	_, _, err = s.Float32("c")
	assert.True(t, errors.Is(err, ErrNotFound))
	assert.ErrorContains(t, err, "model.safetensors.index.json")
	assert.Len(t, s.Files(), 2)

	// A single file takes precedence over the index.
	require.NoError(t, WriteFile(filepath.Join(dir, "model.fp16.safetensors"), []Tensor{{Name: "only", Shape: []int{1}, F32: []float32{9}}}, nil))
	s2, err := OpenComponent(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"only"}, s2.Names())
	require.NoError(t, s2.Close())
	require.NoError(t, WriteFile(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), []Tensor{{Name: "first", Shape: []int{1}, F32: []float32{9}}}, nil))
	s3, err := OpenComponent(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"first"}, s3.Names())
	require.NoError(t, s3.Close())

	// Duplicates across files.
	_, err = OpenFiles(filepath.Join(dir, "model.fp16.safetensors"), filepath.Join(dir, "model.fp16.safetensors"))
	assert.ErrorContains(t, err, `tensor "only" is in both`)

	// An index naming a tensor its shard lacks.
	bad := filepath.Join(dir, "bad.index.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"weight_map":{"zz":"model-00002-of-00002.safetensors"}}`), 0o644))
	_, err = OpenIndex(bad)
	assert.ErrorContains(t, err, `weight_map places "zz"`)
	require.NoError(t, os.WriteFile(bad, []byte(`{"weight_map":`), 0o644))
	_, err = OpenIndex(bad)
	assert.ErrorContains(t, err, "invalid index")

	_, err = OpenComponent(filepath.Join(dir, "nope"))
	assert.Error(t, err)
}

func TestMemSource(t *testing.T) {
	m := NewMemSource()
	data := []float32{1, 2, 3, 4, 5, 6}
	require.NoError(t, m.Add("w", []int{2, 3}, data))
	var src Source = m
	assert.Equal(t, []string{"w"}, src.Names())
	info, ok := src.Info("w")
	require.True(t, ok)
	assert.Equal(t, TensorInfo{Name: "w", DType: F32, Shape: []int{2, 3}, End: 24}, info)
	got, shape, err := src.Float32("w")
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Equal(t, []int{2, 3}, shape)
	got[0] = 100
	assert.Equal(t, float32(1), data[0], "copy by default")
	m.NoCopy = true
	got, _, _ = src.Float32("w")
	assert.Same(t, &data[0], &got[0])
	_, _, err = src.Float32("x")
	assert.True(t, errors.Is(err, ErrNotFound))
	assert.ErrorContains(t, m.Add("bad", []int{4}, data), "shape [4] has 4 elements, data has 6")
	assert.ErrorContains(t, m.Add("bad", []int{-1, 2}, data), "negative dimension")
	assert.ErrorContains(t, m.Add("bad", []int{1 << 40, 1 << 40}, data), "too large")
	assert.False(t, m.Has("bad"))
	assert.Error(t, m.Float32Into("w", make([]float32, 5)))
	assert.True(t, m.Has("w"))
	m.Delete("w")
	assert.Equal(t, 0, m.Len())
}

// BenchmarkF16ToF32 measures the bulk float16 -> float32 conversion (values/s).
func BenchmarkF16ToF32(b *testing.B) {
	n := 64 << 20
	src := make([]byte, 2*n)
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(r.Uint32()&0x7bff))
	}
	dst := make([]float32, n)
	halfTable()
	b.SetBytes(int64(2 * n))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		decodeF16(dst, src)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
}

// BenchmarkLoadF32 measures Float32 on an F32 tensor of a mapped file (values/s).
func BenchmarkLoadF32(b *testing.B) {
	benchLoad(b, F32)
}

// BenchmarkLoadF16 measures Float32 on an F16 tensor of a mapped file (values/s).
func BenchmarkLoadF16(b *testing.B) {
	benchLoad(b, F16)
}

func benchLoad(b *testing.B, dt DType) {
	n := 32 << 20
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(i%1000) / 1000
	}
	p := writeTemp(b, "bench.safetensors", []Tensor{{Name: "w", DType: dt, Shape: []int{n}, F32: data}}, nil)
	f, err := Open(p)
	require.NoError(b, err)
	defer f.Close()
	dst := make([]float32, n)
	require.NoError(b, f.Float32Into("w", dst)) // fault the mapping in
	b.SetBytes(int64(n * dt.Size()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.Float32Into("w", dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
}
