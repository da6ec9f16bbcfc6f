package model_test

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// lossAndGrads runs a training graph once: the loss and every adapter
// parameter's gradient, in attach order.
func lossAndGrads(t *testing.T, m *model.Model, a *lora.Adapter, b model.Batch, seq int, opt model.Options) (float32, [][]float32) {
	t.Helper()
	at := a.Attach(true)
	gr, err := m.Build(2, seq, at, opt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(gr.Loss, at.Nodes()...); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(gr.G, G.BindDualValues(at.Nodes()...))
	defer vm.Close()
	if err := gr.Feed(b); err != nil {
		t.Fatal(err)
	}
	gr.SetSeed(7)
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	var grads [][]float32
	for _, n := range at.Nodes() {
		g, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		grads = append(grads, append([]float32(nil), g.Data().([]float32)...))
	}
	return gr.Loss.Value().Data().(float32), grads
}

// randomAdapter is an all-linear adapter with dropout whose A and B are both
// random, so every path of the layer's backward carries gradient.
func randomAdapter(t *testing.T, m *model.Model, r *rand.Rand) *lora.Adapter {
	t.Helper()
	a, err := lora.New(lora.Spec{R: 3, Alpha: 6, Dropout: 0.25, Targets: []string{lora.AllLinear}}, m.Config, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range a.Modules {
		for i := range mod.B {
			mod.B[i] = float32(r.NormFloat64() * 0.2)
		}
	}
	return a
}

// The layer op's hand-written backward against central differences of the
// loss, through every layer (an adapter of layer 0 sees the gradient of all
// that follows), with dropout, for plain, qk-norm and sliding-window models;
// activation checkpointing must give bitwise the same loss and gradients,
// and so must one thread and two.
func TestLayerBackwardFiniteDifferences(t *testing.T) {
	for _, name := range []string{"llama_attention_bias", "qwen3", "mistral_sliding"} {
		t.Run(name, func(t *testing.T) {
			spec := testmodels.Variants()[name]
			_, m := open(t, spec)
			r := rand.New(rand.NewPCG(3, 4))
			const seq = 12
			b, _ := packedBatch(r, m.Config.Vocab, seq)
			a := randomAdapter(t, m, r)
			pool := kernels.NewPool(2)
			defer pool.Close()
			loss, grads := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool})

			loss2, grads2 := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool, Recompute: true})
			loss1, grads1 := lossAndGrads(t, m, a, b, seq, model.Options{})
			for _, other := range []struct {
				what  string
				loss  float32
				grads [][]float32
			}{{"activation checkpointing", loss2, grads2}, {"one thread", loss1, grads1}} {
				if other.loss != loss {
					t.Fatalf("%s: loss %v, want bitwise %v", other.what, other.loss, loss)
				}
				for i := range grads {
					for j := range grads[i] {
						if other.grads[i][j] != grads[i][j] {
							t.Fatalf("%s: gradient %d[%d] = %v, want bitwise %v", other.what, i, j, other.grads[i][j], grads[i][j])
						}
					}
				}
			}

			params := [][]float32{}
			for _, mod := range a.Modules {
				params = append(params, mod.A, mod.B)
			}
			const eps = 1e-2
			checked := 0
			for i, p := range params {
				if i%3 != 0 { // a spread of modules, layers, A and B
					continue
				}
				for _, j := range []int{0, len(p) / 2, len(p) - 1} {
					orig := p[j]
					p[j] = orig + eps
					up, _ := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool})
					p[j] = orig - eps
					down, _ := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool})
					p[j] = orig
					fd := (float64(up) - float64(down)) / (2 * eps)
					g := float64(grads[i][j])
					if math.Abs(fd-g) > 2e-3+5e-2*math.Abs(g) {
						t.Errorf("%s[%d]: gradient %.6f, finite difference %.6f", a.Modules[i/2].Key(), j, g, fd)
					}
					checked++
				}
			}
			if checked < 6 || loss == 0 {
				t.Fatalf("checked %d coordinates, loss %v", checked, loss)
			}
		})
	}
}

// DoRA's magnitude gradient against central differences of the loss (the
// norm ‖W₀ + s·B·A‖ does not depend on m, so they agree; A and B, whose
// norm is a constant of the backward pass by design, are held to PyTorch
// in train's tests), with and without dropout, on a model with q, k and v
// biases; checkpointing and threads change no bit. A fresh DoRA adapter
// (B = 0, m the row norms) leaves the model as it was.
func TestDoRAMagnitudeFiniteDifferences(t *testing.T) {
	for _, dropout := range []float64{0, 0.25} {
		spec := testmodels.Variants()["llama_attention_bias"]
		_, m := open(t, spec)
		r := rand.New(rand.NewPCG(5, 6))
		const seq = 12
		b, _ := packedBatch(r, m.Config.Vocab, seq)
		a, err := lora.New(lora.Spec{R: 3, Alpha: 6, Dropout: dropout, Targets: []string{lora.AllLinear}, DoRA: true}, m.Config, r)
		if err != nil {
			t.Fatal(err)
		}
		a.InitMagnitudes(m)
		if dropout == 0 {
			plain, _ := run(t, m, b, 2, seq)
			fresh, _ := lossAndGrads(t, m, a, b, seq, model.Options{})
			if math.Abs(float64(fresh-plain)) > 1e-5*math.Abs(float64(plain)) {
				t.Fatalf("a fresh DoRA adapter gives loss %v, the base model %v", fresh, plain)
			}
		}
		for _, mod := range a.Modules {
			for i := range mod.B {
				mod.B[i] = float32(r.NormFloat64() * 0.2)
			}
			for i := range mod.M {
				mod.M[i] *= float32(1 + 0.3*r.NormFloat64())
			}
		}
		pool := kernels.NewPool(2)
		defer pool.Close()
		loss, grads := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool})
		loss2, grads2 := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool, Recompute: true})
		loss1, grads1 := lossAndGrads(t, m, a, b, seq, model.Options{})
		if loss2 != loss || loss1 != loss {
			t.Fatalf("dropout %v: losses %v (checkpointing), %v (one thread), want bitwise %v", dropout, loss2, loss1, loss)
		}
		for i := range grads {
			for j := range grads[i] {
				if grads2[i][j] != grads[i][j] || grads1[i][j] != grads[i][j] {
					t.Fatalf("dropout %v: gradient %d[%d] = %v (checkpointing), %v (one thread), want bitwise %v", dropout, i, j, grads2[i][j], grads1[i][j], grads[i][j])
				}
			}
		}
		const eps = 1e-2
		checked := 0
		for k, mod := range a.Modules {
			if k%2 != 0 {
				continue
			}
			g := grads[3*k+2] // A, B, M of each module in attach order
			for _, j := range []int{0, len(mod.M) / 2, len(mod.M) - 1} {
				orig := mod.M[j]
				mod.M[j] = orig + eps
				up, _ := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool})
				mod.M[j] = orig - eps
				down, _ := lossAndGrads(t, m, a, b, seq, model.Options{Pool: pool})
				mod.M[j] = orig
				fd := (float64(up) - float64(down)) / (2 * eps)
				if math.Abs(fd-float64(g[j])) > 1e-4+5e-3*math.Abs(float64(g[j])) {
					t.Errorf("dropout %v: %s magnitude[%d]: gradient %.6f, finite difference %.6f", dropout, mod.Key(), j, g[j], fd)
				}
				if g[j] != 0 {
					checked++
				}
			}
		}
		if checked < 10 {
			t.Fatalf("dropout %v: only %d non-zero magnitude gradients checked", dropout, checked)
		}
	}
}
