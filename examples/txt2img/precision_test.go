package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestPrecisionBF16 runs the oracle's case 0 with -precision bf16: the dumped UNet output is as
// close to the float32 reference as PyTorch's own bf16 run, yet not the float32 result (so the
// flag took effect); an unknown precision is an error naming it.
func TestPrecisionBF16(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	cases := readCases(t, model)
	var torch []struct {
		Case      int     `json:"case"`
		UNetRelL2 float64 `json:"unet_output_rel_l2"`
	}
	oracle.JSON(t, &torch, model, "bf16", "cases.json")
	require.NotEmpty(t, torch)
	i := torch[0].Case
	c := cases[i]
	dump, _ := runDump(t, append([]string{"-model", oracle.Path(t, model, "model"), "-precision", "bf16"}, caseArgs(c)...)...)
	var got []float32
	for _, tn := range oracle.ReadDump(t, dump) {
		if tn.Name == "unet_output" {
			got = tn.F32
		}
	}
	ref := oracle.Tensors(t, model, "reference.safetensors")
	want, _ := oracle.Float32(t, ref, fmt.Sprintf("case%d.unet_output", i))
	rel := oracle.RelL2(got, want)
	require.LessOrEqual(t, rel, torch[0].UNetRelL2, "bf16 unet_output vs PyTorch's bf16")
	require.Greater(t, rel, 1e-4, "-precision bf16 gave the float32 result")

	err := runArgs(t, "-model", oracle.Path(t, model, "model"), "-precision", "fp16", "-prompt", "x", "-out", filepath.Join(t.TempDir(), "x.png"))
	require.ErrorContains(t, err, "fp16")
}
