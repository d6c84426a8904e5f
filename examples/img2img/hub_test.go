package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/fakehub"
	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestHubModel runs the first image-to-image reference with -model given as a repository id
// of a fake hub (HF_ENDPOINT) and holds the UNet output and the decoded picture to the oracle's
// bounds.
func TestHubModel(t *testing.T) {
	h := fakehub.New()
	defer h.Close()
	_, err := h.AddFolder("org/tiny", oracle.Path(t, model, "model"))
	require.NoError(t, err)
	for _, v := range []string{"HF_TOKEN", "HF_HOME", "HF_HUB_OFFLINE", "HUGGINGFACE_HUB_CACHE"} {
		t.Setenv(v, "")
	}
	t.Setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
	t.Setenv("HF_ENDPOINT", h.URL())
	t.Setenv("HF_HUB_CACHE", t.TempDir())

	dumpPath, _ := runDump(t, append([]string{"-model", "org/tiny"}, caseArgs(t, readCases(t)[0])...)...)

	ref := oracle.Tensors(t, model, "img2img", "reference.safetensors")
	dump := openDump(t, dumpPath)
	for _, s := range []struct {
		name  string
		relL2 bool
		bound float64
	}{{"unet_output", true, 1e-4}, {"decoded", false, 2e-3}} {
		got, _, err := dump.Float32(s.name)
		require.NoError(t, err, s.name)
		want, _ := oracle.Float32(t, ref, "case0."+s.name)
		if s.relL2 {
			oracle.AssertRelL2(t, s.name, got, want, s.bound)
		} else {
			oracle.AssertMaxAbs(t, s.name, got, want, s.bound)
		}
	}
}
