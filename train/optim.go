package train

import "math"

// AdamW is torch.optim.AdamW: decoupled weight decay, bias-corrected moments,
// computed in the same order as PyTorch's single-tensor implementation so that
// results agree to float32 rounding.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// Step counts the updates made so far (PyTorch's state["step"]).
	Step int
	// M and V are the first and second moments, one slice per parameter.
	M, V [][]float32
}

// NewAdamW makes an optimizer for parameters of the given sizes.
func NewAdamW(sizes []int, beta1, beta2, eps, weightDecay float64) *AdamW {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay}
	for _, n := range sizes {
		o.M = append(o.M, make([]float32, n))
		o.V = append(o.V, make([]float32, n))
	}
	return o
}

// Update applies one step with learning rate lr to params given grads.
//
//	p ← p·(1 − lr·wd)
//	m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//	p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
func (o *AdamW) Update(params, grads [][]float32, lr float64) {
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	stepSize := float32(lr / bc1)
	bc2Sqrt := float32(math.Sqrt(bc2))
	decay := float32(1 - lr*o.WeightDecay)
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	eps := float32(o.Eps)
	for i, p := range params {
		g, m, v := grads[i], o.M[i], o.V[i]
		for j := range p {
			p[j] *= decay
			m[j] = m[j]*b1 + (1-b1)*g[j]
			v[j] = v[j]*b2 + (1-b2)*g[j]*g[j]
			denom := float32(math.Sqrt(float64(v[j])))/bc2Sqrt + eps
			p[j] -= stepSize * m[j] / denom
		}
	}
}

// ClipGradNorm scales grads so that their global L2 norm is at most maxNorm,
// as torch.nn.utils.clip_grad_norm_ does, and returns the norm before clipping.
// maxNorm <= 0 only measures.
func ClipGradNorm(grads [][]float32, maxNorm float64) float64 {
	var ss float64
	for _, g := range grads {
		for _, v := range g {
			ss += float64(v) * float64(v)
		}
	}
	norm := math.Sqrt(ss)
	if maxNorm > 0 {
		if coef := maxNorm / (norm + 1e-6); coef < 1 {
			c := float32(coef)
			for _, g := range grads {
				for j := range g {
					g[j] *= c
				}
			}
		}
	}
	return norm
}
