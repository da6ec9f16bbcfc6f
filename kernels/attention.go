package kernels

import "math"

// AttentionShape describes one batch of causal grouped-query attention.
// Rows of q are (B·T) tokens of Heads·HeadDim values; k and v rows hold
// KVHeads·HeadDim values; query head h reads key/value head h/(Heads/KVHeads).
// Window > 0 limits each query to the Window most recent keys (Mistral's
// sliding window: key j is seen from query i when i−j < Window).
type AttentionShape struct {
	Batch, Seq, Heads, KVHeads, HeadDim int
	Window                              int
}

func (s AttentionShape) group() int     { return s.Heads / s.KVHeads }
func (s AttentionShape) scale() float32 { return float32(1 / math.Sqrt(float64(s.HeadDim))) }

// visible reports whether query position i may attend to key position j of the
// same row: causal, and within one packed example. Segment 0 marks padding,
// which sees only itself so that its softmax stays finite.
func visible(seg []int32, i, j, window int) bool {
	if j > i || seg[i] != seg[j] || (window > 0 && i-j >= window) {
		return false
	}
	return seg[i] != 0 || i == j
}

// AttentionForward computes out = softmax(q·kᵀ/√d + mask)·v per head.
// q and out are (B·T, Heads·HeadDim), k and v are (B·T, KVHeads·HeadDim),
// seg is (B·T) segment ids (see visible).
func AttentionForward(out, q, k, v []float32, seg []int32, s AttentionShape) {
	qw, kw, d := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim, s.HeadDim
	scale := s.scale()
	parallelFor(s.Batch*s.Heads, 1, func(lo, hi int) {
		p := make([]float32, s.Seq)
		for unit := lo; unit < hi; unit++ {
			b, h := unit/s.Heads, unit%s.Heads
			kh := h / s.group()
			rows := b * s.Seq
			sg := seg[rows : rows+s.Seq]
			for i := 0; i < s.Seq; i++ {
				qi := q[(rows+i)*qw+h*d : (rows+i)*qw+(h+1)*d]
				softmaxRow(p, qi, k, sg, i, rows, kw, kh*d, d, scale, s.Window)
				oi := out[(rows+i)*qw+h*d : (rows+i)*qw+(h+1)*d]
				clear(oi)
				for j := 0; j <= i; j++ {
					if p[j] != 0 {
						axpy(p[j], v[(rows+j)*kw+kh*d:(rows+j)*kw+kh*d+d], oi)
					}
				}
			}
		}
	})
}

// softmaxRow fills p[:i+1] with the attention probabilities of query row i.
func softmaxRow(p, qi, k []float32, sg []int32, i, rows, kw, koff, d int, scale float32, window int) {
	maxv := float32(math.Inf(-1))
	for j := 0; j <= i; j++ {
		if !visible(sg, i, j, window) {
			p[j] = float32(math.Inf(-1))
			continue
		}
		p[j] = dot(qi, k[(rows+j)*kw+koff:(rows+j)*kw+koff+d]) * scale
		maxv = max(maxv, p[j])
	}
	var sum float32
	for j := 0; j <= i; j++ {
		e := expf(p[j] - maxv)
		p[j] = e
		sum += e
	}
	inv := 1 / sum
	for j := 0; j <= i; j++ {
		p[j] *= inv
	}
}

// AttentionBackward computes dq, dk and dv (overwritten) from dout and the
// forward's out, recomputing the probabilities instead of storing (T×T) per
// head. Work is split by (batch, kv head) so that no two goroutines write the
// same dk or dv row.
func AttentionBackward(dq, dk, dv, dout, out, q, k, v []float32, seg []int32, s AttentionShape) {
	qw, kw, d := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim, s.HeadDim
	scale := s.scale()
	clear(dk)
	clear(dv)
	parallelFor(s.Batch*s.KVHeads, 1, func(lo, hi int) {
		p := make([]float32, s.Seq)
		for unit := lo; unit < hi; unit++ {
			b, kh := unit/s.KVHeads, unit%s.KVHeads
			rows := b * s.Seq
			sg := seg[rows : rows+s.Seq]
			for h := kh * s.group(); h < (kh+1)*s.group(); h++ {
				for i := 0; i < s.Seq; i++ {
					at := (rows+i)*qw + h*d
					qi, doi, oi, dqi := q[at:at+d], dout[at:at+d], out[at:at+d], dq[at:at+d]
					softmaxRow(p, qi, k, sg, i, rows, kw, kh*d, d, scale, s.Window)
					delta := dot(doi, oi) // Σ_j p_j·(dO·v_j)
					clear(dqi)
					for j := 0; j <= i; j++ {
						if p[j] == 0 {
							continue
						}
						kv := (rows+j)*kw + kh*d
						vj := v[kv : kv+d]
						ds := p[j] * (dot(doi, vj) - delta) * scale
						axpy(ds, k[kv:kv+d], dqi)
						axpy(ds, qi, dk[kv:kv+d])
						axpy(p[j], doi, dv[kv:kv+d])
					}
				}
			}
		}
	})
}

func expf(x float32) float32 { return float32(math.Exp(float64(x))) }
