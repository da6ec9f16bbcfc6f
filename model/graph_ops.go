package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/tune-dev/tune/kernels"
)

// The Gorgonia ops of the training graph, each forward next to its backward.

// embed gathers rows of the frozen table for ids (N) -> (N, table.Cols).
// Nothing upstream of an embedding learns, so it has no gradient.
func embed(ids *G.Node, table kernels.Matrix, pool *kernels.Pool) (*G.Node, error) {
	return apply(&kernelOp{
		name: "embed",
		in:   []port{i32port(1)},
		out:  2,
		shape: func(in []tensor.Shape) (tensor.Shape, error) {
			return tensor.Shape{in[0][0], table.Cols}, nil
		},
		do: func(out []float32, in []G.Value) error {
			ids := i32s(in[0])
			for i, id := range ids {
				if id < 0 || int(id) >= table.Rows {
					return fmt.Errorf("token id %d at position %d is outside the vocabulary of %d", id, i, table.Rows)
				}
			}
			embedRows(pool, out, ids, table)
			return nil
		},
		diff: []bool{false},
		grad: func(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) { return G.Nodes{nil}, nil },
	}, ids)
}

// finalNorm is the model's last RMSNorm, (N, D) -> (N, D).
func finalNorm(x *G.Node, w []float32, eps float32, pool *kernels.Pool) (*G.Node, error) {
	var rstd []float32
	return apply(&kernelOp{
		name:  "model.norm",
		in:    []port{f32port(2)},
		out:   2,
		shape: sameShape(0),
		do: func(out []float32, in []G.Value) error {
			x := f32s(in[0])
			rstd = growF32(rstd, len(x)/len(w))
			kernels.RMSNorm(pool, out, rstd, x, w, eps)
			return nil
		},
		diff: []bool{true},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			dx, err := apply(&kernelOp{
				name:  "model.norm_dx",
				in:    []port{f32port(2), f32port(2)},
				out:   2,
				shape: sameShape(0),
				do: func(out []float32, in []G.Value) error {
					kernels.RMSNormDX(pool, out, f32s(in[1]), f32s(in[0]), w, rstd, false)
					return nil
				},
			}, in[0], dout)
			return G.Nodes{dx}, err
		},
	}, x)
}

// headLoss is the mean next-token cross-entropy of the head over hidden
// (N, D) against targets (N), rows with IgnoreIndex left out: a scalar, NaN
// when no row counts, as in PyTorch. The (N, Vocab) logits never exist whole;
// once a gradient is asked for, the forward also computes the gradient for
// an upstream gradient of 1 (the head's products are done once, not again),
// and the backward scales it.
func headLoss(hidden, targets *G.Node, head kernels.Matrix, pool *kernels.Pool) (*G.Node, error) {
	var (
		h        kernels.HeadLoss
		dx       []float32
		backward bool
	)
	return apply(&kernelOp{
		name:  "head_loss",
		in:    []port{f32port(2), i32port(1)},
		out:   0,
		shape: func([]tensor.Shape) (tensor.Shape, error) { return tensor.ScalarShape(), nil },
		do: func(out []float32, in []G.Value) error {
			x, t := f32s(in[0]), i32s(in[1])
			for i, id := range t {
				if id != kernels.IgnoreIndex && (id < 0 || int(id) >= head.Rows) {
					return fmt.Errorf("target %d at position %d is outside the vocabulary of %d", id, i, head.Rows)
				}
			}
			counted := 0
			for _, id := range t {
				if id != kernels.IgnoreIndex {
					counted++
				}
			}
			var g []float32
			if backward {
				dx = growF32(dx, len(x))
				g = dx
			}
			sum, _ := h.Run(pool, g, x, len(t), head, t, 1/float32(max(counted, 1)))
			out[0] = float32(sum / float64(counted))
			return nil
		},
		diff: []bool{true, false},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			backward = true
			dh, err := apply(&kernelOp{
				name:  "head_loss_dx",
				in:    []port{f32port(2), f32port(0)},
				out:   2,
				shape: sameShape(0),
				do: func(out []float32, in []G.Value) error {
					g := f32s(in[1])[0]
					for i, v := range dx {
						out[i] = g * v
					}
					return nil
				},
			}, in[0], dout)
			return G.Nodes{dh, nil}, err
		},
	}, hidden, targets)
}

// sharedActs is the one set of activations the layers share when none keeps
// its own: in a graph without gradients, and with activation checkpointing.
type sharedActs struct {
	st      *stack
	a       *acts
	adapted [numProj]adapterKind
	y       []float32 // the recomputed forward's output, unused
}

func (sa *sharedActs) get() *acts {
	if sa.a == nil {
		sa.a = sa.st.newActs(sa.adapted)
	}
	return sa.a
}

// layer adds decoder layer l: x (N, D) -> (N, D). Its inputs are x, the token
// positions and segments, the dropout seed and each adapter's A and B (and
// DoRA's M); its gradient op yields dx and every dA, dB (dM) in one pass.
func (gr *Graph) layer(l int, x *G.Node, lns [numProj]*LoRANodes, shared *sharedActs, recompute bool) (*G.Node, error) {
	st := gr.st
	args := G.Nodes{x, gr.pos, gr.seg, gr.seed}
	ports := []port{f32port(2), i32port(1), i32port(1), i32port(1)}
	var adapted [numProj]adapterKind
	for i, ln := range lns {
		if ln == nil {
			continue
		}
		adapted[i] = loraAdapter
		args = append(args, ln.A, ln.B)
		ports = append(ports, f32port(2), f32port(2))
		if ln.M != nil {
			adapted[i] = doraAdapter
			args = append(args, ln.M)
			ports = append(ports, f32port(1))
		}
		shared.adapted[i] = max(shared.adapted[i], adapted[i])
	}
	// loras reads the adapters' current values from the op's inputs.
	loras := func(in []G.Value) *LoRAs {
		var lo LoRAs
		j := 4
		for i, ln := range lns {
			if ln == nil {
				continue
			}
			lo[i] = &LoRA{A: f32s(in[j]), B: f32s(in[j+1]), R: ln.A.Shape()[0], Scale: ln.Scale, Dropout: ln.Dropout, Salt: ln.Salt}
			j += 2
			if ln.M != nil {
				lo[i].M = f32s(in[j])
				j++
			}
		}
		return &lo
	}
	var own *acts
	backward := false
	actsFor := func() *acts {
		if !backward || recompute {
			return shared.get()
		}
		if own == nil {
			own = st.newActs(adapted)
		}
		return own
	}
	name := fmt.Sprintf("layer(%d)", l)
	return apply(&kernelOp{
		name:  name,
		in:    ports,
		out:   2,
		shape: sameShape(0),
		do: func(out []float32, in []G.Value) error {
			st.ensureWorkspace(backward)
			st.forward(l, out, f32s(in[0]), actsFor(), loras(in), i32s(in[1]), i32s(in[2]), i32s(in[3])[0], nil)
			return nil
		},
		diff: append([]bool{true, false, false, false}, trues(len(args)-4)...),
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			backward = true
			gr.backward = true
			bargs := append(G.Nodes{in[0], in[1], in[2], in[3], dout}, in[4:]...)
			bports := append([]port{f32port(2), i32port(1), i32port(1), i32port(1), f32port(2)}, ports[4:]...)
			bwd := &kernelOp{
				name: name + "_grad",
				in:   bports,
				do: func(flat []float32, bin []G.Value) error {
					x, pos, seg, seed, dy := f32s(bin[0]), i32s(bin[1]), i32s(bin[2]), i32s(bin[3])[0], f32s(bin[4])
					lin := append([]G.Value{bin[0], bin[1], bin[2], bin[3]}, bin[5:]...)
					lo := loras(lin)
					a := actsFor()
					if recompute {
						shared.y = growF32(shared.y, len(x))
						st.forward(l, shared.y, x, a, lo, pos, seg, seed, nil)
					}
					var g loraGrads
					off := len(x)
					for i, ad := range lo {
						if ad == nil {
							continue
						}
						na, nb := len(ad.A), len(ad.B)
						g[i].A, g[i].B = flat[off:off+na], flat[off+na:off+na+nb]
						off += na + nb
						if ad.M != nil {
							g[i].M = flat[off : off+len(ad.M)]
							off += len(ad.M)
						}
					}
					st.backward(l, flat[:len(x)], dy, x, a, lo, &g, pos, seg, seed)
					return nil
				},
			}
			parts := append(G.Nodes{in[0], nil, nil, nil}, in[4:]...)
			return multiGrad(bwd, bargs, parts)
		},
	}, args...)
}

func trues(n int) []bool {
	b := make([]bool, n)
	for i := range b {
		b[i] = true
	}
	return b
}

// growF32 returns buf with length n, reallocating only when it is too short.
func growF32(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
