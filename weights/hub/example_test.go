package hub_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sdxs-go/sdxs/internal/fakehub"
	"github.com/sdxs-go/sdxs/weights/hub"
)

// Fetch the files a diffusers pipeline needs from a hub (here a fake one) into a
// huggingface_hub cache, and find them in the snapshot folder.
func ExampleClient_Snapshot() {
	h := fakehub.New()
	defer h.Close()
	h.AddFiles("org/tiny", map[string][]byte{
		"model_index.json":                         []byte("{}"),
		"scheduler/scheduler_config.json":          []byte("{}"),
		"tokenizer/vocab.json":                     []byte("{}"),
		"tokenizer/merges.txt":                     []byte(""),
		"text_encoder/config.json":                 []byte("{}"),
		"text_encoder/model.safetensors":           []byte("weights"),
		"unet/config.json":                         []byte("{}"),
		"unet/diffusion_pytorch_model.safetensors": []byte("weights"),
		"vae/config.json":                          []byte("{}"),
		"vae/diffusion_pytorch_model.safetensors":  []byte("weights"),
		"safety_checker/model.safetensors":         []byte("not fetched"),
	})
	cache, _ := os.MkdirTemp("", "hub-example")
	defer os.RemoveAll(cache)

	// In a program: c, err := hub.NewClientFromEnv() (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, ...).
	c := &hub.Client{Endpoint: h.URL(), CacheDir: cache}
	repo, rev, _ := hub.ParseRepoID("org/tiny@main")
	dir, err := c.Snapshot(context.Background(), repo, rev, hub.PipelineSelector(hub.PipelineOptions{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	rel, _ := filepath.Rel(cache, dir)
	fmt.Println(filepath.Dir(filepath.Dir(rel)))
	_, err = os.Stat(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"))
	fmt.Println("unet weights:", err == nil)
	_, err = os.Stat(filepath.Join(dir, "safety_checker"))
	fmt.Println("safety checker:", err == nil)
	// Output:
	// models--org--tiny
	// unet weights: true
	// safety checker: false
}
