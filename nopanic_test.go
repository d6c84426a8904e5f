package sdxs

import (
	"context"
	"image"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestToImageBadInput checks that ToImage returns errors, not panics, on sizes and slices that
// do not match.
func TestToImageBadInput(t *testing.T) {
	for _, c := range []struct {
		n, w, h int
		want    string
	}{
		{0, 4, 4, "48"},
		{47, 4, 4, "47 values"},
		{49, 4, 4, "want 48"},
		{48, 0, 4, "not positive"},
		{48, 4, -4, "not positive"},
		{48, 1 << 40, 1 << 40, "want"},
		{12, 2, 2, ""},
	} {
		img, err := ToImage(make([]float32, c.n), c.w, c.h)
		if c.want == "" {
			require.NoError(t, err)
			require.Equal(t, image.Rect(0, 0, c.w, c.h), img.Rect)
			// 0 maps to round(0.5·255) = 128 (ties to even), alpha is opaque.
			assert.Equal(t, []uint8{128, 128, 128, 255}, img.Pix[:4])
			continue
		}
		require.ErrorContains(t, err, c.want, "%d values, %d×%d", c.n, c.w, c.h)
		require.Nil(t, img)
	}
	_, err := ToImage(nil, 8, 8)
	require.Error(t, err)
}

// TestResultTensorsBadInput checks that Tensors names what is missing or short instead of
// panicking, and works on a whole result.
func TestResultTensorsBadInput(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	res, err := p.Generate(context.Background(), Request{Prompt: "a lighthouse", Seed: 2, Width: 64, Height: 72})
	require.NoError(t, err)
	ts, err := res.Tensors()
	require.NoError(t, err)
	require.Len(t, ts, 8)

	var nilRes *Result
	_, err = nilRes.Tensors()
	require.ErrorContains(t, err, "nil result")
	_, err = (&Result{}).Tensors()
	require.ErrorContains(t, err, "size 0×0")

	for _, c := range []struct {
		name string
		edit func(r *Result)
		want string
	}{
		{"odd width", func(r *Result) { r.Width = 63 }, "63×72"},
		{"no noise", func(r *Result) { r.Noise = nil }, "noise has 0 values"},
		{"short noise", func(r *Result) { r.Noise = r.Noise[:5] }, "noise has 5 values"},
		{"no ids", func(r *Result) { r.InputIDs = nil }, "text embedding"},
		{"short embeddings", func(r *Result) { r.TextEmbeddings = r.TextEmbeddings[:len(r.TextEmbeddings)-1] }, "text embedding"},
		{"short unet input", func(r *Result) { r.UNetInput = r.UNetInput[:1] }, "unet_input has 1 values"},
		{"no unet output", func(r *Result) { r.UNetOutput = nil }, "unet_output has 0 values"},
		{"long latents", func(r *Result) { r.Latents = append(r.Latents, 0) }, "latents has"},
		{"short decoded", func(r *Result) { r.Decoded = r.Decoded[:7] }, "decoded has 7 values"},
		{"no image", func(r *Result) { r.Image = nil }, "image is missing"},
		{"small image", func(r *Result) { r.Image = image.NewRGBA(image.Rect(0, 0, 8, 8)) }, "not 64×72"},
	} {
		r := *res
		c.edit(&r)
		ts, err := r.Tensors()
		require.ErrorContains(t, err, c.want, c.name)
		require.Nil(t, ts, c.name)
	}
}

// TestZeroPipeline checks that a Pipeline not made by Load or New gives errors, not panics.
func TestZeroPipeline(t *testing.T) {
	ctx := context.Background()
	for _, p := range []*Pipeline{nil, {}} {
		_, err := p.Generate(ctx, Request{Prompt: "x"})
		require.ErrorContains(t, err, "not made by Load or New")
		_, err = p.GenerateBatch(ctx, Request{Prompt: "x"}, 2)
		require.ErrorContains(t, err, "not made by Load or New")
		require.ErrorContains(t, p.Warm(ctx, 64, 64), "not made by Load or New")
		_, err = p.MACs(ctx, 64, 64)
		require.ErrorContains(t, err, "not made by Load or New")
		require.NoError(t, p.Close())
		used, budget := p.CacheBytes()
		require.Zero(t, used)
		require.Zero(t, budget)
		require.Equal(t, 512, p.DefaultSize())
		require.False(t, p.HasControlNet())
		p.UnloadControlNet()
		require.NoError(t, p.SetControlNet(nil))
		require.ErrorContains(t, p.LoadControlNet("nowhere"), "not made by Load or New")
	}
	_, err := New(Parts{})
	require.Error(t, err)

	// A nil context is an error too.
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	var nilCtx context.Context
	_, err = p.Generate(nilCtx, Request{Prompt: "x", Width: 64, Height: 64})
	require.ErrorContains(t, err, "nil context")

	// A huge batch allocates nothing up front (and stops with its context).
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := p.GenerateBatch(cancelled, Request{Prompt: "x", Width: 64, Height: 64}, 1<<62)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, res)
}
