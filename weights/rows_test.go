package weights

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFloat32Rows(t *testing.T) {
	table := make([]float32, 5*3)
	for i := range table {
		table[i] = float32(i) + 0.5
	}
	for _, dt := range []DType{F32, F16, BF16} {
		path := filepath.Join(t.TempDir(), "t.safetensors")
		require.NoError(t, WriteFile(path, []Tensor{{Name: "emb", DType: dt, Shape: []int{5, 3}, F32: table}}, nil))
		f, err := Open(path)
		require.NoError(t, err)
		dst := make([]float32, 2*3)
		require.NoError(t, f.Float32Rows("emb", []int{5, 3}, []int{4, 1}, dst))
		require.Equal(t, []float32{12.5, 13.5, 14.5, 3.5, 4.5, 5.5}, dst, dt.String())
		require.ErrorContains(t, f.Float32Rows("emb", []int{5, 4}, []int{0}, make([]float32, 4)), "has shape [5 3], want [5 4]")
		require.ErrorContains(t, f.Float32Rows("emb", []int{5, 3}, []int{5}, make([]float32, 3)), "row 5")
		require.ErrorContains(t, f.Float32Rows("emb", []int{5, 3}, []int{0}, make([]float32, 2)), "destination has 2")
		require.ErrorIs(t, f.Float32Rows("nope", []int{5, 3}, []int{0}, make([]float32, 3)), ErrNotFound)
		require.NoError(t, f.Close())
	}
	m := NewMemSource()
	require.NoError(t, m.Add("emb", []int{5, 3}, table))
	dst := make([]float32, 3)
	require.NoError(t, m.Float32Rows("emb", []int{5, 3}, []int{2}, dst))
	require.Equal(t, []float32{6.5, 7.5, 8.5}, dst)
}

// TestReadTwiceAfterDroppingPages reads a page-spanning tensor twice: the first read drops the
// mapped pages from the resident set, and the second must find the same values.
func TestReadTwiceAfterDroppingPages(t *testing.T) {
	data := make([]float32, 5000) // 20 KB: whole pages inside
	for i := range data {
		data[i] = float32(i) * 0.25
	}
	path := filepath.Join(t.TempDir(), "big.safetensors")
	require.NoError(t, WriteFile(path, []Tensor{{Name: "w", DType: F32, Shape: []int{50, 100}, F32: data}}, nil))
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	for i := 0; i < 2; i++ {
		got, shape, err := f.Float32("w")
		require.NoError(t, err)
		require.Equal(t, []int{50, 100}, shape)
		require.Equal(t, data, got)
	}
}
