package train

import (
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// randomAdapter is an adapter with A and B both random, so that every gradient
// is non-zero (a fresh adapter has B = 0 and so a zero gradient for A).
func randomAdapter(t *testing.T, spec lora.Spec, mc model.Config) *lora.Adapter {
	t.Helper()
	r := rand.New(rand.NewPCG(11, 12))
	a, err := lora.New(spec, mc, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		for i := range m.B {
			m.B[i] = (r.Float32()*2 - 1) * 0.3
		}
	}
	return a
}

// readF32 reads a float32 tensor of a safetensors file.
func readF32(t *testing.T, st *safetensors.File, name string) []float32 {
	t.Helper()
	ten, err := st.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := kernels.NewMatrix(dtype.F32, 1, ten.NumElements(), ten.Data)
	if err != nil {
		t.Fatal(err)
	}
	return m.Float32()
}

// randomMagnitudes starts a DoRA adapter's magnitudes from the base's row
// norms, as training does, then moves each by up to ±20%, so that the
// magnitude's scaling is not 1 and its gradient path is exercised.
func randomMagnitudes(a *lora.Adapter, base *model.Model) {
	a.InitMagnitudes(base)
	r := rand.New(rand.NewPCG(13, 14))
	for _, m := range a.Modules {
		for i := range m.M {
			m.M[i] *= 1 + (r.Float32()*2-1)*0.2
		}
	}
}

// TestLoRAGradientsAndAdamWMatchPyTorch checks the adapter's loss, gradients
// and one AdamW step against PyTorch autograd and torch.optim.AdamW; the
// DoRA cases against an independent PyTorch writing of PEFT's
// DoraLinearLayer (qwen2's q, k and v have biases, added after the scaling).
func TestLoRAGradientsAndAdamWMatchPyTorch(t *testing.T) {
	for _, tc := range []struct {
		variant string
		spec    lora.Spec
	}{
		{"qwen2", lora.Spec{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}}},
		{"llama", lora.Spec{R: 3, Alpha: 5, Targets: []string{"q_proj", "v_proj", "down_proj"}, Layers: []int{1}, RSLoRA: true}},
		{"qwen3", lora.Spec{R: 2, Alpha: 16, Targets: []string{"k_proj", "o_proj", "gate_proj"}}},
		{"qwen2", lora.Spec{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}, DoRA: true}},
		{"llama", lora.Spec{R: 3, Alpha: 5, Targets: []string{"q_proj", "v_proj", "down_proj"}, Layers: []int{1}, RSLoRA: true, DoRA: true}},
	} {
		name := tc.variant
		if tc.spec.DoRA {
			name += "_dora"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			modelDir := filepath.Join(dir, "model")
			if err := builtin.Write(modelDir, testmodels.Variants()[tc.variant]); err != nil {
				t.Fatal(err)
			}
			base, md, err := model.Open(modelDir)
			if err != nil {
				t.Fatal(err)
			}
			defer md.Close()
			a := randomAdapter(t, tc.spec, base.Config)
			if tc.spec.DoRA {
				randomMagnitudes(a, base)
			}
			adapterDir := filepath.Join(dir, "adapter")
			if err := peft.Write(adapterDir, a.PEFTConfig(modelDir), a.PEFTTensors()); err != nil {
				t.Fatal(err)
			}

			const batch, seq = 2, 8
			b, in := testmodels.RandomBatch(rand.New(rand.NewPCG(21, 22)), batch, seq, 0, base.Config.Vocab)

			// tune: loss and gradients through the graph, then one AdamW step.
			at := a.Attach(true)
			gr, err := base.Build(batch, seq, at, model.Options{Pool: kernels.NewPool(0)})
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
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			loss := gr.Loss.Value().Data().(float32)
			grads := map[string][]float32{}
			for _, p := range at.Params() {
				g, err := p.Node.Grad()
				if err != nil {
					t.Fatal(err)
				}
				grads[p.Key] = append([]float32(nil), g.Data().([]float32)...)
			}
			const lr, wd = 1e-2, 0.01
			params := ParamsOf(a)
			ordered := make([][]float32, 0, len(params))
			for _, w := range a.Weights() {
				ordered = append(ordered, grads[w.Key])
			}
			sizes := make([]int, len(params))
			for i, p := range params {
				sizes[i] = len(p)
			}
			NewAdamW(sizes, 0.9, 0.999, 1e-8, wd).Update(params, ordered, lr)

			// PyTorch.
			out := filepath.Join(dir, "ref.safetensors")
			inPath := writeJSON(t, filepath.Join(dir, "in.json"), in)
			cmd := exec.Command(testmodels.Python, testmodels.ReferenceScript(), "lora-step", "--model", modelDir, "--input", inPath, "--adapter", adapterDir, "--out", out,
				"--lr", "1e-2", "--weight-decay", "0.01", "--beta1", "0.9", "--beta2", "0.999", "--eps", "1e-8")
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("reference lora-step: %v: %s", err, msg)
			}
			st, err := safetensors.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			refLoss := readF32(t, st, "loss")[0]
			if d := math.Abs(float64(loss-refLoss)) / float64(refLoss); d > 1e-5 {
				t.Errorf("loss %.7f, PyTorch %.7f", loss, refLoss)
			}
			var worstGrad, worstUpd float64
			for _, w := range a.Weights() {
				key := w.Key
				refG := readF32(t, st, key+".grad")
				scale := 0.0
				for _, v := range refG {
					scale = max(scale, math.Abs(float64(v)))
				}
				if scale == 0 {
					t.Fatalf("%s: PyTorch gradient is zero: the comparison would prove nothing", key)
				}
				for i, v := range grads[key] {
					rel := math.Abs(float64(v-refG[i])) / scale
					worstGrad = max(worstGrad, rel)
					if rel > 1e-4 {
						t.Fatalf("%s.grad[%d] = %g, PyTorch %g", key, i, v, refG[i])
					}
				}
				refU := readF32(t, st, key+".updated")
				for i, v := range w.Value {
					d := math.Abs(float64(v - refU[i]))
					worstUpd = max(worstUpd, d)
					if d > 1e-5 {
						t.Fatalf("%s after AdamW [%d] = %.8f, PyTorch %.8f", key, i, v, refU[i])
					}
				}
			}
			t.Logf("loss %.6f (PyTorch %.6f); gradients within %.1e relative, updated weights within %.1e", loss, refLoss, worstGrad, worstUpd)
		})
	}
}
