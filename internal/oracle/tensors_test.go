package oracle

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/x448/float16"

	"github.com/sdxs-go/sdxs/weights"
)

// TestReadAllFixtures reads every tensor of the reference, trace and torch_randn files with
// the project's reader and checks the values are finite.
func TestReadAllFixtures(t *testing.T) {
	dir := Dir(t)
	files := []string{"torch_randn.safetensors"}
	for _, pat := range []string{"*/reference.safetensors", "*/trace.safetensors"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
	}
	if len(files) < 5 {
		t.Fatalf("found only %v", files)
	}
	for _, rel := range files {
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			f := Tensors(t, rel)
			names := f.Names()
			if len(names) == 0 {
				t.Fatal("no tensors")
			}
			for _, name := range names {
				info, _ := f.Info(name)
				switch {
				case info.DType.IsFloat():
					v, shape := Float32(t, f, name)
					if len(v) != info.NumElements() || len(shape) != len(info.Shape) {
						t.Fatalf("%s: %d values for shape %v", name, len(v), shape)
					}
					for i, x := range v {
						if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
							t.Fatalf("%s[%d] = %v", name, i, x)
						}
					}
				case info.DType == weights.I64:
					v, _ := Int64(t, f, name)
					if len(v) != info.NumElements() {
						t.Fatalf("%s: %d values", name, len(v))
					}
				case info.DType == weights.U8:
					v, _ := Uint8(t, f, name)
					if len(v) != info.NumElements() {
						t.Fatalf("%s: %d values", name, len(v))
					}
				default:
					t.Fatalf("%s: unexpected dtype %s", name, info.DType)
				}
			}
		})
	}
}

// TestFixtureContents spot-checks values the oracle README documents.
func TestFixtureContents(t *testing.T) {
	ref := Tensors(t, "sdxs-dreamshaper-tiny", "reference.safetensors")
	ids, shape := Int64(t, ref, "case0.input_ids")
	if len(shape) != 2 || shape[0] != 1 || shape[1] != 77 {
		t.Fatalf("input_ids shape %v", shape)
	}
	if ids[0] != 49406 {
		t.Fatalf("input_ids start with %d, want 49406", ids[0])
	}
	img, ishape := Uint8(t, ref, "case0.image")
	if len(ishape) != 3 || ishape[2] != 3 || len(img) != ishape[0]*ishape[1]*3 {
		t.Fatalf("image shape %v", ishape)
	}
	// x0 = latents - sigma * eps, with latents = noise * sigma (README steps 4-6).
	noise, _ := Float32(t, ref, "case0.noise")
	eps, _ := Float32(t, ref, "case0.unet_output")
	x0, _ := Float32(t, ref, "case0.latents")
	const sigma = 14.614645
	want := make([]float32, len(noise))
	for i := range noise {
		want[i] = float32(float64(noise[i])*sigma - sigma*float64(eps[i]))
	}
	AssertMaxAbs(t, "case0.latents", x0, want, 1e-3)

	// The float16 trace holds the float32 reference rounded to half precision, and decodes to
	// it: the UNet's last module (conv_out) is case 0's unet_output. Its stored bits are the
	// reference rounded to nearest even (computed here with x448/float16, not with the reader's
	// own conversion), and the reader's float32 values are those halves exactly, within a
	// relative 2⁻¹¹ of the reference.
	for _, model := range []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"} {
		trace := Tensors(t, model, "trace.safetensors")
		ref := Tensors(t, model, "reference.safetensors")
		info, ok := trace.Info("unet.conv_out")
		if !ok || info.DType != weights.F16 {
			t.Fatalf("%s: trace unet.conv_out: %+v", model, info)
		}
		raw, _, err := trace.Raw("unet.conv_out")
		if err != nil {
			t.Fatal(err)
		}
		want, wshape := Float32(t, ref, "case0.unet_output")
		got, gshape := Float32(t, trace, "unet.conv_out")
		if !slices.Equal(gshape, wshape) || len(got) != len(want) || len(raw) != 2*len(want) {
			t.Fatalf("%s: trace unet.conv_out %v, reference unet_output %v", model, gshape, wshape)
		}
		for i, w := range want {
			half := float16.Fromfloat32(w)
			if bits := binary.LittleEndian.Uint16(raw[2*i:]); bits != uint16(half) {
				t.Fatalf("%s: unet.conv_out[%d] is stored as %#04x, the reference %v rounds to %#04x", model, i, bits, w, uint16(half))
			}
			if math.Float32bits(got[i]) != math.Float32bits(half.Float32()) {
				t.Fatalf("%s: unet.conv_out[%d] decodes to %v, want %v", model, i, got[i], half.Float32())
			}
			if d := math.Abs(float64(got[i]) - float64(w)); d > math.Abs(float64(w))/2048+6e-8 {
				t.Fatalf("%s: unet.conv_out[%d] = %v is %g from the reference %v", model, i, got[i], d, w)
			}
		}
	}

	// float16 model weights with an int64 tensor (sdxs-09-tiny).
	te := Tensors(t, "sdxs-09-tiny", "model", "text_encoder", "model.safetensors")
	pos, _ := Int64(t, te, "text_model.embeddings.position_ids")
	for i, p := range pos {
		if p != int64(i) {
			t.Fatalf("position_ids[%d] = %d", i, p)
		}
	}
}
