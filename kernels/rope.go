package kernels

import "math"

// Rotary holds the cosines and sines of every (position, frequency) pair a
// run can meet, computed once, in Hugging Face's rotate-half layout: for
// i < half, (x[i], x[i+half]) of each head turns by angle pos·invFreq[i].
type Rotary struct {
	half     int
	cos, sin []float32 // (positions, half)
}

// NewRotary tabulates positions 0..positions−1 for the frequencies invFreq.
func NewRotary(invFreq []float32, positions int) *Rotary {
	half := len(invFreq)
	r := &Rotary{half: half, cos: make([]float32, positions*half), sin: make([]float32, positions*half)}
	for t := range positions {
		p := float32(t)
		for i, f := range invFreq {
			// A float32 angle like HF (inv_freq @ position_ids in float32), then cos/sin.
			a := float64(p * f)
			r.cos[t*half+i] = float32(math.Cos(a))
			r.sin[t*half+i] = float32(math.Sin(a))
		}
	}
	return r
}

// Positions is how many positions the table covers.
func (r *Rotary) Positions() int { return len(r.cos) / max(r.half, 1) }

// Apply rotates every head of x (N, heads·2·half) by its row's position
// pos (N) into y; y may be x. Positions must be below Positions().
func (r *Rotary) Apply(p *Pool, y, x []float32, pos []int32) { r.rotate(p, y, x, pos, 1) }

// Inverse is the gradient of Apply: the opposite rotation.
func (r *Rotary) Inverse(p *Pool, y, x []float32, pos []int32) { r.rotate(p, y, x, pos, -1) }

func (r *Rotary) rotate(p *Pool, y, x []float32, pos []int32, sign float32) {
	half, n := r.half, len(pos)
	width := len(x) / n
	p.For(n, 16, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			at := int(pos[t]) * half
			cos, sin := r.cos[at:at+half], r.sin[at:at+half]
			row, out := x[t*width:(t+1)*width], y[t*width:(t+1)*width]
			for h := 0; h+2*half <= width; h += 2 * half {
				a, b := row[h:h+half], row[h+half:h+2*half]
				oa, ob := out[h:h+half], out[h+half:h+2*half]
				for i := range half {
					av, bv, s := a[i], b[i], sign*sin[i]
					oa[i] = av*cos[i] - bv*s
					ob[i] = bv*cos[i] + av*s
				}
			}
		}
	})
}

// RopeScaling is the `rope_scaling` of a Hugging Face config.
type RopeScaling struct {
	Type                          string // "", "default", "linear" or "llama3"
	Factor                        float64
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          float64
}

// InvFreq computes the rotary frequencies for a head of headDim values, as
// transformers' rope initialisation does for the default, linear and llama3 types.
func InvFreq(headDim int, theta float64, s RopeScaling) []float32 {
	half := headDim / 2
	out := make([]float32, half)
	for i := range half {
		// HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in float32.
		exp := float32(2*i) / float32(headDim)
		f := float32(1.0 / math.Pow(theta, float64(exp)))
		switch s.Type {
		case "linear":
			f = float32(float64(f) / s.Factor)
		case "llama3":
			f = llama3Freq(f, s)
		}
		out[i] = f
	}
	return out
}

// llama3Freq follows transformers' _compute_llama3_parameters: low frequencies
// are divided by factor, high ones kept, the band between interpolated smoothly.
func llama3Freq(f float32, s RopeScaling) float32 {
	lowWavelen := s.OriginalMaxPositions / s.LowFreqFactor
	highWavelen := s.OriginalMaxPositions / s.HighFreqFactor
	wavelen := 2 * math.Pi / float64(f)
	scaled := float64(f)
	if wavelen > lowWavelen {
		scaled = float64(f) / s.Factor
	}
	if !(wavelen < highWavelen) && !(wavelen > lowWavelen) {
		smooth := (s.OriginalMaxPositions/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
		scaled = (1-smooth)*scaled/s.Factor + smooth*scaled
	}
	return float32(scaled)
}
