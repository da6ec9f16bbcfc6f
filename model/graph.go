package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/tune-dev/tune/kernels"
)

// Adapter gives the training graph the adapters of a layer's projections as
// learnable nodes (lora.Attached implements it). module is a Hugging Face
// module name such as "q_proj".
type Adapter interface {
	LoRANodes(g *G.ExprGraph, layer int, module string) *LoRANodes
}

// LoRANodes are one projection's adapter in a graph: y += Scale·drop(x)·Aᵀ·Bᵀ
// with A (R, in) and B (out, R) learnable nodes; with M, a learnable (out)
// vector, DoRA (see LoRA).
type LoRANodes struct {
	A, B    *G.Node
	M       *G.Node // nil for LoRA
	Scale   float32
	Dropout float64
	Salt    uint64
}

// Options choose how a graph runs.
type Options struct {
	// Pool runs the kernels; nil runs them on the calling goroutine.
	Pool *kernels.Pool
	// Recompute is activation checkpointing: each layer keeps only its input
	// and runs its forward again in the backward pass.
	Recompute bool
}

// Graph is the model unrolled over a fixed [Batch, Seq] of tokens at layer
// grain: embedding, one op per decoder layer, final norm, and the head fused
// with the loss. Feed sets its inputs; a Gorgonia VM over G computes Loss, and
// with gorgonia.Grad the gradients of the adapters' nodes.
type Graph struct {
	G          *G.ExprGraph
	Batch, Seq int
	Loss       *G.Node

	m                            *Model
	st                           *stack
	opt                          Options
	adapted                      [][numProj]adapterKind // by layer
	backward                     bool                   // a gradient of Loss was built
	hidden                       *G.Node                // the final norm's output (N, Hidden)
	ids, pos, seg, targets, seed *G.Node
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
func (m *Model) Build(batch, seq int, adapter Adapter, opt Options) (*Graph, error) {
	if batch <= 0 || seq <= 0 {
		return nil, fmt.Errorf("model: batch %d and sequence length %d must be positive", batch, seq)
	}
	c := m.Config
	g := G.NewGraph()
	n := batch * seq
	gr := &Graph{G: g, Batch: batch, Seq: seq, m: m, opt: opt}
	token := func(name string, size int) *G.Node {
		return G.NewVector(g, tensor.Int32, G.WithShape(size), G.WithName(name),
			G.WithValue(tensor.New(tensor.WithShape(size), tensor.WithBacking(make([]int32, size)))))
	}
	gr.ids, gr.pos, gr.seg, gr.targets = token("input_ids", n), token("position_ids", n), token("segment_ids", n), token("targets", n)
	gr.seed = token("dropout_seed", 1)

	layers := make([][numProj]*LoRANodes, c.Layers)
	gr.adapted = make([][numProj]adapterKind, c.Layers)
	maxR, dora := 0, false
	for l := range layers {
		for i, name := range Projections() {
			if adapter == nil {
				break
			}
			if ln := adapter.LoRANodes(g, l, name); ln != nil {
				layers[l][i] = ln
				maxR = max(maxR, ln.A.Shape()[0])
				gr.adapted[l][i] = loraAdapter
				if ln.M != nil {
					gr.adapted[l][i], dora = doraAdapter, true
				}
			}
		}
	}
	gr.st = &stack{m: m, pool: opt.Pool, rot: m.rotary(seq), n: n, seq: seq, maxR: maxR, dora: dora}
	shared := &sharedActs{st: gr.st}

	b := builder{}
	x := b.do(embed(gr.ids, m.Embed, opt.Pool))
	for l := range layers {
		x = b.do(gr.layer(l, x, layers[l], shared, opt.Recompute))
	}
	gr.hidden = b.do(finalNorm(x, m.Norm, float32(c.RMSNormEps), opt.Pool))
	gr.Loss = b.do(headLoss(gr.hidden, gr.targets, m.LMHead, opt.Pool))
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
	vocab := gr.m.Config.Vocab
	for i, id := range bt.IDs {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("model: token id %d at row %d, position %d is outside the vocabulary of %d", id, i/gr.Seq, i%gr.Seq, vocab)
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
	for i, p := range pos {
		if p < 0 || int(p) >= gr.Seq {
			return fmt.Errorf("model: position %d at row %d, index %d is outside 0..%d", p, i/gr.Seq, i%gr.Seq, gr.Seq-1)
		}
	}
	labels := bt.Labels
	if labels == nil {
		labels = bt.IDs
	}
	targets := ShiftTargets(labels, seg, gr.Seq)
	for i, t := range targets {
		if t != kernels.IgnoreIndex && (t < 0 || int(t) >= vocab) {
			return fmt.Errorf("model: label %d at row %d, position %d is outside the vocabulary of %d", t, (i+1)/gr.Seq, (i+1)%gr.Seq, vocab)
		}
	}
	for _, in := range []struct {
		node *G.Node
		v    []int32
	}{{gr.ids, bt.IDs}, {gr.pos, pos}, {gr.seg, seg}, {gr.targets, targets}} {
		copy(in.node.Value().Data().([]int32), in.v)
	}
	return nil
}

// SetSeed sets the seed of the dropout masks for the next run.
func (gr *Graph) SetSeed(s int32) { gr.seed.Value().Data().([]int32)[0] = s }

// Logits computes the head over the last run's final hidden states:
// (Batch·Seq, Vocab). Training never needs them whole; tests and tools do.
func (gr *Graph) Logits() []float32 {
	n := gr.Batch * gr.Seq
	out := make([]float32, n*gr.m.Config.Vocab)
	kernels.Linear(gr.st.pool, out, f32s(gr.hidden.Value()), n, gr.m.LMHead, nil)
	return out
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
