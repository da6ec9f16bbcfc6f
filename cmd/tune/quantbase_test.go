package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model"
)

// quantTypes are the block formats tune reads as a base, as GGUF types.
var quantTypes = []gguf.Type{gguf.Q4_0, gguf.Q4_1, gguf.Q5_0, gguf.Q5_1, gguf.Q8_0, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K}

// quantBase writes a small llama (Llama 2's tokenizer) whose rows are whole
// 256-value blocks, exports it as an F32 GGUF and requantizes that to typ
// with ggml's reference quantizer: a quantized base as llama-quantize makes
// one, norms F32, every matrix (embeddings and output too) in typ. It
// returns the model directory and the quantized file.
func quantBase(t *testing.T, typ gguf.Type) (dir, path string) {
	t.Helper()
	spec := testmodels.Tiny("llama")
	spec.Vocab, spec.Hidden, spec.Intermediate = 32000, 256, 512
	dir = modelWithSpec(t, spec)
	work := t.TempDir()
	f32 := filepath.Join(work, "f32.gguf")
	if out, err := runTune(t, "export", "--model", dir, "--format", "gguf", "--dtype", "f32", "--out", f32); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	path = filepath.Join(work, strings.ToLower(typ.String())+".gguf")
	if err := testmodels.Requantize(f32, path, typ); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// TestQuantizedGGUFBases: for every block format tune reads, a GGUF base in
// that format (every matrix quantized) computes in tune what PyTorch computes
// on the same weights dequantized (a float32 safetensors copy), inspect
// reports its stored size: eval's loss
// within 1e-5 relative, the logits within 1e-4 of their largest; and its
// next-token log-probs are llama.cpp's on the same file within what
// llama.cpp's rounding of activations to 8 bits adds.
func TestQuantizedGGUFBases(t *testing.T) {
	requireLlamaCpp(t)
	const seq = 40
	r := rand.New(rand.NewPCG(5, 6))
	batch, in := testmodels.RandomBatch(r, 1, seq, 0, 32000)
	ids := in.InputIDs[0]
	data := filepath.Join(t.TempDir(), "ids.jsonl")
	line, _ := json.Marshal(map[string]any{"input_ids": ids})
	if err := os.WriteFile(data, append(line, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	var runs []testmodels.ScoreRun
	var tuneLP [][]float64
	for _, typ := range quantTypes {
		_, q := quantBase(t, typ)
		// inspect counts the stored blocks: 17,563,648 matrix values (32000·256
		// embeddings and output, 2 layers of 589,824) at ggml's block sizes
		// (18 bytes per 32 values for Q4_0 ... 210 per 256 for Q6_K), and
		// 1280 F32 norm values (5 KiB).
		out, err := runTune(t, "inspect", q)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.ToLower(typ.String())
		flat := strings.Join(strings.Fields(out), " ")
		for _, want := range []string{"parameters 17.56M", "dtypes [f32 1.3K " + name + " 17.56M]", "stored [f32 5.0 KiB " + name + " " + storedMiB[typ] + "]"} {
			if !strings.Contains(flat, want) {
				t.Errorf("%s: inspect lacks %q:\n%s", typ, want, out)
			}
		}
		deq := filepath.Join(t.TempDir(), "dequantized")
		if err := testmodels.Dequantize(q, deq); err != nil {
			t.Fatal(err)
		}
		out, err = runTune(t, "eval", "--model", q, "--data", data, "--json", "--seq", "40")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var res struct {
			Loss   float64 `json:"loss"`
			Tokens int     `json:"tokens"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Tokens != seq-1 {
			t.Fatalf("%s: eval --json printed %q (%v)", typ, out, err)
		}
		refLoss, refLogits, err := testmodels.Reference(deq, in)
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(res.Loss-float64(refLoss)) / float64(refLoss); d > 1e-5 {
			t.Errorf("%s: tune eval's loss %.7f, PyTorch's on the dequantized weights %.7f", typ, res.Loss, refLoss)
		}

		m, ck, err := model.Open(q)
		if err != nil {
			t.Fatal(err)
		}
		fw, err := testmodels.RunGraph(m, batch, 1, seq, nil)
		ck.Close()
		if err != nil {
			t.Fatal(err)
		}
		scale, worst := 0.0, 0.0
		for i, v := range refLogits {
			scale = max(scale, math.Abs(float64(v)))
			worst = max(worst, math.Abs(float64(v-fw.Logits[i])))
		}
		if worst > 1e-4*scale {
			t.Errorf("%s: tune's logits differ from PyTorch's by up to %.3g (largest %.3g)", typ, worst, scale)
		}
		lp, _, _ := testmodels.NextTokenStats(fw.Logits, m.Config.Vocab, ids)
		tuneLP = append(tuneLP, lp)
		runs = append(runs, testmodels.ScoreRun{Model: q, IDs: ids})
		t.Logf("%s: loss tune %.7f, PyTorch %.7f; logits within %.2g of %.3g", typ, res.Loss, refLoss, worst, scale)
	}
	got, err := testmodels.LlamaCpp(runs)
	if err != nil {
		t.Fatal(err)
	}
	for i, typ := range quantTypes {
		if len(got[i].LogProbs) != len(tuneLP[i]) {
			t.Fatalf("%s: llama.cpp gave %d log-probs, want %d", typ, len(got[i].LogProbs), len(tuneLP[i]))
		}
		worst, dl := 0.0, 0.0
		for j, v := range got[i].LogProbs {
			worst = max(worst, math.Abs(v-tuneLP[i][j]))
			dl += (tuneLP[i][j] - v) / float64(len(tuneLP[i]))
		}
		t.Logf("%s: llama.cpp's log p within %.3g of tune's, losses %.2g apart", typ, worst, dl)
		// llama.cpp multiplies these weights by activations rounded to 8 bits
		// (Q8_0 or Q8_1 per 32 values, Q8_K per 256: up to 0.4% of each
		// value); on this random model's flat distributions (loss near ln
		// 32000) that moves a log-prob by a few hundredths, as
		// export's TestGGUFQuantized measured, and averages out over the
		// sequence. Measured: up to 0.063 per token (Q6_K: Q8_K rounds per
		// 256 values) and 3.9e-3 in the loss; bounds 0.1 (export's) and 1e-2.
		if worst > 0.1 || math.Abs(dl) > 1e-2 {
			t.Errorf("%s: llama.cpp and tune differ by %.3g in log p, %.3g in loss", typ, worst, dl)
		}
	}
}

// storedMiB is what the test model's matrices take in each type.
var storedMiB = map[gguf.Type]string{gguf.Q4_0: "9.4 MiB", gguf.Q4_1: "10.5 MiB", gguf.Q5_0: "11.5 MiB", gguf.Q5_1: "12.6 MiB",
	gguf.Q8_0: "17.8 MiB", gguf.Q4_K: "9.4 MiB", gguf.Q5_K: "11.5 MiB", gguf.Q6_K: "13.7 MiB"}

// TestTrainOnQ4_0Base: `tune run` on a Q4_0 GGUF base trains (the loss
// moves); the adapter, exported as a GGUF adapter for that file, gives in
// llama.cpp the loss `tune eval` reports for base + adapter (within what
// llama.cpp's 8-bit activations add, as above); its PEFT export names the
// original model, not the GGUF file.
func TestTrainOnQ4_0Base(t *testing.T) {
	requireLlamaCpp(t)
	dir, q := quantBase(t, gguf.Q4_0)
	run := filepath.Join(t.TempDir(), "run")
	args := []string{"run", "../../configs/demo.yaml", "-q", "model.path=" + q, "output.dir=" + run, "train.max_steps=12",
		"checkpoint.every=100", "train.eval_every=0", "data.val_ratio=0"}
	if b, err := exec.Command(tuneBinary(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("tune run on %s: %v\n%s", q, err, b)
	}
	adapter := filepath.Join(run, "adapter")
	adapterInLlamaCpp(t, q, adapter, 1e-2) // TestQuantizedGGUFBases' bound on the loss

	p := filepath.Join(t.TempDir(), "peft")
	out, err := runTune(t, "export", "--model", q, "--adapter", adapter, "--format", "peft", "--out", p)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	pc, st, err := peft.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if want := filepath.Base(dir); pc.BaseModelNameOrPath != want {
		t.Errorf("base_model_name_or_path %q, want %q (general.name); output %q", pc.BaseModelNameOrPath, want, out)
	}
}
