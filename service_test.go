package sdxs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/textenc"
	"github.com/sdxs-go/sdxs/tokenizer"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/vae"
	"github.com/sdxs-go/sdxs/weights"
)

// TestManySizesStayWithinBudget is the memory claim, bounded: many sizes on the tiny
// oracle model used to stay in memory for good; with a budget the cache's bytes stay within it,
// while without one they grow past it.
func TestManySizesStayWithinBudget(t *testing.T) {
	dir := oracle.Path(t, errorsModel, "model")
	ctx := context.Background()
	const budget = 48 << 20
	var sizes []int
	for s := 64; s <= 320; s += 32 {
		sizes = append(sizes, s)
	}

	p, err := Load(dir, WithCacheBudget(budget))
	require.NoError(t, err)
	defer p.Close()
	used, b := p.CacheBytes()
	require.EqualValues(t, budget, b)
	require.Positive(t, used, "the text encoder's graph is built by Load")
	for _, s := range sizes {
		require.NoError(t, p.Warm(ctx, s, s))
		used, _ := p.CacheBytes()
		require.LessOrEqual(t, used, int64(budget), "after %d×%d", s, s)
	}
	// Evicted sizes still work (their graphs are rebuilt), and give the same picture.
	req := Request{Prompt: "a lighthouse", Seed: 5, Width: 64, Height: 64}
	a, err := p.Generate(ctx, req)
	require.NoError(t, err)

	unbounded, err := Load(dir, WithCacheBudget(0))
	require.NoError(t, err)
	defer unbounded.Close()
	for _, s := range sizes {
		require.NoError(t, unbounded.Warm(ctx, s, s))
	}
	all, b := unbounded.CacheBytes()
	require.LessOrEqual(t, b, int64(0))
	require.Greater(t, all, int64(budget), "these sizes together exceed the budget (else the test proves nothing)")
	c, err := unbounded.Generate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, c.Image.Pix, a.Image.Pix)

	// The default budget is DefaultCacheBudget.
	def, err := Load(dir)
	require.NoError(t, err)
	defer def.Close()
	_, b = def.CacheBytes()
	require.Equal(t, DefaultCacheBudget, b)
}

func TestMACsAndWarmCheckSizes(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	for _, c := range []struct {
		w, h  int
		field string
	}{{100, 64, "width"}, {64, 0, "height"}, {-8, 64, "width"}, {64, 4096, "height"}} {
		m, err := p.MACs(ctx, c.w, c.h)
		require.ErrorContains(t, err, c.field)
		require.Nil(t, m)
		require.ErrorContains(t, p.Warm(ctx, c.w, c.h), c.field)
	}
	m, err := p.MACs(ctx, 64, 128)
	require.NoError(t, err)
	for _, s := range []Stage{StageTextEncoder, StageUNet, StageVAEDecoder} {
		require.Positive(t, m[s], s)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = p.MACs(cancelled, 192, 64)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, p.Warm(cancelled, 192, 64), context.Canceled)
}

// gatedSource holds every read of its weights while its gate is closed, to stand for the slow
// weight conversion of a first build.
type gatedSource struct {
	src     weights.TensorSource
	gate    chan struct{}
	entered chan struct{} // closed at the first read
	once    sync.Once
}

func (g *gatedSource) Float32(name string) ([]float32, []int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.gate
	return g.src.Float32(name)
}

func (g *gatedSource) Names() []string { return g.src.Names() }

// gatedPipeline assembles the tiny oracle model with a UNet whose weights are read through a
// gatedSource.
func gatedPipeline(t *testing.T) (*Pipeline, *gatedSource) {
	dir := oracle.Path(t, errorsModel, "model")
	open := func(c string) *weights.Set {
		s, err := weights.OpenComponent(filepath.Join(dir, c))
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer"))
	require.NoError(t, err)
	tcfg, err := weights.LoadCLIPTextConfig(filepath.Join(dir, "text_encoder", "config.json"))
	require.NoError(t, err)
	text, err := textenc.New(tcfg, open("text_encoder"))
	require.NoError(t, err)
	ucfg, err := weights.LoadUNetConfig(filepath.Join(dir, "unet", "config.json"))
	require.NoError(t, err)
	g := &gatedSource{src: open("unet"), gate: make(chan struct{}), entered: make(chan struct{})}
	un, err := unet.New(ucfg, g)
	require.NoError(t, err)
	vcfg, err := weights.LoadTinyVAEConfig(filepath.Join(dir, "vae", "config.json"))
	require.NoError(t, err)
	dec, err := vae.NewTiny(vcfg, open("vae"))
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "scheduler", "scheduler_config.json"))
	require.NoError(t, err)
	sc, err := sampler.ParseConfig(data)
	require.NoError(t, err)
	p, err := New(Parts{Tokenizer: tok, TextEncoder: text, UNet: un, VAE: dec, Scheduler: sc})
	require.NoError(t, err)
	return p, g
}

// TestCancelDuringFirstBuild is the case: a request cancelled while the UNet's graph is
// first built (its weights converted) returns at once, not when the build ends; the build goes
// on and serves the next request.
func TestCancelDuringFirstBuild(t *testing.T) {
	p, g := gatedPipeline(t)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	req := Request{Prompt: "a lighthouse", Seed: 1, Width: 64, Height: 64}
	go func() {
		_, err := p.Generate(ctx, req)
		done <- err
	}()
	<-g.entered // the build is reading the UNet's weights, and stays there
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("a request cancelled during a build did not return")
	}
	// Close waits for the build still reading the weights.
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a build was reading the weights")
	case <-time.After(50 * time.Millisecond):
	}
	_, err := p.Generate(context.Background(), req)
	require.ErrorIs(t, err, ErrClosed)
	close(g.gate)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return after the build ended")
	}
}

// TestBuildDoesNotStallBuiltSizes checks that a size already built runs while another size's
// graph is being built (here: held at its first weight read).
func TestBuildDoesNotStallBuiltSizes(t *testing.T) {
	p, g := gatedPipeline(t)
	defer p.Close()
	ctx := context.Background()
	// The VAE for 64×64 is built; the UNet is stuck building. A VAE-only use (MACs of the
	// decoder goes through the same cache) must not wait for it.
	require.NoError(t, p.vae.Prepare(ctx, 8, 8))
	warm := make(chan error, 1)
	go func() { warm <- p.Warm(ctx, 64, 64) }()
	<-g.entered
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := p.vae.Decode(dctx, make([]float32, 4*8*8), 8, 8)
	require.NoError(t, err, "a built graph waited for another's build")
	require.Len(t, out, 3*64*64)
	close(g.gate)
	require.NoError(t, <-warm)
	_, err = p.Generate(ctx, Request{Prompt: "x", Width: 64, Height: 64})
	require.NoError(t, err)
}

// TestCloseWhileGenerating closes a pipeline with generations in flight: each finishes or fails
// with ErrClosed, nothing runs after Close returns, and later calls fail with ErrClosed.
func TestCloseWhileGenerating(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	ctx := context.Background()
	var afterClose atomic.Bool
	var ranAfter atomic.Int32
	started := make(chan struct{}, 8)
	const n = 4
	errs := make([]error, n)
	results := make([]*Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = p.Generate(ctx, Request{
				Prompt: "a lighthouse", Seed: uint64(i), Width: 64 + 32*i, Height: 64,
				Progress: func(s Stage, _ time.Duration) {
					if afterClose.Load() {
						ranAfter.Add(1)
					}
					if s == StageTokenize {
						started <- struct{}{}
					}
				},
			})
		}()
	}
	<-started
	require.NoError(t, p.Close())
	afterClose.Store(true)
	wg.Wait()
	require.Zero(t, ranAfter.Load(), "a generation ran a stage after Close returned")
	for i := range n {
		if errs[i] != nil {
			require.ErrorIs(t, errs[i], ErrClosed, "generation %d", i)
			require.Nil(t, results[i])
		} else {
			require.NotNil(t, results[i].Image)
		}
	}

	_, err = p.Generate(ctx, Request{Prompt: "x"})
	require.ErrorIs(t, err, ErrClosed)
	res, err := p.GenerateBatch(ctx, Request{Prompt: "x"}, 2)
	require.ErrorIs(t, err, ErrClosed)
	require.Empty(t, res)
	require.ErrorIs(t, p.Warm(ctx, 64, 64), ErrClosed)
	_, err = p.MACs(ctx, 64, 64)
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, p.Close(), "closing twice")
}

// TestCloseConcurrent calls Close from several goroutines while generations start.
func TestCloseConcurrent(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, err := p.Generate(context.Background(), Request{Prompt: "x", Seed: uint64(i), Width: 64, Height: 64})
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("generation %d: %v", i, err)
				}
			} else {
				if err := p.Close(); err != nil {
					t.Errorf("Close %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	_, err = p.Generate(context.Background(), Request{Prompt: "x"})
	require.ErrorIs(t, err, ErrClosed)
}

// TestGenerateBatch checks that picture i of a batch is the picture Generate makes alone with
// Seed+i.
func TestGenerateBatch(t *testing.T) {
	p, err := Load(oracle.Path(t, errorsModel, "model"))
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	req := Request{Prompt: "a red bicycle", Seed: 41, Width: 64, Height: 96}
	batch, err := p.GenerateBatch(ctx, req, 3)
	require.NoError(t, err)
	require.Len(t, batch, 3)
	for i, got := range batch {
		r := req
		r.Seed = req.Seed + uint64(i)
		alone, err := p.Generate(ctx, r)
		require.NoError(t, err)
		assert.Equal(t, r.Seed, got.Seed, "picture %d", i)
		assert.Equal(t, alone.Noise, got.Noise, "picture %d: noise", i)
		assert.Equal(t, alone.Decoded, got.Decoded, "picture %d: decoded", i)
		assert.Equal(t, alone.Image.Pix, got.Image.Pix, "picture %d: image", i)
		assert.Equal(t, alone.InputIDs, got.InputIDs, "picture %d: input ids", i)
		assert.Equal(t, alone.TextEmbeddings, got.TextEmbeddings, "picture %d: text embeddings", i)
		if i > 0 { // the prompt was encoded once, for the first picture
			assert.Zero(t, got.Timings[StageTextEncoder], "picture %d", i)
		}
	}
	assert.Positive(t, batch[0].Timings[StageTextEncoder])
	assert.NotEqual(t, batch[0].Image.Pix, batch[1].Image.Pix)
	// Each picture owns its slices.
	batch[1].TextEmbeddings[0]++
	assert.NotEqual(t, batch[1].TextEmbeddings[0], batch[2].TextEmbeddings[0])

	for _, n := range []int{0, -1} {
		res, err := p.GenerateBatch(ctx, req, n)
		require.ErrorContains(t, err, "n =")
		require.Nil(t, res)
	}
	// An error names the picture and returns those made before it.
	calls := 0
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := req
	r.Progress = func(s Stage, _ time.Duration) {
		if s == StageVAEDecoder {
			calls++
			if calls == 2 {
				cancel()
			}
		}
	}
	res, err := p.GenerateBatch(cctx, r, 4)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "picture 3 of 4 (seed 43)")
	require.Len(t, res, 2)
}
