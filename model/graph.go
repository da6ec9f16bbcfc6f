package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/tune-dev/tune/kernels"
)

// Adapter lets another package (lora) add to a projection's output: given the
// projection's input x (N, in) and frozen output y (N, out), it returns the
// output the rest of the graph sees. module is a Hugging Face module name such
// as "q_proj".
type Adapter interface {
	Project(layer int, module string, x, y *G.Node) (*G.Node, error)
}

// Graph is the model unrolled over a fixed [Batch, Seq] of tokens. Feed sets its
// inputs; a Gorgonia VM over G then computes Logits (Batch·Seq, Vocab) and Loss.
type Graph struct {
	G          *G.ExprGraph
	Batch, Seq int
	Logits     *G.Node
	Loss       *G.Node

	vocab                  int
	ids, pos, seg, targets *G.Node
}

// Batch is one [B, T] batch of tokens, row-major.
type Batch struct {
	IDs []int32
	// Labels are the tokens to predict, -100 where nothing is scored; position t
	// is predicted from the logits at t−1, as in Hugging Face. nil means IDs.
	Labels []int32
	// Positions restart at 0 for every packed example; nil means 0..T−1 per row.
	Positions []int32
	// Segments number the packed examples of a row; attention and loss never
	// cross from one to another, and 0 marks padding. nil means all 1.
	Segments []int32
}

// Build unrolls the model over batch×seq tokens. adapter may be nil.
func (m *Model) Build(batch, seq int, adapter Adapter) (*Graph, error) {
	if batch <= 0 || seq <= 0 {
		return nil, fmt.Errorf("model: batch %d and sequence length %d must be positive", batch, seq)
	}
	c := m.Config
	g := G.NewGraph()
	n := batch * seq
	gr := &Graph{G: g, Batch: batch, Seq: seq, vocab: c.Vocab}
	token := func(name string) *G.Node {
		return G.NewVector(g, tensor.Int32, G.WithShape(n), G.WithName(name))
	}
	gr.ids, gr.pos, gr.seg, gr.targets = token("input_ids"), token("position_ids"), token("segment_ids"), token("targets")
	invFreq := kernels.InvFreq(c.HeadDim, c.RopeTheta, c.RopeScaling)
	attn := kernels.AttentionShape{Batch: batch, Seq: seq, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Window: c.SlidingWindow}
	eps := float32(c.RMSNormEps)

	b := builder{}
	x := b.do(kernels.Embed(gr.ids, m.Embed, "model.embed_tokens"))
	for i, ly := range m.Layers {
		p := LayerPrefix(i)
		proj := func(module string, in *G.Node, w kernels.Matrix, bias []float32) *G.Node {
			name := p + ProjectionPath(module)
			y := b.do(kernels.LinearNode(in, w, bias, name))
			if adapter != nil && b.err == nil {
				y = b.do(adapter.Project(i, module, in, y))
			}
			return y
		}
		h := b.do(kernels.RMSNorm(x, ly.AttnNorm, eps, p+"input_layernorm"))
		q := proj("q_proj", h, ly.Q, ly.QBias)
		k := proj("k_proj", h, ly.K, ly.KBias)
		v := proj("v_proj", h, ly.V, ly.VBias)
		if c.QKNorm {
			q = b.do(kernels.RMSNorm(q, ly.QNorm, eps, p+"self_attn.q_norm"))
			k = b.do(kernels.RMSNorm(k, ly.KNorm, eps, p+"self_attn.k_norm"))
		}
		q = b.do(kernels.RoPE(q, gr.pos, invFreq, p+"q"))
		k = b.do(kernels.RoPE(k, gr.pos, invFreq, p+"k"))
		a := b.do(kernels.Attention(q, k, v, gr.seg, attn, p+"self_attn"))
		x = b.do(G.Add(x, proj("o_proj", a, ly.O, ly.OBias)))

		h = b.do(kernels.RMSNorm(x, ly.MLPNorm, eps, p+"post_attention_layernorm"))
		act := b.do(kernels.SwiGLU(proj("gate_proj", h, ly.Gate, nil), proj("up_proj", h, ly.Up, nil), p+"mlp"))
		x = b.do(G.Add(x, proj("down_proj", act, ly.Down, nil)))
	}
	x = b.do(kernels.RMSNorm(x, m.Norm, eps, "model.norm"))
	gr.Logits = b.do(kernels.LinearNode(x, m.LMHead, nil, "lm_head"))
	gr.Loss = b.do(kernels.CrossEntropy(gr.Logits, gr.targets, "loss"))
	if b.err != nil {
		return nil, fmt.Errorf("model: build graph: %w", b.err)
	}
	return gr, nil
}

// builder keeps the first error so that Build reads like the forward pass.
type builder struct{ err error }

func (b *builder) do(n *G.Node, err error) *G.Node {
	if b.err == nil && err != nil {
		b.err = err
	}
	return n
}

// Feed checks a batch and binds it to the graph's inputs.
func (gr *Graph) Feed(bt Batch) error {
	n := gr.Batch * gr.Seq
	if len(bt.IDs) != n {
		return fmt.Errorf("model: batch has %d tokens, graph takes %d×%d", len(bt.IDs), gr.Batch, gr.Seq)
	}
	for _, s := range []struct {
		name string
		v    []int32
	}{{"labels", bt.Labels}, {"positions", bt.Positions}, {"segments", bt.Segments}} {
		if s.v != nil && len(s.v) != n {
			return fmt.Errorf("model: batch has %d %s for %d tokens", len(s.v), s.name, n)
		}
	}
	for i, id := range bt.IDs {
		if id < 0 || int(id) >= gr.vocab {
			return fmt.Errorf("model: token id %d at row %d, position %d is outside the vocabulary of %d", id, i/gr.Seq, i%gr.Seq, gr.vocab)
		}
	}
	pos, seg := bt.Positions, bt.Segments
	if pos == nil {
		pos = make([]int32, n)
		for i := range pos {
			pos[i] = int32(i % gr.Seq)
		}
	}
	if seg == nil {
		seg = make([]int32, n)
		for i := range seg {
			seg[i] = 1
		}
	}
	labels := bt.Labels
	if labels == nil {
		labels = bt.IDs
	}
	targets := ShiftTargets(labels, seg, gr.Seq)
	for i, t := range targets {
		if t != kernels.IgnoreIndex && (t < 0 || int(t) >= gr.vocab) {
			return fmt.Errorf("model: label %d at row %d, position %d is outside the vocabulary of %d", t, (i+1)/gr.Seq, (i+1)%gr.Seq, gr.vocab)
		}
	}
	for _, in := range []struct {
		node *G.Node
		v    []int32
	}{{gr.ids, bt.IDs}, {gr.pos, pos}, {gr.seg, seg}, {gr.targets, targets}} {
		if err := G.Let(in.node, tensor.New(tensor.WithShape(n), tensor.WithBacking(in.v))); err != nil {
			return fmt.Errorf("model: feed %s: %w", in.node.Name(), err)
		}
	}
	return nil
}

// ShiftTargets turns per-position labels into per-position targets: the token
// position t must predict is labels[t+1] of the same row and segment, and
// nothing (IgnoreIndex) at a row's end, at a segment boundary or in padding.
func ShiftTargets(labels, seg []int32, seq int) []int32 {
	out := make([]int32, len(labels))
	for i := range out {
		out[i] = kernels.IgnoreIndex
		if (i+1)%seq != 0 && seg[i] != 0 && seg[i+1] == seg[i] {
			out[i] = labels[i+1]
		}
	}
	return out
}

// Counted is how many targets of the fed batch count in the loss.
func (gr *Graph) Counted() int {
	n := 0
	for _, t := range gr.targets.Value().Data().([]int32) {
		if t != kernels.IgnoreIndex {
			n++
		}
	}
	return n
}
