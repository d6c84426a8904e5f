package sdxs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/textenc"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/weights"
	"github.com/sdxs-go/sdxs/weights/lora"
)

const loraModel = "sdxs-dreamshaper-tiny"

// loraLayouts are the oracle's one adapter in its three layouts.
var loraLayouts = []string{"peft", "peft-bin", "kohya_lora.safetensors"}

// loraCases returns the indices of the oracle cases that apply the LoRA.
func loraCases(t *testing.T) (idx []int, cases []oracleCase) {
	cases = loadCases(t, loraModel)
	for i, c := range cases {
		if c.LoraScale != nil {
			idx = append(idx, i)
		}
	}
	require.Len(t, idx, 2, "the oracle has two LoRA cases")
	return idx, cases
}

// loraModes are the two ways a pipeline applies adapters: merged into the weights, or as
// unfused low-rank branches. Both must give the reference.
var loraModes = []struct {
	name string
	opts []Option
}{{"merged", nil}, {"unfused", []Option{WithLoRAUnfused()}}}

// assertCase holds a result to every bound of the oracle README for case i.
func assertCase(t *testing.T, ref *weights.File, i int, res *Result) {
	t.Helper()
	ts, err := res.Tensors()
	require.NoError(t, err)
	require.True(t, oracle.AssertCase(t, ref, i, ts), "case %d", i)
}

func request(c oracleCase, loras ...LoRA) Request {
	return Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height, LoRAs: loras}
}

// TestLoRAMatchesDiffusers runs the oracle's LoRA cases with the adapter in each of its three
// layouts and holds every stage to the README's bounds; then the plain case again, which must
// be exactly what it was before any adapter was used (nothing leaks into the base weights).
func TestLoRAMatchesDiffusers(t *testing.T) {
	for _, mode := range loraModes {
		t.Run(mode.name, func(t *testing.T) { testLoRAMatchesDiffusers(t, mode.opts) })
	}
}

func testLoRAMatchesDiffusers(t *testing.T, opts []Option) {
	p, err := Load(oracle.Path(t, loraModel, "model"), opts...)
	require.NoError(t, err)
	defer p.Close()
	ref := oracle.Tensors(t, loraModel, "reference.safetensors")
	idx, cases := loraCases(t)
	ctx := context.Background()
	before, err := p.Generate(ctx, request(cases[0]))
	require.NoError(t, err)
	// The adapter matters: without it a LoRA case is far from its reference.
	plain, err := p.Generate(ctx, request(cases[idx[0]]))
	require.NoError(t, err)
	want, _ := oracle.Float32(t, ref, fmt.Sprintf("case%d.unet_output", idx[0]))
	require.Greater(t, oracle.RelL2(plain.UNetOutput, want), 1e-2)

	for _, layout := range loraLayouts {
		t.Run(layout, func(t *testing.T) {
			a, err := p.LoadLoRA(oracle.Path(t, loraModel, "lora", layout))
			require.NoError(t, err)
			require.Len(t, a.Targets, 78)
			require.Empty(t, a.Skipped)
			for _, i := range idx {
				c := cases[i]
				t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
					res, err := p.Generate(ctx, request(c, LoRA{Adapter: a, Scale: *c.LoraScale}))
					require.NoError(t, err)
					assertCase(t, ref, i, res)
				})
			}
		})
	}

	after, err := p.Generate(ctx, request(cases[0]))
	require.NoError(t, err)
	require.Equal(t, before.UNetOutput, after.UNetOutput, "the base UNet changed after LoRA requests")
	require.Equal(t, before.TextEmbeddings, after.TextEmbeddings)
	assertCase(t, ref, 0, after)
}

// TestLoRASeveralAdapters applies two adapters at once, each with its own scale. The oracle's
// adapter loaded twice (PEFT and kohya) with scales summing to a case's lora_scale must give
// that case's reference: the updates add.
func TestLoRASeveralAdapters(t *testing.T) {
	for _, mode := range loraModes {
		t.Run(mode.name, func(t *testing.T) { testLoRASeveralAdapters(t, mode.opts) })
	}
}

func testLoRASeveralAdapters(t *testing.T, opts []Option) {
	p, err := Load(oracle.Path(t, loraModel, "model"), opts...)
	require.NoError(t, err)
	defer p.Close()
	ref := oracle.Tensors(t, loraModel, "reference.safetensors")
	idx, cases := loraCases(t)
	peft, err := p.LoadLoRA(oracle.Path(t, loraModel, "lora", "peft"))
	require.NoError(t, err)
	kohya, err := p.LoadLoRA(oracle.Path(t, loraModel, "lora", "kohya_lora.safetensors"))
	require.NoError(t, err)
	for _, i := range idx {
		c := cases[i]
		s := *c.LoraScale
		res, err := p.Generate(context.Background(), request(c, LoRA{Adapter: peft, Scale: 0.25 * s}, LoRA{Adapter: kohya, Scale: 0.75 * s}))
		require.NoError(t, err)
		assertCase(t, ref, i, res)
	}
}

// TestLoRAConcurrent runs requests with different adapter sets (and none) at once on one
// pipeline: each must get its own reference picture. Run it with -race.
func TestLoRAConcurrent(t *testing.T) {
	for _, mode := range loraModes {
		t.Run(mode.name, func(t *testing.T) { testLoRAConcurrent(t, append([]Option{WithLoRACache(1)}, mode.opts...)) })
	}
}

func testLoRAConcurrent(t *testing.T, opts []Option) {
	p, err := Load(oracle.Path(t, loraModel, "model"), opts...)
	require.NoError(t, err)
	defer p.Close()
	ref := oracle.Tensors(t, loraModel, "reference.safetensors")
	idx, cases := loraCases(t)
	a, err := p.LoadLoRA(oracle.Path(t, loraModel, "lora", "peft"))
	require.NoError(t, err)
	b, err := p.LoadLoRA(oracle.Path(t, loraModel, "lora", "kohya_lora.safetensors"))
	require.NoError(t, err)
	type job struct {
		i   int
		req Request
	}
	var jobs []job
	for round := 0; round < 2; round++ {
		jobs = append(jobs,
			job{idx[0], request(cases[idx[0]], LoRA{Adapter: a, Scale: *cases[idx[0]].LoraScale})},
			job{idx[1], request(cases[idx[1]], LoRA{Adapter: b, Scale: *cases[idx[1]].LoraScale})},
			job{0, request(cases[0])},
		)
	}
	results := make([]*Result, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[j], errs[j] = p.Generate(context.Background(), jobs[j].req)
		}()
	}
	wg.Wait()
	for j, jb := range jobs {
		require.NoError(t, errs[j])
		assertCase(t, ref, jb.i, results[j])
	}
}

// writeKohya writes a kohya-layout adapter with one linear update per module, of rank 2.
func writeKohya(t *testing.T, modules map[string][2]int) string {
	var ts []weights.Tensor
	for m, io := range modules {
		ts = append(ts,
			weights.Tensor{Name: m + ".lora_down.weight", DType: weights.F32, Shape: []int{2, io[0]}, F32: make([]float32, 2*io[0])},
			weights.Tensor{Name: m + ".lora_up.weight", DType: weights.F32, Shape: []int{io[1], 2}, F32: make([]float32, 2*io[1])},
			weights.Tensor{Name: m + ".alpha", DType: weights.F32, Shape: []int{}, F32: []float32{2}},
		)
	}
	path := filepath.Join(t.TempDir(), "adapter.safetensors")
	require.NoError(t, weights.WriteFile(path, ts, nil))
	return path
}

// TestLoRAForAnotherModel: an adapter whose layers the model lacks (the mid block the SDXS UNet
// was pruned of, a fourth down block) is refused with every missing layer named; leniently it
// loads without them, with a warning; a layer of another shape is an error even then.
func TestLoRAForAnotherModel(t *testing.T) {
	p, err := Load(oracle.Path(t, loraModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	path := writeKohya(t, map[string][2]int{
		"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q":     {64, 64},
		"lora_unet_down_blocks_3_attentions_0_transformer_blocks_0_attn2_to_k": {64, 64},
		"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q": {64, 64},
	})
	_, err = p.LoadLoRA(path)
	var me *lora.MissingError
	require.ErrorAs(t, err, &me)
	require.Len(t, me.Missing, 2)
	require.ErrorContains(t, err, "unet: mid_block.attentions.0.transformer_blocks.0.attn1.to_q")
	require.ErrorContains(t, err, "unet: down_blocks.3.attentions.0.transformer_blocks.0.attn2.to_k")

	a, err := p.LoadLoRA(path, LenientLoRA())
	require.NoError(t, err)
	require.Len(t, a.Targets, 1)
	require.Equal(t, "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", a.Targets[0].Module)
	require.Len(t, a.Skipped, 2)
	_, cases := loraCases(t)
	_, err = p.Generate(context.Background(), request(cases[0], LoRA{Adapter: a}))
	require.NoError(t, err)

	// An adapter loaded without the pipeline's check is checked on use.
	raw, err := lora.Load(path)
	require.NoError(t, err)
	_, err = p.Generate(context.Background(), request(cases[0], LoRA{Adapter: raw}))
	require.ErrorAs(t, err, &me)

	// The right layer with the wrong width (an SD 2 adapter on an SD 1 model, say).
	wrong := writeKohya(t, map[string][2]int{"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": {1024, 64}})
	_, err = p.LoadLoRA(wrong, LenientLoRA())
	require.ErrorContains(t, err, "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight is [64 32], the update is [64 1024]")
	require.False(t, errors.As(err, &me))
}

// TestLoRATextEncoder applies a kohya adapter with lora_te_ layers (random, rank 3, alpha 1.5)
// and compares the text embeddings with an encoder built on weights merged by hand:
// W + scale·(alpha/r)·B·A.
func TestLoRATextEncoder(t *testing.T) {
	for _, mode := range loraModes {
		t.Run(mode.name, func(t *testing.T) { testLoRATextEncoder(t, mode.opts) })
	}
}

func testLoRATextEncoder(t *testing.T, opts []Option) {
	p, err := Load(oracle.Path(t, loraModel, "model"), opts...)
	require.NoError(t, err)
	defer p.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.NormFloat64()) * 0.3
		}
		return out
	}
	const r, alpha, scale = 3, 1.5, 0.7
	layers := map[string][2]int{ // module: in, out
		"text_model.encoder.layers.0.self_attn.q_proj": {32, 32},
		"text_model.encoder.layers.1.mlp.fc2":          {128, 32},
	}
	var ts []weights.Tensor
	ab := map[string][2][]float32{}
	for m, io := range layers {
		key := "lora_te_" + strings.ReplaceAll(m, ".", "_")
		a, b := randn(r*io[0]), randn(io[1]*r)
		ab[m] = [2][]float32{a, b}
		ts = append(ts,
			weights.Tensor{Name: key + ".lora_down.weight", DType: weights.F32, Shape: []int{r, io[0]}, F32: a},
			weights.Tensor{Name: key + ".lora_up.weight", DType: weights.F32, Shape: []int{io[1], r}, F32: b},
			weights.Tensor{Name: key + ".alpha", DType: weights.F32, Shape: []int{}, F32: []float32{alpha}})
	}
	path := filepath.Join(t.TempDir(), "te.safetensors")
	require.NoError(t, weights.WriteFile(path, ts, nil))
	ad, err := p.LoadLoRA(path)
	require.NoError(t, err)
	require.Len(t, ad.Targets, 2)

	// The expected encoder: the folder's weights with the updates merged by hand.
	dir := oracle.Path(t, loraModel, "model", "text_encoder")
	cfg, err := weights.LoadCLIPTextConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	src, err := weights.OpenComponent(dir)
	require.NoError(t, err)
	defer src.Close()
	mem := weights.NewMemSource()
	for _, n := range src.Names() {
		v, shape, err := src.Float32(n)
		require.NoError(t, err)
		if io, ok := layers[strings.TrimSuffix(n, ".weight")]; ok {
			a, b := ab[strings.TrimSuffix(n, ".weight")][0], ab[strings.TrimSuffix(n, ".weight")][1]
			for o := 0; o < io[1]; o++ {
				for i := 0; i < io[0]; i++ {
					var d float64
					for k := 0; k < r; k++ {
						d += float64(b[o*r+k]) * float64(a[k*io[0]+i])
					}
					v[o*io[0]+i] += float32(scale * alpha / r * d)
				}
			}
		}
		mem.Add(n, shape, v)
	}
	want, err := textenc.New(cfg, mem)
	require.NoError(t, err)

	_, cases := loraCases(t)
	res, err := p.Generate(context.Background(), request(cases[0], LoRA{Adapter: ad, Scale: scale}))
	require.NoError(t, err)
	emb, err := want.Encode(context.Background(), res.InputIDs)
	require.NoError(t, err)
	oracle.AssertMaxAbs(t, "text_embeddings", res.TextEmbeddings, emb, 1e-5)
	base, err := p.Generate(context.Background(), request(cases[0]))
	require.NoError(t, err)
	require.Greater(t, oracle.MaxAbs(base.TextEmbeddings, emb), 1e-2, "the update is large enough to see")
}

// TestLoRAWinograd: at 512×512 the tiny UNet's first level runs its 3×3 convolutions with
// Winograd, whose transformed weights must follow the adapter. The merged and unfused pipelines
// must both agree with a UNet built on weights merged by hand.
func TestLoRAWinograd(t *testing.T) {
	_, cases := loraCases(t)
	c := cases[0]
	c.Width, c.Height = 512, 512
	const scale = 0.8
	var outs [][]float32
	var res *Result
	for _, mode := range loraModes {
		q, err := Load(oracle.Path(t, loraModel, "model"), mode.opts...)
		require.NoError(t, err)
		defer q.Close()
		a, err := q.LoadLoRA(oracle.Path(t, loraModel, "lora", "kohya_lora.safetensors"))
		require.NoError(t, err)
		res, err = q.Generate(context.Background(), request(c, LoRA{Adapter: a, Scale: scale}))
		require.NoError(t, err)
		outs = append(outs, res.UNetOutput)
	}

	dir := oracle.Path(t, loraModel, "model", "unet")
	cfg, err := weights.LoadUNetConfig(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	src, err := weights.OpenComponent(dir)
	require.NoError(t, err)
	defer src.Close()
	ad, err := lora.Load(oracle.Path(t, loraModel, "lora", "kohya_lora.safetensors"))
	require.NoError(t, err)
	byWeight := map[string]*lora.Target{}
	for _, tg := range ad.Targets {
		byWeight[tg.Module+".weight"] = tg
	}
	mem := weights.NewMemSource()
	for _, n := range src.Names() {
		v, shape, err := src.Float32(n)
		require.NoError(t, err)
		if tg, ok := byWeight[n]; ok {
			for o := 0; o < tg.Out; o++ {
				for i := 0; i < tg.In; i++ {
					var d float64
					for k := 0; k < tg.Rank; k++ {
						d += float64(tg.B[o*tg.Rank+k]) * float64(tg.A[k*tg.In+i])
					}
					v[o*tg.In+i] += float32(scale * tg.Scale * d)
				}
			}
			delete(byWeight, n)
		}
		mem.Add(n, shape, v)
	}
	require.Empty(t, byWeight, "every target merged")
	u, err := unet.New(cfg, mem)
	require.NoError(t, err)
	want, err := u.Forward(context.Background(), res.UNetInput, 64, 64, res.Timesteps[0], res.TextEmbeddings, nil)
	require.NoError(t, err)
	oracle.AssertRelL2(t, "merged unet_output", outs[0], want, 1e-5)
	oracle.AssertRelL2(t, "unfused unet_output", outs[1], want, 1e-5)
}

// TestLoRACacheEviction: the graphs of an adapter set live in the models' program cache while
// the set is kept (WithLoRACache) and leave it when the set is evicted.
func TestLoRACacheEviction(t *testing.T) {
	for _, mode := range loraModes {
		t.Run(mode.name, func(t *testing.T) {
			p, err := Load(oracle.Path(t, loraModel, "model"), append([]Option{WithLoRACache(1)}, mode.opts...)...)
			require.NoError(t, err)
			defer p.Close()
			cache := nn.NewProgramCache(0)
			p.unet.SetCache(cache)
			p.text.SetCache(cache)
			a, err := p.LoadLoRA(oracle.Path(t, loraModel, "lora", "peft"))
			require.NoError(t, err)
			_, cases := loraCases(t)
			gen := func(loras ...LoRA) {
				_, err := p.Generate(context.Background(), request(cases[0], loras...))
				require.NoError(t, err)
			}
			gen()
			require.Equal(t, 2, cache.Len(), "text encoder and UNet")
			gen(LoRA{Adapter: a, Scale: 1})
			require.Equal(t, 3, cache.Len(), "+ the UNet of the set (the adapter has no text encoder layers)")
			gen(LoRA{Adapter: a, Scale: 0.5}) // another set: the first is evicted
			require.Equal(t, 3, cache.Len())
			gen()
			require.Equal(t, 3, cache.Len())
		})
	}
}

// TestLoRALifecycle: LoadLoRA on a pipeline not made by Load or New, or closed, is an error;
// Close forgets the adapter sets.
func TestLoRALifecycle(t *testing.T) {
	path := oracle.Path(t, loraModel, "lora", "peft")
	for _, p := range []*Pipeline{nil, {}} {
		_, err := p.LoadLoRA(path)
		require.ErrorContains(t, err, "not made by Load or New")
	}
	p, err := Load(oracle.Path(t, loraModel, "model"))
	require.NoError(t, err)
	a, err := p.LoadLoRA(path)
	require.NoError(t, err)
	_, cases := loraCases(t)
	_, err = p.Generate(context.Background(), request(cases[0], LoRA{Adapter: a}))
	require.NoError(t, err)
	require.Len(t, p.loras.sets, 1)
	require.NoError(t, p.Close())
	require.Empty(t, p.loras.sets)
	_, err = p.LoadLoRA(path)
	require.ErrorIs(t, err, ErrClosed)
	_, err = p.Generate(context.Background(), request(cases[0], LoRA{Adapter: a}))
	require.ErrorIs(t, err, ErrClosed)
}
