package kernels

// Temporary: the pool-taking product API over the gonum path, until the
// packed AVX2 kernels land with the same signatures.

// Linear computes y = x·Wᵀ + bias: x (M, K), W (N, K), y (M, N).
func Linear(p *Pool, y, x []float32, m int, w Matrix, bias []float32) {
	LinearForward(y, x, m, w, bias)
}

// LinearDX computes dx = dy·W (or adds it with accumulate): dy (M, N), dx (M, K).
func LinearDX(p *Pool, dx, dy []float32, m int, w Matrix, accumulate bool) {
	if !accumulate {
		LinearBackwardInput(dx, dy, m, w)
		return
	}
	tmp := make([]float32, m*w.Cols)
	LinearBackwardInput(tmp, dy, m, w)
	for i, v := range tmp {
		dx[i] += v
	}
}

// LinearDW computes dw = alpha·dyᵀ·x (or adds it): dy (M, N), x (M, K), dw (N, K).
func LinearDW(p *Pool, dw, dy, x []float32, m, n, k int, alpha float32, accumulate bool) {
	if !accumulate {
		MatMulTN(dw, dy, x, m, n, k, alpha)
		return
	}
	tmp := make([]float32, n*k)
	MatMulTN(tmp, dy, x, m, n, k, alpha)
	for i, v := range tmp {
		dw[i] += v
	}
}

// Name is the kernel variant in use.
func Name() string { return "gonum" }
