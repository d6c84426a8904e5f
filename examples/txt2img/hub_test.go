package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/fakehub"
	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestHubIDs runs the oracle's ControlNet and LoRA cases with -model, -controlnet and -lora
// given as repository ids of a fake hub (HF_ENDPOINT), and holds the -dump to the oracle's
// bounds; then runs again offline from the cache the first runs filled.
func TestHubIDs(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	h := fakehub.New()
	defer h.Close()
	for id, dir := range map[string][]string{"org/tiny": {"model"}, "org/sketch": {"controlnet"}, "org/peft": {"lora", "peft"}} {
		_, err := h.AddFolder(id, oracle.Path(t, append([]string{model}, dir...)...))
		require.NoError(t, err)
	}
	kohya, err := os.ReadFile(oracle.Path(t, model, "lora", "kohya_lora.safetensors"))
	require.NoError(t, err)
	h.AddFiles("org/kohya", map[string][]byte{"kohya_lora.safetensors": kohya, "README.md": []byte("#")})
	for _, v := range []string{"HF_TOKEN", "HF_HOME", "HF_HUB_OFFLINE", "HUGGINGFACE_HUB_CACHE"} {
		t.Setenv(v, "")
	}
	t.Setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
	t.Setenv("HF_ENDPOINT", h.URL())
	t.Setenv("HF_HUB_CACHE", t.TempDir())

	cases := readCases(t, model)
	ref := oracle.Tensors(t, model, "reference.safetensors")
	check := func(t *testing.T, i int, extra ...string) {
		dump, _ := runDump(t, append(append([]string{"-model", "org/tiny"}, caseArgs(cases[i])...), extra...)...)
		assert.True(t, oracle.AssertCase(t, ref, i, oracle.ReadDump(t, dump)))
	}
	run := func(t *testing.T) {
		ran := 0
		for i, c := range cases {
			switch {
			case c.ControlPNG != "":
				check(t, i, "-controlnet", "org/sketch", "-control", oracle.Path(t, model, c.ControlPNG), "-control-scale", fmt.Sprint(c.ControlScale))
			case c.LoraScale != nil:
				check(t, i, "-lora", "org/peft", "-lora-scale", fmt.Sprint(*c.LoraScale))
				check(t, i, "-lora", "org/kohya@main", "-lora-scale", fmt.Sprint(*c.LoraScale))
			default:
				continue
			}
			ran++
		}
		require.Positive(t, ran)
	}
	t.Run("online", run)
	h.Close()
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Run("offline", run)
}
