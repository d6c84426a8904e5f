package unet

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// turboLike is a small SD-Turbo-class configuration: four levels, two ResNets per block, a
// UNetMidBlock2DCrossAttn, two transformer layers per block, linear projections, per-block head
// counts and a mid_block_scale_factor.
const turboLike = `{"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": [1, 2, 2, 4],
 "block_out_channels": [8, 16, 16, 32], "cross_attention_dim": 12,
 "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
 "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
 "layers_per_block": 2, "mid_block_type": "UNetMidBlock2DCrossAttn", "mid_block_scale_factor": 2,
 "norm_num_groups": 4, "transformer_layers_per_block": 2, "use_linear_projection": true, "sample_size": 16}`

// TestMidBlockConfiguration builds and runs a configuration the oracle does not cover and
// checks that the graph asks for the weights diffusers' module paths give such a model.
func TestMidBlockConfiguration(t *testing.T) {
	cfg, err := weights.ParseUNetConfig([]byte(turboLike))
	require.NoError(t, err)
	src := &nn.RandomSource{Seed: 7}
	m, err := New(cfg, src)
	require.NoError(t, err)
	h, w := 11, 13 // not divisible by the total down factor of 8
	sample := make([]float32, 4*h*w)
	for i := range sample {
		sample[i] = float32(math.Sin(float64(i)))
	}
	text := make([]float32, 77*12)
	for i := range text {
		text[i] = float32(math.Cos(float64(i)))
	}
	out, err := m.Forward(context.Background(), sample, h, w, 999, text, nil)
	require.NoError(t, err)
	require.Len(t, out, 4*h*w)
	for _, v := range out {
		require.False(t, math.IsNaN(float64(v)) || math.IsInf(float64(v), 0))
	}
	names := map[string]bool{}
	for _, n := range src.Names() {
		names[n] = true
	}
	for _, want := range []string{
		"mid_block.resnets.0.conv1.weight",
		"mid_block.resnets.1.time_emb_proj.weight",
		"mid_block.attentions.0.proj_in.weight", // linear: [C, C]
		"mid_block.attentions.0.transformer_blocks.1.attn1.to_q.weight",
		"mid_block.attentions.0.transformer_blocks.1.ff.net.0.proj.weight",
		"down_blocks.0.resnets.1.conv2.weight",
		"down_blocks.0.attentions.1.transformer_blocks.1.norm3.weight",
		"down_blocks.2.downsamplers.0.conv.weight",
		"up_blocks.0.resnets.2.conv_shortcut.weight",
		"up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v.weight",
		"up_blocks.2.upsamplers.0.conv.weight",
	} {
		require.True(t, names[want], "graph does not use %s", want)
	}
	require.False(t, names["down_blocks.3.downsamplers.0.conv.weight"], "the last down block has no downsampler")
	require.False(t, names["up_blocks.3.upsamplers.0.conv.weight"], "the last up block has no upsampler")
	require.Equal(t, []int{32, 32}, src.Shape("mid_block.attentions.0.proj_in.weight"), "linear proj_in")
	require.Equal(t, []int{32, 32 + 32, 3, 3}, src.Shape("up_blocks.0.resnets.0.conv1.weight"))
	require.Equal(t, []int{32, 32 + 16, 3, 3}, src.Shape("up_blocks.0.resnets.2.conv1.weight"))
}
