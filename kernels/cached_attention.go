package kernels

// CachedAttention is causal grouped-query attention for incremental decoding:
// s.Seq new queries at positions start..start+Seq−1 attend to every cached key
// up to their own position (k and v hold start+Seq rows), within s.Window when
// set. q and out are (Seq, Heads·HeadDim); k and v are (start+Seq, KVHeads·HeadDim).
// s.Batch is ignored (one sequence).
func CachedAttention(out, q, k, v []float32, start int, s AttentionShape) {
	qw, kw, d := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim, s.HeadDim
	scale := s.scale()
	parallelFor(s.Heads, 1, func(lo, hi int) {
		p := make([]float32, start+s.Seq)
		for h := lo; h < hi; h++ {
			kh := h / s.group()
			for i := range s.Seq {
				pos := start + i
				first := 0
				if s.Window > 0 {
					first = max(0, pos-s.Window+1)
				}
				qi := q[i*qw+h*d : i*qw+(h+1)*d]
				maxv := float32(-3.4e38)
				for j := first; j <= pos; j++ {
					p[j] = dot(qi, k[j*kw+kh*d:j*kw+kh*d+d]) * scale
					maxv = max(maxv, p[j])
				}
				var sum float32
				for j := first; j <= pos; j++ {
					p[j] = expf(p[j] - maxv)
					sum += p[j]
				}
				oi := out[i*qw+h*d : i*qw+(h+1)*d]
				clear(oi)
				for j := first; j <= pos; j++ {
					axpy(p[j]/sum, v[j*kw+kh*d:j*kw+kh*d+d], oi)
				}
			}
		}
	})
}
