package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// memLimitMiB is the address space hostile-input runs get: an unbounded
// allocation fails the run (and the test), not the machine. A Go process
// reserves about 1 GiB of address space it never touches; the inputs
// below took 1.5 GiB (a chat template) to 7.5 GiB (the 50 MB record) of
// memory before their bounds.
const memLimitMiB = 3072

// runLimited runs the tune binary under `ulimit -v` and returns its output
// (stdout and stderr) and exit code.
func runLimited(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin := tuneBinary(t)
	cmd := exec.Command("sh", append([]string{"-c", `ulimit -v "$0" && exec "$@"`, strconv.Itoa(memLimitMiB << 10), bin}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// wantOneLineError checks a failed run: the exit code, one line on the
// output naming want, and no trace of a Go crash.
func wantOneLineError(t *testing.T, out string, code, wantCode int, want string) {
	t.Helper()
	msg := strings.TrimSpace(out)
	if code != wantCode || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, want) ||
		strings.Contains(msg, "goroutine") || strings.Contains(msg, "fatal error") || strings.Contains(msg, "panic") {
		t.Fatalf("exit code %d and output %q; want exit code %d and one line naming %q", code, msg, wantCode, want)
	}
}

// editJSON rewrites a JSON object file with the changes applied.
func editJSON(t *testing.T, path string, change map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range change {
		m[k] = v
	}
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHostileInputsUnderAMemoryLimit: files that would exhaust memory (sizes
// in config.json or adapter_config.json, a chat template, a record) end the
// command with one line and exit code 1 within memLimitMiB of address space.
func TestHostileInputsUnderAMemoryLimit(t *testing.T) {
	dir := modelWithTokenizer(t) // a small llama with Llama 2's tokenizer

	t.Run("config.json with a billion layers", func(t *testing.T) {
		bad := t.TempDir()
		if err := builtin.Write(bad, testmodels.Tiny("llama")); err != nil {
			t.Fatal(err)
		}
		editJSON(t, filepath.Join(bad, "config.json"), map[string]any{"num_hidden_layers": 1000000000})
		out, code := runLimited(t, "inspect", bad)
		wantOneLineError(t, out, code, 1, "config.json: num_hidden_layers: 1000000000")
	})

	cfg := testmodels.Tiny("llama")
	cfg.Vocab = 32000
	mc := model.Config{ModelType: "llama", Hidden: cfg.Hidden, Intermediate: cfg.Intermediate, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.Hidden / cfg.Heads, Vocab: cfg.Vocab}
	a, err := lora.New(lora.Spec{R: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}, mc, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{1000000000, 200000} {
		t.Run("adapter_config.json with r "+strconv.Itoa(r), func(t *testing.T) {
			ad := filepath.Join(t.TempDir(), "adapter")
			if err := peft.Write(ad, a.PEFTConfig(dir), a.PEFTTensors()); err != nil {
				t.Fatal(err)
			}
			editJSON(t, filepath.Join(ad, peft.ConfigFile), map[string]any{"r": r})
			out, code := runLimited(t, "generate", "--model", dir, "--adapter", ad, "--prompt", "Hi", "--max-tokens", "2")
			wantOneLineError(t, out, code, 1, "adapter")
			if !strings.Contains(out, strconv.Itoa(r)) {
				t.Errorf("%q does not name r", out)
			}
		})
	}

	t.Run("chat template with range(100000000)", func(t *testing.T) {
		cfgPath := filepath.Join(dir, "tokenizer_config.json")
		orig, _ := os.ReadFile(cfgPath)
		defer os.WriteFile(cfgPath, orig, 0o644)
		editJSON(t, cfgPath, map[string]any{"chat_template": "{% for x in range(100000000) %}{{ x }}{% endfor %}"})
		out, code := runLimited(t, "generate", "--chat", "--model", dir, "--prompt", "Hi", "--max-tokens", "2")
		wantOneLineError(t, out, code, 1, "chat_template: template exceeds a limit: range of 100000000 items")
	})

	t.Run("a 50 MB record without spaces", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "big.jsonl")
		rec, _ := json.Marshal(map[string]string{"text": strings.Repeat("ab", 25<<20)})
		if err := os.WriteFile(data, append([]byte(`{"text": "fine"}`+"\n"), append(rec, '\n')...), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"data", "../../configs/demo.yaml", "model.path=" + dir, "data.train=" + data, "data.format=text", "data.val_ratio=0", "train.eval_every=0"}
		out, code := runLimited(t, args...)
		wantOneLineError(t, out, code, 1, "big.jsonl:2: a word of 52428803 bytes with no space in it")
		out, code = runLimited(t, append(args, "data.skip_bad_records=true", "--json")...)
		if code != 0 || !strings.Contains(out, `"skipped":1`) {
			t.Fatalf("with skip_bad_records: exit code %d, %q", code, out)
		}
	})
}
