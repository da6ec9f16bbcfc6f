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
}

type task struct {
	body   func(lo, hi int)
	lo, hi int
}

// NewPool starts threads−1 workers (the caller is the last thread).
// threads <= 0 means runtime.GOMAXPROCS(0).
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: threads}
	for range threads - 1 {
		ch := make(chan task)
		p.tasks = append(p.tasks, ch)
		go p.work(ch)
	}
	return p
}

func (p *Pool) work(ch chan task) {
	for t := range ch {
		t.body(t.lo, t.hi)
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
	if chunks <= 1 || !p.busy.CompareAndSwap(false, true) {
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
