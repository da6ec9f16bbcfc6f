package main

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// TestPooledRound runs README's pooled workflow through the built command:
// two machines train the demo (one at r 8, one at r 4 with rsLoRA on fewer
// projections), `tune merge` combines their adapters (cat, svd, ties), a
// third run continues from the merge (lora.init_from), and the cat merge,
// exported as a merged model, holds exactly the base plus the mean of the
// two updates (each computed from its own adapter); exported as PEFT, it
// keeps its updates.
func TestPooledRound(t *testing.T) {
	bin := tuneBinary(t)
	dir := t.TempDir()
	tune := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tune %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	train := func(out string, extra ...string) {
		tune(append([]string{"run", "../../configs/demo.yaml", "-q", "output.dir=" + out, "train.max_steps=20",
			"train.eval_every=0", "checkpoint.every=1000", "data.val_ratio=0"}, extra...)...)
	}
	m1, m2 := filepath.Join(dir, "m1"), filepath.Join(dir, "m2")
	train(m1, "train.seed=1")
	train(m2, "train.seed=2", "lora.r=4", "lora.alpha=4", "lora.use_rslora=true", "lora.target_modules=[q_proj,v_proj,down_proj]")
	a1, a2 := filepath.Join(m1, "adapter"), filepath.Join(m2, "adapter")
	base := filepath.Join(m1, "base-model") // each run generated the same model at its own path

	merged := map[string]string{}
	for _, method := range []string{"cat", "svd", "ties"} {
		merged[method] = filepath.Join(dir, method)
		out := tune("merge", a1, a2, "--model", base, "--method", method, "--out", merged[method])
		t.Logf("%s", strings.TrimSpace(out))
	}

	// One adapter re-factorised to a lower rank; its base path exists here,
	// so it is checked against that model.
	tune("merge", a1, "--r", "4", "--out", filepath.Join(dir, "r4"))

	// Round two from the svd merge: rank 8, the larger input's.
	round2 := filepath.Join(dir, "round2")
	train(round2, "train.seed=3", "train.max_steps=5", "lora.init_from="+merged["svd"])
	var cfg peft.Config
	raw, err := os.ReadFile(filepath.Join(round2, "adapter", peft.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.R != 8 {
		t.Fatalf("round two's adapter: r %d, %v; want 8", cfg.R, err)
	}

	// cat, through `tune export --format merged`: W' = W + (Δ1 + Δ2)/2.
	exported := filepath.Join(dir, "merged-model")
	tune("export", "--model", base, "--adapter", merged["cat"], "--format", "merged", "--out", exported)
	bm, bmd, err := model.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer bmd.Close()
	emd, err := hf.Open(exported)
	if err != nil {
		t.Fatal(err)
	}
	defer emd.Close()
	var deltas []*lora.Adapter
	for _, a := range []string{a1, a2} {
		ad, err := lora.FromPEFT(a, bm.Config)
		if err != nil {
			t.Fatal(err)
		}
		deltas = append(deltas, ad)
	}
	worst, moved := 0.0, 0.0
	for _, m := range deltas[0].Modules {
		name := model.LayerPrefix(m.Layer) + model.ProjectionPath(m.Name) + ".weight"
		w, w2 := tensorF32(t, bmd, name), tensorF32(t, emd, name)
		want := make([]float64, len(w))
		for _, ad := range deltas {
			if mm := ad.Module(m.Layer, m.Name); mm != nil {
				for i, d := range ad.Delta(mm) {
					want[i] += 0.5 * float64(d)
				}
			}
		}
		for i := range w {
			worst = max(worst, math.Abs(float64(w2[i]-w[i])-want[i]))
			moved = max(moved, math.Abs(want[i]))
		}
	}
	t.Logf("cat merge exported: |W' - W - mean Δ| ≤ %.2g (mean Δ up to %.3g)", worst, moved)
	if worst > 1e-6 || moved < 1e-3 {
		t.Fatalf("the exported cat merge is off by %.3g (updates up to %.3g)", worst, moved)
	}

	// cat (rank_pattern) exported as a plain PEFT adapter: one rank, the same updates.
	peft := filepath.Join(dir, "cat-peft")
	tune("export", "--model", base, "--adapter", merged["cat"], "--format", "peft", "--out", peft)
	was, err := lora.FromPEFT(merged["cat"], bm.Config)
	if err != nil {
		t.Fatal(err)
	}
	now, err := lora.FromPEFT(peft, bm.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range was.Modules {
		d0, d1 := was.Delta(m), now.Delta(now.Module(m.Layer, m.Name))
		for i := range d0 {
			if math.Abs(float64(d0[i]-d1[i])) > 1e-7 {
				t.Fatalf("%s: the PEFT export of the cat merge changes ΔW[%d] from %g to %g", m.Key(), i, d0[i], d1[i])
			}
		}
	}
}

func tensorF32(t *testing.T, md model.Source, name string) []float32 {
	t.Helper()
	tn, err := md.Tensor(name)
	if err != nil || tn.DType != dtype.F32 {
		t.Fatalf("%s: %v %v", name, tn.DType, err)
	}
	v, err := dtype.Decode(dtype.F32, tn.Data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMergeBadInputExitTwo: each bad call is one line naming what is wrong,
// exit code 2, and writes nothing.
func TestMergeBadInputExitTwo(t *testing.T) {
	bin := tuneBinary(t)
	dir := t.TempDir()
	cfg := model.Config{ModelType: "llama", Hidden: 16, Intermediate: 24, Layers: 2, Heads: 2, KVHeads: 1, HeadDim: 8, Vocab: 10}
	r := rand.New(rand.NewPCG(2, 2))
	write := func(name, base string, edit func(*peft.Config)) string {
		a, err := lora.New(lora.Spec{R: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}, cfg, r)
		if err != nil {
			t.Fatal(err)
		}
		pc := a.PEFTConfig(base)
		if edit != nil {
			edit(&pc)
		}
		path := filepath.Join(dir, name)
		if err := peft.Write(path, pc, a.PEFTTensors()); err != nil {
			t.Fatal(err)
		}
		return path
	}
	x, y := write("x", "org/model", nil), write("y", "org/model", nil)
	other := write("other", "org/other-model", nil)
	dora := write("dora", "org/model", func(pc *peft.Config) { pc.UseDora = true })
	out := filepath.Join(dir, "out")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no adapters", []string{"--out", out}, "at least one ADAPTER"},
		{"no out", []string{x, y}, "--out"},
		{"method", []string{x, y, "--method", "linear", "--out", out}, "expected cat, svd or ties"},
		{"weight not a number", []string{x, y, "--weights", "1,a", "--out", out}, `"a" is not a number`},
		{"weights count", []string{x, y, "--weights", "1", "--out", out}, "1 weights for 2 adapters"},
		{"density without ties", []string{x, y, "--density", "0.5", "--out", out}, "--density applies to --method ties"},
		{"density range", []string{x, y, "--method", "ties", "--density", "0", "--out", out}, "--density 0"},
		{"rank with cat", []string{x, y, "--method", "cat", "--r", "4", "--out", out}, "cat's rank"},
		{"rank not positive", []string{x, y, "--r", "0", "--out", out}, "--r 0"},
		{"different bases", []string{x, other, "--out", out}, "base_model_name_or_path"},
		{"DoRA", []string{x, dora, "--out", out}, "use_dora"},
		{"out is an input", []string{x, y, "--out", y}, "is one of the adapters"},
		{"missing adapter", []string{x, filepath.Join(dir, "nope"), "--out", out}, "nope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := exec.Command(bin, append([]string{"merge"}, c.args...)...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2\n%s", err, b)
			}
			msg := strings.TrimSpace(string(b))
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.want) || strings.Contains(msg, "goroutine") {
				t.Fatalf("printed %q, want one line with %q", msg, c.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("wrote the output anyway")
			}
		})
	}
}
