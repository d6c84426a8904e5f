package hub_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/weights/hub"
)

// sdxsRepoFiles is the file list of a diffusers SDXS release as the hub lists it, with the
// extras such repositories carry.
var sdxsRepoFiles = []string{
	".gitattributes", "README.md", "model_index.json", "sdxs.safetensors",
	"feature_extractor/preprocessor_config.json",
	"safety_checker/config.json", "safety_checker/model.safetensors",
	"scheduler/scheduler_config.json",
	"text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin", "text_encoder/flax_model.msgpack",
	"tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
	"unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.onnx",
	"vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.bin",
	"vae_large/config.json", "vae_large/diffusion_pytorch_model.safetensors", "vae_large/diffusion_pytorch_model.fp16.safetensors",
}

func TestPipelineSelector(t *testing.T) {
	base := []string{
		"model_index.json", "scheduler/scheduler_config.json",
		"text_encoder/config.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
		"unet/config.json", "vae/config.json",
	}
	cases := []struct {
		name string
		opts hub.PipelineOptions
		want []string
	}{
		{"default", hub.PipelineOptions{}, append([]string{
			"text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"}, base...)},
		{"fp16", hub.PipelineOptions{Variant: "fp16"}, append([]string{
			"text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
			// vae/'s fp16 variant is a .bin: safetensors come first.
			"vae/diffusion_pytorch_model.safetensors"}, base...)},
		{"large", hub.PipelineOptions{VAE: "large"}, append([]string{
			"text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
			"vae_large/config.json", "vae_large/diffusion_pytorch_model.safetensors"}, base...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := hub.PipelineSelector(c.opts)(sdxsRepoFiles)
			require.NoError(t, err)
			require.ElementsMatch(t, c.want, got)
		})
	}

	_, err := hub.PipelineSelector(hub.PipelineOptions{})([]string{"config.json", "diffusion_pytorch_model.safetensors"})
	require.ErrorContains(t, err, "no model_index.json")
	_, err = hub.PipelineSelector(hub.PipelineOptions{})([]string{"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"})
	require.ErrorContains(t, err, `unet/: no plain weights, only the variants fp16`)
	require.ErrorContains(t, err, "no vae/ folder")
	_, err = hub.PipelineSelector(hub.PipelineOptions{VAE: "large"})([]string{"model_index.json"})
	require.ErrorContains(t, err, "no vae_large/ folder")
	_, err = hub.PipelineSelector(hub.PipelineOptions{VAE: "huge"})([]string{"model_index.json"})
	require.ErrorContains(t, err, `unknown VAE "huge"`)
}

func TestPipelineSelectorShardsAndBin(t *testing.T) {
	files := []string{
		"model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
		"text_encoder/config.json", "text_encoder/pytorch_model.bin",
		"unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.json",
		"unet/diffusion_pytorch_model-00001-of-00002.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
		"unet/diffusion_pytorch_model.safetensors.index.fp16.json",
		"unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
		"vae/config.json", "vae/diffusion_pytorch_model.safetensors",
		"controlnet/config.json", "controlnet/diffusion_pytorch_model.safetensors", "controlnet/diffusion_pytorch_model.bin",
	}
	got, err := hub.PipelineSelector(hub.PipelineOptions{})(files)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{
		"model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
		"text_encoder/config.json", "text_encoder/pytorch_model.bin", // only .bin: taken
		"unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.json",
		"unet/diffusion_pytorch_model-00001-of-00002.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
		"vae/config.json", "vae/diffusion_pytorch_model.safetensors",
		"controlnet/config.json", "controlnet/diffusion_pytorch_model.safetensors",
	}, got)
	got, err = hub.PipelineSelector(hub.PipelineOptions{Variant: "fp16"})(files)
	require.NoError(t, err)
	require.Subset(t, got, []string{"unet/diffusion_pytorch_model.safetensors.index.fp16.json",
		"unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
		"vae/diffusion_pytorch_model.safetensors"}) // vae/ has no fp16: the plain weights
	require.NotContains(t, got, "unet/diffusion_pytorch_model-00001-of-00002.safetensors")
}

func TestControlNetSelector(t *testing.T) {
	got, err := hub.ControlNetSelector("")([]string{".gitattributes", "README.md", "config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "image.png"})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"config.json", "diffusion_pytorch_model.safetensors"}, got)
	got, err = hub.ControlNetSelector("fp16")([]string{"controlnet/config.json", "controlnet/diffusion_pytorch_model.safetensors", "controlnet/diffusion_pytorch_model.fp16.safetensors"})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"controlnet/config.json", "controlnet/diffusion_pytorch_model.fp16.safetensors"}, got)
	_, err = hub.ControlNetSelector("")([]string{"model_index.json"})
	require.ErrorContains(t, err, "not a ControlNet")
	_, err = hub.ControlNetSelector("")([]string{"config.json"})
	require.ErrorContains(t, err, "no weights")
}

func TestLoRASelector(t *testing.T) {
	for _, c := range []struct {
		files []string
		want  []string
		err   string
	}{
		{[]string{"README.md", "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"}, []string{"adapter_config.json", "adapter_model.safetensors"}, ""},
		{[]string{"adapter_config.json", "adapter_model.bin"}, []string{"adapter_config.json", "adapter_model.bin"}, ""},
		{[]string{"README.md", "pixel-art.safetensors", "sample.png"}, []string{"pixel-art.safetensors"}, ""},
		{[]string{"adapter_config.json"}, nil, "without adapter_model"},
		{[]string{"a.safetensors", "b.safetensors"}, nil, "several .safetensors files at the root (a.safetensors, b.safetensors)"},
		{[]string{"README.md"}, nil, "not a LoRA"},
	} {
		got, err := hub.LoRASelector()(c.files)
		if c.err != "" {
			require.ErrorContains(t, err, c.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, c.want, got)
	}
}

func TestParseRepoID(t *testing.T) {
	for _, c := range []struct{ in, repo, rev string }{
		{"IDKiro/sdxs-512-dreamshaper", "IDKiro/sdxs-512-dreamshaper", "main"},
		{"IDKiro/sdxs-512-dreamshaper@v1.0", "IDKiro/sdxs-512-dreamshaper", "v1.0"},
		{"org/name@refs/pr/1", "org/name", "refs/pr/1"},
		{"gpt2", "gpt2", "main"},
		{"org/name.v2_x@0123456789abcdef0123456789abcdef01234567", "org/name.v2_x", "0123456789abcdef0123456789abcdef01234567"},
	} {
		repo, rev, err := hub.ParseRepoID(c.in)
		require.NoError(t, err, c.in)
		require.Equal(t, c.repo, repo, c.in)
		require.Equal(t, c.rev, rev, c.in)
	}
	for _, bad := range []string{"", "a/b/c", "org/na--me", "org/../x", "./model", "/abs/path", "org/name@", "org/-name", "org/name.git", "org/name@../x", "org/na me"} {
		_, _, err := hub.ParseRepoID(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, "models--IDKiro--sdxs-512-dreamshaper", hub.RepoFolderName("IDKiro/sdxs-512-dreamshaper"))
}

func TestNewClientFromEnv(t *testing.T) {
	home := t.TempDir()
	for _, v := range []string{"HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_DISABLE_IMPLICIT_TOKEN"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", home)
	c, err := hub.NewClientFromEnv()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(home, ".cache", "huggingface", "hub"), c.CacheDir)
	require.False(t, c.Offline)
	require.Empty(t, c.Token)
	require.Empty(t, c.Endpoint)

	t.Setenv("HF_HOME", filepath.Join(home, "hf"))
	require.NoError(t, writeFile(filepath.Join(home, "hf", "token"), "tok-from-file\n"))
	c, err = hub.NewClientFromEnv()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(home, "hf", "hub"), c.CacheDir)
	require.Equal(t, "tok-from-file", c.Token)

	t.Setenv("HF_HUB_CACHE", filepath.Join(home, "cache"))
	t.Setenv("HF_TOKEN", "tok")
	t.Setenv("HF_ENDPOINT", "http://localhost:1234/")
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2.5")
	c, err = hub.NewClientFromEnv()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(home, "cache"), c.CacheDir)
	require.Equal(t, "tok", c.Token)
	require.Equal(t, "http://localhost:1234", c.Endpoint)
	require.True(t, c.Offline)
	require.Equal(t, 2500*time.Millisecond, c.Timeout)

	t.Setenv("HF_HUB_DOWNLOAD_TIMEOUT", "soon")
	_, err = hub.NewClientFromEnv()
	require.ErrorContains(t, err, "HF_HUB_DOWNLOAD_TIMEOUT")
}

func writeFile(p, s string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(s), 0o644)
}
