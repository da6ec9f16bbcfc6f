package model

import (
	"fmt"

	"github.com/tune-dev/tune/kernels"
)

// Factors gives the decoder each projection's adapter, or nil where there is
// none (lora.Adapter implements it).
type Factors interface {
	LoRA(layer int, module string) *LoRA
}

// Decoder runs the model token by token with a key/value cache, for
// generation: the layers' forward of the training graph, no gradients.
type Decoder struct {
	m      *Model
	pool   *kernels.Pool
	loras  []LoRAs
	maxR   int
	dora   bool
	norms  *baseNorms // DoRA: kept across the stacks of different lengths
	maxLen int
	pos    int
	k, v   [][]float32 // per layer: (maxLen, KVHeads·HeadDim)
	rot    *kernels.Rotary

	st   *stack // for the current number of new tokens
	a    *acts
	x, y []float32
}

// NewDecoder makes a decoder for sequences of up to maxLen tokens. f may be nil.
func (m *Model) NewDecoder(maxLen int, f Factors, pool *kernels.Pool) *Decoder {
	c := m.Config
	kv := c.KVHeads * c.HeadDim
	d := &Decoder{m: m, pool: pool, maxLen: maxLen, rot: m.rotary(maxLen), loras: make([]LoRAs, c.Layers)}
	for l := range c.Layers {
		d.k = append(d.k, make([]float32, maxLen*kv))
		d.v = append(d.v, make([]float32, maxLen*kv))
		for i, name := range Projections() {
			if f == nil {
				break
			}
			if lo := f.LoRA(l, name); lo != nil {
				d.loras[l][i] = lo
				d.maxR = max(d.maxR, lo.R)
				d.dora = d.dora || lo.M != nil
			}
		}
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
	if d.st == nil || d.st.n != n {
		d.st = &stack{m: d.m, pool: d.pool, rot: d.rot, n: n, seq: n, maxR: d.maxR, dora: d.dora, norms: d.norms}
		d.st.allocWorkspace(false)
		d.norms = d.st.norms
		var adapted [numProj]adapterKind
		for _, lo := range d.loras {
			for i, ad := range lo {
				adapted[i] = max(adapted[i], kindOf(ad))
			}
		}
		d.a = d.st.newActs(adapted)
		d.x, d.y = make([]float32, n*c.Hidden), make([]float32, n*c.Hidden)
	}
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(d.pos + i)
	}
	x, y := d.x, d.y
	embedRows(d.pool, x, ids, d.m.Embed)
	for l := range d.m.Layers {
		d.st.forward(l, y, x, d.a, &d.loras[l], pos, nil, 0, &kvCache{k: d.k[l], v: d.v[l], start: d.pos})
		x, y = y, x
	}
	kernels.RMSNorm(d.pool, y, nil, x, d.m.Norm, float32(c.RMSNormEps))
	logits := make([]float32, n*c.Vocab)
	kernels.Linear(d.pool, logits, y, n, d.m.LMHead, nil)
	d.pos += n
	return logits, nil
}

// embedRows gathers rows of table: out[i] = table[ids[i]], (len(ids), Cols).
func embedRows(pool *kernels.Pool, out []float32, ids []int32, table kernels.Matrix) {
	d := table.Cols
	pool.For(len(ids), 64, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			table.Row(int(ids[i]), out[i*d:(i+1)*d])
		}
	})
}
