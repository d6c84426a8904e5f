package sdxs

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sdxs-go/sdxs/internal/nn"
)

// DefaultCacheBudget is the default byte budget of a pipeline's compiled graphs: 1 GiB. The
// graphs of one size hold the activations of every model for that size (about 350 MiB for a
// 512×512 picture with SDXS-512 and its TAESD decoder, 760 MiB for 768×768); the weights are
// shared by every size and not counted.
const DefaultCacheBudget int64 = 1 << 30

// WithCacheBudget sets the byte budget of the pipeline's compiled graphs (one per model and
// image size): when a new size's graphs would take the cache over the budget, the least
// recently used graphs are dropped (and rebuilt if their size is asked for again). The most
// recently used graph of each model is always kept, even when they alone exceed the budget
// (at 1024×1024 the UNet's and the decoder's do), so that a generation never rebuilds its own
// graphs. bytes ≤ 0 means unbounded: every size ever asked for stays in memory. The default is
// DefaultCacheBudget.
func WithCacheBudget(bytes int64) Option {
	return func(o *loadOptions) { o.cacheBudget = &bytes }
}

// errNotLoaded is returned by the methods of a Pipeline not made by Load or New.
var errNotLoaded = errors.New("sdxs: the pipeline was not made by Load or New")

// ErrClosed is returned (wrapped) by the methods of a closed pipeline, and by generations that
// Close interrupted.
var ErrClosed = errors.New("sdxs: the pipeline is closed")

// lifecycle tracks the calls in progress on a pipeline, so that Close can stop them and wait
// for them before it unmaps the weights.
type lifecycle struct {
	mu     sync.Mutex
	idle   *sync.Cond // signalled when active drops to 0
	active int
	closed bool
	done   chan struct{} // closed when Close has released everything

	stop   context.Context // cancelled by Close
	cancel context.CancelFunc
}

func (l *lifecycle) init() {
	l.idle = sync.NewCond(&l.mu)
	l.done = make(chan struct{})
	l.stop, l.cancel = context.WithCancel(context.Background())
}

// enter registers a call; it fails with ErrClosed once Close has begun. The returned context
// ends with ctx or when Close is called; exit must be called when the call is over.
func (p *Pipeline) enter(ctx context.Context) (context.Context, func(), error) {
	if p == nil || p.cache == nil {
		return nil, nil, errNotLoaded
	}
	if ctx == nil {
		return nil, nil, errors.New("sdxs: nil context")
	}
	l := &p.life
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, ErrClosed
	}
	l.active++
	l.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	stopAfter := context.AfterFunc(l.stop, cancel)
	exit := func() {
		stopAfter()
		cancel()
		l.mu.Lock()
		l.active--
		if l.active == 0 {
			l.idle.Broadcast()
		}
		l.mu.Unlock()
	}
	return cctx, exit, nil
}

// closedErr turns the cancellation Close caused into ErrClosed.
func (p *Pipeline) closedErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && p.life.stop.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w (while running: %v)", ErrClosed, err)
	}
	return err
}

// Close stops the pipeline: calls in progress (Generate, Warm, MACs) are interrupted and fail
// with ErrClosed, Close waits for them and for any graph being built to end, then releases the
// compiled graphs and unmaps the weights. To let generations finish instead, wait for them
// before calling Close. Later calls fail with ErrClosed. Close is safe to call concurrently with
// any method and more than once (later calls wait for the first and return nil), but not from a
// Request.Progress callback (it would wait for its own generation).
func (p *Pipeline) Close() error {
	if p == nil || p.cache == nil {
		return nil
	}
	l := &p.life
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	l.cancel()
	for l.active > 0 {
		l.idle.Wait()
	}
	l.mu.Unlock()
	defer close(l.done)
	// Graphs whose requests gave up may still be building in the background, reading weights.
	p.cache.Wait()
	p.cache.Clear()
	p.clearLoRA()
	errs := []error{p.closeControl()}
	for _, c := range p.closers {
		errs = append(errs, c.Close())
	}
	p.closers = nil
	return errors.Join(errs...)
}

// CacheBytes returns the bytes held by the pipeline's compiled graphs and their budget (≤ 0:
// unbounded).
func (p *Pipeline) CacheBytes() (used, budget int64) {
	if p == nil || p.cache == nil {
		return 0, 0
	}
	return p.cache.Bytes(), p.cache.Budget()
}

// GenerateBatch makes n pictures of req with the seeds req.Seed, req.Seed+1, …, req.Seed+n−1
// (as stable-diffusion.cpp numbers a batch), so that picture i is exactly what Generate gives
// alone with Seed req.Seed+i. The pictures are made one after another, each using every core.
// The prompt is tokenized and encoded once, for the first picture (the others' StageTextEncoder
// timing is zero). On error it returns the pictures made so far with the error.
func (p *Pipeline) GenerateBatch(ctx context.Context, req Request, n int) ([]*Result, error) {
	if n < 1 {
		return nil, fmt.Errorf("sdxs: GenerateBatch: n = %d, want at least 1", n)
	}
	out := make([]*Result, 0, min(n, 64))
	var prev *Result
	for i := range n {
		r := req
		r.Seed = req.Seed + uint64(i)
		res, err := p.generateEntered(ctx, r, prev)
		if err != nil {
			return out, fmt.Errorf("sdxs: picture %d of %d (seed %d): %w", i+1, n, r.Seed, err)
		}
		out = append(out, res)
		prev = res
	}
	return out, nil
}

// newCache returns the program cache the options ask for.
func newCache(o *loadOptions) *nn.ProgramCache {
	budget := DefaultCacheBudget
	if o.cacheBudget != nil {
		budget = *o.cacheBudget
	}
	return nn.NewProgramCache(budget)
}
