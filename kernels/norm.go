package kernels

import "math"

// RMSNorm computes y = x / sqrt(mean(x²) + eps) ∘ w over each group of len(w)
// consecutive values (a row, or one head of a row for q/k norms), in float32 as
// Hugging Face's LlamaRMSNorm does, and keeps each group's 1/sqrt(...) in rstd
// (nil to skip) for the backward pass. x and y are (G, len(w)); rstd is (G).
// y may be x.
func RMSNorm(p *Pool, y, rstd, x, w []float32, eps float32) {
	d := len(w)
	p.For(len(x)/d, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
			inv := rmsInv(xr, eps)
			if rstd != nil {
				rstd[r] = inv
			}
			for i, v := range xr {
				yr[i] = w[i] * (v * inv)
			}
		}
	})
}

// RMSNormDX computes the gradient of RMSNorm with respect to x from dy, x and
// the kept rstd, writing it to dx or, with accumulate, adding it.
// With r = rstd: dx = r·(w∘dy) − r³/D · x · Σ(w∘dy∘x).
func RMSNormDX(p *Pool, dx, dy, x, w, rstd []float32, accumulate bool) {
	d := len(w)
	p.For(len(x)/d, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dyr, dxr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			inv := rstd[r]
			var s float64
			for i, v := range xr {
				s += float64(w[i] * dyr[i] * v)
			}
			c := float32(s) * inv * inv * inv / float32(d)
			if accumulate {
				for i, v := range xr {
					dxr[i] += inv*w[i]*dyr[i] - c*v
				}
				continue
			}
			for i, v := range xr {
				dxr[i] = inv*w[i]*dyr[i] - c*v
			}
		}
	})
}

// RMSNormApply recomputes RMSNorm's output from x and the kept rstd, as the
// backward pass does instead of keeping it.
func RMSNormApply(p *Pool, y, x, w, rstd []float32) {
	d := len(w)
	p.For(len(x)/d, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr, inv := x[r*d:(r+1)*d], y[r*d:(r+1)*d], rstd[r]
			for i, v := range xr {
				yr[i] = w[i] * (v * inv)
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
