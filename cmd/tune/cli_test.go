package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunByNameFromAnywhere: `tune run demo` runs the built-in config from a
// directory without configs/, and `--resume DIR` and `--resume latest`
// work with a space, before or after the config and between overrides.
func TestRunByNameFromAnywhere(t *testing.T) {
	bin := tuneBinary(t)
	work := t.TempDir()
	out := filepath.Join(work, "run")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = work
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tune %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	common := []string{"-q", "output.dir=" + out, "checkpoint.every=2", "train.eval_every=0"}
	run(append([]string{"run", "demo", "train.max_steps=2"}, common...)...)
	run(append([]string{"run", "--resume", "latest", "demo", "train.max_steps=4"}, common...)...)
	step2 := filepath.Join(out, "checkpoints", "step-000004")
	got := run(append([]string{"run", "demo", "train.max_steps=6", "--resume", step2}, common...)...)
	if !strings.Contains(got, "adapter: "+filepath.Join(out, "adapter")) {
		t.Fatalf("resumed run printed %q", got)
	}
	b, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if n := strings.Count(string(b), `"step":`); n != 6 {
		t.Fatalf("metrics.jsonl holds %d step records after 2+2+2 steps:\n%s", n, b)
	}
	cmd := exec.Command(bin, "validate", "demo")
	cmd.Dir = work
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "demo: valid") {
		t.Fatalf("tune validate demo: %v %s", err, b)
	}
}

// TestEvalTakesTheTrainingConfig: `tune eval CONFIG` reads the data as the
// config says (the demo's validation split), --seq above the model's
// maximum is refused, and without a config the format is found from the
// first record; errors name the data path once.
func TestEvalTakesTheTrainingConfig(t *testing.T) {
	work := t.TempDir()
	out, code := runLimited(t, "eval", "demo", "output.dir="+filepath.Join(work, "run"), "--json")
	if code != 0 {
		t.Fatalf("tune eval demo: exit code %d\n%s", code, out)
	}
	var res struct{ Examples, Tokens int }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Examples != 25 {
		t.Fatalf("tune eval demo: %q (%v); want the 25 examples of the demo's 10%% validation split", out, err)
	}
	out, code = runLimited(t, "eval", "demo", "output.dir="+filepath.Join(work, "run"), "--seq", "4096")
	wantOneLineError(t, out, code, 2, "--seq 4096 exceeds the model's max_position_embeddings 256")

	model := modelWithTokenizer(t)
	data := filepath.Join(work, "qa.jsonl")
	os.WriteFile(data, []byte(`{"instruction": "Say hi", "output": "Hi"}`+"\n"), 0o644)
	out, code = runLimited(t, "eval", "--model", model, "--data", data, "--seq", "64", "--json")
	if code != 0 || !strings.Contains(out, `"examples":1`) {
		t.Fatalf("eval of instruction data without --format: exit code %d\n%s", code, out)
	}
	odd := filepath.Join(work, "odd.jsonl")
	os.WriteFile(odd, []byte(`{"question": "Say hi", "answer": "Hi"}`+"\n"), 0o644)
	out, code = runLimited(t, "eval", "--model", model, "--data", odd)
	wantOneLineError(t, out, code, 1, odd+":1: cannot tell the format from the keys answer, question")
	if strings.Count(out, odd) != 1 {
		t.Errorf("the path is printed %d times: %q", strings.Count(out, odd), out)
	}
	out, code = runLimited(t, "eval", "--model", model, "--data", odd, "--format", "instruction")
	wantOneLineError(t, out, code, 1, `odd.jsonl:1: field instruction: missing (the record has "question": set data.fields: {instruction: question})`)
}

// TestTokenizeEmptyText: an empty text is a valid input: BOS only.
func TestTokenizeEmptyText(t *testing.T) {
	dir := modelWithTokenizer(t)
	out, err := runTune(t, "tokenize", "--model", dir, "--text", "", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		IDs    []int    `json:"ids"`
		Tokens []string `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.IDs) != 1 || r.Tokens[0] != "<s>" {
		t.Fatalf("tokenize --text \"\": %q (%v); want Llama 2's BOS alone", out, err)
	}
	if _, err := runTune(t, "tokenize", "--model", dir); err == nil {
		t.Fatal("tokenize without --text or --file succeeded")
	}
}
