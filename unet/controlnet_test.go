package unet

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// controlCase is the oracle's ControlNet case of the DreamShaper model, read from cases.json.
type controlCase struct {
	index         int
	height, width int
	scale         float64
}

func findControlCase(t *testing.T) controlCase {
	t.Helper()
	data, err := os.ReadFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "cases.json"))
	require.NoError(t, err)
	var cases []struct {
		Height       int     `json:"height"`
		Width        int     `json:"width"`
		ControlImage bool    `json:"control_image"`
		ControlScale float64 `json:"control_scale"`
	}
	require.NoError(t, json.Unmarshal(data, &cases))
	for i, c := range cases {
		if c.ControlImage {
			require.Positive(t, c.ControlScale, "case %d: control_scale", i)
			return controlCase{index: i, height: c.Height, width: c.Width, scale: c.ControlScale}
		}
	}
	t.Fatal("the oracle has no ControlNet case")
	return controlCase{}
}

// loadControlNet returns the oracle's ControlNet.
func loadControlNet(t *testing.T) *ControlNet {
	t.Helper()
	dir := oracle.Path(t, "sdxs-dreamshaper-tiny", "controlnet")
	cfg, err := weights.LoadControlNetConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	src := oracle.OpenComponent(t, dir)
	c, err := NewControlNet(cfg, src)
	require.NoError(t, err)
	return c
}

// controlRef holds the inputs and outputs of the oracle's ControlNet case.
type controlRef struct {
	cc                 controlCase
	sample, text, cond []float32
	down               [][]float32
	mid, unetOut       []float32
}

func loadControlRef(t *testing.T, cfg *weights.UNetConfig) controlRef {
	t.Helper()
	cc := findControlCase(t)
	h, w := cc.height/8, cc.width/8
	ref := oracle.Tensors(t, "sdxs-dreamshaper-tiny", "reference.safetensors")
	get := func(name string, shape ...int) []float32 {
		v, s := oracle.Float32(t, ref, fmt.Sprintf("case%d.%s", cc.index, name))
		require.Equal(t, shape, s, name)
		return v
	}
	r := controlRef{cc: cc}
	r.sample = get("unet_input", 1, cfg.InChannels, h, w)
	r.text = get("text_embeddings", 1, textLen, cfg.CrossAttentionDim)
	r.cond = get("control_cond", 1, 3, cc.height, cc.width)
	r.unetOut = get("unet_output", 1, cfg.OutChannels, h, w)
	for j, s := range DownResidualShapes(cfg, h, w) {
		r.down = append(r.down, get(fmt.Sprintf("control_down.%d", j), 1, s[0], s[1], s[2]))
	}
	ms := MidResidualShape(cfg, h, w)
	r.mid = get("control_mid", 1, ms[0], ms[1], ms[2])
	return r
}

// TestUNetWithOracleResiduals feeds the oracle's ControlNet outputs (control_down.*,
// control_mid) straight into the UNet: its output must be the reference unet_output of the
// ControlNet case, which the UNet without residuals does not give.
func TestUNetWithOracleResiduals(t *testing.T) {
	m, _ := loadUNet(t, "sdxs-dreamshaper-tiny")
	r := loadControlRef(t, m.Config())
	h, w := r.cc.height/8, r.cc.width/8
	ctx := context.Background()
	out, err := m.Forward(ctx, r.sample, h, w, oracleTimest, r.text, &Residuals{Down: r.down, Mid: r.mid})
	require.NoError(t, err)
	oracle.AssertRelL2(t, "unet_output with ControlNet residuals", out, r.unetOut, outputRelL2)

	// The residuals matter: without them (or with zeros) the output is far from the reference.
	plain, err := m.Forward(ctx, r.sample, h, w, oracleTimest, r.text, nil)
	require.NoError(t, err)
	assert.Greater(t, oracle.RelL2(plain, r.unetOut), 100*outputRelL2, "the residuals change nothing")
	zeros := &Residuals{Mid: make([]float32, len(r.mid))}
	for _, d := range r.down {
		zeros.Down = append(zeros.Down, make([]float32, len(d)))
	}
	withZeros, err := m.Forward(ctx, r.sample, h, w, oracleTimest, r.text, zeros)
	require.NoError(t, err)
	oracle.AssertRelL2(t, "zero residuals vs none", withZeros, plain, 1e-6)
}

// TestControlNetMatchesDiffusers runs the oracle's ControlNet on the case's control_cond and
// compares every residual (already × control_scale in the reference) with diffusers'.
func TestControlNetMatchesDiffusers(t *testing.T) {
	u, _ := loadUNet(t, "sdxs-dreamshaper-tiny")
	c := loadControlNet(t)
	require.NoError(t, c.Fits(u.Config()))
	require.Equal(t, 8, c.DownFactor())
	r := loadControlRef(t, u.Config())
	h, w := r.cc.height/8, r.cc.width/8
	res, err := c.Forward(context.Background(), r.sample, h, w, oracleTimest, r.text, r.cond, r.cc.scale)
	require.NoError(t, err)
	require.Len(t, res.Down, len(r.down))
	for j := range r.down {
		oracle.AssertRelL2(t, fmt.Sprintf("control_down.%d", j), res.Down[j], r.down[j], outputRelL2)
	}
	oracle.AssertRelL2(t, "control_mid", res.Mid, r.mid, outputRelL2)
	assert.Empty(t, c.Unused(), "ControlNet tensors the graph did not use")

	// The scale multiplies every residual.
	half, err := c.Forward(context.Background(), r.sample, h, w, oracleTimest, r.text, r.cond, r.cc.scale/2)
	require.NoError(t, err)
	for j := range half.Down {
		for i := range half.Down[j] {
			half.Down[j][i] *= 2
		}
		oracle.AssertRelL2(t, fmt.Sprintf("control_down.%d at half the scale, ×2", j), half.Down[j], r.down[j], outputRelL2)
	}

	// And the UNet with these residuals gives the case's unet_output.
	out, err := u.Forward(context.Background(), r.sample, h, w, oracleTimest, r.text, res)
	require.NoError(t, err)
	oracle.AssertRelL2(t, "unet_output", out, r.unetOut, outputRelL2)
}

func TestControlNetInputErrors(t *testing.T) {
	c := loadControlNet(t)
	cfg := c.Config()
	h, w := 4, 5
	sample := make([]float32, cfg.InChannels*h*w)
	text := make([]float32, textLen*cfg.CrossAttentionDim)
	cond := make([]float32, 3*h*8*w*8)
	ctx := context.Background()
	_, err := c.Forward(ctx, sample, h, w, 999, text, cond, 1)
	require.NoError(t, err)
	for _, tc := range []struct {
		name               string
		sample, text, cond []float32
		want               string
	}{
		{"sample", sample[1:], text, cond, "sample has 79 values, want 4×4×5"},
		{"text", sample, text[:10], cond, "text embeddings have 10 values"},
		{"cond", sample, text, cond[:3*h*8*w*8-1], "control image has 3839 values, want 3×32×40"},
	} {
		_, err := c.Forward(ctx, tc.sample, h, w, 999, tc.text, tc.cond, 1)
		assert.ErrorContains(t, err, tc.want, tc.name)
	}
	_, err = c.Forward(ctx, sample, 0, w, 999, text, cond, 1)
	assert.ErrorContains(t, err, "not positive")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Forward(cctx, sample, h, w, 999, text, cond, 1)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, c.Prepare(cctx, 6, 6), context.Canceled)
	_, _, err = c.MACs(cctx, 6, 7)
	assert.ErrorIs(t, err, context.Canceled)

	// Nil inputs are errors, not panics.
	_, err = NewControlNet(cfg, nil)
	assert.ErrorContains(t, err, "nil weight source")
	_, err = NewControlNet(nil, &nn.RandomSource{Seed: 1})
	assert.ErrorContains(t, err, "nil config")
	assert.ErrorContains(t, c.Fits(nil), "nil unet config")
}

// TestControlNetFits checks the fit of a ControlNet to a UNet field by field, with errors naming
// the field and both values.
func TestControlNetFits(t *testing.T) {
	u, _ := loadUNet(t, "sdxs-dreamshaper-tiny")
	data, err := os.ReadFile(oracle.Path(t, "sdxs-dreamshaper-tiny", "controlnet", "config.json"))
	require.NoError(t, err)
	for _, tc := range []struct {
		field string
		value any
		want  string
	}{
		{"block_out_channels", []int{32, 64, 128}, "block_out_channels is [32 64 128] but the unet's is [32 64 64]"},
		{"in_channels", 8, "in_channels is 8 but the unet's is 4"},
		{"layers_per_block", 2, "layers_per_block is [2 2 2] but the unet's is [1 1 1]"},
		{"cross_attention_dim", 64, "cross_attention_dim is 64 but the unet's is 32"},
	} {
		var m map[string]any
		require.NoError(t, json.Unmarshal(data, &m))
		m[tc.field] = tc.value
		b, err := json.Marshal(m)
		require.NoError(t, err)
		cfg, err := weights.ParseControlNetConfig(b)
		require.NoError(t, err, tc.field)
		c, err := NewControlNet(cfg, &nn.RandomSource{Seed: 1})
		require.NoError(t, err)
		assert.EqualError(t, c.Fits(u.Config()), "controlnet: "+tc.want+": this ControlNet was not made for this UNet", tc.field)
	}
}

// TestControlNetConfigurations builds ControlNets the oracle does not cover (no mid block, two
// resnets per block, linear projections, a two-step conditioning embedding) and checks the
// residuals' shapes against what a UNet of the same layout accepts and the weights' names
// against diffusers' module paths.
func TestControlNetConfigurations(t *testing.T) {
	ucfg, err := weights.ParseUNetConfig([]byte(turboLike))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(turboLike), &m))
	delete(m, "up_block_types")
	delete(m, "sample_size")
	m["_class_name"] = "ControlNetModel"
	for _, tc := range []struct {
		name   string
		mid    any
		cond   []int
		factor int
	}{
		{"mid", "UNetMidBlock2DCrossAttn", []int{4, 8, 8, 16}, 8},
		{"resnet-mid", "UNetMidBlock2D", []int{4, 8, 8}, 4},
		{"no-mid", nil, []int{4, 8}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m["mid_block_type"] = tc.mid
			m["conditioning_embedding_out_channels"] = tc.cond
			b, err := json.Marshal(m)
			require.NoError(t, err)
			cfg, err := weights.ParseControlNetConfig(b)
			require.NoError(t, err)
			src := &nn.RandomSource{Seed: 3}
			c, err := NewControlNet(cfg, src)
			require.NoError(t, err)
			require.NoError(t, c.Fits(ucfg))
			require.Equal(t, tc.factor, c.DownFactor())
			h, w := 5, 7
			sample := make([]float32, 4*h*w)
			text := make([]float32, textLen*12)
			cond := make([]float32, 3*h*w*tc.factor*tc.factor)
			for i := range cond {
				cond[i] = float32(i%7) / 7
			}
			res, err := c.Forward(context.Background(), sample, h, w, 999, text, cond, 0.5)
			require.NoError(t, err)
			shapes := DownResidualShapes(ucfg, h, w)
			require.Len(t, res.Down, len(shapes))
			for j, s := range shapes {
				require.Len(t, res.Down[j], s[0]*s[1]*s[2], "control_down.%d", j)
			}
			ms := MidResidualShape(ucfg, h, w)
			require.Len(t, res.Mid, ms[0]*ms[1]*ms[2])
			for _, v := range res.Mid {
				require.False(t, math.IsNaN(float64(v)))
			}
			names := map[string]bool{}
			for _, n := range src.Names() {
				names[n] = true
			}
			want := []string{
				"controlnet_cond_embedding.conv_in.weight",
				fmt.Sprintf("controlnet_cond_embedding.blocks.%d.weight", 2*len(tc.cond)-3),
				"controlnet_cond_embedding.conv_out.weight",
				fmt.Sprintf("controlnet_down_blocks.%d.weight", len(shapes)-1),
				"controlnet_mid_block.weight",
				"down_blocks.0.attentions.1.transformer_blocks.1.attn2.to_k.weight",
				"down_blocks.3.resnets.1.conv2.weight",
				"time_embedding.linear_2.weight",
			}
			for _, n := range want {
				assert.True(t, names[n], "no %s", n)
			}
			assert.Equal(t, tc.mid != nil, names["mid_block.resnets.0.conv1.weight"], "mid block ResNet")
			assert.Equal(t, tc.mid == "UNetMidBlock2DCrossAttn", names["mid_block.attentions.0.proj_in.weight"], "mid block attention")
			assert.Equal(t, tc.mid == "UNetMidBlock2DCrossAttn", names["mid_block.resnets.1.conv1.weight"], "second mid block ResNet")
			assert.False(t, names[fmt.Sprintf("controlnet_down_blocks.%d.weight", len(shapes))])

			// The UNet of the same layout accepts the residuals.
			u, err := New(ucfg, &nn.RandomSource{Seed: 4})
			require.NoError(t, err)
			_, err = u.Forward(context.Background(), sample, h, w, 999, text, res)
			require.NoError(t, err)
		})
	}
}
