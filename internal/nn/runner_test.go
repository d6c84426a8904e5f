package nn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// convModel is a one-convolution model keyed by the input's side: x [3, n, n] → y [4, n, n].
type convModel struct {
	src    memSource
	w, b   []float32
	builds atomic.Int32
	// gate, if set, is waited on by every build of the size in gateSize.
	gate     chan struct{}
	gateSize int
}

func newConvModel(seed uint64) *convModel {
	r := rand.New(rand.NewPCG(seed, seed+1))
	m := &convModel{src: memSource{}}
	m.w = m.src.add(r, "conv.weight", 4, 3, 3, 3)
	m.b = m.src.add(r, "conv.bias", 4)
	return m
}

func (m *convModel) build(b *Builder, n int) (map[string]*Node, error) {
	m.builds.Add(1)
	if m.gate != nil && n == m.gateSize {
		<-m.gate
	}
	if n <= 0 {
		return nil, errors.New("size must be positive")
	}
	x := b.Input("x", 3, n, n)
	return map[string]*Node{"y": b.ConvLayer("conv", x, 4, 3, 1, 1, true)}, nil
}

// check runs the program for size n through r and compares it with a direct convolution.
func (m *convModel) check(t *testing.T, r *Runner[int], n int, seed uint64) {
	t.Helper()
	require.NoError(t, m.verify(r, n, seed))
}

// verify is check for goroutines other than the test's: it returns what is wrong.
func (m *convModel) verify(r *Runner[int], n int, seed uint64) error {
	x := randn(rand.New(rand.NewPCG(seed, 7)), 3*n*n)
	outs, err := r.Run(context.Background(), n, map[string][]float32{"x": x})
	if err != nil {
		return err
	}
	want, _, _ := naiveConv(x, 3, n, n, m.w, 4, 3, m.b, 1, 1)
	if len(outs["y"]) != len(want) {
		return fmt.Errorf("size %d: %d values, want %d", n, len(outs["y"]), len(want))
	}
	if d := maxAbsDiff(outs["y"], want); d > 1e-4 {
		return fmt.Errorf("size %d: max abs diff %g", n, d)
	}
	return nil
}

// arenaOf returns the arena bytes of the program for size n.
func arenaOf(t *testing.T, n int) int64 {
	m := newConvModel(1)
	p, err := NewRunner("conv", NewParams(m.src), m.build).Program(context.Background(), n)
	require.NoError(t, err)
	return p.ArenaBytes()
}

func TestProgramCacheEvictsByBudget(t *testing.T) {
	ctx := context.Background()
	a8, a16, a24 := arenaOf(t, 8), arenaOf(t, 16), arenaOf(t, 24)
	require.Less(t, a8, a16)
	require.Less(t, a16, a24)

	m := newConvModel(1)
	r := NewRunner("conv", NewParams(m.src), m.build)
	c := NewProgramCache(a8 + a16 + a24 - 1) // not room for all three
	r.SetCache(c)
	m.check(t, r, 8, 1)
	m.check(t, r, 16, 2)
	require.Equal(t, a8+a16, c.Bytes())
	require.Equal(t, 2, c.Len())
	// Use 8 again so that 16 is the least recently used, then add 24: 16 goes.
	m.check(t, r, 8, 3)
	require.EqualValues(t, 2, m.builds.Load())
	m.check(t, r, 24, 4)
	require.Equal(t, a8+a24, c.Bytes())
	require.LessOrEqual(t, c.Bytes(), c.Budget())
	require.EqualValues(t, 3, m.builds.Load())
	m.check(t, r, 8, 5) // still cached
	require.EqualValues(t, 3, m.builds.Load())
	m.check(t, r, 16, 6) // rebuilt; 24 (least recent) goes
	require.EqualValues(t, 4, m.builds.Load())
	require.Equal(t, a8+a16, c.Bytes())

	// A program larger than the whole budget is kept alone, so that it is not rebuilt at once.
	small := NewProgramCache(a8)
	r.SetCache(small)
	require.Zero(t, c.Len(), "SetCache drops the runner's programs from its old cache")
	require.Zero(t, c.Bytes())
	m.check(t, r, 24, 7)
	require.Equal(t, 1, small.Len())
	require.Equal(t, a24, small.Bytes())
	m.check(t, r, 8, 8)
	require.Equal(t, a8, small.Bytes())
	_, err := r.Program(ctx, 8)
	require.NoError(t, err)

	// Budget ≤ 0 is unbounded.
	unb := NewProgramCache(0)
	r.SetCache(unb)
	for n := 4; n <= 40; n += 4 {
		_, err := r.Program(ctx, n)
		require.NoError(t, err)
	}
	require.Equal(t, 10, unb.Len())

	r.Drop()
	require.Zero(t, unb.Len())
	require.Zero(t, unb.Bytes())
}

// TestProgramCacheSharedByRunners checks that runners of different key types share one budget
// without their keys colliding.
func TestProgramCacheSharedByRunners(t *testing.T) {
	m := newConvModel(1)
	r1 := NewRunner("one", NewParams(m.src), m.build)
	type key struct{ n int }
	r2 := NewRunner("two", NewParams(m.src), func(b *Builder, k key) (map[string]*Node, error) {
		x := b.Input("x", 3, k.n, k.n)
		return map[string]*Node{"y": b.Act(ActReLU, x)}, nil
	})
	c := NewProgramCache(0)
	r1.SetCache(c)
	r2.SetCache(c)
	p1, err := r1.Program(context.Background(), 8)
	require.NoError(t, err)
	p2, err := r2.Program(context.Background(), key{8})
	require.NoError(t, err)
	require.NotSame(t, p1, p2)
	require.Equal(t, 2, c.Len())
	require.Equal(t, p1.ArenaBytes()+p2.ArenaBytes(), c.Bytes())
	r1.Drop()
	require.Equal(t, 1, c.Len())
	require.Equal(t, p2.ArenaBytes(), c.Bytes())
}

// TestProgramCacheKeepsEachRunnersLatest checks that a budget too small for the programs of one
// generation (one per model, as at 1024×1024) does not make the models evict each other: each
// runner's most recently used program stays, and only programs of other keys are dropped.
func TestProgramCacheKeepsEachRunnersLatest(t *testing.T) {
	m := newConvModel(1)
	r1 := NewRunner("one", NewParams(m.src), m.build)
	r2 := NewRunner("two", NewParams(m.src), m.build)
	ctx := context.Background()
	p, err := r1.Program(ctx, 16)
	require.NoError(t, err)
	c := NewProgramCache(p.ArenaBytes()) // room for one program of this size
	r1.SetCache(c)
	r2.SetCache(c)
	for round := 0; round < 3; round++ { // a generation runs both models in turn
		_, err := r1.Program(ctx, 16)
		require.NoError(t, err)
		_, err = r2.Program(ctx, 16)
		require.NoError(t, err)
	}
	require.EqualValues(t, 3, m.builds.Load(), "one build before the cache, then one per runner")
	require.Equal(t, 2, c.Len())
	// Another size of r1 evicts r1's older program, not r2's only one.
	_, err = r1.Program(ctx, 8)
	require.NoError(t, err)
	require.Equal(t, 2, c.Len())
	_, err = r2.Program(ctx, 16)
	require.NoError(t, err)
	_, err = r1.Program(ctx, 8)
	require.NoError(t, err)
	require.EqualValues(t, 4, m.builds.Load(), "r1 at 8 built once; r2 kept")
}

func TestRunnerConcurrentSameKeyBuildsOnce(t *testing.T) {
	m := newConvModel(1)
	m.gate, m.gateSize = make(chan struct{}), 16
	r := NewRunner("conv", NewParams(m.src), m.build)
	const n = 8
	progs := make([]*Program, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progs[i], errs[i] = r.Program(context.Background(), 16)
		}()
	}
	// Let the goroutines pile up on the one build, then let it finish.
	require.Eventually(t, func() bool { return m.builds.Load() == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	close(m.gate)
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Same(t, progs[0], progs[i])
	}
	require.EqualValues(t, 1, m.builds.Load())
	m.check(t, r, 16, 1)
}

// TestRunnerCancelWhileOtherSizeBuilds checks that a build does not stall runs of sizes already
// built, and that a request waiting for a build returns as soon as its context ends.
func TestRunnerCancelWhileOtherSizeBuilds(t *testing.T) {
	m := newConvModel(1)
	m.gate, m.gateSize = make(chan struct{}), 32
	r := NewRunner("conv", NewParams(m.src), m.build)
	m.check(t, r, 8, 1)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, 32, map[string][]float32{"x": make([]float32, 3*32*32)})
		done <- err
	}()
	require.Eventually(t, func() bool { return m.builds.Load() == 2 }, 5*time.Second, time.Millisecond)

	// The build of 32 is stuck: size 8 still runs.
	m.check(t, r, 8, 2)

	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled request waiting for a build did not return")
	}
	// A request whose context is already done does not wait either.
	_, err := r.Program(ctx, 32)
	require.ErrorIs(t, err, context.Canceled)
	// A deadline ends a wait too.
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	_, err = r.Program(dctx, 32)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The build completes in the background and is kept: no second build.
	close(m.gate)
	m.check(t, r, 32, 3)
	require.EqualValues(t, 2, m.builds.Load())
}

// TestProgramRunWaitsWithContext checks that a run waiting for another run of the same program
// honours its context.
func TestProgramRunWaitsWithContext(t *testing.T) {
	m := newConvModel(1)
	r := NewRunner("conv", NewParams(m.src), m.build)
	p, err := r.Program(context.Background(), 8)
	require.NoError(t, err)
	p.sem <- struct{}{} // another run holds the program
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = r.Run(ctx, 8, map[string][]float32{"x": make([]float32, 3*8*8)})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	<-p.sem
	m.check(t, r, 8, 1)
}

func TestRunnerBuildErrors(t *testing.T) {
	m := newConvModel(1)
	r := NewRunner("conv", NewParams(m.src), m.build)
	_, err := r.Run(context.Background(), -1, nil)
	require.ErrorContains(t, err, "conv: building the graph for -1: size must be positive")
	// A failed build is not cached: it is tried again.
	_, _, err = r.MACs(context.Background(), -1)
	require.Error(t, err)
	require.EqualValues(t, 2, m.builds.Load())

	// A panicking graph description is an error, not a crash.
	bad := NewRunner("bad", NewParams(m.src), func(b *Builder, n int) (map[string]*Node, error) {
		var s []int
		_ = s[n]
		return nil, nil
	})
	_, err = bad.Program(context.Background(), 3)
	require.ErrorContains(t, err, "panicked")
	_, err = bad.RunOnce(context.Background(), 3, nil)
	require.ErrorContains(t, err, "panicked")

	// A nil context is an error, not a panic.
	var nilCtx context.Context
	_, err = r.Run(nilCtx, 4, nil)
	require.ErrorIs(t, err, errNilContext)
	_, err = r.RunOnce(nilCtx, 4, nil)
	require.ErrorIs(t, err, errNilContext)
	_, err = r.RunTapeMachine(nilCtx, 4, nil)
	require.ErrorIs(t, err, errNilContext)

	// A missing weight names the tensor.
	missing := NewRunner("missing", NewParams(memSource{}), m.build)
	_, err = missing.Program(context.Background(), 4)
	require.ErrorContains(t, err, `missing: building the graph for 4: tensor "conv.`)
	require.ErrorContains(t, err, "is missing")
}

func TestRunnerRunOnceDoesNotCache(t *testing.T) {
	m := newConvModel(1)
	r := NewRunner("conv", NewParams(m.src), m.build)
	x := randn(rand.New(rand.NewPCG(3, 4)), 3*8*8)
	outs, err := r.RunOnce(context.Background(), 8, map[string][]float32{"x": x})
	require.NoError(t, err)
	want, _, _ := naiveConv(x, 3, 8, 8, m.w, 4, 3, m.b, 1, 1)
	require.Less(t, maxAbsDiff(outs["y"], want), 1e-4)
	require.Zero(t, r.Cache().Len())
	conv, attn, err := r.MACs(context.Background(), 8)
	require.NoError(t, err)
	require.EqualValues(t, 4*3*9*8*8, conv)
	require.Zero(t, attn)
	require.Equal(t, 1, r.Cache().Len())
	require.Same(t, r.Params(), r.Params())
}

// TestRunnerConcurrentEvictions runs many sizes from many goroutines through a cache that holds
// about one program, so that programs are evicted while others run them: every result must
// still be right (run under -race by make test).
func TestRunnerConcurrentEvictions(t *testing.T) {
	m := newConvModel(1)
	r := NewRunner("conv", NewParams(m.src), m.build)
	c := NewProgramCache(arenaOf(t, 12))
	r.SetCache(c)
	sizes := []int{4, 8, 12, 5, 9}
	errs := make(chan error, 6*8)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				n := sizes[(g+i)%len(sizes)]
				errs <- m.verify(r, n, uint64(g*100+i))
				if i == 4 && g == 0 {
					c.Clear()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, c.Len())
	require.True(t, c.Len() == 1 || c.Bytes() <= c.Budget(), "%d programs, %d bytes, budget %d", c.Len(), c.Bytes(), c.Budget())
}

func TestRunnerRunTapeMachine(t *testing.T) {
	m := newConvModel(1)
	r := NewRunner("conv", NewParams(m.src), m.build)
	x := randn(rand.New(rand.NewPCG(5, 6)), 3*6*6)
	outs, err := r.RunTapeMachine(context.Background(), 6, map[string][]float32{"x": x})
	require.NoError(t, err)
	want, _, _ := naiveConv(x, 3, 6, 6, m.w, 4, 3, m.b, 1, 1)
	require.Less(t, maxAbsDiff(outs["y"], want), 1e-4)
	require.Zero(t, r.Cache().Len(), "RunTapeMachine does not cache")

	_, err = r.RunTapeMachine(context.Background(), 6, map[string][]float32{"x": x[:5]})
	require.ErrorContains(t, err, `input "x" has 5 values, want 108`)
	_, err = r.RunTapeMachine(context.Background(), 6, nil)
	require.ErrorContains(t, err, `input "x" not given`)
	_, err = r.RunTapeMachine(context.Background(), 6, map[string][]float32{"x": x, "z": x})
	require.ErrorContains(t, err, `unknown input "z"`)
	_, err = r.RunTapeMachine(context.Background(), -1, nil)
	require.ErrorContains(t, err, "size must be positive")
}

// TestRunnerWait checks that Wait waits for the runner's own builds in flight (those whose
// requests gave up included) and not for other runners' builds in the same cache.
func TestRunnerWait(t *testing.T) {
	a, b := newConvModel(1), newConvModel(2)
	a.gate, a.gateSize = make(chan struct{}), 8
	c := NewProgramCache(0)
	ra := NewRunner("a", NewParams(a.src), a.build)
	rb := NewRunner("b", NewParams(b.src), b.build)
	ra.SetCache(c)
	rb.SetCache(c)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = ra.Program(ctx, 8) }()
	require.Eventually(t, func() bool { return a.builds.Load() == 1 }, 5*time.Second, time.Millisecond)
	cancel() // the request gives up; the build goes on

	rb.Wait() // b has nothing in flight: returns at once
	waited := make(chan struct{})
	go func() { ra.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while a build was in flight")
	case <-time.After(30 * time.Millisecond):
	}
	close(a.gate)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the build ended")
	}
	require.Equal(t, 1, c.Len(), "the abandoned build's program is kept")
	c.Wait()
}
