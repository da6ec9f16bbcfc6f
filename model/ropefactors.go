package model

import "math"

// RopeFreqFactors are the per-frequency divisors of Llama 3.x's RoPE
// scaling, as convert_hf_to_gguf computes them for the rope_freqs tensor
// (llama.cpp divides each base frequency by its factor). One difference:
// convert reads original_max_position_embeddings from the top level of
// config.json (defaulting to 8192, right for every released Llama 3.x); tune
// takes it from rope_scaling, where transformers reads it.
func RopeFreqFactors(cfg Config) []float32 {
	s := cfg.RopeScaling
	dim := cfg.HeadDim
	lowWavelen := s.OriginalMaxPositions / s.LowFreqFactor
	highWavelen := s.OriginalMaxPositions / s.HighFreqFactor
	out := make([]float32, dim/2)
	for i := range out {
		// torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in float32
		freq := float64(float32(1 / math.Pow(cfg.RopeTheta, float64(float32(2*i)/float32(dim)))))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < highWavelen:
			out[i] = 1
		case wavelen > lowWavelen:
			out[i] = float32(s.Factor)
		default:
			smooth := (s.OriginalMaxPositions/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			out[i] = float32(1 / ((1-smooth)/s.Factor + smooth))
		}
	}
	return out
}
