// Package testmodel writes small SDXS-shaped diffusers folders with deterministic random
// weights and a byte-level vocabulary: complete pipelines that load and run in milliseconds,
// for examples, tests and benchmarks that cannot download a release.
package testmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/textenc"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/vae"
	"github.com/sdxs-go/sdxs/weights"
)

// ByteVocab is CLIP's byte alphabet (GPT-2's byte-to-symbol table), with and without the
// end-of-word mark, one merged token "ab" (a merges.txt needs one merge), and the two special
// tokens: a valid CLIP vocabulary of 515 tokens.
func ByteVocab() map[string]int {
	var syms []string
	next := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			syms = append(syms, string(rune(b)))
		} else {
			syms = append(syms, string(rune(256+next)))
			next++
		}
	}
	vocab := map[string]int{}
	for _, s := range syms {
		vocab[s] = len(vocab)
	}
	for _, s := range syms {
		vocab[s+"</w>"] = len(vocab)
	}
	vocab["ab"] = len(vocab)
	vocab["<|startoftext|>"] = len(vocab)
	vocab["<|endoftext|>"] = len(vocab)
	return vocab
}

// Merges is the merges.txt that goes with ByteVocab.
const Merges = "#version: 0.2\na b\n"

// Tiny configurations: an SD 1.5-style SDXS with every block type, small enough to run in
// milliseconds.
const (
	tinyUNet = `{"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 2,
 "block_out_channels": [16, 32], "cross_attention_dim": 16, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
 "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "mid_block_type": null,
 "norm_num_groups": 8, "sample_size": 8, "in_channels": 4, "out_channels": 4}`
	tinyText = `{"architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "hidden_size": 16,
 "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 77,
 "vocab_size": 515, "layer_norm_eps": 1e-05}`
	tinyVAE = `{"_class_name": "AutoencoderTiny", "act_fn": "relu", "decoder_block_out_channels": [8, 8, 8, 8],
 "encoder_block_out_channels": [8, 8, 8, 8], "num_decoder_blocks": [1, 1, 1, 1], "num_encoder_blocks": [1, 1, 1, 1],
 "latent_channels": 4, "out_channels": 3, "scaling_factor": 1.0, "upsampling_scaling_factor": 2}`
	tinyScheduler = `{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
 "timestep_spacing": "trailing"}`
	modelIndex = `{"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "EulerDiscreteScheduler"],
 "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderTiny"]}`
)

// WriteTiny writes the tiny pipeline to dir (created if needed), with weight files of dtype
// (weights.F32, F16 or BF16). Pictures of 64×64 pixels take a few milliseconds.
func WriteTiny(dir string, dtype weights.DType) error {
	files := map[string]string{
		"model_index.json":                modelIndex,
		"unet/config.json":                tinyUNet,
		"text_encoder/config.json":        tinyText,
		"vae/config.json":                 tinyVAE,
		"scheduler/scheduler_config.json": tinyScheduler,
		"tokenizer/merges.txt":            Merges,
	}
	vocab, err := json.Marshal(ByteVocab())
	if err != nil {
		return err
	}
	files["tokenizer/vocab.json"] = string(vocab)
	for name, data := range files {
		if err := writeFile(filepath.Join(dir, name), []byte(data)); err != nil {
			return err
		}
	}
	comps := []struct{ name, config, file string }{
		{"unet", tinyUNet, "diffusion_pytorch_model.safetensors"},
		{"text_encoder", tinyText, "model.safetensors"},
		{"vae", tinyVAE, "diffusion_pytorch_model.safetensors"},
	}
	for i, c := range comps {
		src := &nn.RandomSource{Seed: uint64(i + 1)}
		if err := build(c.name, []byte(c.config), src); err != nil {
			return fmt.Errorf("testmodel: %s: %w", c.name, err)
		}
		if err := WriteSource(filepath.Join(dir, c.name, c.file), src, dtype); err != nil {
			return err
		}
	}
	return nil
}

// WriteSource writes every tensor a random source has made as a safetensors file.
func WriteSource(path string, src *nn.RandomSource, dtype weights.DType) error {
	var ts []weights.Tensor
	for _, n := range src.Names() {
		shape := src.Shape(n)
		data, err := src.Float32Shaped(n, shape)
		if err != nil {
			return err
		}
		ts = append(ts, weights.Tensor{Name: n, DType: dtype, Shape: shape, F32: data})
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return weights.WriteFile(path, ts, map[string]string{"format": "pt"})
}

// build builds a component's graphs so that src learns every tensor the model uses.
func build(component string, config []byte, src *nn.RandomSource) error {
	switch component {
	case "unet":
		cfg, err := weights.ParseUNetConfig(config)
		if err != nil {
			return err
		}
		m, err := unet.New(cfg, src)
		if err != nil {
			return err
		}
		return m.Prepare(context.Background(), 8, 8, false)
	case "text_encoder":
		cfg, err := weights.ParseCLIPTextConfig(config)
		if err != nil {
			return err
		}
		m, err := textenc.New(cfg, tableSource{src})
		if err != nil {
			return err
		}
		return m.Prepare(context.Background())
	case "vae":
		cfg, err := weights.ParseTinyVAEConfig(config)
		if err != nil {
			return err
		}
		m, err := vae.NewTiny(cfg, src)
		if err != nil {
			return err
		}
		return m.Prepare(context.Background(), 8, 8)
	}
	return fmt.Errorf("unknown component %q", component)
}

// tableSource hides the row access of a RandomSource, so that the text encoder asks for its
// whole token embedding table (and the source records it).
type tableSource struct{ r *nn.RandomSource }

func (t tableSource) Float32(name string) ([]float32, []int, error) { return t.r.Float32(name) }
func (t tableSource) Names() []string                               { return t.r.Names() }
func (t tableSource) Float32Shaped(name string, shape []int) ([]float32, error) {
	return t.r.Float32Shaped(name, shape)
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
