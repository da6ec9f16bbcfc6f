package kernels

import (
	"fmt"
	"hash/fnv"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// MatMulT is alpha·a·bᵀ of two graph nodes, both differentiable:
// a (M, K), b (N, K) -> (M, N). LoRA's two small products use it
// (x·Aᵀ, then (x·Aᵀ)·Bᵀ·scale).
func MatMulT(a, b *G.Node, alpha float32, name string) (*G.Node, error) {
	if a.Shape()[1] != b.Shape()[1] {
		return nil, fmt.Errorf("%s: (%v)·(%v)ᵀ: inner sizes differ", name, a.Shape(), b.Shape())
	}
	return apply(&kernelOp{
		name: fmt.Sprintf("matmul_t(%s,%g)", name, alpha),
		in:   []port{f32port(2), f32port(2)},
		out:  2,
		shape: func(in []tensor.Shape) (tensor.Shape, error) {
			return tensor.Shape{in[0][0], in[1][0]}, nil
		},
		do: func(out []float32, in []G.Value) error {
			bs := in[1].Shape()
			LinearForward(out, f32s(in[0]), in[0].Shape()[0], MatrixF32(bs[0], bs[1], f32s(in[1])), nil)
			scaleInPlace(out, alpha)
			return nil
		},
		diff: []bool{true, true},
		grad: func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
			m, k, n := in[0].Shape()[0], in[0].Shape()[1], in[1].Shape()[0]
			bwd := &kernelOp{
				name: fmt.Sprintf("matmul_t_grad(%s,%g)", name, alpha),
				in:   []port{f32port(2), f32port(2), f32port(2)},
				do: func(flat []float32, in []G.Value) error {
					da, db := flat[:m*k], flat[m*k:]
					dy := f32s(in[2])
					LinearBackwardInput(da, dy, m, MatrixF32(n, k, f32s(in[1])))
					scaleInPlace(da, alpha)
					MatMulTN(db, dy, f32s(in[0]), m, n, k, alpha)
					return nil
				},
			}
			return multiGrad(bwd, G.Nodes{in[0], in[1], dout}, []*G.Node{in[0], in[1]})
		},
	}, a, b)
}

// Dropout zeroes each value of x with probability p and scales the rest by
// 1/(1−p). The mask is a hash of (seed, name, index), with seed a graph input
// (1) that the trainer sets per step, so a run repeats exactly and a resumed
// run draws the masks the uninterrupted one would.
func Dropout(x, seed *G.Node, p float64, name string) (*G.Node, error) {
	if p <= 0 {
		return x, nil
	}
	if p >= 1 {
		return nil, fmt.Errorf("%s: dropout %g must be below 1", name, p)
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	salt := h.Sum64()
	threshold := uint64(p * (1 << 53))
	keep := float32(1 / (1 - p))
	mask := func(out, in []float32, s int32) {
		base := splitmix(salt ^ uint64(uint32(s))<<32)
		parallelFor(len(in), 4096, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				if splitmix(base+uint64(i))>>11 < threshold {
					out[i] = 0
				} else {
					out[i] = in[i] * keep
				}
			}
		})
	}
	// The gradient applies the same mask to dout, so it is this very op
	// over dout: a distinct node, since its input differs.
	op := &kernelOp{
		name:  fmt.Sprintf("dropout(%s,%g)", name, p),
		in:    []port{f32port(2), i32port(1)},
		out:   2,
		shape: sameShape(0),
		do: func(out []float32, in []G.Value) error {
			mask(out, f32s(in[0]), i32s(in[1])[0])
			return nil
		},
		diff: []bool{true, false},
	}
	op.grad = func(in G.Nodes, _, dout *G.Node) (G.Nodes, error) {
		bwd := *op // a node of its own, with its own output buffer
		bwd.last = nil
		dx, err := apply(&bwd, dout, in[1])
		return G.Nodes{dx, nil}, err
	}
	return apply(op, x, seed)
}

// splitmix is SplitMix64's finaliser: a cheap, well-mixed hash of a counter.
func splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
