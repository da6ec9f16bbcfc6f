package kernels

import (
	"github.com/tune-dev/tune/internal/dtype"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Matrix products of several rows go through gonum's Sgemm (blocked, parallel,
// SSE inner loops: about five times the plain loops of linear.go here). Frozen
// f16/bf16 weights are widened gemmBlock rows at a time into a scratch block, so
// memory stays near the stored size. A single row (decoding) keeps the plain
// loops, which widen each weight once with no scratch traffic.
const (
	gemmMinRows = 8
	gemmBlock   = 256
)

// gemmNT computes y = x·Wᵀ for M >= gemmMinRows (see LinearForward).
func gemmNT(y, x []float32, m int, w Matrix) {
	k := w.Cols
	eachBlock(w, func(j0, nb int, wb []float32, _ bool) {
		gonum.Implementation{}.Sgemm(blas.NoTrans, blas.Trans, m, nb, k, 1, x, k, wb, k, 0, y[j0:], w.Rows)
	})
}

// gemmNN computes dx = dy·W for M >= gemmMinRows (see LinearBackwardInput).
func gemmNN(dx, dy []float32, m int, w Matrix) {
	k := w.Cols
	eachBlock(w, func(j0, nb int, wb []float32, first bool) {
		beta := float32(1) // blocks after the first add to dx
		if first {
			beta = 0
		}
		gonum.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, m, k, nb, 1, dy[j0:], w.Rows, wb, k, beta, dx, k)
	})
}

// eachBlock hands f the weight as float32 row blocks (j0, rows, values):
// an f32 weight whole, an f16/bf16 one widened gemmBlock rows at a time.
func eachBlock(w Matrix, f func(j0, nb int, wb []float32, first bool)) {
	if w.DType == dtype.F32 {
		f(0, w.Rows, w.f32, true)
		return
	}
	k := w.Cols
	buf := make([]float32, min(gemmBlock, w.Rows)*k)
	for j0 := 0; j0 < w.Rows; j0 += gemmBlock {
		nb := min(gemmBlock, w.Rows-j0)
		parallelFor(nb, 16, func(lo, hi int) {
			w.Range((j0+lo)*k, buf[lo*k:hi*k])
		})
		f(j0, nb, buf[:nb*k], j0 == 0)
	}
}
