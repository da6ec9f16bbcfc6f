package kernels

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// wBlock is how many weight rows are widened to float32 at once: enough to reuse
// each widened row across all input rows, small enough to stay in cache.
const wBlock = 16

// LinearForward computes y = x·Wᵀ + bias, as torch.nn.Linear does.
// x is (M, K), w is (N, K), bias is nil or (N), y is (M, N).
func LinearForward(y, x []float32, m int, w Matrix, bias []float32) {
	if m >= gemmMinRows {
		gemmNT(y, x, m, w)
		addBias(y, m, bias)
		return
	}
	linearForwardLoops(y, x, m, w, bias)
}

// linearForwardLoops is LinearForward as plain loops: the reference the tests
// hold gemmNT to, and the fast path for a row or two.
func linearForwardLoops(y, x []float32, m int, w Matrix, bias []float32) {
	n, k := w.Rows, w.Cols
	blocks := (n + wBlock - 1) / wBlock
	parallelFor(blocks, 1, func(lo, hi int) {
		buf := make([]float32, wBlock*k)
		for b := lo; b < hi; b++ {
			j0 := b * wBlock
			j1 := min(j0+wBlock, n)
			w.Range(j0*k, buf[:(j1-j0)*k])
			for i := 0; i < m; i++ {
				xi := x[i*k : (i+1)*k]
				yi := y[i*n : (i+1)*n]
				for j := j0; j < j1; j++ {
					s := dot(xi, buf[(j-j0)*k:(j-j0+1)*k])
					if bias != nil {
						s += bias[j]
					}
					yi[j] = s
				}
			}
		}
	})
}

// LinearBackwardInput computes dx = dy·W, the gradient of LinearForward with
// respect to x. dy is (M, N), w is (N, K), dx is (M, K) and is overwritten.
func LinearBackwardInput(dx, dy []float32, m int, w Matrix) {
	if m >= gemmMinRows {
		gemmNN(dx, dy, m, w)
		return
	}
	linearBackwardLoops(dx, dy, m, w)
}

// linearBackwardLoops is LinearBackwardInput as plain loops.
func linearBackwardLoops(dx, dy []float32, m int, w Matrix) {
	n, k := w.Rows, w.Cols
	clear(dx[:m*k])
	parallelFor(m, 1, func(lo, hi int) {
		buf := make([]float32, wBlock*k)
		for j0 := 0; j0 < n; j0 += wBlock {
			j1 := min(j0+wBlock, n)
			w.Range(j0*k, buf[:(j1-j0)*k])
			for i := lo; i < hi; i++ {
				dxi := dx[i*k : (i+1)*k]
				dyi := dy[i*n : (i+1)*n]
				for j := j0; j < j1; j++ {
					if g := dyi[j]; g != 0 {
						axpy(g, buf[(j-j0)*k:(j-j0+1)*k], dxi)
					}
				}
			}
		}
	})
}

func addBias(y []float32, m int, bias []float32) {
	if bias == nil {
		return
	}
	n := len(bias)
	for i := range m {
		row := y[i*n : (i+1)*n]
		for j, b := range bias {
			row[j] += b
		}
	}
}

// Embedding gathers rows of table: out[i] = table[ids[i]]. out is (len(ids), Cols).
func Embedding(out []float32, ids []int32, table Matrix) {
	d := table.Cols
	parallelFor(len(ids), 64, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			table.Row(int(ids[i]), out[i*d:(i+1)*d])
		}
	})
}

// MatMulTN computes c = alpha·aᵀ·b, the weight gradient of a linear layer.
// a is (M, N), b is (M, K), c is (N, K) and is overwritten.
func MatMulTN(c, a, b []float32, m, n, k int, alpha float32) {
	if m >= gemmMinRows {
		gonum.Implementation{}.Sgemm(blas.Trans, blas.NoTrans, n, k, m, alpha, a, n, b, k, 0, c, k)
		return
	}
	matMulTNLoops(c, a, b, m, n, k, alpha)
}

// matMulTNLoops is MatMulTN as plain loops.
func matMulTNLoops(c, a, b []float32, m, n, k int, alpha float32) {
	parallelFor(n, 1, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			cj := c[j*k : (j+1)*k]
			clear(cj)
			for i := 0; i < m; i++ {
				if g := a[i*n+j]; g != 0 {
					axpy(alpha*g, b[i*k:(i+1)*k], cj)
				}
			}
		}
	})
}

// scaleInPlace multiplies v by alpha.
func scaleInPlace(v []float32, alpha float32) {
	if alpha == 1 {
		return
	}
	for i := range v {
		v[i] *= alpha
	}
}
