package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/tokenizer"
	"github.com/tune-dev/tune/train"
)

func runTune(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestEvalJSONMatchesPyTorch: `tune eval --json` on a generated qwen2 model
// prints the loss PyTorch computes on the same examples (each alone, padded).
func TestEvalJSONMatchesPyTorch(t *testing.T) {
	dir := t.TempDir()
	spec := testmodels.Variants()["qwen2"]
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	lengths := []int{7, 3, 12, 5, 9}
	const seq = 12
	var lines []string
	var in testmodels.RefInput
	for _, n := range lengths {
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(r.IntN(spec.Vocab))
		}
		b, _ := json.Marshal(map[string]any{"input_ids": ids})
		lines = append(lines, string(b))
		row, labels, seg := make([]int32, seq), make([]int32, seq), make([]int32, seq)
		for i := range seq {
			labels[i] = -100
			if i < n {
				row[i], labels[i], seg[i] = ids[i], ids[i], 1
			}
		}
		in.InputIDs, in.Labels, in.SegmentIDs = append(in.InputIDs, row), append(in.Labels, labels), append(in.SegmentIDs, seg)
	}
	data := filepath.Join(dir, "eval.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTune(t, "eval", "--model", dir, "--data", data, "--json", "--batch", "2", "--seq", "16")
	if err != nil {
		t.Fatal(err)
	}
	var res train.EvalResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("eval --json printed %q: %v", out, err)
	}
	refLoss, _, err := testmodels.Reference(dir, in)
	if err != nil {
		t.Fatal(err)
	}
	wantTokens := 0
	for _, n := range lengths {
		wantTokens += n - 1
	}
	if res.Tokens != wantTokens || res.Examples != len(lengths) {
		t.Errorf("eval counted %d tokens in %d examples, want %d in %d", res.Tokens, res.Examples, wantTokens, len(lengths))
	}
	if d := math.Abs(res.Loss-float64(refLoss)) / float64(refLoss); d > 1e-4 {
		t.Errorf("tune eval loss %.7f, PyTorch %.7f (relative difference %.2e)", res.Loss, refLoss, d)
	}
	if math.Abs(res.Perplexity-math.Exp(res.Loss)) > 1e-9*res.Perplexity {
		t.Errorf("perplexity %g is not exp(loss %g)", res.Perplexity, res.Loss)
	}

	// --adapter: base and base + adapter side by side, each as PyTorch has it.
	adapterDir := filepath.Join(dir, "adapter")
	randomAdapter(t, dir, dir, adapterDir, r)
	out, err = runTune(t, "eval", "--model", dir, "--data", data, "--json", "--adapter", adapterDir)
	if err != nil {
		t.Fatal(err)
	}
	var both map[string]train.EvalResult
	if err := json.Unmarshal([]byte(out), &both); err != nil {
		t.Fatalf("eval --adapter --json printed %q: %v", out, err)
	}
	refAdapted, _, err := testmodels.Reference(dir, in, "--adapter", adapterDir)
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2]float64{"base": {both["base"].Loss, float64(refLoss)}, "adapter": {both["adapter"].Loss, float64(refAdapted)}} {
		if d := math.Abs(pair[0]-pair[1]) / pair[1]; d > 1e-4 {
			t.Errorf("%s loss %.7f, PyTorch %.7f", name, pair[0], pair[1])
		}
	}
	if math.Abs(both["base"].Loss-both["adapter"].Loss) < 1e-3 {
		t.Error("the adapter does not change the loss: the comparison proves nothing")
	}
}

func TestEvalAndInspectErrors(t *testing.T) {
	dir := t.TempDir()
	if err := builtin.Write(dir, testmodels.Tiny("llama")); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"input_ids\": [1, 2]}\n{\"input_ids\": \"x\"}\n"), 0o644)
	big := filepath.Join(dir, "big.jsonl")
	os.WriteFile(big, []byte("{\"input_ids\": [1, 2, 5000]}\n"), 0o644)
	cases := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"no flags", []string{"eval"}, "eval needs a CONFIG, or --model DIR and --data FILE", true},
		{"unknown flag", []string{"eval", "--modle", dir}, "unknown flag", true},
		{"bad record", []string{"eval", "--model", dir, "--data", bad}, "bad.jsonl:2: field input_ids", false},
		{"id outside vocab", []string{"eval", "--model", dir, "--data", big}, "big.jsonl:1: token 5000", false},
		{"missing model", []string{"inspect", filepath.Join(dir, "nope")}, "nope", false},
		{"inspect args", []string{"inspect"}, "accepts 1 arg", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runTune(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			var ue usageError
			if errors.As(err, &ue) != c.usage {
				t.Errorf("usage error = %v, want %v", !c.usage, c.usage)
			}
		})
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	spec := testmodels.Variants()["llama_bf16_sharded"]
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	out, err := runTune(t, "inspect", dir)
	if err != nil {
		t.Fatal(err)
	}
	// 97·32 embed + 97·32 lm_head + 32 norm + 2 layers of (q 32·32 + k,v
	// 2·16·32 + o 32·32 + mlp 3·48·32 + norms 2·32) = 21,728, all stored as
	// bf16 (inspect reports the stored dtype; tune holds the 160 norm
	// weights as f32).
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"model_type llama", "parameters 21.7K", "dtypes [bf16 21.7K]", "files 3", "head_dim 8"} {
		if !strings.Contains(flat, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}

// TestEvalTextMatchesPyTorch: `tune eval --format text` tokenizes each record
// as training does (BOS, text, EOS) and gives PyTorch's loss on those ids.
func TestEvalTextMatchesPyTorch(t *testing.T) {
	dir := modelWithTokenizer(t)
	texts := []string{"The quick brown fox jumps over the lazy dog.", "func main() {\n\tfmt.Println(\"hi\")\n}"}
	var lines []string
	var in testmodels.RefInput
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	eos, _ := tok.EOS()
	width := 0
	var rows [][]int32
	for _, s := range texts {
		b, _ := json.Marshal(map[string]string{"text": s})
		lines = append(lines, string(b))
		var row []int32
		for _, id := range append(tok.Encode(s, true), eos) {
			row = append(row, int32(id))
		}
		rows = append(rows, row)
		width = max(width, len(row))
	}
	for _, row := range rows {
		ids, labels, seg := make([]int32, width), make([]int32, width), make([]int32, width)
		for i := range width {
			labels[i] = -100
			if i < len(row) {
				ids[i], labels[i], seg[i] = row[i], row[i], 1
			}
		}
		in.InputIDs, in.Labels, in.SegmentIDs = append(in.InputIDs, ids), append(in.Labels, labels), append(in.SegmentIDs, seg)
	}
	data := filepath.Join(t.TempDir(), "text.jsonl")
	os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	out, err := runTune(t, "eval", "--model", dir, "--data", data, "--format", "text", "--json", "--seq", "64")
	if err != nil {
		t.Fatal(err)
	}
	var res train.EvalResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	ref, _, err := testmodels.Reference(dir, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(rows[0]) + len(rows[1]) - 2; res.Tokens != want {
		t.Errorf("eval predicted %d tokens, want %d", res.Tokens, want)
	}
	if d := math.Abs(res.Loss-float64(ref)) / float64(ref); d > 1e-4 {
		t.Errorf("eval --format text loss %.6f, PyTorch %.6f", res.Loss, ref)
	}
}

// TestLs: one name everywhere: tune ls prints it, --show takes it, and
// summaries are whole sentences, not a first line cut mid-phrase.
func TestLs(t *testing.T) {
	out, err := runTune(t, "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\ndemo ", "coder-7b ", "smollm2-135m-cpu ", "qwen2.5-0.5b-cpu ", "llama3.2-1b ",
		"(7.6B parameters, qwen2 architecture) with the base weights kept in bf16, for one 24 GB RTX card (RTX 3090 / 4090).", "tune run NAME"} {
		if !strings.Contains("\n"+out, want) {
			t.Errorf("tune ls lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "configs/") || strings.Contains(out, "demo.yaml") {
		t.Errorf("tune ls prints file paths, not the names tune run takes:\n%s", out)
	}
	for _, name := range []string{"demo", "demo.yaml", "configs/demo.yaml"} {
		shown, err := runTune(t, "ls", "--show", name)
		if err != nil || !strings.Contains(shown, "path: builtin:tiny") {
			t.Fatalf("tune ls --show %s: %v\n%s", name, err, shown)
		}
	}
}

// randomAdapter writes to out a PEFT adapter on every projection of the
// model at modelPath, B drawn uniformly from [-0.5, 0.5) (PEFT's B = 0 would
// change nothing), naming base as its base model.
func randomAdapter(t *testing.T, modelPath, base, out string, r *rand.Rand) {
	t.Helper()
	cfg, err := model.ReadConfig(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.New(lora.Spec{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}}, cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		for i := range m.B {
			m.B[i] = r.Float32() - 0.5
		}
	}
	if err := peft.Write(out, a.PEFTConfig(base), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
}
