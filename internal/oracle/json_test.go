package oracle

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sdxs-go/sdxs/weights"
)

// TestReadDump writes one tensor of each kind a dump holds and reads them back.
func TestReadDump(t *testing.T) {
	want := []weights.Tensor{
		{Name: "a_ids", DType: weights.I64, Shape: []int{1, 2}, I64: []int64{49406, 49407}},
		{Name: "b_latents", DType: weights.F32, Shape: []int{2}, F32: []float32{0.5, -1}},
		{Name: "c_image", DType: weights.U8, Shape: []int{1, 3}, U8: []uint8{0, 128, 255}},
	}
	p := filepath.Join(t.TempDir(), "dump.safetensors")
	if err := weights.WriteFile(p, want, nil); err != nil {
		t.Fatal(err)
	}
	got := ReadDump(t, p)
	if len(got) != len(want) {
		t.Fatalf("%d tensors, want %d", len(got), len(want))
	}
	byName := map[string]weights.Tensor{}
	for _, g := range got {
		byName[g.Name] = g
	}
	for _, w := range want {
		if g := byName[w.Name]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %+v, want %+v", w.Name, g, w)
		}
	}
}

// TestJSON decodes an oracle cases.json.
func TestJSON(t *testing.T) {
	var cases []struct {
		Prompt string `json:"prompt"`
	}
	JSON(t, &cases, "sdxs-dreamshaper-tiny", "cases.json")
	if len(cases) == 0 || cases[0].Prompt == "" {
		t.Fatalf("cases.json: %+v", cases)
	}
}

// TestOpenComponent opens an oracle model's UNet folder.
func TestOpenComponent(t *testing.T) {
	src := OpenComponent(t, Path(t, "sdxs-dreamshaper-tiny", "model", "unet"))
	if !src.Has("conv_in.weight") {
		t.Fatal("conv_in.weight not in the UNet")
	}
}
