package oracle

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdxs-go/sdxs/weights"
)

// TestAssertCase checks AssertCase on a small reference written here: exact tensors pass; a
// tensor beyond its bound, a wrong shape, a tensor the reference lacks, a reference tensor left
// out, and an image pixel off by 2 each fail with the tensor's name.
func TestAssertCase(t *testing.T) {
	ref := []weights.Tensor{
		{Name: "case1.input_ids", DType: weights.I64, Shape: []int{1, 3}, I64: []int64{49406, 7, 49407}},
		{Name: "case1.noise", DType: weights.F32, Shape: []int{1, 1, 2, 2}, F32: []float32{1, -1, 0.5, 2}},
		{Name: "case1.unet_output", DType: weights.F32, Shape: []int{1, 1, 2, 2}, F32: []float32{3, 1, 2, 4}},
		{Name: "case1.control_down.0", DType: weights.F32, Shape: []int{1, 2, 1, 1}, F32: []float32{1, 2}},
		{Name: "case1.image", DType: weights.U8, Shape: []int{1, 2, 3}, U8: []uint8{0, 10, 20, 30, 40, 250}},
		{Name: "case0.noise", DType: weights.F32, Shape: []int{1}, F32: []float32{9}},
	}
	path := filepath.Join(t.TempDir(), "ref.safetensors")
	if err := weights.WriteFile(path, ref, nil); err != nil {
		t.Fatal(err)
	}
	f, err := weights.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := func(edit func([]weights.Tensor) []weights.Tensor) []weights.Tensor {
		var ts []weights.Tensor
		for _, r := range ref[:5] {
			r.Name = strings.TrimPrefix(r.Name, "case1.")
			r.F32, r.I64, r.U8 = slices.Clone(r.F32), slices.Clone(r.I64), slices.Clone(r.U8)
			ts = append(ts, r)
		}
		if edit != nil {
			ts = edit(ts)
		}
		return ts
	}
	cases := []struct {
		name   string
		edit   func([]weights.Tensor) []weights.Tensor
		substr string
	}{
		{"exact", nil, ""},
		{"mean of pixels", func(ts []weights.Tensor) []weights.Tensor { ts[4].U8[5]++; return ts }, "case1.image: worst pixel difference 1 (bound 1), mean absolute difference 0.1667 (bound 0.05)"},
		{"pixel off by 2", func(ts []weights.Tensor) []weights.Tensor { ts[4].U8[0] += 2; return ts }, "case1.image: worst pixel difference 2"},
		{"noise", func(ts []weights.Tensor) []weights.Tensor { ts[1].F32[2] += 1e-4; return ts }, "case1.noise: max abs error"},
		{"residual", func(ts []weights.Tensor) []weights.Tensor { ts[3].F32[1] = 2.01; return ts }, "case1.control_down.0: relative L2 error"},
		{"ids", func(ts []weights.Tensor) []weights.Tensor { ts[0].I64[1] = 8; return ts }, "case1.input_ids: [49406 8 49407], want [49406 7 49407]"},
		{"shape", func(ts []weights.Tensor) []weights.Tensor { ts[2].Shape = []int{1, 4}; return ts }, "case1.unet_output: F32[1 4], the reference has F32[1 1 2 2]"},
		{"unknown", func(ts []weights.Tensor) []weights.Tensor {
			return append(ts, weights.Tensor{Name: "decoded", DType: weights.F32, Shape: []int{1}, F32: []float32{0}})
		}, "case1.decoded: not in the reference"},
		{"left out", func(ts []weights.Tensor) []weights.Tensor { return ts[:4] }, "case1.image: in the reference but not compared"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			pass := AssertCase(r, f, 1, got(c.edit))
			if pass != (c.substr == "") || pass != (len(r.errors) == 0) {
				t.Fatalf("returned %v with errors %q", pass, r.errors)
			}
			if all := strings.Join(r.errors, "\n"); !strings.Contains(all, c.substr) {
				t.Fatalf("errors %q do not contain %q", all, c.substr)
			}
		})
	}
}
