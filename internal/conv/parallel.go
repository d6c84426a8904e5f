package conv

import (
	"sync"
	"sync/atomic"
)

// Phases of a run (what one part of runState.parallel does).
const (
	phasePrivate  = iota // part = chunk, transformed and multiplied by one goroutine
	phaseInput           // part = a range of input channels of the current chunk
	phaseOutput          // part = a range of output channels of the current chunk
	phaseProducts        // part = one position ξ of the products of the current chunk
	phaseLazy            // part = one group of lazyRows output channels of the products (lazy mode)
	phaseCache           // part = one panel and block of the weights to transform (cached lazy mode)
)

// runState holds the arguments of one Run and the work split of its
// current phase. It is recycled through a pool so that Run does not
// allocate.
type runState struct {
	p                   *Winograd
	out, x, tw, bias, s []float32
	ep                  int // epilogue bits (epAccumulate, epReLU)
	phase               int
	t0, nt              int // current chunk (shared mode)
	parts               int
	next                atomic.Int64
	wg                  sync.WaitGroup
}

var runs = sync.Pool{New: func() any { return new(runState) }}

func getRun() *runState { return runs.Get().(*runState) }

func putRun(r *runState) {
	r.p, r.out, r.x, r.tw, r.bias, r.s = nil, nil, nil, nil, nil, nil
	r.ep = 0
	runs.Put(r)
}

// workItem asks a helper goroutine to work on r as worker w.
type workItem struct {
	r *runState
	w int
}

// queue feeds the helper goroutines, which live as long as the process and
// sleep when there is no work.
var queue = make(chan workItem, 64)

var helpers struct {
	sync.Mutex
	n int
}

func ensureHelpers(n int) {
	helpers.Lock()
	for helpers.n < n {
		helpers.n++
		go func() {
			for it := range queue {
				it.r.work(it.w)
				it.r.wg.Done()
			}
		}()
	}
	helpers.Unlock()
}

// parallel runs parts [0, n) of the current phase on the calling goroutine
// and workers−1 helpers, and returns when all are done.
func (r *runState) parallel(n, workers int) {
	r.parts = n
	r.next.Store(0)
	workers = min(workers, n)
	if workers > 1 {
		ensureHelpers(workers - 1)
		r.wg.Add(workers - 1)
		for w := 1; w < workers; w++ {
			queue <- workItem{r, w}
		}
	}
	r.work(0)
	r.wg.Wait()
}

// work runs parts until none is left; w numbers the worker (its scratch
// area in the private mode).
func (r *runState) work(w int) {
	p := r.p
	nv, nm := p.chunkFloats()
	for {
		i := int(r.next.Add(1)) - 1
		if i >= r.parts {
			return
		}
		switch r.phase {
		case phasePrivate:
			s := r.s[w*(nv+nm) : (w+1)*(nv+nm)]
			v, m := s[:nv], s[nv:]
			t0 := i * p.chunk
			nt := min(p.chunk, p.tiles-t0)
			p.inputChunk(v, r.x, t0, nt, 0, p.cin)
			p.products(v, m, r.tw, p.uStride(), nt, 0, nXi)
			p.outputChunk(r.out, m, r.bias, t0, nt, 0, p.cout, r.ep)
		case phaseInput:
			v := r.s[:nv]
			c0, c1 := i*p.cin/r.parts, (i+1)*p.cin/r.parts
			p.inputChunk(v, r.x, r.t0, r.nt, c0, c1)
		case phaseProducts:
			if p.cached {
				p.products(r.s[:nv], r.s[nv:nv+nm], r.s[nv+nm:], p.cachedStride(), r.nt, i, i+1)
				continue
			}
			p.products(r.s[:nv], r.s[nv:nv+nm], r.tw, p.uStride(), r.nt, i, i+1)
		case phaseCache:
			p.cacheWeights(r.s[nv+nm:], r.tw, i)
		case phaseLazy:
			us := r.s[nv+nm+w*lazyScratch() : nv+nm+(w+1)*lazyScratch()]
			p.lazyGroup(r.s[:nv], r.s[nv:nv+nm], r.tw, us, r.nt, i)
		case phaseOutput:
			m := r.s[nv : nv+nm]
			c0, c1 := i*p.cout/r.parts, (i+1)*p.cout/r.parts
			p.outputChunk(r.out, m, r.bias, r.t0, r.nt, c0, c1, r.ep)
		}
	}
}
