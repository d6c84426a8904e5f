package nn

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ProgramCache keeps compiled Programs, least recently used first out, within a byte budget
// counted by Program.ArenaBytes (the intermediate buffers and scratch a program holds; the
// weights are shared by every program of a model and not counted). Several Runners (the models
// of one pipeline) can share one cache, so that the budget bounds them together.
//
// Budget rules: a budget ≤ 0 means unbounded. Otherwise, after each insertion the least
// recently used programs are dropped until the total is within the budget, except that the most
// recently used program of each runner is always kept (even when they alone exceed the
// budget): a generation runs one program of each model in turn, and with only one of them kept
// a large size would rebuild every model's program for every picture (at 1024×1024 the UNet's
// and the decoder's programs take more than the default budget of a pipeline; rebuilding them
// each time doubled the time and the peak memory). The budget bounds the programs kept for
// other sizes and keys.
//
// Dropping a program never breaks a run in progress: the run holds its own reference to the
// program, whose memory is freed once the last run ends.
//
// Builds happen outside the cache's lock: a request for a program already built never waits for
// another key's build, and concurrent requests for the same key wait for one build. A
// ProgramCache is safe for concurrent use.
type ProgramCache struct {
	budget int64

	mu      sync.Mutex
	lru     *list.List // of *cacheEntry, most recently used first
	items   map[cacheKey]*list.Element
	flights map[cacheKey]*flight
	bytes   int64
	idle    *sync.Cond // broadcast whenever a build ends
}

// cacheKey names a program: the runner it belongs to and the runner's key.
type cacheKey struct {
	owner *runnerID
	key   any
}

type cacheEntry struct {
	key   cacheKey
	prog  *Program
	bytes int64
}

// flight is a build in progress; done is closed when prog or err is set.
type flight struct {
	done chan struct{}
	prog *Program
	err  error
}

// errNilContext is returned for a nil context (rather than panicking on it).
var errNilContext = errors.New("nn: nil context")

// runnerID identifies a Runner in a cache shared by runners of different key types.
type runnerID struct{ name string }

// NewProgramCache returns an empty cache with the given budget in bytes (≤ 0: unbounded).
func NewProgramCache(budgetBytes int64) *ProgramCache {
	c := &ProgramCache{
		budget:  budgetBytes,
		lru:     list.New(),
		items:   make(map[cacheKey]*list.Element),
		flights: make(map[cacheKey]*flight),
	}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// Wait waits until no build is in progress: builds whose requests gave up go on in the
// background, reading weights, so whoever releases the weights (a pipeline's Close) must first
// make sure no new request can start and then call Wait.
func (c *ProgramCache) Wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.flights) > 0 {
		c.idle.Wait()
	}
}

// Budget returns the cache's budget in bytes (≤ 0: unbounded).
func (c *ProgramCache) Budget() int64 { return c.budget }

// Bytes returns the arena bytes of the programs the cache holds.
func (c *ProgramCache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Len returns the number of programs the cache holds.
func (c *ProgramCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Clear drops every program the cache holds. Builds in progress still complete and are kept.
func (c *ProgramCache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Init()
	clear(c.items)
	c.bytes = 0
}

// get returns the program for key, building it with build if the cache has none. Concurrent
// gets of one key share one build. A get whose ctx ends while it waits returns ctx's error at
// once; the build goes on and its program is cached for the next request.
func (c *ProgramCache) get(ctx context.Context, key cacheKey, build func() (*Program, error)) (*Program, error) {
	if ctx == nil {
		return nil, errNilContext
	}
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		return e.Value.(*cacheEntry).prog, nil
	}
	f, ok := c.flights[key]
	if !ok {
		if err := ctx.Err(); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		f = &flight{done: make(chan struct{})}
		c.flights[key] = f
		go c.fill(key, f, build)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.prog, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fill runs one build and publishes its result.
func (c *ProgramCache) fill(key cacheKey, f *flight, build func() (*Program, error)) {
	prog, err := safeBuild(build)
	f.prog, f.err = prog, err
	c.mu.Lock()
	delete(c.flights, key)
	if err == nil {
		c.insert(key, prog)
	}
	c.idle.Broadcast() // Wait and waitOwner re-check their condition
	c.mu.Unlock()
	close(f.done)
}

// safeBuild runs build, turning a panic into an error: a bug in a graph description must not
// take down the service that embeds the library.
func safeBuild(build func() (*Program, error)) (prog *Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			prog, err = nil, fmt.Errorf("nn: building the graph panicked: %v", r)
		}
	}()
	return build()
}

// insert adds prog under key and evicts down to the budget. The caller holds c.mu.
func (c *ProgramCache) insert(key cacheKey, prog *Program) {
	if e, ok := c.items[key]; ok {
		c.remove(e)
	}
	ent := &cacheEntry{key: key, prog: prog, bytes: prog.ArenaBytes()}
	c.items[key] = c.lru.PushFront(ent)
	c.bytes += ent.bytes
	if c.budget <= 0 {
		return
	}
	if c.bytes <= c.budget {
		return
	}
	// Each runner's most recently used program stays; the others go, oldest first.
	newest := make(map[*runnerID]*list.Element)
	for e := c.lru.Front(); e != nil; e = e.Next() {
		if o := e.Value.(*cacheEntry).key.owner; newest[o] == nil {
			newest[o] = e
		}
	}
	for e := c.lru.Back(); e != nil && c.bytes > c.budget; {
		prev := e.Prev()
		if newest[e.Value.(*cacheEntry).key.owner] != e {
			c.remove(e)
		}
		e = prev
	}
}

// remove drops one entry. The caller holds c.mu.
func (c *ProgramCache) remove(e *list.Element) {
	ent := e.Value.(*cacheEntry)
	c.lru.Remove(e)
	delete(c.items, ent.key)
	c.bytes -= ent.bytes
}

// waitOwner waits until no build of one runner is in flight.
func (c *ProgramCache) waitOwner(owner *runnerID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		busy := false
		for k := range c.flights {
			if k.owner == owner {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		c.idle.Wait()
	}
}

// dropOwner removes every program of one runner.
func (c *ProgramCache) dropOwner(owner *runnerID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*cacheEntry).key.owner == owner {
			c.remove(e)
		}
		e = next
	}
}

// Runner runs one model: it builds the model's graph for each key (an image size, a variant)
// with its build function, keeps the compiled programs in a ProgramCache and runs them. A Runner
// made by NewRunner has a cache of its own, unbounded; SetCache shares one with other models.
// A Runner is safe for concurrent use; runs of one program are serialised, runs of different
// programs are not.
type Runner[K comparable] struct {
	id     *runnerID
	params *Params
	build  func(b *Builder, key K) (map[string]*Node, error)

	mu    sync.Mutex
	cache *ProgramCache
}

// NewRunner returns a runner for the model whose graph for a key is described by build, with
// parameters from params. name prefixes its errors ("unet: ..."). If K implements fmt.Stringer,
// build errors name the key by its String method ("building the graph for a 64×64 latent").
func NewRunner[K comparable](name string, params *Params, build func(b *Builder, key K) (map[string]*Node, error)) *Runner[K] {
	return &Runner[K]{id: &runnerID{name: name}, params: params, build: build, cache: NewProgramCache(0)}
}

// SetCache makes the runner keep its programs in c (shared with other runners), dropping those
// it kept in its previous cache. A nil c gives the runner a private unbounded cache again.
func (r *Runner[K]) SetCache(c *ProgramCache) {
	if c == nil {
		c = NewProgramCache(0)
	}
	r.mu.Lock()
	old := r.cache
	r.cache = c
	r.mu.Unlock()
	if old != nil && old != c {
		old.dropOwner(r.id)
	}
}

// Cache returns the cache the runner keeps its programs in.
func (r *Runner[K]) Cache() *ProgramCache {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache
}

// Drop removes the runner's programs from its cache (runs in progress finish normally).
func (r *Runner[K]) Drop() { r.Cache().dropOwner(r.id) }

// Wait waits until none of the runner's programs is being built. Builds whose requests gave up
// go on in the background, reading the weights: whoever releases the weights of one model
// calls Wait first (after making sure no new request can start).
func (r *Runner[K]) Wait() { r.Cache().waitOwner(r.id) }

// Params returns the runner's parameters.
func (r *Runner[K]) Params() *Params { return r.params }

// Program returns the compiled program for key, building it (once, shared by concurrent
// callers) if the cache does not hold it. It returns ctx's error as soon as ctx ends, even while
// the build goes on; the build then completes in the background and its program is cached.
func (r *Runner[K]) Program(ctx context.Context, key K) (*Program, error) {
	return r.Cache().get(ctx, cacheKey{owner: r.id, key: key}, func() (*Program, error) { return r.compile(key) })
}

// compile builds the program for key.
func (r *Runner[K]) compile(key K) (*Program, error) {
	p, err := Build(r.params, func(b *Builder) map[string]*Node {
		outs, err := r.build(b, key)
		if err != nil {
			b.Fail(err)
		}
		return outs
	})
	if err != nil {
		return nil, fmt.Errorf("%s: building the graph for %s: %w", r.id.name, describeKey(key), err)
	}
	return p, nil
}

func describeKey(key any) string {
	if s, ok := key.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%+v", key)
}

// Run runs the program for key (building it if needed) on inputs and returns every output of
// the program, in newly allocated slices.
func (r *Runner[K]) Run(ctx context.Context, key K, inputs map[string][]float32) (map[string][]float32, error) {
	p, err := r.Program(ctx, key)
	if err != nil {
		return nil, err
	}
	return r.runProgram(ctx, p, inputs)
}

// RunOnce builds the program for key without caching it, runs it on inputs and returns every
// output. It is for programs used once, such as traces that keep every activation.
func (r *Runner[K]) RunOnce(ctx context.Context, key K, inputs map[string][]float32) (map[string][]float32, error) {
	if ctx == nil {
		return nil, errNilContext
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := safeBuild(func() (*Program, error) { return r.compile(key) })
	if err != nil {
		return nil, err
	}
	return r.runProgram(ctx, p, inputs)
}

func (r *Runner[K]) runProgram(ctx context.Context, p *Program, inputs map[string][]float32) (map[string][]float32, error) {
	outs := make(map[string][]float32, len(p.outputs))
	for name, o := range p.outputs {
		outs[name] = make([]float32, len(o.data))
	}
	if err := p.Run(ctx, inputs, outs); err != nil {
		return nil, fmt.Errorf("%s: %w", r.id.name, err)
	}
	return outs, nil
}

// MACs returns the multiply-adds of one run of the program for key (building it if needed): in
// convolutions and linear layers, and in attention products.
func (r *Runner[K]) MACs(ctx context.Context, key K) (convLinear, attention int64, err error) {
	p, err := r.Program(ctx, key)
	if err != nil {
		return 0, 0, err
	}
	convLinear, attention = p.MACs()
	return convLinear, attention, nil
}

// RunTapeMachine builds the graph for key (without caching it) and runs it under Gorgonia's
// own TapeMachine instead of a Program: the same graph and ops, with every value allocated by
// Gorgonia. It returns every output. It is for tests that hold the graph, as Gorgonia runs it,
// to reference outputs; it is much slower than Run and ignores ctx cancellation between ops.
func (r *Runner[K]) RunTapeMachine(ctx context.Context, key K, inputs map[string][]float32) (map[string][]float32, error) {
	if ctx == nil {
		return nil, errNilContext
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var outs map[string]*Node
	p, err := safeBuild(func() (*Program, error) {
		return Build(r.params, func(b *Builder) map[string]*Node {
			o, err := r.build(b, key)
			if err != nil {
				b.Fail(err)
			}
			outs = o
			return o
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%s: building the graph for %s: %w", r.id.name, describeKey(key), err)
	}
	g := p.Graph()
	for name, buf := range p.inputs {
		v, ok := inputs[name]
		if !ok {
			return nil, fmt.Errorf("%s: input %q not given", r.id.name, name)
		}
		if len(v) != len(buf) {
			return nil, fmt.Errorf("%s: input %q has %d values, want %d (shape %v)", r.id.name, name, len(v), len(buf), p.inShape[name])
		}
		n := g.ByName("input:" + name)
		if len(n) != 1 {
			return nil, fmt.Errorf("%s: input %q: %d graph nodes", r.id.name, name, len(n))
		}
		t := tensor.New(tensor.WithShape(p.inShape[name]...), tensor.WithBacking(append([]float32(nil), v...)))
		if err := gorgonia.Let(n[0], t); err != nil {
			return nil, fmt.Errorf("%s: input %q: %w", r.id.name, name, err)
		}
	}
	for name := range inputs {
		if _, ok := p.inputs[name]; !ok {
			return nil, fmt.Errorf("%s: unknown input %q", r.id.name, name)
		}
	}
	vm := gorgonia.NewTapeMachine(g)
	defer vm.Close()
	if err := tapeRun(vm); err != nil {
		return nil, fmt.Errorf("%s: TapeMachine: %w", r.id.name, err)
	}
	res := make(map[string][]float32, len(outs))
	for name, n := range outs {
		d, ok := n.Value().(*tensor.Dense)
		if !ok || d.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("%s: TapeMachine left output %q without a float32 value", r.id.name, name)
		}
		res[name] = append([]float32(nil), d.Float32s()...)
	}
	return res, nil
}

// tapeRun runs the machine, turning a panic in an op into an error.
func tapeRun(vm gorgonia.VM) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return vm.RunAll()
}
