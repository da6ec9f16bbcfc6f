package kernels

import "math"

// RMSNormForward computes y = x / sqrt(mean(x²) + eps) * w over each group of
// len(w) consecutive values (a row, or one head of a row for q/k norms), in
// float32 as Hugging Face's LlamaRMSNorm does.
// x and y are (R, len(w)) for some R.
func RMSNormForward(y, x, w []float32, eps float32) {
	d := len(w)
	rows := len(x) / d
	parallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
			inv := rmsInv(xr, eps)
			for i, v := range xr {
				yr[i] = w[i] * (v * inv)
			}
		}
	})
}

// RMSNormBackward computes dx for RMSNormForward given dy (same shapes as x).
// With r = 1/sqrt(mean(x²)+eps): dx = r·(w∘dy) − r³/D · x · Σ(w∘dy∘x).
func RMSNormBackward(dx, dy, x, w []float32, eps float32) {
	d := len(w)
	rows := len(x) / d
	parallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dyr, dxr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			inv := rmsInv(xr, eps)
			var s float64
			for i, v := range xr {
				s += float64(w[i] * dyr[i] * v)
			}
			c := float32(s) * inv * inv * inv / float32(d)
			for i, v := range xr {
				dxr[i] = inv*w[i]*dyr[i] - c*v
			}
		}
	})
}

func rmsInv(x []float32, eps float32) float32 {
	var ss float32
	for _, v := range x {
		ss += v * v
	}
	return float32(1 / math.Sqrt(float64(ss/float32(len(x))+eps)))
}
