package testmodel

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/weights"
)

// tinyControlNet is a ControlNetModel that fits the tiny pipeline's UNet, with a mid block and
// diffusers' conditioning embedding shape (three stride-2 steps: pictures are 8× the latent).
const tinyControlNet = `{"_class_name": "ControlNetModel", "act_fn": "silu", "attention_head_dim": 2,
 "block_out_channels": [16, 32], "cross_attention_dim": 16, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
 "layers_per_block": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_num_groups": 8, "in_channels": 4,
 "conditioning_channels": 3, "conditioning_embedding_out_channels": [4, 8, 8, 16]}`

// WriteTinyControlNet writes a ControlNet folder (config.json and
// diffusion_pytorch_model.safetensors of dtype) that fits the pipeline WriteTiny writes.
func WriteTinyControlNet(dir string, dtype weights.DType) error {
	if err := writeFile(filepath.Join(dir, "config.json"), []byte(tinyControlNet)); err != nil {
		return err
	}
	cfg, err := weights.ParseControlNetConfig([]byte(tinyControlNet))
	if err != nil {
		return fmt.Errorf("testmodel: controlnet: %w", err)
	}
	src := &nn.RandomSource{Seed: 4}
	m, err := unet.NewControlNet(cfg, src)
	if err != nil {
		return fmt.Errorf("testmodel: controlnet: %w", err)
	}
	if err := m.Prepare(context.Background(), 8, 8); err != nil {
		return fmt.Errorf("testmodel: controlnet: %w", err)
	}
	return WriteSource(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), src, dtype)
}
