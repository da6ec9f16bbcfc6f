package kernels

import (
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
	n, k := w.Rows, w.Cols
	impl := gonum.Implementation{}
	if w.DType == F32 {
		impl.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, x, k, w.f32, k, 0, y, n)
		return
	}
	buf := make([]float32, min(gemmBlock, n)*k)
	for j0 := 0; j0 < n; j0 += gemmBlock {
		nb := min(gemmBlock, n-j0)
		widenRows(w, j0, nb, buf)
		impl.Sgemm(blas.NoTrans, blas.Trans, m, nb, k, 1, x, k, buf, k, 0, y[j0:], n)
	}
}

// gemmNN computes dx = dy·W for M >= gemmMinRows (see LinearBackwardInput).
func gemmNN(dx, dy []float32, m int, w Matrix) {
	n, k := w.Rows, w.Cols
	impl := gonum.Implementation{}
	if w.DType == F32 {
		impl.Sgemm(blas.NoTrans, blas.NoTrans, m, k, n, 1, dy, n, w.f32, k, 0, dx, k)
		return
	}
	buf := make([]float32, min(gemmBlock, n)*k)
	for j0 := 0; j0 < n; j0 += gemmBlock {
		nb := min(gemmBlock, n-j0)
		widenRows(w, j0, nb, buf)
		beta := float32(1)
		if j0 == 0 {
			beta = 0
		}
		impl.Sgemm(blas.NoTrans, blas.NoTrans, m, k, nb, 1, dy[j0:], n, buf, k, beta, dx, k)
	}
}

// widenRows widens rows j0..j0+nb of w into buf, in parallel.
func widenRows(w Matrix, j0, nb int, buf []float32) {
	k := w.Cols
	parallelFor(nb, 16, func(lo, hi int) {
		w.Range((j0+lo)*k, buf[lo*k:hi*k])
	})
}
