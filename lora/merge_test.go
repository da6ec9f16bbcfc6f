package lora

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/peft"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// mergeFixture is a generated base model and three adapters of it that
// differ in every way merge must handle: ranks (8; 6 with rank_pattern
// giving 2 and 3 to some modules; 4), alphas (alpha_pattern too), rsLoRA,
// target sets and layers.
type mergeFixture struct {
	base    string
	cfg     model.Config
	inputs  []string
	weights []float64
}

func newMergeFixture(t *testing.T) mergeFixture {
	t.Helper()
	dir := t.TempDir()
	spec := testmodels.Tiny("llama")
	spec.Layers = 3
	base := filepath.Join(dir, "base")
	if err := builtin.Write(base, spec); err != nil {
		t.Fatal(err)
	}
	m, md, err := model.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	md.Close()
	cfg := m.Config
	r := rand.New(rand.NewPCG(13, 1))
	f := mergeFixture{base: base, cfg: cfg, weights: []float64{0.7, 1.3, -0.4}}

	// 1: tune's own, attention only, every layer.
	f.inputs = append(f.inputs, writeRandomAdapter(t, r, filepath.Join(dir, "a1"), base, cfg,
		Spec{R: 8, Alpha: 16, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}))
	// 3: tune's own, some attention and MLP projections, layers 1 and 2.
	a3 := writeRandomAdapter(t, r, filepath.Join(dir, "a3"), base, cfg,
		Spec{R: 4, Alpha: 4, Targets: []string{"q_proj", "v_proj", "up_proj", "down_proj"}, Layers: []int{1, 2}})

	// 2: as PEFT writes one with rank_pattern and alpha_pattern: every projection on
	// layers 0 and 2, rsLoRA.
	pc := peft.NewConfig(base, 6, 12, 0, model.Projections(), []int{0, 2}, true)
	pc.RankPattern = peft.Pattern{{Key: "k_proj", Value: 2}, {Key: "model.layers.2.mlp.down_proj", Value: 3}}
	pc.AlphaPattern = peft.Pattern{{Key: "v_proj", Value: 5}}
	layout, err := pc.Layout()
	if err != nil {
		t.Fatal(err)
	}
	var tensors []safetensors.Tensor
	for _, l := range []int{0, 2} {
		for _, name := range model.Projections() {
			mod := Module{Layer: l, Name: name}
			in, out := model.ProjectionShape(cfg, name)
			rank := layout.Rank(model.LayerPrefix(l) + model.ProjectionPath(name))
			tensors = append(tensors,
				safetensors.F32(mod.Key()+".lora_A.weight", []int{rank, in}, randomSlice(r, rank*in, 1/math.Sqrt(float64(in)))),
				safetensors.F32(mod.Key()+".lora_B.weight", []int{out, rank}, randomSlice(r, out*rank, 0.3)))
		}
	}
	a2 := filepath.Join(dir, "a2")
	if err := peft.Write(a2, pc, tensors); err != nil {
		t.Fatal(err)
	}
	f.inputs = append(f.inputs, a2, a3)
	return f
}

func randomSlice(r *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

// writeRandomAdapter writes a tune adapter with A as initialised and B random
// (B = 0 would make every update zero).
func writeRandomAdapter(t *testing.T, r *rand.Rand, dir, base string, cfg model.Config, spec Spec) string {
	t.Helper()
	a, err := New(spec, cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		copy(m.B, randomSlice(r, len(m.B), 0.3))
	}
	if err := peft.Write(dir, a.PEFTConfig(base), a.PEFTTensors()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// oracleModule is one module's line of merge.py's answer.
type oracleModule struct {
	MaxTrue float64  `json:"max_true"`
	Rank    int      `json:"rank"`
	MaxErr  float64  `json:"max_err"`
	OptFro  float64  `json:"opt_fro"`
	OptNuc  float64  `json:"opt_nuc"`
	ErrFro  float64  `json:"err_fro"`
	ErrNuc  float64  `json:"err_nuc"`
	Gap     *float64 `json:"gap"`
}

// mergeOracle runs internal/testmodels/reference/merge.py on a merge.
func mergeOracle(t *testing.T, f mergeFixture, method string, r int, density float64, merged, trueOut string) map[string]oracleModule {
	t.Helper()
	var ws []string
	for _, w := range f.weights {
		ws = append(ws, strconv.FormatFloat(w, 'g', -1, 64))
	}
	args := []string{filepath.Join(filepath.Dir(testmodels.ReferenceScript()), "merge.py"),
		"--model", f.base, "--method", method, "--r", strconv.Itoa(r), "--density", strconv.FormatFloat(density, 'g', -1, 64),
		"--weights", strings.Join(ws, ","), "--merged", merged}
	if trueOut != "" {
		args = append(args, "--true", trueOut)
	}
	cmd := exec.Command(testmodels.Python, append(args, f.inputs...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("merge.py: %v: %s (the tests need Debian's python3-torch: make setup)", err, stderr.String())
	}
	var res struct {
		Modules map[string]oracleModule `json:"modules"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("merge.py output: %v: %.300s", err, stdout.String())
	}
	// 3 layers × 7 projections: the union of the inputs' modules.
	if len(res.Modules) != 21 {
		t.Fatalf("merge.py saw %d modules, want 21", len(res.Modules))
	}
	return res.Modules
}

func runMerge(t *testing.T, f mergeFixture, opt MergeOptions) (string, MergeReport) {
	t.Helper()
	opt.Weights = f.weights
	p, err := PlanMerge(f.inputs, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := filepath.Join(t.TempDir(), "merged")
	rep, err := p.Write(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	return out, rep
}

// TestMergeCatIsExact: cat's update of every module equals Σ wᵢ·sᵢ·Bᵢ·Aᵢ as
// PyTorch computes it from the inputs read by PEFT's rules, to float32
// rounding; its rank_pattern is what PEFT reads back; tune reads it too (the
// padded adapter's Delta is the same update), and the model with it gives
// PyTorch's loss.
func TestMergeCatIsExact(t *testing.T) {
	f := newMergeFixture(t)
	out, rep := runMerge(t, f, MergeOptions{Method: MergeCat})
	truePath := filepath.Join(t.TempDir(), "true.safetensors")
	res := mergeOracle(t, f, "cat", 1, 1, out, truePath)
	ranks := map[int]int{}
	var zeros []string
	for name, m := range res {
		ranks[m.Rank]++
		if m.MaxErr > 1e-6*max(1, m.MaxTrue) {
			t.Errorf("%s: cat differs from the weighted sum by %.3g (max |ΔW| %.3g)", name, m.MaxErr, m.MaxTrue)
		}
		if m.MaxTrue == 0 {
			zeros = append(zeros, name) // in the product of targets and layers, in no input
		}
	}
	if want := "model.layers.1.mlp.gate_proj"; len(zeros) != 1 || zeros[0] != want {
		t.Errorf("modules no input has: %v, want [%s]", zeros, want)
	}
	// Per-module ranks: 8+6 (layer 0 attention but k), 8+2 (k), 8+6+4 ...
	if len(ranks) < 4 || rep.Patterned == 0 {
		t.Fatalf("cat ranks %v, %d in rank_pattern: the fixture does not exercise rank_pattern", ranks, rep.Patterned)
	}
	t.Logf("cat: %s; ranks %v", rep, ranks)

	a, err := FromPEFT(out, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Open(truePath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	worst := 0.0
	for _, m := range a.Modules {
		want := make([]float32, m.Out*m.In)
		if err := readInto(st, model.LayerPrefix(m.Layer)+model.ProjectionPath(m.Name), []int{m.Out, m.In}, want); err != nil {
			t.Fatal(err)
		}
		for i, v := range a.Delta(m) {
			worst = max(worst, math.Abs(float64(v-want[i])))
		}
	}
	if worst > 1e-5 {
		t.Errorf("tune reads the cat adapter (rank_pattern, padded to r=%d) to updates off by %.3g", a.Spec.R, worst)
	}

	// The model with the merged adapter: tune's loss against PyTorch's.
	r := rand.New(rand.NewPCG(4, 4))
	b, in := testmodels.RandomBatch(r, 2, 9, 0, f.cfg.Vocab)
	ref, _, err := testmodels.Reference(f.base, in, "--adapter", out)
	if err != nil {
		t.Fatal(err)
	}
	m, md, err := model.Open(f.base)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	fw, err := testmodels.RunGraph(m, b, 2, 9, a.Attach(false))
	if err != nil {
		t.Fatal(err)
	}
	base, _, _ := testmodels.Reference(f.base, in)
	t.Logf("loss: base %.6f, with the cat merge: PyTorch %.6f, tune %.6f", base, ref, fw.Loss)
	if d := math.Abs(float64(fw.Loss - ref)); d > 1e-5*float64(ref) {
		t.Errorf("loss with the merged adapter: tune %.6f, PyTorch %.6f", fw.Loss, ref)
	}
	if math.Abs(float64(base-ref)) < 0.01 {
		t.Fatalf("the merged adapter moves the loss by %.3g only: the check proves nothing", base-ref)
	}
}

// TestMergeSVDIsOptimal: svd's update of every module is a best rank-R
// approximation of the weighted sum: its error, in Frobenius norm and in
// the sum of singular values, is that of the singular values PyTorch finds
// beyond R (no rank-R matrix does better), within 1e-4. R is the default
// (the largest input rank, 8) and an explicit 3.
func TestMergeSVDIsOptimal(t *testing.T) {
	f := newMergeFixture(t)
	for _, r := range []int{0, 3} {
		t.Run(fmt.Sprint("r=", r), func(t *testing.T) {
			out, rep := runMerge(t, f, MergeOptions{Method: MergeSVD, R: r})
			want := r
			if r == 0 {
				want = 8
			}
			if rep.R != want {
				t.Fatalf("rank %d, want %d", rep.R, want)
			}
			res := mergeOracle(t, f, "svd", want, 1, out, "")
			truncated, worst := 0, 0.0
			for name, m := range res {
				if m.Rank != want {
					t.Errorf("%s: rank %d, want %d", name, m.Rank, want)
				}
				d := max(math.Abs(m.ErrFro-m.OptFro), math.Abs(m.ErrNuc-m.OptNuc))
				worst = max(worst, d)
				if d > 1e-4 {
					t.Errorf("%s: error ‖T-M‖_F %.6g, nuclear %.6g; optimal %.6g, %.6g", name, m.ErrFro, m.ErrNuc, m.OptFro, m.OptNuc)
				}
				if m.OptFro > 0.01*m.MaxTrue {
					truncated++
				}
			}
			if truncated < 5 {
				t.Fatalf("only %d modules lose anything at rank %d: the check proves little", truncated, want)
			}
			t.Logf("svd r=%d: %s; %d modules truncated; |error - optimal| ≤ %.2g", want, rep, truncated, worst)
		})
	}
}

// TestMergeTIESMatchesPEFT: ties's update of every module equals PEFT's
// ties_svd (trim to density, elect by total sign, disjoint mean, rank-R SVD)
// as merge.py writes it out in PyTorch.
func TestMergeTIESMatchesPEFT(t *testing.T) {
	f := newMergeFixture(t)
	const density = 0.3
	out, rep := runMerge(t, f, MergeOptions{Method: MergeTIES, Density: density, R: 6})
	res := mergeOracle(t, f, "ties", 6, density, out, "")
	worst := 0.0
	for name, m := range res {
		worst = max(worst, m.MaxErr)
		if m.Gap != nil && *m.Gap < 1e-3 && m.MaxTrue > 0 {
			t.Fatalf("%s: σ_R and σ_R+1 of the TIES update are %.2g apart: the rank-R result is not unique", name, *m.Gap)
		}
		if m.MaxErr > 1e-5*max(1, m.MaxTrue) {
			t.Errorf("%s: ties differs from PEFT's ties_svd by %.3g", name, m.MaxErr)
		}
	}
	t.Logf("ties: %s; max |tune - PEFT ties_svd| %.2g", rep, worst)
}

// TestPruneKeepsTopK: exactly k entries stay, the largest by magnitude, and
// at a tie the first ones (hand-computed); on random vectors with many ties,
// the entries a stable sort by magnitude puts first.
func TestPruneKeepsTopK(t *testing.T) {
	v := []float64{0.5, -3, 2, -2, 1, 2, 0}
	prune(v, 3, make([]float64, len(v)))
	want := []float64{0, -3, 2, -2, 0, 0, 0}
	if !slices.Equal(v, want) {
		t.Fatalf("prune: %v, want %v", v, want)
	}
	r := rand.New(rand.NewPCG(8, 8))
	for range 200 {
		n := 1 + r.IntN(300)
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(r.IntN(21) - 10) // many equal magnitudes
		}
		k := r.IntN(n + 1)
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return math.Abs(v[order[a]]) > math.Abs(v[order[b]]) })
		want := make([]float64, n)
		for _, i := range order[:k] {
			want[i] = v[i]
		}
		prune(v, k, make([]float64, n))
		if !slices.Equal(v, want) {
			t.Fatalf("prune(k=%d): %v, want %v", k, v, want)
		}
	}
}

// TestPlanMergeRefuses: adapters of different bases, and bad options.
func TestPlanMergeRefuses(t *testing.T) {
	f := newMergeFixture(t)
	other := testmodels.Tiny("llama")
	other.Hidden = 24
	otherDir := filepath.Join(t.TempDir(), "other")
	if err := builtin.Write(otherDir, other); err != nil {
		t.Fatal(err)
	}
	m, md, _ := model.Open(otherDir)
	md.Close()
	r := rand.New(rand.NewPCG(1, 1))
	// Same base name, another model's shapes (e.g. a path reused on another machine).
	wrongShape := writeRandomAdapter(t, r, filepath.Join(t.TempDir(), "w"), f.base, m.Config, Spec{R: 4, Alpha: 4, Targets: []string{"q_proj"}})
	// A different base name.
	renamed := writeRandomAdapter(t, r, filepath.Join(t.TempDir(), "n"), "Qwen/Qwen2.5-7B", f.cfg, Spec{R: 4, Alpha: 4, Targets: []string{"gate_proj"}})
	// Different base widths on modules the adapters do not share.
	mlpOther := writeRandomAdapter(t, r, filepath.Join(t.TempDir(), "mo"), f.base, m.Config, Spec{R: 4, Alpha: 4, Targets: []string{"up_proj"}})
	cases := []struct {
		name string
		dirs []string
		opt  MergeOptions
		want string
	}{
		{"other shapes", []string{f.inputs[0], wrongShape}, MergeOptions{}, "different base models"},
		{"other widths", []string{f.inputs[0], mlpOther}, MergeOptions{}, "implies a hidden size of 24"},
		{"other model given", []string{f.inputs[0]}, MergeOptions{Model: &m.Config}, "another model"},
		{"other base name", []string{f.inputs[0], renamed}, MergeOptions{}, "base_model_name_or_path"},
		{"weights", f.inputs, MergeOptions{Weights: []float64{1}}, "1 weights for 3 adapters"},
		{"method", f.inputs, MergeOptions{Method: "linear"}, "expected cat, svd or ties"},
		{"rank with cat", f.inputs, MergeOptions{Method: MergeCat, R: 4}, "cat's rank"},
		{"density", f.inputs, MergeOptions{Method: MergeTIES, Density: 1.5}, "density"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := PlanMerge(c.dirs, c.opt)
			if err == nil {
				p.Close()
				t.Fatal("merged")
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q, want one line with %q", err, c.want)
			}
		})
	}
	// Naming the base resolves the name difference.
	p, err := PlanMerge([]string{f.inputs[0], renamed}, MergeOptions{Base: f.base})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

// TestFromPEFTRankPattern: a PEFT adapter whose modules have their own ranks
// and alphas loads with each module's update s·B·A intact (hand-checked
// against the stored factors), at the largest rank.
func TestFromPEFTRankPattern(t *testing.T) {
	f := newMergeFixture(t)
	a, err := FromPEFT(f.inputs[1], f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Spec.R != 6 || len(a.Modules) != 14 {
		t.Fatalf("r %d, %d modules; want 6 and 14", a.Spec.R, len(a.Modules))
	}
	pf, err := OpenPEFT(f.inputs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	seen := map[string]bool{}
	for _, pm := range pf.Modules {
		fa, fb, err := pf.Factors(pm)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, pm.Out*pm.In)
		for o := range pm.Out {
			for k := range pm.R {
				for i := range pm.In {
					want[o*pm.In+i] += pm.Scale * float64(fb[o*pm.R+k]) * float64(fa[k*pm.In+i])
				}
			}
		}
		got := a.Delta(a.Module(pm.Layer, pm.Name))
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-5 {
				t.Fatalf("%s: ΔW[%d] = %g, want %g", pm.Key(), i, got[i], want[i])
			}
		}
		seen[fmt.Sprintf("r%d s%.4f", pm.R, pm.Scale)] = true
	}
	// 6 at 12/√6, k_proj 2 at 12/√2, v_proj 6 at 5/√6, down_proj of layer 2: 3 at 12/√3.
	if len(seen) != 4 {
		t.Fatalf("module layouts %v, want 4 different ones", seen)
	}
	raw, _ := os.ReadFile(filepath.Join(f.inputs[1], peft.ConfigFile))
	if !bytes.Contains(raw, []byte(`"rank_pattern": {`+"\n"+`    "k_proj": 2,`)) {
		t.Errorf("rank_pattern is not written in order as an object:\n%s", raw)
	}
}

// TestMergeWriteCancelled: a cancelled merge (Ctrl-C) stops with the
// context's error and leaves no output, and the plan closes cleanly after it.
func TestMergeWriteCancelled(t *testing.T) {
	f := newMergeFixture(t)
	p, err := PlanMerge(f.inputs, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(t.TempDir(), "merged")
	if _, err := p.Write(ctx, out); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("cancelled merge: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a cancelled merge left its output")
	}
}
