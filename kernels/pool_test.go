package kernels

import (
	"sync/atomic"
	"testing"
)

// Every index is visited exactly once, whatever the pool size, grain and n,
// and a nested For (from inside a body) runs instead of deadlocking.
func TestPoolForVisitsEachIndexOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 7} {
		p := NewPool(threads)
		for _, n := range []int{0, 1, 2, 5, 64, 1001} {
			for _, grain := range []int{0, 1, 3, 100} {
				seen := make([]atomic.Int32, n)
				p.For(n, grain, func(lo, hi int) {
					for i := lo; i < hi; i++ {
						seen[i].Add(1)
					}
					p.For(2, 1, func(int, int) {}) // nested: runs serially
				})
				for i := range seen {
					if c := seen[i].Load(); c != 1 {
						t.Fatalf("threads %d, n %d, grain %d: index %d visited %d times", threads, n, grain, i, c)
					}
				}
			}
		}
		p.Close()
	}
	var nilPool *Pool
	sum := 0
	nilPool.For(10, 1, func(lo, hi int) { sum += hi - lo })
	if sum != 10 || nilPool.Threads() != 1 {
		t.Fatalf("nil pool: covered %d of 10, threads %d", sum, nilPool.Threads())
	}
}
