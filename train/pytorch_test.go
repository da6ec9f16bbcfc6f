package train

import (
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/export"
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

			st := pytorchLoRASteps(t, dir, modelDir, adapterDir, in, 1)
			defer st.Close()
			matchPyTorch(t, st, a, []float32{loss}, grads)
		})
	}
}

// pytorchLoRASteps runs `steps` AdamW steps (lr 1e-2, weight decay 0.01,
// betas 0.9, 0.999, eps 1e-8) of reference.py's lora-step on the model
// directory, from the PEFT adapter, on one fixed batch; the file holds the
// loss before each step, the first gradients and the updated weights.
func pytorchLoRASteps(t *testing.T, dir, modelDir, adapterDir string, in testmodels.RefInput, steps int) *safetensors.File {
	t.Helper()
	out := filepath.Join(dir, "ref.safetensors")
	inPath := writeJSON(t, filepath.Join(dir, "in.json"), in)
	cmd := exec.Command(testmodels.Python, testmodels.ReferenceScript(), "lora-step", "--model", modelDir, "--input", inPath, "--adapter", adapterDir, "--out", out,
		"--lr", "1e-2", "--weight-decay", "0.01", "--beta1", "0.9", "--beta2", "0.999", "--eps", "1e-8", "--steps", strconv.Itoa(steps))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference lora-step: %v: %s", err, msg)
	}
	st, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// matchPyTorch holds tune's losses (one per step), first gradients and
// updated adapter a to PyTorch's in st: losses within 1e-5 relative,
// gradients within 1e-4 of their largest, weights within 1e-5 where the
// step's direction is defined: AdamW's first step moves a weight by
// lr·g/(|g|+eps), so where |g| is within 10x the gradients' tolerance of
// zero its sign, and the step, is float rounding (at vocabulary 32000 one
// such weight moved 6e-4 apart on a float base). Those weights are counted,
// and must be few.
func matchPyTorch(t *testing.T, st *safetensors.File, a *lora.Adapter, losses []float32, grads map[string][]float32) {
	t.Helper()
	refLoss := readF32(t, st, "loss")
	if len(refLoss) != len(losses) {
		t.Fatalf("PyTorch gave %d losses, tune %d", len(refLoss), len(losses))
	}
	for i, loss := range losses {
		if d := math.Abs(float64(loss-refLoss[i])) / float64(refLoss[i]); d > 1e-5 {
			t.Errorf("step %d: loss %.7f, PyTorch %.7f", i, loss, refLoss[i])
		}
	}
	var worstGrad, worstUpd float64
	undefined, total := 0, 0
	for _, w := range a.Weights() {
		total += len(w.Value)
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
			if math.Abs(float64(refG[i])) < 1e-3*scale {
				undefined++
				continue
			}
			worstUpd = max(worstUpd, d)
			if d > 1e-5 {
				t.Fatalf("%s after AdamW [%d] = %.8f, PyTorch %.8f", key, i, v, refU[i])
			}
		}
	}
	if undefined > total/100 {
		t.Errorf("%d of %d gradients are too near zero to compare the step", undefined, total)
	}
	t.Logf("losses %v (PyTorch %v); gradients within %.1e relative, updated weights within %.1e (%d of %d near-zero gradients)", losses, refLoss, worstGrad, worstUpd, undefined, total)
}

// TestLoRAStepsOnQuantizedBaseMatchPyTorch: AdamW steps of the trainer on a
// GGUF base whose matrices are Q4_0 or Q4_K (a llama: q/k rows unpermuted
// block-row by block-row) give what torch.optim.AdamW gives on the same
// weights dequantized to float32: the first step's loss, gradients and
// updated weights, and the loss of each of three steps within 1e-5
// relative. The same model stored F32 is the control: it must agree as
// closely, so that the bounds measure what quantization changes.
func TestLoRAStepsOnQuantizedBaseMatchPyTorch(t *testing.T) {
	spec := testmodels.Tiny("llama")
	spec.Vocab, spec.Hidden, spec.Intermediate = 32000, 256, 512 // rows of whole 256-value blocks
	dir := modelDirWith(t, "llama2", spec)
	f32 := filepath.Join(t.TempDir(), "f32.gguf")
	if _, err := export.GGUF(dir, "", f32, "f32"); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []gguf.Type{gguf.F32, gguf.Q4_0, gguf.Q4_K} {
		t.Run(typ.String(), func(t *testing.T) {
			work := t.TempDir()
			q, deq := filepath.Join(work, "base.gguf"), filepath.Join(work, "dequantized")
			if err := testmodels.Requantize(f32, q, typ); err != nil {
				t.Fatal(err)
			}
			if err := testmodels.Dequantize(q, deq); err != nil {
				t.Fatal(err)
			}
			base, ck, err := model.Open(q)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			if base.DTypes()[typ.DType()] == 0 {
				t.Fatalf("the model holds no %s weights: %v", typ, base.DTypes())
			}
			a := randomAdapter(t, lora.Spec{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}}, base.Config)
			adapterDir := filepath.Join(work, "adapter")
			if err := peft.Write(adapterDir, a.PEFTConfig(deq), a.PEFTTensors()); err != nil {
				t.Fatal(err)
			}
			const batch, seq, steps = 2, 8, 3
			b, in := testmodels.RandomBatch(rand.New(rand.NewPCG(21, 22)), batch, seq, 0, base.Config.Vocab)
			tr, err := newTrainer(base, a, configs.Train{BatchSize: batch, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Threads: 0}, seq, false)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.close()
			var losses []float32
			grads := map[string][]float32{}
			for step := range steps {
				lossSum, n, err := tr.micro(b, 0)
				if err != nil {
					t.Fatal(err)
				}
				if step == 0 {
					for i, w := range a.Weights() {
						g := slices.Clone(tr.grads[i])
						kernels.Scale(g, 1/float32(n))
						grads[w.Key] = g
					}
				}
				loss, _, err := tr.update(lossSum, n, 1e-2)
				if err != nil {
					t.Fatal(err)
				}
				losses = append(losses, float32(loss))
				if step == 0 {
					// The first step as the float tests check it: loss,
					// gradients and the updated weights.
					st := pytorchLoRASteps(t, work, deq, adapterDir, in, 1)
					matchPyTorch(t, st, a, losses, grads)
					st.Close()
				}
			}
			// Later steps: the losses, which the whole trajectory of the
			// weights decides. The weights themselves are not compared
			// elementwise past one step: where a gradient is near zero, Adam's
			// m/sqrt(v) turns float32 rounding into an O(lr) difference (seen
			// as 6e-4 on the F32 copy after three steps).
			st := pytorchLoRASteps(t, work, deq, adapterDir, in, steps)
			defer st.Close()
			ref := readF32(t, st, "loss")
			for i, loss := range losses {
				if d := math.Abs(float64(loss-ref[i])) / float64(ref[i]); d > 1e-5 {
					t.Errorf("step %d: loss %.7f, PyTorch %.7f", i, loss, ref[i])
				}
			}
			t.Logf("losses %v, PyTorch %v", losses, ref)
		})
	}
}
