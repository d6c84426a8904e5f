package vae

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// Oracle README: init_latents are held like latents, max abs error.
const initLatentsMaxAbs = 2e-3

// TestEncodeMatchesDiffusers encodes the init pictures of both image-to-image references (their
// init_image, already in [−1, 1]) and compares with diffusers' init_latents (encoder output ×
// scaling_factor).
func TestEncodeMatchesDiffusers(t *testing.T) {
	const model = "sdxs-dreamshaper-tiny"
	d, _ := loadTiny(t, model)
	ref := oracle.Tensors(t, model, "img2img", "reference.safetensors")
	for i := 0; i < 2; i++ {
		t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
			img, shape := oracle.Float32(t, ref, fmt.Sprintf("case%d.init_image", i))
			require.Len(t, shape, 4)
			h, w := shape[2], shape[3]
			want, lshape := oracle.Float32(t, ref, fmt.Sprintf("case%d.init_latents", i))
			lh, lw := d.EncodedSize(h, w)
			require.Equal(t, []int{1, d.Config().LatentChannels, lh, lw}, lshape)
			got, err := d.Encode(context.Background(), img, h, w)
			require.NoError(t, err)
			sf := float32(d.ScalingFactor())
			for j := range got {
				got[j] *= sf
			}
			oracle.AssertMaxAbs(t, "init_latents", got, want, initLatentsMaxAbs)
			oracle.AssertRelL2(t, "init_latents", got, want, 1e-5)
		})
	}
}

// naiveConv is a direct float64 convolution of x [C, H, W] with w [O, C, k, k], written from
// the definition (cross-correlation, zero padding), for checking the graph's layers.
func naiveConv(x []float64, c, h, wd int, w, bias []float32, o, k, stride, pad int) ([]float64, int, int) {
	ho := (h+2*pad-k)/stride + 1
	wo := (wd+2*pad-k)/stride + 1
	out := make([]float64, o*ho*wo)
	for oc := 0; oc < o; oc++ {
		for y := 0; y < ho; y++ {
			for xx := 0; xx < wo; xx++ {
				var s float64
				if bias != nil {
					s = float64(bias[oc])
				}
				for ic := 0; ic < c; ic++ {
					for ky := 0; ky < k; ky++ {
						iy := y*stride - pad + ky
						if iy < 0 || iy >= h {
							continue
						}
						for kx := 0; kx < k; kx++ {
							ix := xx*stride - pad + kx
							if ix < 0 || ix >= wd {
								continue
							}
							s += float64(w[((oc*c+ic)*k+ky)*k+kx]) * x[(ic*h+iy)*wd+ix]
						}
					}
				}
				out[(oc*ho+y)*wo+xx] = s
			}
		}
	}
	return out, ho, wo
}

func relu64(x []float64) []float64 {
	for i, v := range x {
		x[i] = max(v, 0)
	}
	return x
}

// TestEncodeLayersOddSizes checks every layer of the encoder's trace against a direct
// convolution written from diffusers' EncoderTiny description, on picture sizes whose halvings
// are odd (the stride-2 convolutions round up) and on a random config with several blocks per
// level.
func TestEncodeLayersOddSizes(t *testing.T) {
	oracleTiny, src := loadTiny(t, "sdxs-dreamshaper-tiny")
	randomCfg, err := weights.ParseTinyVAEConfig([]byte(`{"_class_name":"AutoencoderTiny",
		"encoder_block_out_channels":[8,8,8],"num_encoder_blocks":[1,2,3],"latent_channels":4}`))
	require.NoError(t, err)
	randomTiny, err := NewTiny(randomCfg, &nn.RandomSource{Seed: 7})
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		d    *Tiny
		src  nn.Source
		h, w int
		lh   int
		lw   int
	}{
		{"oracle 27x42", oracleTiny, src, 27, 42, 4, 6},
		{"oracle 8x9", oracleTiny, src, 8, 9, 1, 2},
		{"random 13x6", randomTiny, randomTiny.enc.Params().Source(), 13, 6, 4, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			lh, lw := c.d.EncodedSize(c.h, c.w)
			require.Equal(t, [2]int{c.lh, c.lw}, [2]int{lh, lw})
			rng := rand.New(rand.NewPCG(1, uint64(c.h)))
			cfg := c.d.Config()
			img := make([]float32, cfg.InChannels*c.h*c.w)
			for i := range img {
				img[i] = rng.Float32()*2 - 1
			}
			got, err := c.d.TraceEncode(context.Background(), img, c.h, c.w)
			require.NoError(t, err)

			param := func(name string) []float32 {
				var v []float32
				var err error
				if rs, ok := c.src.(*nn.RandomSource); ok {
					// A random source needs the shape; the graph has built the same tensor.
					v, err = rs.Float32Shaped(name, rs.Shape(name))
				} else {
					v, _, err = c.src.Float32(name)
				}
				require.NoError(t, err, name)
				return v
			}
			x := make([]float64, len(img))
			for i, v := range img {
				x[i] = (float64(v) + 1) / 2
			}
			ch, h, w := cfg.InChannels, c.h, c.w
			idx := 0
			check := func() {
				name := fmt.Sprintf("layers.%d", idx)
				ours, ok := got[name]
				require.True(t, ok, name)
				want := make([]float32, len(x))
				for i, v := range x {
					want[i] = float32(v)
				}
				require.Len(t, ours, len(want), name)
				oracle.AssertRelL2(t, name, ours, want, 1e-5)
				idx++
			}
			conv := func(prefix string, out, stride int, bias bool) {
				var b []float32
				if bias {
					b = param(prefix + ".bias")
				}
				x, h, w = naiveConv(x, ch, h, w, param(prefix+".weight"), b, out, 3, stride, 1)
				ch = out
			}
			for i, nb := range cfg.NumEncoderBlocks {
				co := cfg.EncoderBlockOutChannels[i]
				if i == 0 {
					conv(fmt.Sprintf("encoder.layers.%d", idx), co, 1, true)
				} else {
					conv(fmt.Sprintf("encoder.layers.%d", idx), co, 2, false)
				}
				check()
				for j := 0; j < nb; j++ {
					p := fmt.Sprintf("encoder.layers.%d.conv.", idx)
					skip := x
					y, _, _ := naiveConv(x, ch, h, w, param(p+"0.weight"), param(p+"0.bias"), co, 3, 1, 1)
					y, _, _ = naiveConv(relu64(y), co, h, w, param(p+"2.weight"), param(p+"2.bias"), co, 3, 1, 1)
					y, _, _ = naiveConv(relu64(y), co, h, w, param(p+"4.weight"), param(p+"4.bias"), co, 3, 1, 1)
					for k := range y {
						y[k] += skip[k]
					}
					x = relu64(y)
					check()
				}
			}
			conv(fmt.Sprintf("encoder.layers.%d", idx), cfg.LatentChannels, 1, true)
			check()
			require.Equal(t, [2]int{lh, lw}, [2]int{h, w})
			assert.Len(t, got["out"], cfg.LatentChannels*lh*lw)

			enc, err := c.d.Encode(context.Background(), img, c.h, c.w)
			require.NoError(t, err)
			oracle.AssertRelL2(t, "Encode vs TraceEncode", enc, got["out"], 1e-6)
		})
	}
}

func TestEncoderSizes(t *testing.T) {
	d, _ := loadTiny(t, "sdxs-dreamshaper-tiny")
	assert.Equal(t, 8, d.DownscaleFactor())
	for _, c := range [][4]int{{512, 512, 64, 64}, {128, 192, 16, 24}, {1, 1, 1, 1}, {9, 17, 2, 3}, {64, 72, 8, 9}} {
		lh, lw := d.EncodedSize(c[0], c[1])
		assert.Equal(t, [2]int{c[2], c[3]}, [2]int{lh, lw}, "%d×%d", c[0], c[1])
	}
	require.NoError(t, d.PrepareEncoder(context.Background(), 16, 24))
	macs, err := d.EncoderMACs(context.Background(), 16, 24)
	require.NoError(t, err)
	// Convolutions at 16×24, 8×12, 4×6, 2×3: the first 3→16, three 16→16 per block, the
	// stride-2 ones, and the last 16→4; every one 3×3.
	p := func(h, w int) int64 { return int64(h * w * 9) }
	want := p(16, 24)*3*16 + p(16, 24)*3*16*16 +
		p(8, 12)*16*16*4 + p(4, 6)*16*16*4 + p(2, 3)*16*16*4 + p(2, 3)*16*4
	assert.Equal(t, want, macs)
}

func TestEncodeInputErrors(t *testing.T) {
	d, _ := loadTiny(t, "sdxs-dreamshaper-tiny")
	ctx := context.Background()
	img := make([]float32, 3*16*16)
	_, err := d.Encode(ctx, img, 16, 16)
	require.NoError(t, err)
	assertBadInputs(t, "", []badInput{
		{"short", img[:len(img)-1], 16, 16, "picture has"},
		{"four channels", make([]float32, 4*16*16), 16, 16, "picture has"},
		{"other size", img, 16, 17, "picture has"},
		{"nil", nil, 16, 16, "picture has"},
		{"zero size", nil, 0, 0, "not positive"},
	}, d.Encode, nil)
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := d.Encode(cctx, img, 16, 16)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("missing weight", func(t *testing.T) {
		full, src := loadTiny(t, "sdxs-dreamshaper-tiny")
		for _, name := range []string{"encoder.layers.0.weight", "encoder.layers.4.weight", "encoder.layers.5.conv.2.bias", "encoder.layers.8.bias"} {
			dd, err := NewTiny(full.Config(), hideSource{Source: src, hide: name})
			require.NoError(t, err)
			err = dd.PrepareEncoder(context.Background(), 16, 16)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
			var me *nn.MissingError
			require.ErrorAs(t, err, &me)
			// The decoder does not need it.
			require.NoError(t, dd.Prepare(context.Background(), 2, 2))
		}
	})
	t.Run("channels change between levels", func(t *testing.T) {
		cfg, err := weights.ParseTinyVAEConfig([]byte(`{"_class_name":"AutoencoderTiny",
			"encoder_block_out_channels":[8,16],"num_encoder_blocks":[1,1]}`))
		require.NoError(t, err)
		dd, err := NewTiny(cfg, &nn.RandomSource{Seed: 1})
		require.NoError(t, err)
		err = dd.PrepareEncoder(context.Background(), 16, 16)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "takes 16 channels, the previous level gives 8")
	})
}
