package kernels

import "math"

// RoPEForward rotates each head of x in place-free fashion into y, in Hugging
// Face's rotate-half layout: for i < half, (x[i], x[i+half]) turns by angle
// pos·invFreq[i]. x and y are (N, heads·2·len(invFreq)); pos is (N).
func RoPEForward(y, x []float32, pos []int32, invFreq []float32) {
	rope(y, x, pos, invFreq, 1)
}

// RoPEBackward is the gradient of RoPEForward: the inverse rotation of dy.
func RoPEBackward(dx, dy []float32, pos []int32, invFreq []float32) {
	rope(dx, dy, pos, invFreq, -1)
}

func rope(y, x []float32, pos []int32, invFreq []float32, sign float32) {
	half := len(invFreq)
	n := len(pos)
	width := len(x) / n
	parallelFor(n, 16, func(lo, hi int) {
		cos := make([]float32, half)
		sin := make([]float32, half)
		for t := lo; t < hi; t++ {
			p := float32(pos[t])
			for i, f := range invFreq {
				// float32 angle like HF (inv_freq @ position_ids in float32), then cos/sin.
				a := float64(p * f)
				cos[i] = float32(math.Cos(a))
				sin[i] = sign * float32(math.Sin(a))
			}
			row, out := x[t*width:(t+1)*width], y[t*width:(t+1)*width]
			for h := 0; h+2*half <= width; h += 2 * half {
				a, b := row[h:h+half], row[h+half:h+2*half]
				oa, ob := out[h:h+half], out[h+half:h+2*half]
				for i := range half {
					oa[i] = a[i]*cos[i] - b[i]*sin[i]
					ob[i] = b[i]*cos[i] + a[i]*sin[i]
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
