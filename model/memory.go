package model

import (
	"gorgonia.org/tensor"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/kernels"
)

// Memory is what a graph allocates when it runs, in bytes, by part. It is
// computed by the code that allocates (layoutActs and layoutWorkspace with a
// counting allocator, the graph's own nodes), so it cannot drift from it.
type Memory struct {
	// Activations are what the layers keep for the backward: every layer's,
	// or one shared set with activation checkpointing (and without a backward).
	Activations int64 `json:"activations"`
	// Workspace is the layers' shared temporaries (and, with activation
	// checkpointing, the recomputed forward's output).
	Workspace int64 `json:"workspace"`
	// Values are the nodes' outputs: each layer's output, the gradients that
	// flow between layers and to the adapters, and the token inputs.
	Values int64 `json:"values"`
	// Loss is the head's chunk of logits, its gradient buffers and the final
	// norm's statistics: the (N, Vocab) logits never exist whole.
	Loss int64 `json:"loss"`
	// Tables are RoPE's cos and sin for Seq positions.
	Tables int64 `json:"tables"`
}

// Total is the sum of the parts.
func (m Memory) Total() int64 {
	return m.Activations + m.Workspace + m.Values + m.Loss + m.Tables
}

// Memory is what the graph allocates at its first run (and reuses after).
func (gr *Graph) Memory() Memory {
	c := gr.m.Config
	n := gr.Batch * gr.Seq
	st := gr.st
	var mem Memory

	var acts counter
	switch {
	case gr.backward && !gr.opt.Recompute:
		for _, ad := range gr.adapted {
			layoutActs(c, n, st.maxR, ad, acts.alloc)
		}
	default: // one set, shared (sharedActs): adapters of any layer
		var union [numProj]adapterKind
		for _, ad := range gr.adapted {
			for i, kind := range ad {
				union[i] = max(union[i], kind)
			}
		}
		layoutActs(c, n, st.maxR, union, acts.alloc)
	}
	mem.Activations = acts.bytes

	var ws counter
	layoutWorkspace(c, n, st.maxR, gr.backward, st.dora, ws.alloc)
	if gr.backward && gr.opt.Recompute {
		ws.alloc(n * c.Hidden) // sharedActs.y
	}
	mem.Workspace = ws.bytes

	for _, node := range gr.G.AllNodes() {
		switch node.Op().(type) {
		case *kernelOp: // Do allocates the output of the op's shape once
			mem.Values += 4 * int64(max(node.Shape().TotalSize(), 1))
		case nil:
			if node.Dtype() == tensor.Int32 {
				mem.Values += 4 * int64(node.Shape().TotalSize()) // token inputs; A and B are the adapter's
			}
		default: // Gorgonia's own, from Grad: the loss's unit gradient
			mem.Values += 4 * int64(max(node.Shape().TotalSize(), 1))
		}
	}

	mem.Loss = headLossBytes(n, c.Hidden, c.Vocab, gr.backward) + 4*int64(n) // + finalNorm's rstd
	mem.Tables = 2 * 4 * int64(gr.Seq) * int64(c.HeadDim/2)
	return mem
}

// headLossBytes is what kernels.HeadLoss and headLoss hold for n rows of k
// against a vocabulary of v: a chunk of kernels.ChunkRows(v) rows of x and
// logits (and of dx with a backward), the counted rows' indices and per-row
// losses, and headLoss's (n, k) gradient. HeadLoss sizes them at its first
// call with n counted rows at most; kernels owns them, so this is the one
// place outside it that follows their sizes.
func headLossBytes(n, k, v int, backward bool) int64 {
	c := int64(min(kernels.ChunkRows(v), n))
	b := 4*c*int64(k) + 4*c*int64(v) + 8*int64(n) + 8*c
	if backward {
		b += 4*c*int64(k) + 4*int64(n)*int64(k)
	}
	return b
}

// Shaped is a model of config c whose matrices have shapes and a dtype but
// no data: enough to Build a graph and ask for its Memory, not to run it.
func Shaped(c Config, dt dtype.DType) *Model {
	mat := func(rows, cols int) kernels.Matrix { return kernels.Matrix{DType: dt, Rows: rows, Cols: cols} }
	m := &Model{Config: c, Embed: mat(c.Vocab, c.Hidden), Norm: make([]float32, c.Hidden)}
	m.LMHead = m.Embed
	if !c.TieEmbeddings {
		m.LMHead = mat(c.Vocab, c.Hidden)
	}
	return m
}
