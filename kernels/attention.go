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
