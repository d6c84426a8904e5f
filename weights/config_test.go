package weights

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const unetBase = `{
  "_class_name": "UNet2DConditionModel",
  "attention_head_dim": 8,
  "block_out_channels": [32, 64, 64],
  "cross_attention_dim": 32,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  "layers_per_block": 1,
  "mid_block_type": null,
  "norm_num_groups": 8,
  "sample_size": 32
}`

const controlBase = `{
  "_class_name": "ControlNetModel",
  "attention_head_dim": 8,
  "block_out_channels": [32, 64, 64],
  "cross_attention_dim": 32,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "layers_per_block": 1,
  "norm_num_groups": 8,
  "conditioning_embedding_out_channels": [8, 16, 16, 32]
}`

const clipBase = `{"architectures": ["CLIPTextModel"], "hidden_size": 32, "intermediate_size": 128,
  "num_attention_heads": 4, "num_hidden_layers": 2, "hidden_act": "quick_gelu"}`

const tinyBase = `{"_class_name": "AutoencoderTiny", "decoder_block_out_channels": [16, 16, 16, 16],
  "encoder_block_out_channels": [16, 16, 16, 16], "num_decoder_blocks": [2, 2, 1, 1]}`

const klBase = `{"_class_name": "AutoencoderKL", "block_out_channels": [8, 16, 16, 16],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  "norm_num_groups": 8}`

const schedBase = `{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
  "beta_start": 0.00085, "steps_offset": 1, "timestep_spacing": "trailing"}`

// with returns base with the given fields replaced: kv alternates field names and values; the
// value remove deletes the field and nil sets it to null.
func with(t *testing.T, base string, kv ...any) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(base), &m))
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == remove {
			delete(m, k)
		} else {
			m[k] = kv[i+1]
		}
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

type removeT struct{}

var remove = removeT{}

func TestUNetConfigDefaultsAndHelpers(t *testing.T) {
	u, err := ParseUNetConfig([]byte(unetBase))
	require.NoError(t, err)
	assert.Equal(t, "UNet2DConditionModel", u.ClassName)
	assert.Equal(t, 4, u.InChannels)
	assert.Equal(t, 4, u.OutChannels)
	assert.Equal(t, []int{8, 8, 8}, u.Heads())
	assert.Equal(t, []int{4, 8, 8}, u.HeadDims())
	assert.Equal(t, []bool{false, false, false}, u.OnlyCross())
	assert.Equal(t, []int{1, 1, 1}, u.LayersPerBlock())
	assert.Equal(t, []int{2, 2, 2}, u.UpLayersPerBlock())
	assert.Equal(t, []int{1, 1, 1}, u.TransformerLayers())
	assert.False(t, u.HasMidBlock())
	assert.Equal(t, 128, u.TimeEmbedDim())
	assert.True(t, u.FlipSinToCos)
	assert.Equal(t, 0.0, u.FreqShift)
	assert.Equal(t, 1e-5, u.NormEps)
	assert.Equal(t, "silu", u.ActFn)
	assert.Equal(t, 3, u.ConvInKernel)
	assert.Equal(t, 3, u.ConvOutKernel)
	assert.Equal(t, 32, u.SampleSize)
	assert.Equal(t, "positional", u.TimeEmbeddingType)
	assert.NoError(t, u.Validate())

	// A missing mid_block_type means diffusers' default mid block; lists per block.
	u, err = ParseUNetConfig(with(t, unetBase, "mid_block_type", remove,
		"attention_head_dim", []int{2, 4, 8}, "only_cross_attention", []bool{true, false, false},
		"layers_per_block", []int{1, 2, 3}, "transformer_layers_per_block", []int{1, 1, 2}, "extra_field", "ignored"))
	require.NoError(t, err)
	assert.True(t, u.HasMidBlock())
	assert.Equal(t, []int{2, 4, 8}, u.Heads())
	assert.Equal(t, []int{8, 4, 2}, u.UpHeads())
	assert.Equal(t, []bool{true, false, false}, u.OnlyCross())
	assert.Equal(t, []int{1, 2, 3}, u.LayersPerBlock())
	assert.Equal(t, []int{4, 3, 2}, u.UpLayersPerBlock())
	assert.Equal(t, []int{1, 1, 2}, u.TransformerLayers())

	// num_attention_heads wins over attention_head_dim.
	u, err = ParseUNetConfig(with(t, unetBase, "num_attention_heads", 4))
	require.NoError(t, err)
	assert.Equal(t, []int{4, 4, 4}, u.Heads())

	// Everything defaulted: diffusers' SD 1.x UNet.
	u, err = ParseUNetConfig([]byte(`{}`))
	require.NoError(t, err)
	assert.Equal(t, []int{320, 640, 1280, 1280}, u.BlockOutChannels)
	assert.Equal(t, []int{2, 2, 2, 2}, u.LayersPerBlock())
	assert.Equal(t, 1280, u.CrossAttentionDim)
	assert.Equal(t, UNetMidBlock2DCrossAttn, u.MidBlockType)
}

func TestUNetConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"class", with(t, unetBase, "_class_name", "UNet2DModel"), `unet config: field "_class_name": unsupported value "UNet2DModel" (supported: "UNet2DConditionModel")`},
		{"time shift", with(t, unetBase, "resnet_time_scale_shift", "scale_shift"), `unet config: field "resnet_time_scale_shift": unsupported value "scale_shift" (supported: "default")`},
		{"act", with(t, unetBase, "act_fn", "gelu"), `field "act_fn": unsupported value "gelu"`},
		{"down type", with(t, unetBase, "down_block_types", []string{"DownBlock2D", "SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D"}), `field "down_block_types": unsupported value "SimpleCrossAttnDownBlock2D" (supported: "DownBlock2D", "CrossAttnDownBlock2D")`},
		{"up type", with(t, unetBase, "up_block_types", []string{"CrossAttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"}), `field "up_block_types": unsupported value "AttnUpBlock2D"`},
		{"mid type", with(t, unetBase, "mid_block_type", "UNetMidBlock2DSimpleCrossAttn"), `field "mid_block_type": unsupported value "UNetMidBlock2DSimpleCrossAttn" (supported: null, "UNetMidBlock2DCrossAttn")`},
		{"cross list", with(t, unetBase, "cross_attention_dim", []int{32, 32, 32}), `field "cross_attention_dim": unsupported value [32,32,32]`},
		{"class embed", with(t, unetBase, "class_embed_type", "timestep"), `field "class_embed_type": unsupported value "timestep" (supported: null)`},
		{"addition embed", with(t, unetBase, "addition_embed_type", "text_time"), `field "addition_embed_type": unsupported value "text_time"`},
		{"encoder hid", with(t, unetBase, "encoder_hid_dim_type", "text_proj"), `field "encoder_hid_dim_type"`},
		{"time cond", with(t, unetBase, "time_cond_proj_dim", 256), `field "time_cond_proj_dim": unsupported value 256`},
		{"time embedding type", with(t, unetBase, "time_embedding_type", "fourier"), `field "time_embedding_type": unsupported value "fourier" (supported: "positional")`},
		{"time embedding dim", with(t, unetBase, "time_embedding_dim", 512), `field "time_embedding_dim"`},
		{"center", with(t, unetBase, "center_input_sample", true), `field "center_input_sample": unsupported value true`},
		{"dual", with(t, unetBase, "dual_cross_attention", true), `field "dual_cross_attention"`},
		{"resnet out scale", with(t, unetBase, "resnet_out_scale_factor", 2.0), `field "resnet_out_scale_factor": unsupported value 2`},
		{"conv out even", with(t, unetBase, "conv_out_kernel", 2), `field "conv_out_kernel": must be a positive odd number, got 2`},
		{"conv in even", with(t, unetBase, "conv_in_kernel", 4), `field "conv_in_kernel"`},
		{"padding", with(t, unetBase, "downsample_padding", 0), `field "downsample_padding": unsupported value 0`},
		{"heads length", with(t, unetBase, "attention_head_dim", []int{8, 8}), `field "attention_head_dim": has 2 entries, want one per block (3)`},
		{"num heads length", with(t, unetBase, "num_attention_heads", []int{8, 8, 8, 8}), `field "num_attention_heads": has 4 entries`},
		{"layers length", with(t, unetBase, "layers_per_block", []int{1, 1}), `field "layers_per_block": has 2 entries`},
		{"transformer length", with(t, unetBase, "transformer_layers_per_block", []int{1}), `field "transformer_layers_per_block": has 1 entries`},
		{"only cross length", with(t, unetBase, "only_cross_attention", []bool{true}), `field "only_cross_attention": has 1 entries`},
		{"down length", with(t, unetBase, "down_block_types", []string{"DownBlock2D", "CrossAttnDownBlock2D"}), `field "down_block_types": has 2 entries, block_out_channels has 3`},
		{"up length", with(t, unetBase, "up_block_types", []string{"UpBlock2D"}), `field "up_block_types": has 1 entries, down_block_types has 3`},
		{"groups", with(t, unetBase, "norm_num_groups", 12), `field "norm_num_groups": 12 does not divide block_out_channels[0] = 32`},
		{"heads divide", with(t, unetBase, "attention_head_dim", 6), `field "attention_head_dim": 6 heads do not divide block_out_channels[1] = 64`},
		{"zero heads", with(t, unetBase, "attention_head_dim", 0), `field "attention_head_dim": values must be positive`},
		{"null heads", with(t, unetBase, "attention_head_dim", nil), `field "attention_head_dim": must not be null`},
		{"bad int", with(t, unetBase, "in_channels", "four"), `field "in_channels": want an integer, got "four"`},
		{"fractional", with(t, unetBase, "in_channels", 4.5), `field "in_channels": want an integer, got 4.5`},
		{"bad list", with(t, unetBase, "block_out_channels", "32"), `field "block_out_channels": want a list of integers`},
		{"bad bool", with(t, unetBase, "use_linear_projection", "yes"), `field "use_linear_projection": want true or false`},
		{"zero in", with(t, unetBase, "in_channels", 0), `field "in_channels": must be positive`},
		{"not json", []byte(`{"a":`), "unet config: invalid JSON"},
		{"not object", []byte(`[1]`), "unet config: not a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseUNetConfig(c.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Regexp(t, `^weights: unet config: `, err.Error())
			var ce *ConfigError
			assert.True(t, errors.As(err, &ce))
		})
	}
}

func TestControlNetConfig(t *testing.T) {
	cn, err := ParseControlNetConfig([]byte(controlBase))
	require.NoError(t, err)
	assert.Equal(t, "ControlNetModel", cn.ClassName)
	assert.Equal(t, UNetMidBlock2DCrossAttn, cn.MidBlockType, "mid block by default")
	assert.Equal(t, 3, cn.ConditioningChannels)
	assert.Equal(t, []int{8, 16, 16, 32}, cn.ConditioningEmbeddingOutChannels)
	assert.Equal(t, "rgb", cn.ConditioningChannelOrder)
	assert.Equal(t, []int{8, 8, 8}, cn.Heads())
	assert.Equal(t, 3, cn.ConvInKernel)
	require.NoError(t, cn.Validate())
	// A ControlNet's mid block may be a single ResNet (UNetMidBlock2D); a UNet's may not.
	cn, err = ParseControlNetConfig(with(t, controlBase, "mid_block_type", "UNetMidBlock2D"))
	require.NoError(t, err)
	assert.Equal(t, UNetMidBlock2D, cn.MidBlockType)
	_, err = ParseUNetConfig(with(t, unetBase, "mid_block_type", "UNetMidBlock2D"))
	assert.ErrorContains(t, err, `field "mid_block_type": unsupported value "UNetMidBlock2D"`)
	cn, err = ParseControlNetConfig(with(t, controlBase, "conditioning_embedding_out_channels", remove))
	require.NoError(t, err)
	assert.Equal(t, []int{16, 32, 96, 256}, cn.ConditioningEmbeddingOutChannels)

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"order", with(t, controlBase, "controlnet_conditioning_channel_order", "bgr"), `controlnet config: field "controlnet_conditioning_channel_order": unsupported value "bgr" (supported: "rgb")`},
		{"pool", with(t, controlBase, "global_pool_conditions", true), `field "global_pool_conditions": unsupported value true`},
		{"class", with(t, controlBase, "_class_name", "ControlNetXSAdapter"), `field "_class_name"`},
		{"cross list", with(t, controlBase, "cross_attention_dim", []int{1, 2, 3}), `field "cross_attention_dim"`},
		{"heads length", with(t, controlBase, "attention_head_dim", []int{8}), `field "attention_head_dim": has 1 entries`},
		{"cond empty", with(t, controlBase, "conditioning_embedding_out_channels", []int{}), `field "conditioning_embedding_out_channels": must not be empty`},
		{"class embed", with(t, controlBase, "class_embed_type", "projection"), `field "class_embed_type"`},
		{"mid", with(t, controlBase, "mid_block_type", "UNetMidBlock2DSimpleCrossAttn"), `field "mid_block_type": unsupported value "UNetMidBlock2DSimpleCrossAttn" (supported: null, "UNetMidBlock2DCrossAttn", "UNetMidBlock2D")`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseControlNetConfig(c.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestCLIPTextConfig(t *testing.T) {
	c, err := ParseCLIPTextConfig([]byte(clipBase))
	require.NoError(t, err)
	assert.Equal(t, "CLIPTextModel", c.ClassName)
	assert.Equal(t, 77, c.MaxPositionEmbeddings)
	assert.Equal(t, 49408, c.VocabSize)
	assert.Equal(t, 8, c.HeadDim())
	assert.Equal(t, 1e-5, c.LayerNormEps)
	require.NoError(t, c.Validate())
	// A full CLIPConfig: the text_config is used.
	c, err = ParseCLIPTextConfig([]byte(`{"model_type": "clip", "architectures": ["CLIPModel"], "text_config": ` + clipBase + `}`))
	require.NoError(t, err)
	assert.Equal(t, 32, c.HiddenSize)

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"act", with(t, clipBase, "hidden_act", "gelu_new"), `text_encoder config: field "hidden_act": unsupported value "gelu_new" (supported: "quick_gelu", "gelu")`},
		{"heads", with(t, clipBase, "num_attention_heads", 5), `field "num_attention_heads": 5 heads do not divide hidden_size 32`},
		{"arch", with(t, clipBase, "architectures", []string{"T5EncoderModel"}), `field "architectures": unsupported value "T5EncoderModel"`},
		{"layers", with(t, clipBase, "num_hidden_layers", 0), `field "num_hidden_layers": must be positive`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCLIPTextConfig(c.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestVAEConfigs(t *testing.T) {
	v, err := ParseTinyVAEConfig([]byte(tinyBase))
	require.NoError(t, err)
	assert.Equal(t, "nearest", v.UpsampleFn)
	assert.Equal(t, "relu", v.ActFn)
	assert.Equal(t, 1.0, v.ScalingFactor)
	assert.Equal(t, 3.0, v.LatentMagnitude)
	assert.Equal(t, 0.5, v.LatentShift)
	assert.Equal(t, []int{1, 3, 3, 3}, v.NumEncoderBlocks)
	assert.Equal(t, 2, v.UpsamplingScalingFactor)
	require.NoError(t, v.Validate())

	k, err := ParseKLVAEConfig([]byte(klBase))
	require.NoError(t, err)
	assert.Equal(t, 0.18215, k.ScalingFactor)
	assert.Equal(t, 0.0, k.ShiftFactor)
	assert.True(t, k.UsePostQuantConv)
	assert.True(t, k.MidBlockAddAttention)
	assert.Equal(t, 1, k.LayersPerBlock)
	require.NoError(t, k.Validate())

	tinyCases := []struct {
		name string
		data []byte
		want string
	}{
		{"upsample", with(t, tinyBase, "upsample_fn", "bilinear"), `vae config: field "upsample_fn": unsupported value "bilinear" (supported: "nearest")`},
		{"act", with(t, tinyBase, "act_fn", "silu"), `field "act_fn": unsupported value "silu" (supported: "relu")`},
		{"lengths", with(t, tinyBase, "num_decoder_blocks", []int{1, 1}), `field "num_decoder_blocks": has 2 entries, decoder_block_out_channels has 4`},
		{"class", with(t, tinyBase, "_class_name", "AutoencoderKL"), `field "_class_name": unsupported value "AutoencoderKL"`},
	}
	for _, c := range tinyCases {
		t.Run("tiny "+c.name, func(t *testing.T) {
			_, err := ParseTinyVAEConfig(c.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	klCases := []struct {
		name string
		data []byte
		want string
	}{
		{"up type", with(t, klBase, "up_block_types", []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "AttnUpDecoderBlock2D"}), `field "up_block_types": unsupported value "AttnUpDecoderBlock2D"`},
		{"up length", with(t, klBase, "up_block_types", []string{"UpDecoderBlock2D"}), `field "up_block_types": has 1 entries, block_out_channels has 4`},
		{"act", with(t, klBase, "act_fn", "relu"), `field "act_fn": unsupported value "relu"`},
		{"groups", with(t, klBase, "norm_num_groups", 32), `field "norm_num_groups": 32 does not divide block_out_channels[0] = 8`},
	}
	for _, c := range klCases {
		t.Run("kl "+c.name, func(t *testing.T) {
			_, err := ParseKLVAEConfig(c.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestModelIndexAndFolder(t *testing.T) {
	idx, err := ParseModelIndex([]byte(`{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.31.0",
		"requires_safety_checker": false, "safety_checker": [null, null], "unet": ["diffusers", "UNet2DConditionModel"],
		"vae": ["diffusers", "AutoencoderTiny"]}`))
	require.NoError(t, err)
	assert.Equal(t, "StableDiffusionPipeline", idx.ClassName)
	assert.Equal(t, []string{"unet", "vae"}, idx.Names())
	assert.Equal(t, []string{"safety_checker"}, idx.Absent)
	assert.Equal(t, Component{"diffusers", "AutoencoderTiny"}, idx.Components["vae"])
	_, err = ParseModelIndex([]byte(`{"unet": ["diffusers"]}`))
	assert.ErrorContains(t, err, `model_index config: field "unet": want a [library, class] pair`)
	_, err = ParseModelIndex([]byte(`{"unet": ["diffusers", null]}`))
	assert.ErrorContains(t, err, `field "unet"`)

	dir := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("unet/config.json", unetBase)
	write("scheduler/scheduler_config.json", schedBase)
	write("tokenizer/vocab.json", "{}")
	write("text_encoder/config.json", clipBase)
	write("notes/readme.txt", "not a component")
	f, err := OpenFolder(dir)
	require.NoError(t, err)
	assert.Nil(t, f.Index)
	assert.Equal(t, []string{"scheduler", "text_encoder", "tokenizer", "unet"}, f.Components())
	cls, ok := f.Class("unet")
	assert.True(t, ok)
	assert.Equal(t, "UNet2DConditionModel", cls)
	cls, _ = f.Class("text_encoder")
	assert.Equal(t, "CLIPTextModel", cls)
	cls, _ = f.Class("tokenizer")
	assert.Equal(t, "CLIPTokenizer", cls)
	p, ok := f.Path("unet")
	assert.True(t, ok)
	assert.Equal(t, filepath.Join(dir, "unet"), p)
	_, ok = f.Path("vae")
	assert.False(t, ok)
	err = f.Require("unet", "vae", "text_encoder", "controlnet")
	assert.ErrorContains(t, err, "missing components: vae, controlnet")
	cp, err := f.ConfigPath("scheduler")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "scheduler", "scheduler_config.json"), cp)
	_, err = f.OpenWeights("unet")
	assert.ErrorContains(t, err, "no safetensors weights found")

	// With a model_index.json, listed components must exist, except those never read (which a
	// download from the hub leaves out).
	write("model_index.json", `{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
		"vae": ["diffusers", "AutoencoderTiny"], "feature_extractor": [null, null],
		"safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]}`)
	_, err = OpenFolder(dir)
	assert.ErrorContains(t, err, "model_index.json lists components with no folder: vae")
	assert.NotContains(t, err.Error(), "safety_checker")
	write("vae/config.json", tinyBase)
	f, err = OpenFolder(dir)
	require.NoError(t, err)
	require.NotNil(t, f.Index)
	assert.NoError(t, f.Require("unet", "vae", "scheduler", "text_encoder", "tokenizer"))

	_, err = OpenFolder(filepath.Join(dir, "missing"))
	assert.Error(t, err)
	_, err = OpenFolder(filepath.Join(dir, "notes"))
	assert.ErrorContains(t, err, "no model_index.json and no component folders")
}

func TestLoadConfigErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(p, with(t, unetBase, "act_fn", "mish"), 0o644))
	_, err := LoadUNetConfig(p)
	require.Error(t, err)
	assert.Equal(t, "weights: "+p+`: unet config: field "act_fn": unsupported value "mish" (supported: "silu", "swish")`, err.Error())
	var ce *ConfigError
	require.True(t, errors.As(err, &ce))
	assert.Equal(t, "act_fn", ce.Field)
	_, err = LoadKLVAEConfig(filepath.Join(dir, "nope.json"))
	assert.ErrorContains(t, err, "nope.json")
}

// TestResolveBadCounts checks that resolving for a negative block count gives nil, not a panic.
func TestResolveBadCounts(t *testing.T) {
	assert.Nil(t, Int(2).Resolve(-1))
	assert.Nil(t, Ints(1, 2).Resolve(-2))
	assert.Nil(t, BoolOrList{Values: []bool{true}}.Resolve(-1))
	assert.Nil(t, BoolOrList{}.Resolve(-1))
	assert.Equal(t, []int{2, 2}, Int(2).Resolve(2))
	assert.Equal(t, []bool{false, false}, BoolOrList{}.Resolve(2))
}
