package export

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/tokenizer"
)

// TestMergedAdapterInLlamaCpp: adapters merged by `tune merge` (cat, whose
// modules have different ranks through rank_pattern, and svd at a rank below
// the inputs' sum), exported as GGUF adapters, run in llama.cpp on a llama
// base (q/k rows permuted) with the next-token log-probabilities and the loss
// tune computes with the same merged adapter.
func TestMergedAdapterInLlamaCpp(t *testing.T) {
	requireOracle(t)
	base := writeModel(t, small("llama", 32000), "llama2")
	cfg := loadConfig(t, base)
	inputs := []string{
		randomAdapter(t, base, cfg, false, 21), // r 4, every projection
		randomSpecAdapter(t, base, cfg, lora.Spec{R: 6, Alpha: 3, Targets: []string{"q_proj", "k_proj", "down_proj"}, RSLoRA: true}, 22, 0.3),
	}

	tok, err := tokenizer.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	for _, id := range tok.Encode("Pooled compute: each machine trains an adapter on its own data, and the adapters are merged.", true) {
		ids = append(ids, int32(id))
	}
	out := t.TempDir()
	baseGGUF := filepath.Join(out, "base.gguf")
	if _, err := GGUF(base, "", baseGGUF, "f32"); err != nil {
		t.Fatal(err)
	}
	runs := []scoreRun{{Model: baseGGUF, IDs: ids}}
	methods := []lora.MergeOptions{{Method: lora.MergeCat}, {Method: lora.MergeSVD, R: 4}}
	var merged []string
	for _, opt := range methods {
		opt.Weights = []float64{1.2, 1.5}
		p, err := lora.PlanMerge(inputs, opt)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(out, opt.Method)
		rep, err := p.Write(context.Background(), dir)
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", opt.Method, rep)
		if opt.Method == lora.MergeCat && rep.Patterned == 0 {
			t.Fatal("the cat merge has no rank_pattern: the test would not exercise it")
		}
		gguf := filepath.Join(out, opt.Method+".gguf")
		if err := GGUFAdapter(dir, base, gguf, "f32"); err != nil {
			t.Fatal(err)
		}
		merged = append(merged, dir)
		runs = append(runs, scoreRun{Model: baseGGUF, Adapters: []string{gguf}, IDs: ids})
	}
	res := llamaCpp(t, runs)
	lpBase, _, _ := testmodels.NextTokenStats(tuneLogits(t, base, "", ids), cfg.Vocab, ids)
	for i, dir := range merged {
		what := methods[i].Method + " merge"
		f := tuneForward(t, base, dir, ids)
		if f.Counted != len(ids)-1 {
			t.Fatalf("the loss counted %d targets of %d tokens", f.Counted, len(ids))
		}
		lp, top, gap := testmodels.NextTokenStats(f.Logits, cfg.Vocab, ids)
		worst := compare(t, what+": base GGUF + GGUF adapter vs tune", res[i+1], lp, top, gap, 1e-3)
		var llamaLoss float64
		for _, l := range res[i+1].LogProbs {
			llamaLoss -= l / float64(len(res[i+1].LogProbs))
		}
		loss := float64(f.Loss)
		t.Logf("%s: loss in tune %.6f, in llama.cpp %.6f; max |Δ log p| %.2g", what, loss, llamaLoss, worst)
		if d := math.Abs(loss - llamaLoss); d > 1e-4*loss {
			t.Errorf("%s: llama.cpp's loss %.6f, tune's %.6f", what, llamaLoss, loss)
		}
		moved := 0.0
		for j := range lp {
			moved = max(moved, math.Abs(lp[j]-lpBase[j]))
		}
		if moved < 0.05 {
			t.Fatalf("%s: the merged adapter moves log-probabilities by %.3g only: the check proves nothing", what, moved)
		}
	}
}

// TestDoRAMergedInLlamaCpp: a DoRA adapter merged into a llama base
// (W = m/‖W₀ + s·B·A‖ ⊙ (W₀ + s·B·A), q and k rows permuted after) and
// exported as GGUF runs in llama.cpp with the log-probabilities and loss
// tune computes with the adapter unmerged; the GGUF adapter export refuses
// DoRA, naming the merged export.
func TestDoRAMergedInLlamaCpp(t *testing.T) {
	requireOracle(t)
	spec := small("llama", 32000)
	spec.AttentionBias = true // the bias is added after DoRA's scaling
	base := writeModel(t, spec, "llama2")
	cfg := loadConfig(t, base)
	adapter := randomSpecAdapter(t, base, cfg, lora.Spec{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}, DoRA: true}, 31, 0.1)
	err := GGUFAdapter(adapter, base, filepath.Join(t.TempDir(), "a.gguf"), "f32")
	if err == nil || !strings.Contains(err.Error(), "use_dora") || !strings.Contains(err.Error(), "--format gguf or merged") {
		t.Fatalf("GGUF adapter export of a DoRA adapter: %v", err)
	}
	tok, err := tokenizer.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	for _, id := range tok.Encode("DoRA learns a magnitude for every output row of a projection.", true) {
		ids = append(ids, int32(id))
	}
	merged := filepath.Join(t.TempDir(), "merged.gguf")
	if _, err := GGUF(base, adapter, merged, "f32"); err != nil {
		t.Fatal(err)
	}
	res := llamaCpp(t, []scoreRun{{Model: merged, IDs: ids}})
	f := tuneForward(t, base, adapter, ids)
	lp, top, gap := testmodels.NextTokenStats(f.Logits, cfg.Vocab, ids)
	lpBase, _, _ := testmodels.NextTokenStats(tuneLogits(t, base, "", ids), cfg.Vocab, ids)
	worst := compare(t, "merged DoRA GGUF vs tune with the adapter", res[0], lp, top, gap, 1e-3)
	var llamaLoss float64
	for _, l := range res[0].LogProbs {
		llamaLoss -= l / float64(len(res[0].LogProbs))
	}
	loss := float64(f.Loss)
	moved := 0.0
	for j := range lp {
		moved = max(moved, math.Abs(lp[j]-lpBase[j]))
	}
	t.Logf("loss in tune %.6f, merged in llama.cpp %.6f; max |Δ log p| %.2g; the adapter moves log p by %.3g", loss, llamaLoss, worst, moved)
	if d := math.Abs(loss - llamaLoss); d > 1e-4*loss {
		t.Errorf("llama.cpp's loss %.6f, tune's %.6f", llamaLoss, loss)
	}
	if moved < 0.05 {
		t.Fatalf("the DoRA adapter moves log-probabilities by %.3g only: the check proves nothing", moved)
	}
}
