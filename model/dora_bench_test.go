package model

import (
	"testing"

	"github.com/tune-dev/tune/kernels"
)

// BenchmarkDoraBack times DoRA's elementwise backward (m's gradient and
// dy⊙c) at a SmolLM2 MLP shape, 512 tokens: it runs once per projection per step.
func BenchmarkDoraBack(b *testing.B) {
	n, out := 512, 1536
	dy, pre, dyc := make([]float32, n*out), make([]float32, n*out), make([]float32, n*out)
	m, rn, dm := make([]float32, out), make([]float32, out), make([]float32, out)
	for i := range dy {
		dy[i], pre[i] = float32(i%7)*1e-3, float32(i%5)
	}
	for i := range m {
		m[i], rn[i] = 1, 1
	}
	p := kernels.NewPool(2)
	defer p.Close()
	b.SetBytes(int64(12 * n * out))
	for b.Loop() {
		doraBack(p, dm, dyc, dy, pre, m, rn, n)
	}
}
