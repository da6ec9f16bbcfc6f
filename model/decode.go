package model

import (
	"fmt"

	"github.com/tune-dev/tune/kernels"
)

// LinearDelta adds an adapter's contribution to a projection's output during
// decoding: y (rows, out) += f(x (rows, in)). lora.Adapter implements it.
type LinearDelta interface {
	AddDelta(layer int, module string, x []float32, rows int, y []float32)
}

// Decoder runs the model token by token with a key/value cache, for
// generation. It calls the kernels directly: no graph, no gradients.
type Decoder struct {
	m       *Model
	delta   LinearDelta
	maxLen  int
	pos     int
	k, v    [][]float32 // per layer: (maxLen, KVHeads·HeadDim)
	invFreq []float32
}

// NewDecoder makes a decoder for sequences of up to maxLen tokens. delta may be nil.
func (m *Model) NewDecoder(maxLen int, delta LinearDelta) *Decoder {
	c := m.Config
	kv := c.KVHeads * c.HeadDim
	d := &Decoder{m: m, delta: delta, maxLen: maxLen, invFreq: kernels.InvFreq(c.HeadDim, c.RopeTheta, c.RopeScaling)}
	for range c.Layers {
		d.k = append(d.k, make([]float32, maxLen*kv))
		d.v = append(d.v, make([]float32, maxLen*kv))
	}
	return d
}

// Len is how many tokens are in the cache.
func (d *Decoder) Len() int { return d.pos }

// Forward appends ids to the sequence and returns the logits (len(ids), Vocab)
// of the new positions.
func (d *Decoder) Forward(ids []int32) ([]float32, error) {
	c := d.m.Config
	n := len(ids)
	if d.pos+n > d.maxLen {
		return nil, fmt.Errorf("model: %d tokens exceed the decoder's length of %d", d.pos+n, d.maxLen)
	}
	for _, id := range ids {
		if id < 0 || int(id) >= c.Vocab {
			return nil, fmt.Errorf("model: token id %d is outside the vocabulary of %d", id, c.Vocab)
		}
	}
	qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	eps := float32(c.RMSNormEps)
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(d.pos + i)
	}
	x := make([]float32, n*c.Hidden)
	kernels.Embedding(x, ids, d.m.Embed)
	h := make([]float32, n*c.Hidden)
	q, qr := make([]float32, n*qDim), make([]float32, n*qDim)
	att := make([]float32, n*qDim)
	kNew, vNew := make([]float32, n*kvDim), make([]float32, n*kvDim)
	gate, up := make([]float32, n*c.Intermediate), make([]float32, n*c.Intermediate)
	o := make([]float32, n*c.Hidden)
	shape := kernels.AttentionShape{Batch: 1, Seq: n, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Window: c.SlidingWindow}
	proj := func(layer int, module string, y, in []float32, w kernels.Matrix, bias []float32) {
		kernels.LinearForward(y, in, n, w, bias)
		if d.delta != nil {
			d.delta.AddDelta(layer, module, in, n, y)
		}
	}
	for l, ly := range d.m.Layers {
		kernels.RMSNormForward(h, x, ly.AttnNorm, eps)
		proj(l, "q_proj", q, h, ly.Q, ly.QBias)
		proj(l, "k_proj", kNew, h, ly.K, ly.KBias)
		proj(l, "v_proj", vNew, h, ly.V, ly.VBias)
		if c.QKNorm {
			kernels.RMSNormForward(q, q, ly.QNorm, eps)
			kernels.RMSNormForward(kNew, kNew, ly.KNorm, eps)
		}
		kernels.RoPEForward(qr, q, pos, d.invFreq)
		kCache, vCache := d.k[l], d.v[l]
		kernels.RoPEForward(kCache[d.pos*kvDim:(d.pos+n)*kvDim], kNew, pos, d.invFreq)
		copy(vCache[d.pos*kvDim:], vNew)
		kernels.CachedAttention(att, qr, kCache[:(d.pos+n)*kvDim], vCache[:(d.pos+n)*kvDim], d.pos, shape)
		proj(l, "o_proj", o, att, ly.O, ly.OBias)
		addTo(x, o)
		kernels.RMSNormForward(h, x, ly.MLPNorm, eps)
		proj(l, "gate_proj", gate, h, ly.Gate, nil)
		proj(l, "up_proj", up, h, ly.Up, nil)
		kernels.SwiGLUForward(gate, gate, up)
		proj(l, "down_proj", o, gate, ly.Down, nil)
		addTo(x, o)
	}
	kernels.RMSNormForward(h, x, d.m.Norm, eps)
	logits := make([]float32, n*c.Vocab)
	kernels.LinearForward(logits, h, n, d.m.LMHead, nil)
	d.pos += n
	return logits, nil
}

func addTo(x, y []float32) {
	for i, v := range y {
		x[i] += v
	}
}
