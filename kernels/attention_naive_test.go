package kernels

import (
	"math"
	"runtime"
	"sync"
)

// The naive attention the flash kernels are held to: every probability row
// materialised, one query at a time. Only tests use it.

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
						Axpy(p[j], v[(rows+j)*kw+kh*d:(rows+j)*kw+kh*d+d], oi)
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
						Axpy(ds, k[kv:kv+d], dqi)
						Axpy(ds, qi, dk[kv:kv+d])
						Axpy(p[j], doi, dv[kv:kv+d])
					}
				}
			}
		}
	})
}

func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

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
					Axpy(p[j]/sum, v[j*kw+kh*d:j*kw+kh*d+d], oi)
				}
			}
		}
	})
}

// parallelFor splits [0, n) into contiguous chunks of at least grain items and
// runs body on them across GOMAXPROCS goroutines.
func parallelFor(n, grain int, body func(lo, hi int)) {
	if n <= 0 {
		return
	}
	workers := runtime.GOMAXPROCS(0)
	if grain < 1 {
		grain = 1
	}
	if maxW := (n + grain - 1) / grain; workers > maxW {
		workers = maxW
	}
	if workers <= 1 {
		body(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			body(lo, hi)
		}()
	}
	wg.Wait()
}
