package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool runs the loops of the kernels on worker goroutines started once, so a
// kernel call spawns nothing: a training step makes thousands of calls, and
// train.threads is honoured by sizing the pool. A nil *Pool runs everything on
// the calling goroutine.
//
// For is meant to be called from one goroutine at a time (the training loop).
// A call made while the pool is busy, such as a nested one from inside a body,
// runs serially on its caller instead of waiting for itself.
type Pool struct {
	threads int
	tasks   []chan task // one per worker beyond the caller
	busy    atomic.Bool
	wg      sync.WaitGroup
	free    chan []float32 // scratch buffers handed back by release
	job     gemm           // the matrix product being run, while busy
}

// A task is a chunk [lo, hi) of a loop body, or of the matrix product g.
type task struct {
	body   func(lo, hi int)
	g      *gemm
	lo, hi int
}

// NewPool starts threads−1 workers (the caller is the last thread).
// threads <= 0 means runtime.GOMAXPROCS(0).
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	// Room for one buffer per thread, doubled for calls nested in a body.
	p := &Pool{threads: threads, free: make(chan []float32, 2*threads)}
	for range threads - 1 {
		ch := make(chan task)
		p.tasks = append(p.tasks, ch)
		go p.work(ch)
	}
	return p
}

func (p *Pool) work(ch chan task) {
	for t := range ch {
		if t.g != nil {
			t.g.run(p, t.lo, t.hi)
		} else {
			t.body(t.lo, t.hi)
		}
		p.wg.Done()
	}
}

// Threads is how many goroutines a loop may use (1 for a nil pool).
func (p *Pool) Threads() int {
	if p == nil {
		return 1
	}
	return p.threads
}

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	for _, ch := range p.tasks {
		close(ch)
	}
	p.tasks = nil
}

// For splits [0, n) into at most Threads() contiguous chunks of at least grain
// items and runs body on each, the first on the caller. It returns when all
// are done. Chunk i is [i·c, min((i+1)·c, n)) with c = ceil(n / chunks).
func (p *Pool) For(n, grain int, body func(lo, hi int)) {
	if n <= 0 {
		return
	}
	chunks := min(p.Threads(), (n+max(grain, 1)-1)/max(grain, 1))
	if chunks <= 1 || !p.acquire() {
		body(0, n)
		return
	}
	defer p.busy.Store(false)
	c := (n + chunks - 1) / chunks
	chunks = (n + c - 1) / c
	p.wg.Add(chunks - 1)
	for i := 1; i < chunks; i++ {
		p.tasks[i-1] <- task{body: body, lo: i * c, hi: min((i+1)*c, n)}
	}
	body(0, min(c, n))
	p.wg.Wait()
}

// acquire makes the caller the pool's user until it stores false in busy;
// false means the pool is taken (a nested call) and the caller runs alone.
func (p *Pool) acquire() bool {
	return p != nil && len(p.tasks) > 0 && p.busy.CompareAndSwap(false, true)
}

// dispatch runs parts [0, parts) of g, one each, part 0 on the caller, the
// others on the workers; parts <= Threads(). The caller holds the pool.
func (p *Pool) dispatch(parts int, g *gemm) {
	p.wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		p.tasks[i-1] <- task{g: g, lo: i, hi: i + 1}
	}
	g.run(p, 0, 1)
	p.wg.Wait()
}

// scratch returns a buffer of at least n float32 values for one worker's
// packing, reusing one handed back by release when it is large enough, so the
// steady state of training allocates nothing. A nil pool allocates.
func (p *Pool) scratch(n int) []float32 {
	if p != nil {
		select {
		case b := <-p.free:
			if cap(b) >= n {
				return b[:n]
			}
		default:
		}
	}
	return make([]float32, n)
}

// release hands a scratch buffer back to the pool (a nil pool drops it).
func (p *Pool) release(b []float32) {
	if p == nil {
		return
	}
	select {
	case p.free <- b:
	default: // the free list is full: let the GC have it
	}
}
