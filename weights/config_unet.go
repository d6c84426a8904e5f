package weights

import "slices"

// Block type names of the UNet and ControlNet configurations.
const (
	DownBlock2D             = "DownBlock2D"
	CrossAttnDownBlock2D    = "CrossAttnDownBlock2D"
	UpBlock2D               = "UpBlock2D"
	CrossAttnUpBlock2D      = "CrossAttnUpBlock2D"
	UNetMidBlock2DCrossAttn = "UNetMidBlock2DCrossAttn"
	// UNetMidBlock2D is a ControlNet's mid block of one ResNet and no attention (diffusers
	// builds it with num_layers=0).
	UNetMidBlock2D = "UNetMidBlock2D"
)

// UNetBlocks holds the fields UNet2DConditionModel and ControlNetModel share: the down path,
// the mid block, the attention layout and the time embedding. Per-block values are resolved
// by Heads, OnlyCross, LayersPerBlock and TransformerLayers (index i is down block i; the up
// blocks of a UNet use the lists reversed, as diffusers does).
type UNetBlocks struct {
	InChannels       int      // in_channels
	BlockOutChannels []int    // block_out_channels
	DownBlockTypes   []string // down_block_types: DownBlock2D or CrossAttnDownBlock2D
	// MidBlockType is "UNetMidBlock2DCrossAttn", "UNetMidBlock2D" (ControlNet only: one ResNet),
	// or "" when the config has null (no mid block).
	MidBlockType              string
	LayersPerBlockSpec        IntOrList  // layers_per_block
	AttentionHeadDim          IntOrList  // attention_head_dim (the head count when num_attention_heads is null)
	NumAttentionHeads         IntOrList  // num_attention_heads (usually null)
	TransformerLayersPerBlock IntOrList  // transformer_layers_per_block
	OnlyCrossAttention        BoolOrList // only_cross_attention
	CrossAttentionDim         int        // cross_attention_dim
	NormNumGroups             int        // norm_num_groups
	NormEps                   float64    // norm_eps
	ActFn                     string     // act_fn: "silu"
	FlipSinToCos              bool       // flip_sin_to_cos
	FreqShift                 float64    // freq_shift
	DownsamplePadding         int        // downsample_padding: 1
	MidBlockScaleFactor       float64    // mid_block_scale_factor
	UseLinearProjection       bool       // use_linear_projection
	UpcastAttention           bool       // upcast_attention (no effect in float32)
	ResnetTimeScaleShift      string     // resnet_time_scale_shift: "default"
	ConvInKernel              int        // conv_in_kernel (odd; always 3 for ControlNet)
}

// NumBlocks returns the number of down blocks.
func (b *UNetBlocks) NumBlocks() int { return len(b.BlockOutChannels) }

// Heads returns the number of attention heads of each down block, resolved as diffusers does:
// num_attention_heads when set, else attention_head_dim (which, despite its name, is the head
// count), a single integer applying to every block.
func (b *UNetBlocks) Heads() []int {
	if !b.NumAttentionHeads.IsNull() {
		return b.NumAttentionHeads.Resolve(b.NumBlocks())
	}
	return b.AttentionHeadDim.Resolve(b.NumBlocks())
}

// HeadDims returns the size of one attention head per down block (channels / heads).
func (b *UNetBlocks) HeadDims() []int {
	h := b.Heads()
	if h == nil {
		return nil
	}
	out := make([]int, len(h))
	for i := range h {
		if h[i] > 0 {
			out[i] = b.BlockOutChannels[i] / h[i]
		}
	}
	return out
}

// OnlyCross reports for each down block whether its transformers' first attention attends to
// the text instead of to the image (only_cross_attention).
func (b *UNetBlocks) OnlyCross() []bool { return b.OnlyCrossAttention.Resolve(b.NumBlocks()) }

// LayersPerBlock returns the number of resnets of each down block (up blocks have one more).
func (b *UNetBlocks) LayersPerBlock() []int { return b.LayersPerBlockSpec.Resolve(b.NumBlocks()) }

// TransformerLayers returns the number of transformer blocks in each attention of each down
// block.
func (b *UNetBlocks) TransformerLayers() []int {
	return b.TransformerLayersPerBlock.Resolve(b.NumBlocks())
}

// HasMidBlock reports whether the model has a mid block.
func (b *UNetBlocks) HasMidBlock() bool { return b.MidBlockType != "" }

// TimeEmbedDim returns the width of the time embedding (4 × block_out_channels[0]).
func (b *UNetBlocks) TimeEmbedDim() int {
	if len(b.BlockOutChannels) == 0 {
		return 0
	}
	return 4 * b.BlockOutChannels[0]
}

// parseBlocks reads the shared fields with the given defaults.
func parseBlocks(c *jsonConfig, b *UNetBlocks, defDown []string, defMid string) {
	b.InChannels = c.positive("in_channels", 4)
	b.BlockOutChannels = c.ints("block_out_channels", []int{320, 640, 1280, 1280})
	b.DownBlockTypes = c.strings("down_block_types", defDown)
	b.MidBlockType = c.string("mid_block_type", defMid)
	b.LayersPerBlockSpec = c.intOrList("layers_per_block", Int(2))
	b.AttentionHeadDim = c.intOrList("attention_head_dim", Int(8))
	b.NumAttentionHeads = c.intOrList("num_attention_heads", IntOrList{})
	b.TransformerLayersPerBlock = c.intOrList("transformer_layers_per_block", Int(1))
	b.OnlyCrossAttention = c.boolOrList("only_cross_attention", false)
	if r := c.raw("cross_attention_dim"); len(r) > 0 && r[0] == '[' {
		c.fail("cross_attention_dim", "unsupported value %s (per-block lists are not supported; give one integer)", show(r))
	}
	b.CrossAttentionDim = c.positive("cross_attention_dim", 1280)
	b.NormNumGroups = c.positive("norm_num_groups", 32)
	b.NormEps = c.float("norm_eps", 1e-5)
	b.ActFn = c.oneOf("act_fn", "silu", "silu", "swish")
	if b.ActFn == "swish" { // the same function under its other name
		b.ActFn = "silu"
	}
	b.FlipSinToCos = c.bool("flip_sin_to_cos", true)
	b.FreqShift = c.float("freq_shift", 0)
	b.DownsamplePadding = c.int("downsample_padding", 1)
	b.MidBlockScaleFactor = c.float("mid_block_scale_factor", 1)
	b.UseLinearProjection = c.bool("use_linear_projection", false)
	b.UpcastAttention = c.bool("upcast_attention", false)
	b.ResnetTimeScaleShift = c.oneOf("resnet_time_scale_shift", "default", "default")
	// Features this implementation does not have must be off.
	for _, f := range []string{"class_embed_type", "addition_embed_type", "encoder_hid_dim_type",
		"encoder_hid_dim", "num_class_embeds", "time_cond_proj_dim"} {
		c.mustNull(f)
	}
}

// validate checks the shared fields; up lists the up block types (nil for a ControlNet).
func (b *UNetBlocks) validate(c *jsonConfig, up []string) {
	n := len(b.BlockOutChannels)
	if n == 0 {
		c.fail("block_out_channels", "must not be empty")
		return
	}
	for _, ch := range b.BlockOutChannels {
		if ch <= 0 {
			c.fail("block_out_channels", "channels must be positive, got %v", b.BlockOutChannels)
		}
	}
	if len(b.DownBlockTypes) != n {
		c.fail("down_block_types", "has %d entries, block_out_channels has %d", len(b.DownBlockTypes), n)
	}
	for _, t := range b.DownBlockTypes {
		c.check("down_block_types", t, DownBlock2D, CrossAttnDownBlock2D)
	}
	if up != nil {
		c.check("mid_block_type", b.MidBlockType, "", UNetMidBlock2DCrossAttn)
	} else {
		c.check("mid_block_type", b.MidBlockType, "", UNetMidBlock2DCrossAttn, UNetMidBlock2D)
	}
	if up != nil {
		if len(up) != len(b.DownBlockTypes) {
			c.fail("up_block_types", "has %d entries, down_block_types has %d", len(up), len(b.DownBlockTypes))
		}
		for _, t := range up {
			c.check("up_block_types", t, UpBlock2D, CrossAttnUpBlock2D)
		}
	}
	perBlock := func(field string, v IntOrList) []int {
		if v.IsNull() {
			c.fail(field, "must not be null")
			return nil
		}
		r := v.Resolve(n)
		if r == nil {
			c.fail(field, "has %d entries, want one per block (%d)", len(v.Values), n)
			return nil
		}
		for _, x := range r {
			if x <= 0 {
				c.fail(field, "values must be positive, got %v", v.Values)
				return nil
			}
		}
		return r
	}
	perBlock("layers_per_block", b.LayersPerBlockSpec)
	perBlock("transformer_layers_per_block", b.TransformerLayersPerBlock)
	headsField, headsVal := "attention_head_dim", b.AttentionHeadDim
	if !b.NumAttentionHeads.IsNull() {
		headsField, headsVal = "num_attention_heads", b.NumAttentionHeads
	}
	heads := perBlock(headsField, headsVal)
	if b.OnlyCrossAttention.Resolve(n) == nil {
		c.fail("only_cross_attention", "has %d entries, want one per block (%d)", len(b.OnlyCrossAttention.Values), n)
	}
	if b.NormEps <= 0 {
		c.fail("norm_eps", "must be positive, got %g", b.NormEps)
	}
	if b.DownsamplePadding != 1 {
		c.fail("downsample_padding", "unsupported value %d (supported: 1)", b.DownsamplePadding)
	}
	if b.ConvInKernel <= 0 || b.ConvInKernel%2 == 0 {
		c.fail("conv_in_kernel", "must be a positive odd number, got %d", b.ConvInKernel)
	}
	// Channel divisibility: every block's channels by the groups; blocks with attention (down,
	// up at the mirrored position, or the mid block) by their head count.
	for i, ch := range b.BlockOutChannels {
		if b.NormNumGroups > 0 && ch%b.NormNumGroups != 0 {
			c.fail("norm_num_groups", "%d does not divide block_out_channels[%d] = %d", b.NormNumGroups, i, ch)
		}
		attn := i < len(b.DownBlockTypes) && b.DownBlockTypes[i] == CrossAttnDownBlock2D
		if j := n - 1 - i; up != nil && j < len(up) && up[j] == CrossAttnUpBlock2D {
			attn = true
		}
		if i == n-1 && b.MidBlockType == UNetMidBlock2DCrossAttn {
			attn = true
		}
		if attn && heads != nil && ch%heads[i] != 0 {
			c.fail(headsField, "%d heads do not divide block_out_channels[%d] = %d", heads[i], i, ch)
		}
	}
}

// UNetConfig is the configuration of a diffusers UNet2DConditionModel (unet/config.json).
type UNetConfig struct {
	ClassName string // _class_name: "UNet2DConditionModel"
	UNetBlocks
	SampleSize        int      // sample_size (latent size the model was trained at; 0 when null)
	OutChannels       int      // out_channels
	UpBlockTypes      []string // up_block_types: UpBlock2D or CrossAttnUpBlock2D
	CenterInputSample bool     // center_input_sample: false
	ConvOutKernel     int      // conv_out_kernel (odd)
	// TimeEmbeddingType is "positional" (sinusoidal timestep features).
	TimeEmbeddingType    string
	ResnetOutScaleFactor float64 // resnet_out_scale_factor: 1.0
	DualCrossAttention   bool    // dual_cross_attention: false
}

// ParseUNetConfig parses a UNet2DConditionModel config.json, applying diffusers' defaults for
// missing fields, and rejects values this implementation does not support.
func ParseUNetConfig(data []byte) (*UNetConfig, error) {
	c, err := newJSONConfig("unet", data)
	if err != nil {
		return nil, configErr(err)
	}
	u := &UNetConfig{}
	u.ClassName = c.className("UNet2DConditionModel")
	parseBlocks(c, &u.UNetBlocks,
		[]string{CrossAttnDownBlock2D, CrossAttnDownBlock2D, CrossAttnDownBlock2D, DownBlock2D},
		UNetMidBlock2DCrossAttn)
	u.SampleSize = c.int("sample_size", 0)
	u.OutChannels = c.positive("out_channels", 4)
	u.UpBlockTypes = c.strings("up_block_types", []string{UpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D})
	u.CenterInputSample = c.mustBool("center_input_sample", false)
	u.ConvInKernel = c.int("conv_in_kernel", 3)
	u.ConvOutKernel = c.int("conv_out_kernel", 3)
	u.TimeEmbeddingType = c.oneOf("time_embedding_type", "positional", "positional")
	u.ResnetOutScaleFactor = c.float("resnet_out_scale_factor", 1)
	u.DualCrossAttention = c.mustBool("dual_cross_attention", false)
	for _, f := range []string{"time_embedding_dim", "time_embedding_act_fn", "timestep_post_act",
		"cross_attention_norm", "reverse_transformer_layers_per_block"} {
		c.mustNull(f)
	}
	c.mustBool("resnet_skip_time_act", false)
	c.oneOf("attention_type", "default", "default")
	if u.ResnetOutScaleFactor != 1 {
		c.fail("resnet_out_scale_factor", "unsupported value %g (supported: 1.0)", u.ResnetOutScaleFactor)
	}
	if c.err == nil {
		u.validateInto(c)
	}
	if c.err != nil {
		return nil, configErr(c.err)
	}
	return u, nil
}

func (u *UNetConfig) validateInto(c *jsonConfig) {
	u.UNetBlocks.validate(c, u.UpBlockTypes)
	if u.ConvOutKernel <= 0 || u.ConvOutKernel%2 == 0 {
		c.fail("conv_out_kernel", "must be a positive odd number, got %d", u.ConvOutKernel)
	}
}

// Validate checks a UNetConfig built in code (ParseUNetConfig has already done so).
func (u *UNetConfig) Validate() error {
	c := &jsonConfig{kind: "unet"}
	c.check("_class_name", u.ClassName, "UNet2DConditionModel")
	c.check("act_fn", u.ActFn, "silu")
	c.check("resnet_time_scale_shift", u.ResnetTimeScaleShift, "default")
	c.check("time_embedding_type", u.TimeEmbeddingType, "positional")
	if u.CrossAttentionDim <= 0 || u.InChannels <= 0 || u.OutChannels <= 0 || u.NormNumGroups <= 0 {
		c.fail("", "in_channels, out_channels, cross_attention_dim and norm_num_groups must be positive")
	}
	if u.CenterInputSample || u.DualCrossAttention || u.ResnetOutScaleFactor != 1 {
		c.fail("", "center_input_sample, dual_cross_attention and resnet_out_scale_factor != 1 are not supported")
	}
	if c.err == nil {
		u.validateInto(c)
	}
	return configErr(c.err)
}

// UpHeads returns the head count of each up block (Heads reversed).
func (u *UNetConfig) UpHeads() []int { return reversed(u.Heads()) }

// UpLayersPerBlock returns the number of resnets of each up block (LayersPerBlock reversed,
// plus one).
func (u *UNetConfig) UpLayersPerBlock() []int {
	r := reversed(u.LayersPerBlock())
	for i := range r {
		r[i]++
	}
	return r
}

func reversed[T any](s []T) []T {
	if s == nil {
		return nil
	}
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// LoadUNetConfig reads and parses a UNet config.json.
func LoadUNetConfig(path string) (*UNetConfig, error) { return loadConfig(path, ParseUNetConfig) }

// ControlNetConfig is the configuration of a diffusers ControlNetModel.
type ControlNetConfig struct {
	ClassName string // _class_name: "ControlNetModel"
	UNetBlocks
	ConditioningChannels             int    // conditioning_channels (3)
	ConditioningEmbeddingOutChannels []int  // conditioning_embedding_out_channels
	ConditioningChannelOrder         string // controlnet_conditioning_channel_order: "rgb"
	GlobalPoolConditions             bool   // global_pool_conditions: false
}

// ParseControlNetConfig parses a ControlNetModel config.json, applying diffusers' defaults for
// missing fields, and rejects values this implementation does not support.
func ParseControlNetConfig(data []byte) (*ControlNetConfig, error) {
	c, err := newJSONConfig("controlnet", data)
	if err != nil {
		return nil, configErr(err)
	}
	cn := &ControlNetConfig{}
	cn.ClassName = c.className("ControlNetModel")
	parseBlocks(c, &cn.UNetBlocks,
		[]string{CrossAttnDownBlock2D, CrossAttnDownBlock2D, CrossAttnDownBlock2D, DownBlock2D},
		UNetMidBlock2DCrossAttn)
	cn.ConvInKernel = 3
	cn.ConditioningChannels = c.positive("conditioning_channels", 3)
	cn.ConditioningEmbeddingOutChannels = c.ints("conditioning_embedding_out_channels", []int{16, 32, 96, 256})
	cn.ConditioningChannelOrder = c.oneOf("controlnet_conditioning_channel_order", "rgb", "rgb")
	cn.GlobalPoolConditions = c.mustBool("global_pool_conditions", false)
	if c.err == nil {
		cn.validateInto(c)
	}
	if c.err != nil {
		return nil, configErr(c.err)
	}
	return cn, nil
}

func (cn *ControlNetConfig) validateInto(c *jsonConfig) {
	cn.UNetBlocks.validate(c, nil)
	if len(cn.ConditioningEmbeddingOutChannels) == 0 {
		c.fail("conditioning_embedding_out_channels", "must not be empty")
	}
	for _, ch := range cn.ConditioningEmbeddingOutChannels {
		if ch <= 0 {
			c.fail("conditioning_embedding_out_channels", "channels must be positive, got %v", cn.ConditioningEmbeddingOutChannels)
		}
	}
}

// Validate checks a ControlNetConfig built in code (ParseControlNetConfig has already done so).
func (cn *ControlNetConfig) Validate() error {
	c := &jsonConfig{kind: "controlnet"}
	c.check("_class_name", cn.ClassName, "ControlNetModel")
	c.check("act_fn", cn.ActFn, "silu")
	c.check("resnet_time_scale_shift", cn.ResnetTimeScaleShift, "default")
	c.check("controlnet_conditioning_channel_order", cn.ConditioningChannelOrder, "rgb")
	if cn.CrossAttentionDim <= 0 || cn.InChannels <= 0 || cn.NormNumGroups <= 0 || cn.ConditioningChannels <= 0 {
		c.fail("", "in_channels, conditioning_channels, cross_attention_dim and norm_num_groups must be positive")
	}
	if cn.GlobalPoolConditions {
		c.fail("global_pool_conditions", "unsupported value true (supported: false)")
	}
	if c.err == nil {
		cn.validateInto(c)
	}
	return configErr(c.err)
}

// LoadControlNetConfig reads and parses a ControlNet config.json.
func LoadControlNetConfig(path string) (*ControlNetConfig, error) {
	return loadConfig(path, ParseControlNetConfig)
}
