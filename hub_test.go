package sdxs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/fakehub"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights/hub"
)

// hubEnv points huggingface_hub's environment variables at a fake hub and a fresh cache.
func hubEnv(t *testing.T, h *fakehub.Hub) string {
	cache := t.TempDir()
	for _, v := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_DOWNLOAD_TIMEOUT"} {
		t.Setenv(v, "")
	}
	t.Setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
	t.Setenv("HF_ENDPOINT", h.URL())
	t.Setenv("HF_HUB_CACHE", cache)
	return cache
}

// TestLoadFromHub serves the oracle's tiny DreamShaper folder from a fake hub, with the extra
// files a real repository has, loads it by repository id through the environment's client,
// makes case 0, and holds it to the oracle's bounds; then loads it again offline.
func TestLoadFromHub(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	files, err := fakehub.ReadFolder(oracle.Path(t, model, "model"))
	require.NoError(t, err)
	unet := files["unet/diffusion_pytorch_model.safetensors"]
	extras := map[string][]byte{
		"README.md":                                     []byte("# tiny"),
		"safety_checker/config.json":                    []byte("{}"),
		"safety_checker/model.safetensors":              []byte("not read"),
		"feature_extractor/preprocessor.json":           []byte("{}"),
		"unet/diffusion_pytorch_model.bin":              []byte("not read"),
		"unet/diffusion_pytorch_model.fp16.safetensors": []byte("not read"),
		"unet/flax_diffusion_pytorch_model.msgpack":     []byte("not read"),
	}
	for k, v := range extras {
		files[k] = v
	}
	// As in repositories saved with their safety checker: listed, present, never fetched.
	files["model_index.json"] = bytes.Replace(files["model_index.json"], []byte(`"safety_checker": [
    null,
    null
  ]`), []byte(`"safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]`), 1)
	require.Contains(t, string(files["model_index.json"]), "StableDiffusionSafetyChecker")
	h := fakehub.New()
	defer h.Close()
	commit := h.AddFiles("org/tiny", files)
	cache := hubEnv(t, h)

	var reports []hub.Progress
	p, err := Load("org/tiny", WithProgress(func(pr hub.Progress) { reports = append(reports, pr) }))
	require.NoError(t, err)
	defer p.Close()

	var fetched []string
	for _, e := range h.Log() {
		if path, ok := strings.CutPrefix(e, "HEAD /org/tiny/resolve/"+commit+"/"); ok {
			fetched = append(fetched, path)
		}
	}
	for k := range extras {
		require.NotContains(t, fetched, k, "fetched a file the pipeline does not read")
	}
	require.NotContains(t, fetched, "vae_large/diffusion_pytorch_model.safetensors", "vae_large/ only when asked")
	require.Contains(t, fetched, "unet/diffusion_pytorch_model.safetensors")
	require.NotEmpty(t, reports)
	snap := filepath.Join(cache, "models--org--tiny", "snapshots", commit)
	got, err := os.ReadFile(filepath.Join(snap, "unet", "diffusion_pytorch_model.safetensors"))
	require.NoError(t, err)
	require.Equal(t, unet, got)

	generateCase0 := func(p *Pipeline) {
		t.Helper()
		c := loadCases(t, model)[0]
		require.False(t, c.VAE == "large" || c.LoraScale != nil || c.ControlImage, "case 0 is plain text-to-image")
		res, err := p.Generate(context.Background(), Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height})
		require.NoError(t, err)
		ref := oracle.Tensors(t, model, "reference.safetensors")
		want, _ := oracle.Float32(t, ref, "case0.unet_output")
		oracle.AssertRelL2(t, "unet_output", res.UNetOutput, want, 1e-4)
		want, _ = oracle.Float32(t, ref, "case0.decoded")
		oracle.AssertMaxAbs(t, "decoded", res.Decoded, want, 2e-3)
	}
	generateCase0(p)

	// Offline, with the hub gone: the cache serves the same snapshot.
	h.Close()
	t.Setenv("HF_HUB_OFFLINE", "1")
	p2, err := Load("org/tiny")
	require.NoError(t, err)
	defer p2.Close()
	generateCase0(p2)
	dir, err := Resolve(context.Background(), "org/tiny", KindPipeline)
	require.NoError(t, err)
	require.Equal(t, snap, dir)

	// vae_large/ was never fetched: asking for it offline is a clear error.
	_, err = Load("org/tiny", WithVAE("large"))
	require.ErrorContains(t, err, "org/tiny")
	require.ErrorContains(t, err, "vae_large")
	require.ErrorIs(t, err, hub.ErrNotCached)
}

func TestResolveKinds(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	h := fakehub.New()
	defer h.Close()
	add := func(id string, dir ...string) map[string][]byte {
		files, err := fakehub.ReadFolder(oracle.Path(t, append([]string{model}, dir...)...))
		require.NoError(t, err)
		files["README.md"] = []byte("#")
		h.AddFiles(id, files)
		return files
	}
	add("org/cn", "controlnet")
	add("org/peft", "lora", "peft")
	kohya, err := os.ReadFile(oracle.Path(t, model, "lora", "kohya_lora.safetensors"))
	require.NoError(t, err)
	h.AddFiles("org/kohya", map[string][]byte{"kohya_lora.safetensors": kohya, "README.md": []byte("#")})
	pipe := add("org/tiny", "model")
	hubEnv(t, h)
	ctx := context.Background()

	dir, err := Resolve(ctx, "org/cn", KindControlNet)
	require.NoError(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"config.json", "diffusion_pytorch_model.safetensors"}, names)

	dir, err = Resolve(ctx, "org/peft", KindLoRA)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "adapter_model.safetensors"))
	require.NoError(t, err)

	file, err := Resolve(ctx, "org/kohya@main", KindLoRA)
	require.NoError(t, err)
	require.Equal(t, "kohya_lora.safetensors", filepath.Base(file))
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, kohya, got)

	// WithVAE("large") fetches vae_large/.
	dir, err = Resolve(ctx, "org/tiny", KindPipeline, WithVAE("large"))
	require.NoError(t, err)
	got, err = os.ReadFile(filepath.Join(dir, "vae_large", "diffusion_pytorch_model.safetensors"))
	require.NoError(t, err)
	require.Equal(t, pipe["vae_large/diffusion_pytorch_model.safetensors"], got)

	// Load with WithControlNet takes a repository id too.
	p, err := Load("org/tiny", WithControlNet("org/cn"))
	require.NoError(t, err)
	cn := p.acquire()
	require.NotNil(t, cn, "the ControlNet fetched from the hub is loaded")
	require.NoError(t, p.release(cn))
	require.NoError(t, p.Close())

	// A pipeline id given as a ControlNet is an error naming both.
	_, err = Resolve(ctx, "org/peft", KindControlNet)
	require.ErrorContains(t, err, "org/peft")
	require.ErrorContains(t, err, "not a ControlNet")
}

func TestResolvePathsStayPaths(t *testing.T) {
	h := fakehub.New()
	defer h.Close()
	h.AddFiles("org/tiny", map[string][]byte{"model_index.json": []byte("{}")})
	hubEnv(t, h)

	// A folder that exists is a path even when it looks like a repository id.
	root := t.TempDir()
	t.Chdir(root)
	require.NoError(t, os.MkdirAll(filepath.Join("org", "tiny"), 0o755))
	dir, err := Resolve(context.Background(), "org/tiny", KindPipeline)
	require.NoError(t, err)
	require.Equal(t, "org/tiny", dir)

	// Missing single names and relative paths are not looked up on the hub.
	for _, name := range []string{"sdxs-dreamshaper", "./org/none", "../x/y", "/abs/x"} {
		_, err := Load(name)
		require.Error(t, err, name)
	}
	require.Empty(t, h.Log(), "no hub request for paths")

	// A missing repository: the error says it is neither a folder nor on the hub.
	_, err = Load("org/missing")
	require.ErrorContains(t, err, "org/missing is not a local path")
	require.ErrorIs(t, err, hub.ErrRepoNotFound)
	require.True(t, slices.Contains(h.Log(), "GET /api/models/org/missing/revision/main"))

	_, err = Load("org/tiny2", WithVariant("fp/16"))
	require.ErrorContains(t, err, "variant")
}
