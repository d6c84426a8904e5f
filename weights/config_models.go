package weights

// CLIPTextConfig is the configuration of a transformers CLIPTextModel (text_encoder/config.json).
type CLIPTextConfig struct {
	ClassName             string  // architectures[0]: "CLIPTextModel" or "CLIPTextModelWithProjection"
	VocabSize             int     // vocab_size (49408)
	HiddenSize            int     // hidden_size
	IntermediateSize      int     // intermediate_size
	ProjectionDim         int     // projection_dim (only used by the projection head)
	NumHiddenLayers       int     // num_hidden_layers
	NumAttentionHeads     int     // num_attention_heads
	MaxPositionEmbeddings int     // max_position_embeddings (77)
	HiddenAct             string  // hidden_act: "quick_gelu" or "gelu" (exact, erf-based)
	LayerNormEps          float64 // layer_norm_eps
	PadTokenID            int     // pad_token_id
	BOSTokenID            int     // bos_token_id
	EOSTokenID            int     // eos_token_id
}

// HeadDim returns the size of one attention head (hidden_size / num_attention_heads).
func (c *CLIPTextConfig) HeadDim() int {
	if c.NumAttentionHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// ParseCLIPTextConfig parses a CLIPTextModel config.json with transformers' defaults. A full
// CLIPConfig (model_type "clip") is accepted too: its text_config is used.
func ParseCLIPTextConfig(data []byte) (*CLIPTextConfig, error) {
	c, err := newJSONConfig("text_encoder", data)
	if err != nil {
		return nil, configErr(err)
	}
	if tc := c.raw("text_config"); !isNull(tc) && c.string("model_type", "") == "clip" {
		inner, err := newJSONConfig("text_encoder", tc)
		if err != nil {
			return nil, configErr(err)
		}
		c = inner
	}
	t := &CLIPTextConfig{}
	t.ClassName = c.className("CLIPTextModel", "CLIPTextModelWithProjection")
	if mt := c.string("model_type", "clip_text_model"); mt != "" {
		c.check("model_type", mt, "clip_text_model", "clip")
	}
	t.VocabSize = c.positive("vocab_size", 49408)
	t.HiddenSize = c.positive("hidden_size", 512)
	t.IntermediateSize = c.positive("intermediate_size", 2048)
	t.ProjectionDim = c.int("projection_dim", 512)
	t.NumHiddenLayers = c.positive("num_hidden_layers", 12)
	t.NumAttentionHeads = c.positive("num_attention_heads", 8)
	t.MaxPositionEmbeddings = c.positive("max_position_embeddings", 77)
	t.HiddenAct = c.oneOf("hidden_act", "quick_gelu", "quick_gelu", "gelu")
	t.LayerNormEps = c.float("layer_norm_eps", 1e-5)
	t.PadTokenID = c.int("pad_token_id", 1)
	t.BOSTokenID = c.int("bos_token_id", 49406)
	t.EOSTokenID = c.int("eos_token_id", 49407)
	if c.err == nil {
		t.validateInto(c)
	}
	if c.err != nil {
		return nil, configErr(c.err)
	}
	return t, nil
}

func (t *CLIPTextConfig) validateInto(c *jsonConfig) {
	if t.NumAttentionHeads > 0 && t.HiddenSize%t.NumAttentionHeads != 0 {
		c.fail("num_attention_heads", "%d heads do not divide hidden_size %d", t.NumAttentionHeads, t.HiddenSize)
	}
	if t.LayerNormEps <= 0 {
		c.fail("layer_norm_eps", "must be positive, got %g", t.LayerNormEps)
	}
}

// Validate checks a CLIPTextConfig built in code.
func (t *CLIPTextConfig) Validate() error {
	c := &jsonConfig{kind: "text_encoder"}
	c.check("hidden_act", t.HiddenAct, "quick_gelu", "gelu")
	if t.VocabSize <= 0 || t.HiddenSize <= 0 || t.IntermediateSize <= 0 || t.NumHiddenLayers <= 0 ||
		t.NumAttentionHeads <= 0 || t.MaxPositionEmbeddings <= 0 {
		c.fail("", "sizes, layer and head counts must be positive")
	}
	if c.err == nil {
		t.validateInto(c)
	}
	return configErr(c.err)
}

// LoadCLIPTextConfig reads and parses a text encoder config.json.
func LoadCLIPTextConfig(path string) (*CLIPTextConfig, error) {
	return loadConfig(path, ParseCLIPTextConfig)
}

// TinyVAEConfig is the configuration of a diffusers AutoencoderTiny (TAESD).
type TinyVAEConfig struct {
	ClassName               string  // _class_name: "AutoencoderTiny"
	InChannels              int     // in_channels
	OutChannels             int     // out_channels
	EncoderBlockOutChannels []int   // encoder_block_out_channels
	DecoderBlockOutChannels []int   // decoder_block_out_channels
	NumEncoderBlocks        []int   // num_encoder_blocks
	NumDecoderBlocks        []int   // num_decoder_blocks
	LatentChannels          int     // latent_channels
	UpsamplingScalingFactor int     // upsampling_scaling_factor
	UpsampleFn              string  // upsample_fn: "nearest"
	ActFn                   string  // act_fn: "relu"
	LatentMagnitude         float64 // latent_magnitude
	LatentShift             float64 // latent_shift
	ForceUpcast             bool    // force_upcast
	ScalingFactor           float64 // scaling_factor (1.0)
	ShiftFactor             float64 // shift_factor (0.0)
}

// ParseTinyVAEConfig parses an AutoencoderTiny config.json with diffusers' defaults.
func ParseTinyVAEConfig(data []byte) (*TinyVAEConfig, error) {
	c, err := newJSONConfig("vae", data)
	if err != nil {
		return nil, configErr(err)
	}
	v := &TinyVAEConfig{}
	v.ClassName = c.className("AutoencoderTiny")
	v.InChannels = c.positive("in_channels", 3)
	v.OutChannels = c.positive("out_channels", 3)
	v.EncoderBlockOutChannels = c.ints("encoder_block_out_channels", []int{64, 64, 64, 64})
	v.DecoderBlockOutChannels = c.ints("decoder_block_out_channels", []int{64, 64, 64, 64})
	v.NumEncoderBlocks = c.ints("num_encoder_blocks", []int{1, 3, 3, 3})
	v.NumDecoderBlocks = c.ints("num_decoder_blocks", []int{3, 3, 3, 1})
	v.LatentChannels = c.positive("latent_channels", 4)
	v.UpsamplingScalingFactor = c.positive("upsampling_scaling_factor", 2)
	v.UpsampleFn = c.oneOf("upsample_fn", "nearest", "nearest")
	v.ActFn = c.oneOf("act_fn", "relu", "relu")
	v.LatentMagnitude = c.float("latent_magnitude", 3)
	v.LatentShift = c.float("latent_shift", 0.5)
	v.ForceUpcast = c.bool("force_upcast", false)
	v.ScalingFactor = c.float("scaling_factor", 1)
	v.ShiftFactor = c.float("shift_factor", 0)
	if c.err == nil {
		v.validateInto(c)
	}
	if c.err != nil {
		return nil, configErr(c.err)
	}
	return v, nil
}

func (v *TinyVAEConfig) validateInto(c *jsonConfig) {
	pos := func(field string, xs []int) {
		if len(xs) == 0 {
			c.fail(field, "must not be empty")
		}
		for _, x := range xs {
			if x <= 0 {
				c.fail(field, "values must be positive, got %v", xs)
				return
			}
		}
	}
	pos("encoder_block_out_channels", v.EncoderBlockOutChannels)
	pos("decoder_block_out_channels", v.DecoderBlockOutChannels)
	pos("num_encoder_blocks", v.NumEncoderBlocks)
	pos("num_decoder_blocks", v.NumDecoderBlocks)
	if len(v.NumDecoderBlocks) != len(v.DecoderBlockOutChannels) {
		c.fail("num_decoder_blocks", "has %d entries, decoder_block_out_channels has %d", len(v.NumDecoderBlocks), len(v.DecoderBlockOutChannels))
	}
	if len(v.NumEncoderBlocks) != len(v.EncoderBlockOutChannels) {
		c.fail("num_encoder_blocks", "has %d entries, encoder_block_out_channels has %d", len(v.NumEncoderBlocks), len(v.EncoderBlockOutChannels))
	}
	if v.LatentMagnitude <= 0 {
		c.fail("latent_magnitude", "must be positive, got %g", v.LatentMagnitude)
	}
	if v.ScalingFactor == 0 {
		c.fail("scaling_factor", "must not be zero")
	}
}

// Validate checks a TinyVAEConfig built in code.
func (v *TinyVAEConfig) Validate() error {
	c := &jsonConfig{kind: "vae"}
	c.check("upsample_fn", v.UpsampleFn, "nearest")
	c.check("act_fn", v.ActFn, "relu")
	if v.InChannels <= 0 || v.OutChannels <= 0 || v.LatentChannels <= 0 || v.UpsamplingScalingFactor <= 0 {
		c.fail("", "channel counts and upsampling_scaling_factor must be positive")
	}
	if c.err == nil {
		v.validateInto(c)
	}
	return configErr(c.err)
}

// LoadTinyVAEConfig reads and parses an AutoencoderTiny config.json.
func LoadTinyVAEConfig(path string) (*TinyVAEConfig, error) {
	return loadConfig(path, ParseTinyVAEConfig)
}

// KLVAEConfig is the configuration of a diffusers AutoencoderKL (the full SD VAE).
type KLVAEConfig struct {
	ClassName            string   // _class_name: "AutoencoderKL"
	InChannels           int      // in_channels
	OutChannels          int      // out_channels
	DownBlockTypes       []string // down_block_types: DownEncoderBlock2D
	UpBlockTypes         []string // up_block_types: UpDecoderBlock2D
	BlockOutChannels     []int    // block_out_channels
	LayersPerBlock       int      // layers_per_block (the decoder's up blocks have one more)
	ActFn                string   // act_fn: "silu"
	LatentChannels       int      // latent_channels
	NormNumGroups        int      // norm_num_groups
	SampleSize           int      // sample_size
	ScalingFactor        float64  // scaling_factor (0.18215)
	ShiftFactor          float64  // shift_factor (0 when null)
	ForceUpcast          bool     // force_upcast
	UseQuantConv         bool     // use_quant_conv
	UsePostQuantConv     bool     // use_post_quant_conv
	MidBlockAddAttention bool     // mid_block_add_attention
}

// ParseKLVAEConfig parses an AutoencoderKL config.json with diffusers' defaults.
func ParseKLVAEConfig(data []byte) (*KLVAEConfig, error) {
	c, err := newJSONConfig("vae", data)
	if err != nil {
		return nil, configErr(err)
	}
	v := &KLVAEConfig{}
	v.ClassName = c.className("AutoencoderKL")
	v.InChannels = c.positive("in_channels", 3)
	v.OutChannels = c.positive("out_channels", 3)
	v.DownBlockTypes = c.strings("down_block_types", []string{"DownEncoderBlock2D"})
	v.UpBlockTypes = c.strings("up_block_types", []string{"UpDecoderBlock2D"})
	v.BlockOutChannels = c.ints("block_out_channels", []int{64})
	v.LayersPerBlock = c.positive("layers_per_block", 1)
	v.ActFn = c.oneOf("act_fn", "silu", "silu", "swish")
	if v.ActFn == "swish" {
		v.ActFn = "silu"
	}
	v.LatentChannels = c.positive("latent_channels", 4)
	v.NormNumGroups = c.positive("norm_num_groups", 32)
	v.SampleSize = c.int("sample_size", 32)
	v.ScalingFactor = c.float("scaling_factor", 0.18215)
	v.ShiftFactor, _ = c.nullableFloat("shift_factor", 0)
	v.ForceUpcast = c.bool("force_upcast", true)
	v.UseQuantConv = c.bool("use_quant_conv", true)
	v.UsePostQuantConv = c.bool("use_post_quant_conv", true)
	v.MidBlockAddAttention = c.bool("mid_block_add_attention", true)
	if c.err == nil {
		v.validateInto(c)
	}
	if c.err != nil {
		return nil, configErr(c.err)
	}
	return v, nil
}

func (v *KLVAEConfig) validateInto(c *jsonConfig) {
	n := len(v.BlockOutChannels)
	if n == 0 {
		c.fail("block_out_channels", "must not be empty")
		return
	}
	if len(v.UpBlockTypes) != n {
		c.fail("up_block_types", "has %d entries, block_out_channels has %d", len(v.UpBlockTypes), n)
	}
	if len(v.DownBlockTypes) != n {
		c.fail("down_block_types", "has %d entries, block_out_channels has %d", len(v.DownBlockTypes), n)
	}
	for _, t := range v.UpBlockTypes {
		c.check("up_block_types", t, "UpDecoderBlock2D")
	}
	for _, t := range v.DownBlockTypes {
		c.check("down_block_types", t, "DownEncoderBlock2D")
	}
	for i, ch := range v.BlockOutChannels {
		if ch <= 0 {
			c.fail("block_out_channels", "channels must be positive, got %v", v.BlockOutChannels)
		} else if v.NormNumGroups > 0 && ch%v.NormNumGroups != 0 {
			c.fail("norm_num_groups", "%d does not divide block_out_channels[%d] = %d", v.NormNumGroups, i, ch)
		}
	}
	if v.ScalingFactor == 0 {
		c.fail("scaling_factor", "must not be zero")
	}
}

// Validate checks a KLVAEConfig built in code.
func (v *KLVAEConfig) Validate() error {
	c := &jsonConfig{kind: "vae"}
	c.check("act_fn", v.ActFn, "silu")
	if v.InChannels <= 0 || v.OutChannels <= 0 || v.LatentChannels <= 0 || v.LayersPerBlock <= 0 || v.NormNumGroups <= 0 {
		c.fail("", "channel counts, layers_per_block and norm_num_groups must be positive")
	}
	if c.err == nil {
		v.validateInto(c)
	}
	return configErr(c.err)
}

// LoadKLVAEConfig reads and parses an AutoencoderKL config.json.
func LoadKLVAEConfig(path string) (*KLVAEConfig, error) { return loadConfig(path, ParseKLVAEConfig) }
