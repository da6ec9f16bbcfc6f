package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func randF32(r *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (r.Float32()*2 - 1) * scale
	}
	return v
}

func bf16Matrix(rows, cols int, v []float32) Matrix { return halfMatrix(BF16, rows, cols, v) }

// tinyBlock builds loss(x) through every op with a backward pass: RMSNorm,
// Linear (f32 and bf16 weights, bias), RoPE, GQA attention over two packed
// segments, SwiGLU and cross-entropy.
func tinyBlock(t *testing.T, g *G.ExprGraph, x *G.Node, r *rand.Rand) *G.Node {
	const n, d, heads, kv, hd, inter, vocab = 6, 8, 2, 1, 4, 6, 5
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pos := G.NewVector(g, tensor.Int32, G.WithShape(n), G.WithName("pos"), G.WithValue(tensor.New(tensor.WithBacking([]int32{0, 1, 2, 0, 1, 2}))))
	seg := G.NewVector(g, tensor.Int32, G.WithShape(n), G.WithName("seg"), G.WithValue(tensor.New(tensor.WithBacking([]int32{1, 1, 1, 2, 2, 0}))))
	tgt := G.NewVector(g, tensor.Int32, G.WithShape(n), G.WithName("tgt"), G.WithValue(tensor.New(tensor.WithBacking([]int32{3, 1, -100, 4, 0, -100}))))
	seed := G.NewVector(g, tensor.Int32, G.WithShape(1), G.WithName("seed"), G.WithValue(tensor.New(tensor.WithShape(1), tensor.WithBacking([]int32{42}))))
	h := must(RMSNorm(x, randF32(r, d, 1), 1e-5, "norm"))
	q := must(LinearNode(h, MatrixF32(heads*hd, d, randF32(r, heads*hd*d, 0.5)), randF32(r, heads*hd, 0.1), "q"))
	// A LoRA-shaped delta on q: dropout(h)·Aᵀ·Bᵀ·2.
	loraA := G.NewMatrix(g, tensor.Float32, G.WithShape(3, d), G.WithName("A"), G.WithValue(tensor.New(tensor.WithShape(3, d), tensor.WithBacking(randF32(r, 3*d, 0.5)))))
	loraB := G.NewMatrix(g, tensor.Float32, G.WithShape(heads*hd, 3), G.WithName("B"), G.WithValue(tensor.New(tensor.WithShape(heads*hd, 3), tensor.WithBacking(randF32(r, heads*hd*3, 0.5)))))
	down := must(MatMulT(must(Dropout(h, seed, 0.3, "drop")), loraA, 1, "lora_down"))
	q = must(G.Add(q, must(MatMulT(down, loraB, 2, "lora_up"))))
	k := must(LinearNode(h, bf16Matrix(kv*hd, d, randF32(r, kv*hd*d, 0.5)), nil, "k"))
	v := must(LinearNode(h, MatrixF32(kv*hd, d, randF32(r, kv*hd*d, 0.5)), nil, "v"))
	k = must(RMSNorm(k, randF32(r, hd, 1), 1e-6, "knorm"))
	inv := InvFreq(hd, 10000, RopeScaling{})
	q = must(RoPE(q, pos, inv, "q"))
	k = must(RoPE(k, pos, inv, "k"))
	a := must(Attention(q, k, v, seg, AttentionShape{Batch: 1, Seq: n, Heads: heads, KVHeads: kv, HeadDim: hd}, "attn"))
	gate := must(LinearNode(a, MatrixF32(inter, heads*hd, randF32(r, inter*heads*hd, 0.5)), nil, "gate"))
	up := must(LinearNode(a, MatrixF32(inter, heads*hd, randF32(r, inter*heads*hd, 0.5)), nil, "up"))
	m := must(SwiGLU(gate, up, "mlp"))
	logits := must(LinearNode(m, MatrixF32(vocab, inter, randF32(r, vocab*inter, 1)), nil, "head"))
	return must(CrossEntropy(logits, tgt, "loss"))
}

func TestOpsGradientMatchesFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x0 := randF32(r, 6*8, 1)
	build := func() (*G.ExprGraph, *G.Node, *G.Node) {
		g := G.NewGraph()
		x := G.NewMatrix(g, tensor.Float32, G.WithShape(6, 8), G.WithName("x"), G.WithValue(tensor.New(tensor.WithShape(6, 8), tensor.WithBacking(append([]float32(nil), x0...)))))
		return g, x, tinyBlock(t, g, x, rand.New(rand.NewPCG(7, 8)))
	}
	g, x, loss := build()
	if _, err := G.Grad(loss, x); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(x))
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	gv, err := x.Grad()
	if err != nil {
		t.Fatal(err)
	}
	grad := append([]float32(nil), gv.Data().([]float32)...)
	vm.Close()

	lossAt := func(xs []float32) float64 {
		g2, x2, l2 := build()
		if err := G.Let(x2, tensor.New(tensor.WithShape(6, 8), tensor.WithBacking(xs))); err != nil {
			t.Fatal(err)
		}
		m := G.NewTapeMachine(g2)
		defer m.Close()
		if err := m.RunAll(); err != nil {
			t.Fatal(err)
		}
		return float64(l2.Value().Data().(float32))
	}
	const eps = 1e-2
	var worst float64
	for i := range x0 {
		plus := append([]float32(nil), x0...)
		minus := append([]float32(nil), x0...)
		plus[i] += eps
		minus[i] -= eps
		fd := (lossAt(plus) - lossAt(minus)) / (2 * eps)
		diff := math.Abs(fd - float64(grad[i]))
		worst = max(worst, diff)
		if diff > 2e-3+2e-2*math.Abs(fd) {
			t.Errorf("d loss / d x[%d]: graph %g, finite difference %g", i, grad[i], fd)
		}
	}
	t.Logf("max |graph - finite difference| = %.2e", worst)
	var norm float64
	for _, v := range grad {
		norm += float64(v * v)
	}
	if norm < 1e-6 {
		t.Fatalf("gradient is zero: the test would not see a wrong backward")
	}
}
