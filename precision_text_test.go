package sdxs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/textenc"
	"github.com/sdxs-go/sdxs/tokenizer"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/vae"
	"github.com/sdxs-go/sdxs/weights"
)

// freshParts opens the components of an oracle model folder as new, unbuilt models.
func freshParts(t *testing.T, model string) Parts {
	t.Helper()
	dir := oracle.Path(t, model, "model")
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer"))
	require.NoError(t, err)
	tcfg, err := weights.LoadCLIPTextConfig(filepath.Join(dir, "text_encoder", "config.json"))
	require.NoError(t, err)
	text, err := textenc.New(tcfg, oracle.OpenComponent(t, filepath.Join(dir, "text_encoder")))
	require.NoError(t, err)
	ucfg, err := weights.LoadUNetConfig(filepath.Join(dir, "unet", "config.json"))
	require.NoError(t, err)
	un, err := unet.New(ucfg, oracle.OpenComponent(t, filepath.Join(dir, "unet")))
	require.NoError(t, err)
	vcfg, err := weights.LoadTinyVAEConfig(filepath.Join(dir, "vae", "config.json"))
	require.NoError(t, err)
	dec, err := vae.NewTiny(vcfg, oracle.OpenComponent(t, filepath.Join(dir, "vae")))
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "scheduler", "scheduler_config.json"))
	require.NoError(t, err)
	sc, err := sampler.ParseConfig(data)
	require.NoError(t, err)
	return Parts{Tokenizer: tok, TextEncoder: text, UNet: un, VAE: dec, Scheduler: sc}
}

// TestBF16TextEncoder checks that a bf16 pipeline's text encoder runs in bf16 and an fp32 one's
// does not, side by side in one process: case 0's text embeddings of the fp32 pipeline keep the
// oracle's bound (max abs 1e-4), the bf16 pipeline's are off the reference by more than float32
// arithmetic and less than 1e-2 relative L2 (textenc's TestBF16MatchesReference holds them to
// the tighter, per-case bound), and its encoder holds fewer bytes. New with WithPrecision sets
// the text encoder's precision as Load does (the same embeddings); New without it keeps the
// models' own.
func TestBF16TextEncoder(t *testing.T) {
	ctx := context.Background()
	for _, model := range []string{"sdxs-dreamshaper-tiny", "sdxs-09-tiny"} {
		t.Run(model, func(t *testing.T) {
			c := loadCases(t, model)[0]
			req := Request{Prompt: c.Prompt, Seed: c.Seed, Width: c.Width, Height: c.Height}
			ref := oracle.Tensors(t, model, "reference.safetensors")
			want, _ := oracle.Float32(t, ref, "case0.text_embeddings")

			p32, p16 := loadBothPrecisions(t, model)
			require.Equal(t, nn.FP32, p32.text.Params().Precision())
			require.Equal(t, nn.BF16, p16.text.Params().Precision())

			r16, err := p16.Generate(ctx, req)
			require.NoError(t, err)
			r32, err := p32.Generate(ctx, req)
			require.NoError(t, err)
			oracle.AssertMaxAbs(t, "fp32 text_embeddings", r32.TextEmbeddings, want, 1e-4)
			rel := oracle.RelL2(r16.TextEmbeddings, want)
			t.Logf("bf16 text_embeddings rel L2 %.3g; text encoder bytes bf16 %d, fp32 %d", rel, p16.text.Params().Bytes(), p32.text.Params().Bytes())
			require.Greater(t, rel, 1e-4, "the bf16 pipeline's text encoder gave the float32 result")
			require.Less(t, rel, 1e-2)
			require.Less(t, p16.text.Params().Bytes(), p32.text.Params().Bytes())

			parts := freshParts(t, model)
			q, err := New(parts, WithPrecision(PrecisionBF16))
			require.NoError(t, err)
			defer q.Close()
			require.Equal(t, nn.BF16, parts.TextEncoder.Params().Precision())
			rq, err := q.Generate(ctx, req)
			require.NoError(t, err)
			require.Equal(t, r16.TextEmbeddings, rq.TextEmbeddings, "New with WithPrecision(PrecisionBF16) against Load")

			parts = freshParts(t, model)
			parts.UNet.Params().SetPrecision(nn.BF16)
			q, err = New(parts)
			require.NoError(t, err)
			defer q.Close()
			require.Equal(t, PrecisionBF16, q.Precision())
			require.Equal(t, nn.FP32, parts.TextEncoder.Params().Precision(), "New without WithPrecision changed the text encoder's")
			rq, err = q.Generate(ctx, req)
			require.NoError(t, err)
			require.Equal(t, r32.TextEmbeddings, rq.TextEmbeddings, "New keeping an fp32 text encoder")
		})
	}
}
