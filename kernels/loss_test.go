package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// HeadLoss in chunks against cross-entropy over whole float64 logits, and its
// gradient against the closed form softmax − onehot, times x's head rows.
func TestHeadLossMatchesWholeLogits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n, k, v = 37, 12, 50
	x := randF32(r, n*k, 1)
	wv := randF32(r, v*k, 1)
	targets := make([]int32, n)
	for i := range targets {
		targets[i] = int32(r.IntN(v))
		if i%5 == 3 {
			targets[i] = IgnoreIndex
		}
	}
	for _, w := range []Matrix{MatrixF32(v, k, wv), bf16Matrix(v, k, wv)} {
		wf := w.Float32()
		var wantSum float64
		counted := 0
		wantDX := make([]float64, n*k)
		const scale = 0.25
		for i := range n {
			if targets[i] == IgnoreIndex {
				continue
			}
			counted++
			logits := make([]float64, v)
			m := math.Inf(-1)
			for j := range v {
				for c := range k {
					logits[j] += float64(x[i*k+c]) * float64(wf[j*k+c])
				}
				m = math.Max(m, logits[j])
			}
			var z float64
			for _, l := range logits {
				z += math.Exp(l - m)
			}
			lse := m + math.Log(z)
			wantSum += lse - logits[targets[i]]
			for j, l := range logits {
				g := math.Exp(l - lse)
				if j == int(targets[i]) {
					g--
				}
				for c := range k {
					wantDX[i*k+c] += scale * g * float64(wf[j*k+c])
				}
			}
		}
		for _, chunk := range []int{0, 1, 5, 64} {
			h := HeadLoss{ChunkRows: chunk}
			dx := randF32(r, n*k, 9) // stale values must be overwritten
			pool := NewPool(2)
			sum, got := h.Run(pool, dx, x, n, w, targets, scale)
			pool.Close()
			if got != counted || math.Abs(sum-wantSum) > 1e-4*math.Abs(wantSum) {
				t.Fatalf("%s chunk %d: sum %g over %d rows, want %g over %d", w.DType, chunk, sum, got, wantSum, counted)
			}
			for i := range dx {
				if d := math.Abs(float64(dx[i]) - wantDX[i]); d > 1e-5+1e-4*math.Abs(wantDX[i]) {
					t.Fatalf("%s chunk %d: dx[%d] = %g, want %g", w.DType, chunk, i, dx[i], wantDX[i])
				}
			}
		}
	}
}
