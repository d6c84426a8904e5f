package vae

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// The oracle's KL case: sdxs-dreamshaper-tiny case 2 decodes with vae_large/.
const klModel, klCase = "sdxs-dreamshaper-tiny", "case2"

// loadKL returns the oracle's AutoencoderKL (vae_large/ of sdxs-dreamshaper-tiny).
func loadKL(t *testing.T, opts ...KLOption) (*KL, *weights.Set) {
	t.Helper()
	dir := oracle.Path(t, klModel, "model", "vae_large")
	cfg, err := weights.LoadKLVAEConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	src := oracle.OpenComponent(t, dir)
	k, err := NewKL(cfg, src, opts...)
	require.NoError(t, err)
	return k, src
}

// klLatents returns case 2's x₀ divided by the scaling factor, and its latent size.
func klLatents(t *testing.T, k *KL) (z []float32, h, w int) {
	t.Helper()
	ref := oracle.Tensors(t, klModel, "reference.safetensors")
	x0, shape := oracle.Float32(t, ref, klCase+".latents")
	require.Equal(t, []int{1, k.LatentChannels()}, shape[:2])
	sf := float32(k.ScalingFactor())
	z = make([]float32, len(x0))
	for i, v := range x0 {
		z[i] = v / sf
	}
	return z, shape[2], shape[3]
}

func TestKLDecodeMatchesDiffusers(t *testing.T) {
	k, _ := loadKL(t)
	z, h, w := klLatents(t, k)
	ref := oracle.Tensors(t, klModel, "reference.safetensors")
	want, shape := oracle.Float32(t, ref, klCase+".decoded")
	f := k.UpscaleFactor()
	require.Equal(t, []int{1, 3, h * f, w * f}, shape)
	got, err := k.Decode(context.Background(), z, h, w)
	require.NoError(t, err)
	oracle.AssertMaxAbs(t, "decoded", got, want, decodedMaxAbs)
	oracle.AssertRelL2(t, "decoded", got, want, 1e-5)
}

// TestKLReferenceMatchesDiffusers checks the plain float64 AutoencoderKL of klref_test.go
// against the oracle, so that it can serve as the reference of the encoder.
func TestKLReferenceMatchesDiffusers(t *testing.T) {
	k, src := loadKL(t)
	z, h, w := klLatents(t, k)
	ref := &refKL{t: t, cfg: k.Config(), src: src}
	got := ref.decode(toRef(z, k.LatentChannels(), h, w)).float32s()
	want, _ := oracle.Float32(t, oracle.Tensors(t, klModel, "reference.safetensors"), klCase+".decoded")
	oracle.AssertMaxAbs(t, "reference decoder: decoded", got, want, decodedMaxAbs)
	oracle.AssertRelL2(t, "reference decoder: decoded", got, want, 1e-5)
}

// klImage returns case 2's decoded picture clamped to [-1, 1]: a realistic encoder input
// [3, 256, 256].
func klImage(t *testing.T) ([]float32, int, int) {
	t.Helper()
	d, shape := oracle.Float32(t, oracle.Tensors(t, klModel, "reference.safetensors"), klCase+".decoded")
	for i, v := range d {
		d[i] = min(max(v, -1), 1)
	}
	return d, shape[2], shape[3]
}

// TestKLEncodeMatchesReference: the oracle has no encoder reference, so the encoder is held to
// the plain float64 encoder of klref_test.go, whose every part but the downsampler (F.pad
// (0, 1, 0, 1) then a stride-2 convolution; nn's TestPad and TestConvMatchesDirect check ours)
// and quant_conv is the reference decoder's, which TestKLReferenceMatchesDiffusers checks
// against diffusers.
func TestKLEncodeMatchesReference(t *testing.T) {
	k, src := loadKL(t)
	img, h, w := klImage(t)
	ctx := context.Background()
	tr, err := k.TraceEncode(ctx, img, h, w)
	require.NoError(t, err)
	for _, name := range []string{"encoder.conv_in", "encoder.down_blocks.0", "encoder.down_blocks.3", "encoder.mid_block",
		"encoder.mid_block.attentions.0", "encoder.conv_out", "quant_conv", "moments"} {
		require.Contains(t, tr, name)
	}
	lc := k.LatentChannels()
	lh, lw := k.EncodedSize(h, w)
	require.Equal(t, []int{h / 8, w / 8}, []int{lh, lw})
	require.Equal(t, 8, k.DownscaleFactor())
	require.Len(t, tr["moments"], 2*lc*lh*lw)

	ref := (&refKL{t: t, cfg: k.Config(), src: src}).encode(toRef(img, 3, h, w)).float32s()
	oracle.AssertRelL2(t, "moments", tr["moments"], ref, 1e-5)
	oracle.AssertMaxAbs(t, "moments", tr["moments"], ref, 1e-4)

	// Encode returns the mean: the first latent_channels channels of the moments.
	n := lc * lh * lw
	mean, err := k.Encode(ctx, img, h, w)
	require.NoError(t, err)
	require.Equal(t, tr["moments"][:n], mean)

	// EncodeDist: std = exp(logvar / 2), logvar clamped to [-30, 20].
	p, err := k.EncodeDist(ctx, img, h, w)
	require.NoError(t, err)
	require.Equal(t, []int{lc, lh, lw}, []int{p.Channels, p.Height, p.Width})
	require.Equal(t, mean, p.Mode())
	for i, lv := range ref[n:] {
		want := math.Exp(0.5 * min(max(float64(lv), -30), 20))
		require.InEpsilon(t, want, p.Std[i], 1e-4, "std %d", i)
	}
	noise := make([]float32, n)
	for i := range noise {
		noise[i] = float32(i%7) - 3
	}
	s, err := p.Sample(noise)
	require.NoError(t, err)
	for i := range s {
		require.Equal(t, p.Mean[i]+float32(p.Std[i]*noise[i]), s[i])
	}
	_, err = p.Sample(noise[1:])
	require.ErrorContains(t, err, "noise has")
	// A posterior not made by EncodeDist: errors, not panics.
	_, err = (&Posterior{Mean: p.Mean}).Sample(noise)
	require.ErrorContains(t, err, "standard deviations")
	var none *Posterior
	_, err = none.Sample(noise)
	require.ErrorContains(t, err, "nil posterior")
	require.Nil(t, none.Mode())

	// A picture whose sides are not multiples of 8 (20×28 → 10×14 → 5×7 → 2×3): the
	// downsamplers floor, as PyTorch's do.
	crop := make([]float32, 3*20*28)
	for c := 0; c < 3; c++ {
		for y := 0; y < 20; y++ {
			copy(crop[(c*20+y)*28:(c*20+y+1)*28], img[(c*h+y+100)*w+50:])
		}
	}
	eh, ew := k.EncodedSize(20, 28)
	require.Equal(t, []int{2, 3}, []int{eh, ew})
	odd, err := k.TraceEncode(ctx, crop, 20, 28)
	require.NoError(t, err)
	oddRef := (&refKL{t: t, cfg: k.Config(), src: src}).encode(toRef(crop, 3, 20, 28))
	require.Equal(t, []int{2 * lc, 2, 3}, []int{oddRef.c, oddRef.h, oddRef.w})
	oracle.AssertRelL2(t, "moments of a 20×28 picture", odd["moments"], oddRef.float32s(), 1e-5)
	require.NoError(t, k.PrepareEncoder(context.Background(), 20, 28))
	em, err := k.EncoderMACs(context.Background(), 256, 256)
	require.NoError(t, err)
	assert.Positive(t, em)

	// After decoding and encoding, every tensor of vae_large/ has been used.
	z, zh, zw := klLatents(t, k)
	_, err = k.Decode(ctx, z, zh, zw)
	require.NoError(t, err)
	assert.Empty(t, k.Unused())
}

func TestPosteriorClamp(t *testing.T) {
	// moments of a 2-channel 1×2 latent: mean [1, 2, 3, 4], logvar [-40, 0, 2, 25].
	p := posterior([]float32{1, 2, 3, 4, -40, 0, 2, 25}, 2, 1, 2)
	assert.Equal(t, []float32{1, 2, 3, 4}, p.Mean)
	assert.InEpsilon(t, math.Exp(-15), p.Std[0], 1e-6)
	assert.Equal(t, float32(1), p.Std[1])
	assert.InEpsilon(t, math.E, p.Std[2], 1e-6)
	assert.InEpsilon(t, math.Exp(10), p.Std[3], 1e-6)
}

func TestKLTraceAndDecodeAgree(t *testing.T) {
	k, _ := loadKL(t)
	z, h, w := klLatents(t, k)
	ctx := context.Background()
	tr, err := k.Trace(ctx, z, h, w)
	require.NoError(t, err)
	for _, name := range []string{"post_quant_conv", "decoder.conv_in", "decoder.mid_block.resnets.0",
		"decoder.mid_block.attentions.0", "decoder.mid_block", "decoder.up_blocks.0", "decoder.up_blocks.3", "decoder.conv_act", "out"} {
		require.Contains(t, tr, name)
	}
	out, err := k.Decode(ctx, z, h, w)
	require.NoError(t, err)
	require.Equal(t, out, tr["out"])
}

// TestKLWithoutMidAttention: with mid_block_add_attention false the mid block is two ResNets.
func TestKLWithoutMidAttention(t *testing.T) {
	full, src := loadKL(t)
	cfg := *full.Config()
	cfg.MidBlockAddAttention = false
	k, err := NewKL(&cfg, src)
	require.NoError(t, err)
	z := make([]float32, 4*4*3)
	for i := range z {
		z[i] = float32(math.Sin(float64(i)))
	}
	got, err := k.Decode(context.Background(), z, 4, 3)
	require.NoError(t, err)
	want := (&refKL{t: t, cfg: &cfg, src: src}).decode(toRef(z, 4, 4, 3)).float32s()
	oracle.AssertRelL2(t, "decoded without attention", got, want, 1e-5)
	assert.Contains(t, k.Unused(), "decoder.mid_block.attentions.0.to_q.weight")
}

// diffusersTiled follows AutoencoderKL.tiled_decode and tiled_encode line by line (lists of
// tiles, blend_v and blend_h in place, crop, concatenate): tiles of inTile input pixels start
// every overlap; run maps a tile [c, th, tw] to its output, whose size is outSize(th, tw); the
// outputs are blended over blendExtent and cropped to rowLimit.
func diffusersTiled(t *testing.T, run func(x []float32, h, w int) []float32, x []float32, c, h, w, inTile, overlap, blendExtent, rowLimit int, outSize func(h, w int) (int, int)) ([]float32, int, int) {
	type tensor struct {
		c, h, w int
		d       []float32
	}
	blendV := func(a, b *tensor, e int) {
		e = min(a.h, b.h, e)
		for y := 0; y < e; y++ {
			for ch := 0; ch < b.c; ch++ {
				for x := 0; x < b.w; x++ {
					b.d[(ch*b.h+y)*b.w+x] = float32(a.d[(ch*a.h+a.h-e+y)*a.w+x]*float32(1-float64(y)/float64(e))) + float32(b.d[(ch*b.h+y)*b.w+x]*float32(float64(y)/float64(e)))
				}
			}
		}
	}
	blendH := func(a, b *tensor, e int) {
		e = min(a.w, b.w, e)
		for x := 0; x < e; x++ {
			for ch := 0; ch < b.c; ch++ {
				for y := 0; y < b.h; y++ {
					b.d[(ch*b.h+y)*b.w+x] = float32(a.d[(ch*a.h+y)*a.w+a.w-e+x]*float32(1-float64(x)/float64(e))) + float32(b.d[(ch*b.h+y)*b.w+x]*float32(float64(x)/float64(e)))
				}
			}
		}
	}
	var rows [][]*tensor
	for i := 0; i < h; i += overlap {
		var row []*tensor
		for j := 0; j < w; j += overlap {
			th, tw := min(inTile, h-i), min(inTile, w-j)
			tile := make([]float32, c*th*tw)
			for ch := 0; ch < c; ch++ {
				for y := 0; y < th; y++ {
					for xx := 0; xx < tw; xx++ {
						tile[(ch*th+y)*tw+xx] = x[(ch*h+i+y)*w+j+xx]
					}
				}
			}
			d := run(tile, th, tw)
			oh, ow := outSize(th, tw)
			row = append(row, &tensor{len(d) / (oh * ow), oh, ow, d})
		}
		rows = append(rows, row)
	}
	// Crop every blended tile to row_limit and concatenate: columns within a row, then rows.
	var resultRows [][]*tensor
	for i, row := range rows {
		var rr []*tensor
		for j, tile := range row {
			if i > 0 {
				blendV(rows[i-1][j], tile, blendExtent)
			}
			if j > 0 {
				blendH(row[j-1], tile, blendExtent)
			}
			ch, ch2 := min(rowLimit, tile.h), min(rowLimit, tile.w)
			crop := &tensor{tile.c, ch, ch2, make([]float32, tile.c*ch*ch2)}
			for k := 0; k < tile.c; k++ {
				for y := 0; y < ch; y++ {
					copy(crop.d[(k*ch+y)*ch2:(k*ch+y+1)*ch2], tile.d[(k*tile.h+y)*tile.w:])
				}
			}
			rr = append(rr, crop)
		}
		resultRows = append(resultRows, rr)
	}
	oc := resultRows[0][0].c
	H := 0
	for _, rr := range resultRows {
		H += rr[0].h
	}
	W := 0
	for _, tile := range resultRows[0] {
		W += tile.w
	}
	out := make([]float32, oc*H*W)
	y0 := 0
	for _, rr := range resultRows {
		x0 := 0
		for _, tile := range rr {
			require.Equal(t, rr[0].h, tile.h)
			for k := 0; k < oc; k++ {
				for y := 0; y < tile.h; y++ {
					copy(out[(k*H+y0+y)*W+x0:], tile.d[(k*tile.h+y)*tile.w:(k*tile.h+y+1)*tile.w])
				}
			}
			x0 += tile.w
		}
		y0 += rr[0].h
	}
	return out, H, W
}

// TestKLTiledDecode forces tiling on case 2's 32×32 latent (a budget that a 16×16 tile fits and
// the whole latent does not, tiles of 16 latent pixels: a 3×3 grid with starts 0, 12, 24 and
// tiles of 16, 16 and 8) and checks it against diffusers' tiled_decode algorithm, followed line
// by line with our untiled decoder on each tile.
func TestKLTiledDecode(t *testing.T) {
	whole, _ := loadKL(t)
	tiled, _ := loadKL(t, TileBudget(whole.DecodeBytes(16, 16)), TileSize(16))
	z, h, w := klLatents(t, tiled)
	f := tiled.UpscaleFactor()
	ctx := context.Background()

	tiles, size, err := tiled.tiles(h, w)
	require.NoError(t, err)
	require.Equal(t, 16, size)
	require.Len(t, tiles, 9)
	assert.Equal(t, tile{row: 2, col: 1, y: 24, x: 12, h: 8, w: 16}, tiles[7])

	got, err := tiled.Decode(ctx, z, h, w)
	require.NoError(t, err)
	// tiled_decode: tile_latent_min_size 16, tile_sample_min_size 128; overlap_size =
	// int(16·0.75) = 12, blend_extent = int(128·0.25) = 32, row_limit = 96.
	want, H, W := diffusersTiled(t, func(z []float32, h, w int) []float32 {
		out, err := whole.Decode(ctx, z, h, w)
		require.NoError(t, err)
		return out
	}, z, tiled.LatentChannels(), h, w, 16, 12, 32, 96, func(h, w int) (int, int) { return h * f, w * f })
	require.Equal(t, []int{h * f, w * f}, []int{H, W})
	oracle.AssertMaxAbs(t, "tiled decode vs diffusers' tiled_decode", got, want, 1e-6)

	// Against the untiled decode, only loosely: each tile's GroupNorms take their statistics
	// over the tile, and its mid-block attention sees only the tile's latent pixels, so a tiled
	// picture is a different function of the latent (diffusers documents the same).
	untiled, err := whole.Decode(ctx, z, h, w)
	require.NoError(t, err)
	e := oracle.RelL2(got, untiled)
	t.Logf("tiled vs untiled: relative L2 %.3g, max abs %.3g", e, oracle.MaxAbs(got, untiled))
	assert.Less(t, e, 0.25) // measured 0.12
	assert.Greater(t, e, 1e-4, "tiled output should differ from untiled")

	// MACs and Prepare follow the tiles.
	require.NoError(t, tiled.Prepare(context.Background(), h, w))
	m, err := tiled.MACs(context.Background(), h, w)
	require.NoError(t, err)
	m16, _ := whole.MACs(context.Background(), 16, 16)
	m8, _ := whole.MACs(context.Background(), 8, 16)
	m88, _ := whole.MACs(context.Background(), 8, 8)
	assert.Equal(t, 4*m16+4*m8+m88, m)
}

// fullKL returns the SD VAE (configs/sdxs-512-dreamshaper/vae_large) with random weights.
func fullKL(t testing.TB, opts ...KLOption) *KL {
	t.Helper()
	cfg, err := weights.LoadKLVAEConfig(oracle.Path(t, "configs", "sdxs-512-dreamshaper", "vae_large", "config.json"))
	require.NoError(t, err)
	k, err := NewKL(cfg, &nn.RandomSource{Seed: 1}, opts...)
	require.NoError(t, err)
	return k
}

func TestKLTilePlan(t *testing.T) {
	k := fullKL(t)
	assert.Equal(t, 8, k.UpscaleFactor())
	assert.Equal(t, 0.18215, k.ScalingFactor())
	for _, s := range []int{64, 96} { // 512×512 and 768×768 pictures decode in one piece
		tiles, size, err := k.tiles(s, s)
		require.NoError(t, err)
		assert.Zero(t, size, s)
		assert.Equal(t, []tile{{h: s, w: s}}, tiles)
		assert.Less(t, k.DecodeBytes(s, s), DefaultTileBudget)
	}
	// 1024×1024: diffusers' grid of 512×512 tiles starting every 48 latent pixels.
	tiles, size, err := k.tiles(128, 128)
	require.NoError(t, err)
	assert.Equal(t, 64, size)
	require.Len(t, tiles, 9)
	assert.Equal(t, tile{row: 1, col: 2, y: 48, x: 96, h: 64, w: 32}, tiles[5])

	// A budget below one 64×64 tile halves the tiles, down to 8.
	_, size, err = fullKL(t, TileBudget(1)).tiles(128, 128)
	require.NoError(t, err)
	assert.Equal(t, 8, size)
	small := fullKL(t, TileBudget(k.DecodeBytes(64, 64)-1))
	_, size, err = small.tiles(128, 128)
	require.NoError(t, err)
	assert.Equal(t, 32, size)

	// TileSize rounds down to a multiple of 4.
	odd := fullKL(t, TileBudget(k.DecodeBytes(32, 32)), TileSize(30))
	_, size, err = odd.tiles(64, 64)
	require.NoError(t, err)
	assert.Equal(t, 28, size)

	_, _, err = k.tiles(0, 4)
	require.ErrorContains(t, err, "not positive")
}

// TestKLDecodeBytes holds the estimate to what the buffer plan allocates.
func TestKLDecodeBytes(t *testing.T) {
	k := fullKL(t)
	ctx := context.Background()
	for _, s := range [][2]int{{4, 4}, {16, 16}, {8, 24}, {32, 32}} {
		p, err := k.runner.Program(ctx, klKey{h: s[0], w: s[1]})
		require.NoError(t, err)
		got, est := p.ArenaBytes(), k.DecodeBytes(s[0], s[1])
		t.Logf("%d×%d: plan %d MiB, estimate %d MiB", s[0], s[1], got>>20, est>>20)
		assert.GreaterOrEqual(t, est, got, "%v", s)
		if s[0]*s[1] >= 256 {
			assert.Less(t, float64(est), 1.2*float64(got), "%v", s)
		}
		k.runner.Drop()
	}
	small, _ := loadKL(t)
	p, err := small.runner.Program(ctx, klKey{h: 32, w: 32})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, small.DecodeBytes(32, 32), p.ArenaBytes())
}

// TestKLMACs: configs/NOTES.md gives PyTorch's count for the full KL decoder at 64×64: 1240 G
// multiply-adds in convolutions and linear layers. They scale with the number of latent pixels,
// so 16 times the 16×16 count is the 64×64 one (without building the 1 GiB graph).
func TestKLMACs(t *testing.T) {
	k := fullKL(t)
	m, err := k.MACs(context.Background(), 16, 16)
	require.NoError(t, err)
	assert.InDelta(t, 1240e9, float64(16*m), 0.5e9)
	assert.Equal(t, int64(2*4096*4096*512), k.AttentionMACs(64, 64))
}

func TestKLInputErrors(t *testing.T) {
	k, src := loadKL(t)
	ctx := context.Background()
	z := make([]float32, 4*4*4)
	assertBadInputs(t, "", []badInput{
		{"short", z[:len(z)-1], 4, 4, "latents have"},
		{"other size", z, 4, 5, "latents have"},
		{"nil", nil, 4, 4, "latents have"},
		{"zero size", nil, 0, 0, "not positive"},
	}, k.Decode, func(t *testing.T, c badInput) {
		_, err := k.Trace(ctx, c.in, c.h, c.w)
		assert.ErrorContains(t, err, c.substr)
	})
	img := make([]float32, 3*16*16)
	assertBadInputs(t, "encode ", []badInput{
		{"too small", img[:3*4*16], 4, 16, "too small"},
		{"short", img[:len(img)-1], 16, 16, "image has"},
		{"one channel", img[:16*16], 16, 16, "image has"},
		{"zero", nil, 0, 0, "too small"},
	}, k.Encode, nil)
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := k.Decode(cctx, z, 4, 4)
		assert.ErrorIs(t, err, context.Canceled)
		_, err = k.Encode(cctx, img, 16, 16)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("nil config", func(t *testing.T) {
		_, err := NewKL(nil, src)
		require.ErrorContains(t, err, "nil config")
		_, err = NewKL(k.Config(), nil)
		require.ErrorContains(t, err, "nil weight source")
	})
	t.Run("bad config", func(t *testing.T) {
		cfg := *k.Config()
		cfg.UpBlockTypes = []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "AttnUpDecoderBlock2D"}
		_, err := NewKL(&cfg, src)
		var ce *weights.ConfigError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "up_block_types", ce.Field)
	})
	for _, name := range []string{"post_quant_conv.weight", "decoder.mid_block.attentions.0.to_k.bias",
		"decoder.up_blocks.3.resnets.0.conv_shortcut.weight", "encoder.down_blocks.1.downsamplers.0.conv.weight", "quant_conv.bias"} {
		t.Run("missing "+name, func(t *testing.T) {
			require.True(t, src.Has(name))
			m, err := NewKL(k.Config(), hideSource{Source: src, hide: name})
			require.NoError(t, err)
			_, err = m.Decode(ctx, z, 4, 4)
			if err == nil {
				_, err = m.Encode(ctx, img, 16, 16)
			}
			require.Error(t, err)
			var me *nn.MissingError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, name, me.Name)
		})
	}
	t.Run("wrong shape", func(t *testing.T) {
		cfg := *k.Config()
		cfg.BlockOutChannels = []int{8, 16, 16, 32}
		m, err := NewKL(&cfg, src)
		require.NoError(t, err)
		err = m.Prepare(context.Background(), 4, 4)
		var se *nn.ShapeError
		require.ErrorAs(t, err, &se)
		assert.Contains(t, err.Error(), "decoder.conv_in.")
	})
}

// TestKLFullSizeMatchesReference runs the SD VAE's architecture (128/256/512/512 channels, 32
// groups, two ResNets per encoder block and three per decoder block, shortcuts in two up
// blocks), with random weights, at a 1×2 latent and an 8×16 picture, against the plain float64
// autoencoder: the oracle's small model has one layer per block and a shortcut in one up block
// only.
func TestKLFullSizeMatchesReference(t *testing.T) {
	src := &nn.RandomSource{Seed: 7}
	cfg, err := weights.LoadKLVAEConfig(oracle.Path(t, "configs", "sdxs-512-dreamshaper", "vae_large", "config.json"))
	require.NoError(t, err)
	k, err := NewKL(cfg, src)
	require.NoError(t, err)
	ref := &refKL{t: t, cfg: cfg, src: src}
	ctx := context.Background()

	z := make([]float32, 4*1*2)
	for i := range z {
		z[i] = float32(math.Cos(float64(3 * i)))
	}
	got, err := k.Decode(ctx, z, 1, 2)
	require.NoError(t, err)
	want := ref.decode(toRef(z, 4, 1, 2))
	require.Equal(t, []int{3, 8, 16}, []int{want.c, want.h, want.w})
	oracle.AssertRelL2(t, "full-size decoded", got, want.float32s(), 1e-5)

	img := make([]float32, 3*8*16)
	for i := range img {
		img[i] = float32(math.Sin(float64(i) / 5))
	}
	tr, err := k.TraceEncode(ctx, img, 8, 16)
	require.NoError(t, err)
	oracle.AssertRelL2(t, "full-size moments", tr["moments"], ref.encode(toRef(img, 3, 8, 16)).float32s(), 1e-5)
	assert.Empty(t, k.Unused())

	// configs/NOTES.md: the SD KL-f8 AutoencoderKL has about 83.7 M parameters (335 MB in fp32).
	var params int
	for _, name := range src.Names() {
		n := 1
		for _, d := range src.Shape(name) {
			n *= d
		}
		params += n
	}
	t.Logf("%d tensors, %d parameters", len(src.Names()), params)
	assert.InDelta(t, 83.7e6, float64(params), 0.05e6)
}

// TestKLConcurrent decodes and encodes from several goroutines at once, tiled and not.
func TestKLConcurrent(t *testing.T) {
	k, _ := loadKL(t, TileBudget(1))
	whole, _ := loadKL(t)
	z, h, w := klLatents(t, k)
	img, ih, iw := klImage(t)
	ctx := context.Background()
	wantTiled, err := k.Decode(ctx, z, h, w)
	require.NoError(t, err)
	wantWhole, err := whole.Decode(ctx, z, h, w)
	require.NoError(t, err)
	wantMean, err := whole.Encode(ctx, img, ih, iw)
	require.NoError(t, err)
	errs := make(chan error, 6)
	for i := 0; i < 2; i++ {
		go func() {
			got, err := k.Decode(ctx, z, h, w)
			if err == nil && oracle.MaxAbs(got, wantTiled) != 0 {
				err = fmt.Errorf("concurrent tiled decode differs")
			}
			errs <- err
		}()
		go func() {
			got, err := whole.Decode(ctx, z, h, w)
			if err == nil && oracle.MaxAbs(got, wantWhole) != 0 {
				err = fmt.Errorf("concurrent decode differs")
			}
			errs <- err
		}()
		go func() {
			got, err := whole.Encode(ctx, img, ih, iw)
			if err == nil && oracle.MaxAbs(got, wantMean) != 0 {
				err = fmt.Errorf("concurrent encode differs")
			}
			errs <- err
		}()
	}
	for i := 0; i < 6; i++ {
		assert.NoError(t, <-errs)
	}
}

// TestKLTiledEncode forces tiling on a 256×256 picture (a budget that a 128×128 tile fits and
// the picture does not, tiles of 16 latent pixels = 128 picture pixels: a 3×3 grid starting at
// 0, 96, 192) and checks the moments against diffusers' tiled_encode followed line by line with
// our untiled encoder on each tile.
func TestKLTiledEncode(t *testing.T) {
	whole, _ := loadKL(t)
	tiled, _ := loadKL(t, TileBudget(whole.EncodeBytes(128, 128)), TileSize(16))
	img, h, w := klImage(t)
	ctx := context.Background()

	tiles, size := tiled.encodeTiles(h, w)
	require.Equal(t, 128, size)
	require.Len(t, tiles, 9)
	assert.Equal(t, tile{row: 1, col: 2, y: 96, x: 192, h: 128, w: 64}, tiles[5])
	// Not tiled: a side that is not a multiple of 8, and a picture within the budget.
	_, size = tiled.encodeTiles(h, w-4)
	assert.Zero(t, size)
	_, size = tiled.encodeTiles(128, 128)
	assert.Zero(t, size)

	got, err := tiled.EncodeDist(ctx, img, h, w)
	require.NoError(t, err)
	// tiled_encode: tile_sample_min_size 128, tile_latent_min_size 16; overlap_size =
	// int(128·0.75) = 96, blend_extent = int(16·0.25) = 4, row_limit = 12.
	moments, lh, lw := diffusersTiled(t, func(x []float32, h, w int) []float32 {
		out, err := whole.TraceEncode(ctx, x, h, w)
		require.NoError(t, err)
		return out["moments"]
	}, img, 3, h, w, 128, 96, 4, 12, whole.EncodedSize)
	require.Equal(t, []int{32, 32}, []int{lh, lw})
	want := posterior(moments, 4, lh, lw)
	oracle.AssertMaxAbs(t, "tiled encode mean vs diffusers' tiled_encode", got.Mean, want.Mean, 0)
	oracle.AssertMaxAbs(t, "tiled encode std vs diffusers' tiled_encode", got.Std, want.Std, 0)

	// Against the untiled encoder, only loosely (each tile's group norms and attention see only
	// the tile).
	untiled, err := whole.Encode(ctx, img, h, w)
	require.NoError(t, err)
	e := oracle.RelL2(got.Mean, untiled)
	t.Logf("tiled vs untiled mean: relative L2 %.3g", e)
	assert.Less(t, e, 0.5) // measured 0.28
	assert.Greater(t, e, 1e-4, "tiled output should differ from untiled")

	m, err := tiled.EncoderMACs(context.Background(), h, w)
	require.NoError(t, err)
	m128, _ := whole.EncoderMACs(context.Background(), 128, 128)
	m64, _ := whole.EncoderMACs(context.Background(), 128, 64)
	m6464, _ := whole.EncoderMACs(context.Background(), 64, 64)
	assert.Equal(t, 4*m128+4*m64+m6464, m)
	require.NoError(t, tiled.PrepareEncoder(context.Background(), h, w))
}

// TestKLEncodeBytes holds the encoder's estimate to what the buffer plan allocates, and checks
// when the SD VAE's encoder tiles by default.
func TestKLEncodeBytes(t *testing.T) {
	k := fullKL(t)
	ctx := context.Background()
	for _, s := range [][2]int{{32, 32}, {128, 128}, {64, 192}, {256, 256}} {
		p, err := k.runner.Program(ctx, klKey{encoder: true, h: s[0], w: s[1]})
		require.NoError(t, err)
		got, est := p.ArenaBytes(), k.EncodeBytes(s[0], s[1])
		t.Logf("%d×%d: plan %d MiB, estimate %d MiB", s[0], s[1], got>>20, est>>20)
		assert.GreaterOrEqual(t, est, got, "%v", s)
		if s[0]*s[1] >= 256*256 {
			assert.Less(t, float64(est), 1.2*float64(got), "%v", s)
		}
		k.runner.Drop()
	}
	small, _ := loadKL(t)
	p, err := small.runner.Program(ctx, klKey{encoder: true, h: 256, w: 256})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, small.EncodeBytes(256, 256), p.ArenaBytes())

	// 512×512 and 1024×1024 encode in one piece; 2048×2048 in 512×512 tiles every 384 pixels.
	for _, s := range []int{512, 1024} {
		_, size := k.encodeTiles(s, s)
		assert.Zero(t, size, s)
	}
	tiles, size := k.encodeTiles(2048, 2048)
	assert.Equal(t, 512, size)
	assert.Len(t, tiles, 36)
}
