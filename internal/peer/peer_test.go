package peer

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// python is Debian's interpreter with python3-torch (make setup).
const python = "/usr/bin/python3"

func runPython(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(python, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v; the peer needs Debian's python3-torch: run make setup", python, err)
	}
	return out.String(), errb.String(), code
}

// TestModelMatchesReference runs selftest.py: the peer's logits and LoRA
// gradients against reference.py's on tiny llama and qwen2 models, f32 and
// bf16, and compare.py's process runner.
func TestModelMatchesReference(t *testing.T) {
	out, errOut, code := runPython(t, "selftest.py")
	if code != 0 {
		t.Fatalf("selftest.py exited with %d:\n%s%s", code, out, errOut)
	}
	if n := strings.Count(out, "\nok "); strings.Contains(out, "FAIL") || n < 9 {
		t.Fatalf("selftest.py printed %d ok lines:\n%s", n+1, out)
	}
}

// tinyConfig writes a small qwen2 config.json (GQA, biases, tied head).
func tinyConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	cfg := `{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 300, "tie_word_embeddings": true, "rms_norm_eps": 1e-6, "rope_theta": 1e6}`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTrainJSON checks what compare.py reads from train.py, for each dtype
// and bf16 mode: the keys tune bench also prints, and values that are
// consistent with each other (not timings against a bound).
func TestTrainJSON(t *testing.T) {
	cfg := tinyConfig(t)
	for _, mode := range [][]string{
		{"--dtype", "f32"},
		{"--dtype", "bf16"},
		{"--dtype", "bf16", "--bf16-mode", "mixed"},
		{"--dtype", "bf16", "--bf16-mode", "autocast"},
	} {
		t.Run(strings.Join(mode, " "), func(t *testing.T) {
			args := append([]string{"train.py", "--config", cfg, "--batch", "2", "--seq", "16",
				"--targets", "all-linear", "--dropout", "0.1", "--threads", "1", "--steps", "3", "--json"}, mode...)
			out, errOut, code := runPython(t, args...)
			if code != 0 {
				t.Fatalf("train.py exited with %d: %s", code, errOut)
			}
			var r struct {
				TokensPerS     float64   `json:"tokens_per_s"`
				BestTokensPerS float64   `json:"best_tokens_per_s"`
				StepS          float64   `json:"step_s"`
				StepsS         []float64 `json:"steps_s"`
				PeakRSSBytes   int64     `json:"peak_rss_bytes"`
				DType          string    `json:"dtype"`
				TorchVersion   string    `json:"torch_version"`
				Threads        int       `json:"threads"`
				LoRAParams     int       `json:"lora_params"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("train.py printed %q: %v", out, err)
			}
			if len(r.StepsS) != 3 || r.StepS <= 0 || r.TokensPerS != 32/r.StepS || r.BestTokensPerS < r.TokensPerS {
				t.Errorf("steps %v, median %g s, %g tokens/s (best %g): want 3 steps, tokens/s = 32 / median", r.StepsS, r.StepS, r.TokensPerS, r.BestTokensPerS)
			}
			// 2 layers x r 16 x (in + out) of q and o (64x64), k and v (64->32),
			// gate, up and down (64<->96).
			if want := 2 * 16 * (2*(64+64) + 2*(64+32) + 3*(64+96)); r.LoRAParams != want {
				t.Errorf("lora_params %d, want %d", r.LoRAParams, want)
			}
			if r.PeakRSSBytes < 50<<20 || r.DType != mode[1] || !strings.HasPrefix(r.TorchVersion, "1.") || r.Threads != 1 {
				t.Errorf("peak RSS %d, dtype %q, torch %q, threads %d", r.PeakRSSBytes, r.DType, r.TorchVersion, r.Threads)
			}
		})
	}
}

// TestBadInput: one line naming the file or flag, exit status 2.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "config.json")
	if err := os.WriteFile(bad, []byte(`{"model_type": "llama", "hidden_size": 64}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train.py", "--config", filepath.Join(dir, "none.json")}, "none.json: No such file"},
		{[]string{"train.py", "--config", bad}, "config.json: vocab_size must be a positive integer, got None"},
		{[]string{"train.py", "--config", tinyConfig(t), "--targets", "q_proj,lm_head"}, "--targets: unknown projection(s) ['lm_head']"},
		{[]string{"train.py", "--config", tinyConfig(t), "--blas", filepath.Join(dir, "libblas.so.3")}, "--blas: " + dir},
		{[]string{"compare.py", "--peer-only", "--rounds", "0"}, "--rounds: expected a positive number"},
		{[]string{"compare.py", "--tune", filepath.Join(dir, "tune")}, "is not an executable (run make build"},
	} {
		_, errOut, code := runPython(t, c.args...)
		last := strings.TrimSpace(errOut)
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if code != 2 || !strings.Contains(last, c.want) || strings.Contains(errOut, "Traceback") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a last line with %q", c.args, code, errOut, c.want)
		}
	}
}
