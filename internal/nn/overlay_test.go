package nn

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/weights"
)

// TestOverlay: an overlay replaces the named parameters (and what derives from them) and shares
// every other one with its parent, which is left unchanged.
func TestOverlay(t *testing.T) {
	src := weights.NewMemSource()
	src.Add("a.weight", []int{2, 2}, []float32{1, 2, 3, 4})
	src.Add("b.weight", []int{2, 2}, []float32{5, 6, 7, 8})
	base := NewParams(src)
	calls := 0
	over := base.Overlay([]string{"a.weight"}, func(name string, shape []int, w []float32) ([]float32, error) {
		calls++
		require.Equal(t, "a.weight", name)
		require.Equal(t, []int{2, 2}, shape)
		out := make([]float32, len(w))
		for i, v := range w {
			out[i] = v + 10
		}
		return out, nil
	})
	require.True(t, over.Overridden("a.weight"))
	require.False(t, base.Overridden("a.weight"))

	a, err := over.Get("a.weight", []int{2, 2})
	require.NoError(t, err)
	require.Equal(t, []float32{11, 12, 13, 14}, a.Float32s())
	a0, err := base.Get("a.weight", []int{2, 2})
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2, 3, 4}, a0.Float32s())
	b, err := over.Get("b.weight", []int{2, 2})
	require.NoError(t, err)
	b0, err := base.Get("b.weight", []int{2, 2})
	require.NoError(t, err)
	require.Same(t, b0, b, "a parameter the overlay does not replace is shared")

	double := func(w []float32) []float32 {
		out := make([]float32, len(w))
		for i, v := range w {
			out[i] = 2 * v
		}
		return out
	}
	da, err := over.derivedParam("a.weight", "x2", []int{2, 2}, double)
	require.NoError(t, err)
	require.Equal(t, []float32{22, 24, 26, 28}, da)
	da0, err := base.derivedParam("a.weight", "x2", []int{2, 2}, double)
	require.NoError(t, err)
	require.Equal(t, []float32{2, 4, 6, 8}, da0)
	db, err := over.derivedParam("b.weight", "x2", []int{2, 2}, double)
	require.NoError(t, err)
	db0, err := base.derivedParam("b.weight", "x2", []int{2, 2}, double)
	require.NoError(t, err)
	require.Same(t, &db0[0], &db[0], "derived values of shared parameters are shared")
	require.Equal(t, 1, calls, "the replacement is computed once")

	_, err = over.Get("a.weight", []int{4})
	var se *ShapeError
	require.ErrorAs(t, err, &se)
	shape, ok := over.Shape("b.weight")
	require.True(t, ok)
	require.Equal(t, []int{2, 2}, shape)
	_, ok = over.Shape("c.weight")
	require.False(t, ok)
}
