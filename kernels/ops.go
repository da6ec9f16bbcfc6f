package kernels

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file builds the graph nodes of each kernel, forward next to backward.
// Token-level inputs (ids, positions, segments, targets) are int32 vectors of
// B·T values; activations are float32 matrices of B·T rows.

// Embed gathers rows of a frozen table for ids (N) -> (N, table.Cols).
// Nothing upstream of an embedding learns, so it has no gradient.
func Embed(ids *G.Node, table Matrix, name string) (*G.Node, error) {
	return apply(&kernelOp{
		name: "embed(" + name + ")",
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
			Embedding(out, ids, table)
			return nil
		},
		diff: []bool{false},
		grad: func(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) { return G.Nodes{nil}, nil },
	}, ids)
}

// LinearNode is x·Wᵀ + bias with W (and bias) frozen: x (M, K) -> (M, N).
func LinearNode(x *G.Node, w Matrix, bias []float32, name string) (*G.Node, error) {
	if x.Shape()[1] != w.Cols {
		return nil, fmt.Errorf("%s: input has %d columns, weight (%d, %d) needs %d", name, x.Shape()[1], w.Rows, w.Cols, w.Cols)
	}
	return apply(&kernelOp{
		name: "linear(" + name + ")",
		in:   []port{f32port(2)},
		out:  2,
		shape: func(in []tensor.Shape) (tensor.Shape, error) {
			return tensor.Shape{in[0][0], w.Rows}, nil
		},
		do: func(out []float32, in []G.Value) error {
			LinearForward(out, f32s(in[0]), in[0].Shape()[0], w, bias)
			return nil
		},
		diff: []bool{true},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			dx, err := apply(&kernelOp{
				name:  "linear_dx(" + name + ")",
				in:    []port{f32port(2), f32port(2)},
				out:   2,
				shape: sameShape(0),
				do: func(out []float32, in []G.Value) error {
					LinearBackwardInput(out, f32s(in[1]), in[0].Shape()[0], w)
					return nil
				},
			}, in[0], dout)
			return G.Nodes{dx}, err
		},
	}, x)
}

// RMSNorm normalises each group of len(w) values of x; x keeps its shape.
func RMSNorm(x *G.Node, w []float32, eps float32, name string) (*G.Node, error) {
	if x.Shape().TotalSize()%len(w) != 0 {
		return nil, fmt.Errorf("%s: %v values do not split into groups of %d", name, x.Shape(), len(w))
	}
	return apply(&kernelOp{
		name:  "rmsnorm(" + name + ")",
		in:    []port{f32port(2)},
		out:   2,
		shape: sameShape(0),
		do: func(out []float32, in []G.Value) error {
			RMSNormForward(out, f32s(in[0]), w, eps)
			return nil
		},
		diff: []bool{true},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			dx, err := apply(&kernelOp{
				name:  "rmsnorm_dx(" + name + ")",
				in:    []port{f32port(2), f32port(2)},
				out:   2,
				shape: sameShape(0),
				do: func(out []float32, in []G.Value) error {
					RMSNormBackward(out, f32s(in[1]), f32s(in[0]), w, eps)
					return nil
				},
			}, in[0], dout)
			return G.Nodes{dx}, err
		},
	}, x)
}

// RoPE rotates every head of x (N, heads·headDim) by its token's position (N).
func RoPE(x, pos *G.Node, invFreq []float32, name string) (*G.Node, error) {
	return apply(&kernelOp{
		name:  "rope(" + name + ")",
		in:    []port{f32port(2), i32port(1)},
		out:   2,
		shape: sameShape(0),
		do: func(out []float32, in []G.Value) error {
			RoPEForward(out, f32s(in[0]), i32s(in[1]), invFreq)
			return nil
		},
		diff: []bool{true, false},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			dx, err := apply(&kernelOp{
				name:  "rope_dx(" + name + ")",
				in:    []port{f32port(2), i32port(1)},
				out:   2,
				shape: sameShape(0),
				do: func(out []float32, in []G.Value) error {
					RoPEBackward(out, f32s(in[0]), i32s(in[1]), invFreq)
					return nil
				},
			}, dout, in[1])
			return G.Nodes{dx, nil}, err
		},
	}, x, pos)
}

// Attention is causal grouped-query attention within packed segments:
// q (B·T, H·d), k and v (B·T, KV·d), seg (B·T) -> (B·T, H·d).
func Attention(q, k, v, seg *G.Node, s AttentionShape, name string) (*G.Node, error) {
	if s.KVHeads <= 0 || s.Heads%s.KVHeads != 0 {
		return nil, fmt.Errorf("%s: %d heads do not group over %d key/value heads", name, s.Heads, s.KVHeads)
	}
	return apply(&kernelOp{
		name:  "attention(" + name + ")",
		in:    []port{f32port(2), f32port(2), f32port(2), i32port(1)},
		out:   2,
		shape: sameShape(0),
		do: func(out []float32, in []G.Value) error {
			AttentionForward(out, f32s(in[0]), f32s(in[1]), f32s(in[2]), i32s(in[3]), s)
			return nil
		},
		diff: []bool{true, true, true, false},
		grad: func(in G.Nodes, out, dout *G.Node) (G.Nodes, error) {
			nq, nk := in[0].Shape().TotalSize(), in[1].Shape().TotalSize()
			bwd := &kernelOp{
				name: "attention_grad(" + name + ")",
				in:   []port{f32port(2), f32port(2), f32port(2), i32port(1), f32port(2), f32port(2)},
				do: func(flat []float32, in []G.Value) error {
					dq, dk, dv := flat[:nq], flat[nq:nq+nk], flat[nq+nk:]
					AttentionBackward(dq, dk, dv, f32s(in[5]), f32s(in[4]), f32s(in[0]), f32s(in[1]), f32s(in[2]), i32s(in[3]), s)
					return nil
				},
			}
			return multiGrad(bwd, G.Nodes{in[0], in[1], in[2], in[3], out, dout}, []*G.Node{in[0], in[1], in[2], nil})
		},
	}, q, k, v, seg)
}

// SwiGLU is silu(gate)∘up, elementwise over two (M, I) matrices.
func SwiGLU(gate, up *G.Node, name string) (*G.Node, error) {
	return apply(&kernelOp{
		name:  "swiglu(" + name + ")",
		in:    []port{f32port(2), f32port(2)},
		out:   2,
		shape: sameShape(0),
		do: func(out []float32, in []G.Value) error {
			SwiGLUForward(out, f32s(in[0]), f32s(in[1]))
			return nil
		},
		diff: []bool{true, true},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			n := in[0].Shape().TotalSize()
			bwd := &kernelOp{
				name: "swiglu_grad(" + name + ")",
				in:   []port{f32port(2), f32port(2), f32port(2)},
				do: func(flat []float32, in []G.Value) error {
					SwiGLUBackward(flat[:n], flat[n:], f32s(in[2]), f32s(in[0]), f32s(in[1]))
					return nil
				},
			}
			return multiGrad(bwd, G.Nodes{in[0], in[1], dout}, []*G.Node{in[0], in[1]})
		},
	}, gate, up)
}

// CrossEntropy is the mean next-token loss of logits (N, V) against targets (N),
// rows with IgnoreIndex left out; the result is a scalar.
func CrossEntropy(logits, targets *G.Node, name string) (*G.Node, error) {
	vocab := logits.Shape()[1]
	return apply(&kernelOp{
		name:  "cross_entropy(" + name + ")",
		in:    []port{f32port(2), i32port(1)},
		out:   0,
		shape: func([]tensor.Shape) (tensor.Shape, error) { return tensor.ScalarShape(), nil },
		do: func(out []float32, in []G.Value) error {
			t := i32s(in[1])
			for i, id := range t {
				if id != IgnoreIndex && (id < 0 || int(id) >= vocab) {
					return fmt.Errorf("target %d at position %d is outside the vocabulary of %d", id, i, vocab)
				}
			}
			out[0], _ = CrossEntropyForward(f32s(in[0]), t, vocab)
			return nil
		},
		diff: []bool{true, false},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			dl, err := apply(&kernelOp{
				name:  "cross_entropy_grad(" + name + ")",
				in:    []port{f32port(2), i32port(1), f32port(0)},
				out:   2,
				shape: sameShape(0),
				do: func(out []float32, in []G.Value) error {
					CrossEntropyBackward(out, f32s(in[0]), i32s(in[1]), vocab, f32s(in[2])[0])
					return nil
				},
			}, in[0], in[1], dout)
			return G.Nodes{dl, nil}, err
		},
	}, logits, targets)
}
