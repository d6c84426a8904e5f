package weights_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/weights"
)

// pipelineDirs returns the oracle's diffusers folders: the two tiny models and the full-size
// configurations.
func pipelineDirs(t *testing.T) []string {
	return []string{
		oracle.Path(t, "sdxs-dreamshaper-tiny", "model"),
		oracle.Path(t, "sdxs-09-tiny", "model"),
		oracle.Path(t, "configs", "sdxs-512-dreamshaper"),
		oracle.Path(t, "configs", "sdxs-512-0.9"),
	}
}

func TestOracleConfigsParse(t *testing.T) {
	for _, dir := range pipelineDirs(t) {
		t.Run(filepath.Base(filepath.Dir(dir))+"/"+filepath.Base(dir), func(t *testing.T) {
			f, err := weights.OpenFolder(dir)
			require.NoError(t, err)
			require.NoError(t, f.Require("unet", "vae", "text_encoder", "tokenizer", "scheduler"))
			require.NotNil(t, f.Index)
			assert.Equal(t, "StableDiffusionPipeline", f.Index.ClassName)
			cls, _ := f.Class("vae")
			assert.Equal(t, "AutoencoderTiny", cls)

			u, err := weights.LoadUNetConfig(filepath.Join(dir, "unet", "config.json"))
			require.NoError(t, err)
			require.NoError(t, u.Validate())
			assert.False(t, u.HasMidBlock())
			_, err = weights.LoadCLIPTextConfig(filepath.Join(dir, "text_encoder", "config.json"))
			require.NoError(t, err)
			v, err := weights.LoadTinyVAEConfig(filepath.Join(dir, "vae", "config.json"))
			require.NoError(t, err)
			assert.Equal(t, 1.0, v.ScalingFactor)
			s, err := sampler.LoadConfig(filepath.Join(dir, "scheduler", "scheduler_config.json"))
			require.NoError(t, err)
			assert.Equal(t, "trailing", s.TimestepSpacing)
			assert.Equal(t, "scaled_linear", s.BetaSchedule)
			assert.Equal(t, 1, s.StepsOffset)
			if p, ok := f.Path("vae_large"); ok {
				k, err := weights.LoadKLVAEConfig(filepath.Join(p, "config.json"))
				require.NoError(t, err)
				assert.Equal(t, 0.18215, k.ScalingFactor)
			}
		})
	}
}

func TestOracleConfigValues(t *testing.T) {
	dream, err := weights.LoadUNetConfig(oracle.Path(t, "configs", "sdxs-512-dreamshaper", "unet", "config.json"))
	require.NoError(t, err)
	assert.Equal(t, []int{8, 8, 8}, dream.Heads())
	assert.Equal(t, []int{40, 80, 160}, dream.HeadDims())
	assert.Equal(t, []bool{false, false, false}, dream.OnlyCross())
	assert.Equal(t, 768, dream.CrossAttentionDim)
	assert.Equal(t, 1280, dream.TimeEmbedDim())
	assert.False(t, dream.UseLinearProjection)

	v09, err := weights.LoadUNetConfig(oracle.Path(t, "configs", "sdxs-512-0.9", "unet", "config.json"))
	require.NoError(t, err)
	assert.Equal(t, []int{5, 10, 20}, v09.Heads())
	assert.Equal(t, []int{64, 64, 64}, v09.HeadDims())
	assert.Equal(t, []bool{true, false, false}, v09.OnlyCross())
	assert.True(t, v09.UseLinearProjection)
	assert.Equal(t, []string{"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}, v09.UpBlockTypes)

	tiny09, err := weights.LoadUNetConfig(oracle.Path(t, "sdxs-09-tiny", "model", "unet", "config.json"))
	require.NoError(t, err)
	assert.Equal(t, []int{2, 4, 6}, tiny09.Heads())
	assert.Equal(t, []int{32, 64, 96}, tiny09.BlockOutChannels)
	assert.Equal(t, 8, tiny09.NormNumGroups)

	te, err := weights.LoadCLIPTextConfig(oracle.Path(t, "sdxs-09-tiny", "model", "text_encoder", "config.json"))
	require.NoError(t, err)
	assert.Equal(t, "gelu", te.HiddenAct)
	assert.Equal(t, 3, te.NumHiddenLayers)
	te, err = weights.LoadCLIPTextConfig(oracle.Path(t, "configs", "sdxs-512-dreamshaper", "text_encoder", "config.json"))
	require.NoError(t, err)
	assert.Equal(t, "quick_gelu", te.HiddenAct)
	assert.Equal(t, 64, te.HeadDim())

	cn, err := weights.LoadControlNetConfig(oracle.Path(t, "sdxs-dreamshaper-tiny", "controlnet", "config.json"))
	require.NoError(t, err)
	assert.True(t, cn.HasMidBlock())
	assert.Equal(t, []int{8, 16, 16, 32}, cn.ConditioningEmbeddingOutChannels)
	assert.Equal(t, []string{"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}, cn.DownBlockTypes)

	kl, err := weights.LoadKLVAEConfig(oracle.Path(t, "sdxs-dreamshaper-tiny", "model", "vae_large", "config.json"))
	require.NoError(t, err)
	assert.Equal(t, []int{8, 16, 16, 16}, kl.BlockOutChannels)
	assert.Equal(t, 0.0, kl.ShiftFactor)

	tv, err := weights.LoadTinyVAEConfig(oracle.Path(t, "sdxs-09-tiny", "model", "vae", "config.json"))
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2, 2, 1}, tv.NumDecoderBlocks)
}

// TestOracleFolders checks the discovery of the extra vae_large/ and that each component's
// weights open and decode (the 09 UNet is float16, its text encoder also holds int64).
func TestOracleFolders(t *testing.T) {
	dream, err := weights.OpenFolder(oracle.Path(t, "sdxs-dreamshaper-tiny", "model"))
	require.NoError(t, err)
	assert.True(t, dream.Has("vae_large"))
	cls, _ := dream.Class("vae_large")
	assert.Equal(t, "AutoencoderKL", cls)
	assert.Equal(t, []string{"scheduler", "text_encoder", "tokenizer", "unet", "vae", "vae_large"}, dream.Components())

	for _, model := range []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"} {
		f, err := weights.OpenFolder(oracle.Path(t, model, "model"))
		require.NoError(t, err)
		for _, comp := range []string{"unet", "vae", "text_encoder"} {
			s, err := f.OpenWeights(comp)
			require.NoError(t, err, "%s/%s", model, comp)
			var src weights.Source = s
			n := 0
			for _, name := range src.Names() {
				info, ok := src.Info(name)
				require.True(t, ok)
				if !info.DType.IsFloat() {
					ids, _, err := s.Int64(name)
					require.NoError(t, err)
					assert.Len(t, ids, info.NumElements())
					continue
				}
				v, shape := oracle.Float32(t, src, name)
				require.Len(t, v, info.NumElements(), name)
				require.Equal(t, info.Shape, shape)
				n += len(v)
			}
			assert.Positive(t, n)
			require.NoError(t, s.Close())
		}
	}
	u, err := weights.OpenComponent(oracle.Path(t, "sdxs-09-tiny", "model", "unet"))
	require.NoError(t, err)
	defer u.Close()
	info, ok := u.Info("conv_in.weight")
	require.True(t, ok)
	assert.Equal(t, weights.F16, info.DType)
	assert.Equal(t, []int{32, 4, 3, 3}, info.Shape)

	cn, err := weights.OpenComponent(oracle.Path(t, "sdxs-dreamshaper-tiny", "controlnet"))
	require.NoError(t, err)
	defer cn.Close()
	assert.True(t, cn.Has("controlnet_mid_block.weight"))
}

// TestOracleRoundTrip rewrites an oracle file with the writer and reads it back identically.
func TestOracleRoundTrip(t *testing.T) {
	src := oracle.Tensors(t, "sdxs-09-tiny", "reference.safetensors")
	var tensors []weights.Tensor
	for _, name := range src.Names() {
		info, _ := src.Info(name)
		tt := weights.Tensor{Name: name, DType: info.DType, Shape: info.Shape}
		switch info.DType {
		case weights.I64:
			tt.I64, _ = oracle.Int64(t, src, name)
		case weights.U8:
			tt.U8, _ = oracle.Uint8(t, src, name)
		default:
			tt.F32, _ = oracle.Float32(t, src, name)
		}
		tensors = append(tensors, tt)
	}
	p := filepath.Join(t.TempDir(), "copy.safetensors")
	require.NoError(t, weights.WriteFile(p, tensors, map[string]string{"copied": "yes"}))
	dst, err := weights.Open(p)
	require.NoError(t, err)
	defer dst.Close()
	require.Equal(t, src.Names(), dst.Names())
	for _, name := range src.Names() {
		a, _, errA := src.Raw(name)
		b, _, errB := dst.Raw(name)
		require.NoError(t, errA)
		require.NoError(t, errB)
		require.Equal(t, a, b, name)
	}
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Positive(t, st.Size())
}
