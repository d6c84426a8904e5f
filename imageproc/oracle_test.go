package imageproc

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestControlTensorOracle checks the control picture of the ControlNet case against the
// control_cond tensor diffusers computed from it: equal, not merely close.
func TestControlTensorOracle(t *testing.T) {
	img, err := DecodeFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "case5_control.png"))
	if err != nil {
		t.Fatal(err)
	}
	ref := oracle.Tensors(t, "sdxs-dreamshaper-tiny", "reference.safetensors")
	want, shape := oracle.Float32(t, ref, "case5.control_cond")
	if !slices.Equal(shape, []int{1, 3, 256, 256}) {
		t.Fatalf("case5.control_cond has shape %v, want [1 3 256 256]", shape)
	}
	got := ControlTensor(img, 256, 256, false)
	assertEqual(t, "case5.control_cond", got, want)

	inv := ControlTensor(img, 256, 256, true)
	for i := range inv {
		if inv[i] != 1-want[i] {
			t.Fatalf("inverted control tensor [%d] = %v, want 1 − %v", i, inv[i], want[i])
		}
	}
}

// TestInitTensorOracle checks the img2img init pictures against diffusers' init_image tensors,
// at the size DefaultSize gives (the size diffusers uses when given none).
func TestInitTensorOracle(t *testing.T) {
	var cases []struct {
		Width, Height int
		InitPNG       string `json:"init_png"`
	}
	data, err := os.ReadFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "img2img", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("img2img/cases.json has no cases")
	}
	ref := oracle.Tensors(t, "sdxs-dreamshaper-tiny", "img2img", "reference.safetensors")
	for i, c := range cases {
		img, err := DecodeFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "img2img", c.InitPNG))
		if err != nil {
			t.Fatal(err)
		}
		w, h := DefaultSize(img, 8)
		if w != c.Width || h != c.Height {
			t.Fatalf("case %d: DefaultSize = %d×%d, cases.json says %d×%d", i, w, h, c.Width, c.Height)
		}
		name := fmt.Sprintf("case%d.init_image", i)
		want, shape := oracle.Float32(t, ref, name)
		if !slices.Equal(shape, []int{1, 3, h, w}) {
			t.Fatalf("%s has shape %v, want [1 3 %d %d]", name, shape, h, w)
		}
		assertEqual(t, name, InitTensor(img, w, h), want)
	}
}

func assertEqual(t *testing.T, name string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: [%d] = %v, want %v (bits %08x vs %08x)", name, i, got[i], want[i],
				f32bits(got[i]), f32bits(want[i]))
		}
	}
}

func f32bits(v float32) uint32 { return math.Float32bits(v) }
