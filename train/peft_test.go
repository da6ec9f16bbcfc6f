package train

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/tune-dev/tune/export"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// graphLoss runs a model (with an adapter, or nil) on one batch.
func graphLoss(t *testing.T, m *model.Model, a *lora.Adapter, b model.Batch, batch, seq int) float32 {
	t.Helper()
	var ad model.Adapter
	if a != nil {
		ad = a.Attach(false)
	}
	f, err := testmodels.RunGraph(m, b, batch, seq, ad)
	if err != nil {
		t.Fatal(err)
	}
	return f.Loss
}

// TestTrainedAdapterReloads: the PEFT adapter a run writes and the model
// merged from it give, reloaded by tune and by PyTorch, the loss of the training graph.
func TestTrainedAdapterReloads(t *testing.T) {
	trainedAdapterReloads(t)
}

// TestTrainedDoRAAdapterReloads is TestTrainedAdapterReloads with DoRA: the
// adapter's use_dora and magnitudes reload (PyTorch reads them as PEFT's
// DoraLinearLayer does), and the merged model folds them in.
func TestTrainedDoRAAdapterReloads(t *testing.T) {
	a := trainedAdapterReloads(t, "lora.use_dora=true")
	moved := false
	for _, m := range a.Modules {
		if m.M == nil {
			t.Fatalf("%s: no magnitude after reloading a DoRA adapter", m.Key())
		}
		if m.Out > 0 && m.M[0] != 0 {
			moved = true
		}
	}
	if !a.Spec.DoRA || !moved {
		t.Fatalf("reloaded adapter: DoRA %v, magnitudes set %v", a.Spec.DoRA, moved)
	}
}

func trainedAdapterReloads(t *testing.T, overrides ...string) *lora.Adapter {
	t.Helper()
	cfg := demoConfig(t, append([]string{"train.max_steps=6", "checkpoint.every=0", "train.eval_every=0", "data.val_ratio=0", "lora.target_modules=[q_proj,k_proj,o_proj,down_proj]"}, overrides...)...)
	res, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// What `tune run` does with output.merged=true after Run.
	if err := export.Merged(res.ModelDir, res.AdapterDir, filepath.Join(cfg.Output.Dir, "merged"), "", export.DefaultShardBytes); err != nil {
		t.Fatal(err)
	}
	baseDir := filepath.Join(cfg.Output.Dir, "base-model")
	base, md, err := model.Open(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	a, err := lora.FromPEFT(res.AdapterDir, base.Config)
	if err != nil {
		t.Fatal(err)
	}
	const batch, seq = 2, 16
	b, in := testmodels.RandomBatch(rand.New(rand.NewPCG(1, 9)), batch, seq, 1, 17) // the demo's tokens
	withAdapter := graphLoss(t, base, a, b, batch, seq)
	without := graphLoss(t, base, nil, b, batch, seq)
	if math.Abs(float64(withAdapter-without)) < 1e-3 {
		t.Fatalf("the trained adapter changes the loss by only %g: the comparison would prove nothing", withAdapter-without)
	}

	refLoss, _, err := testmodels.Reference(baseDir, in, "--adapter", res.AdapterDir)
	if err != nil {
		t.Fatal(err)
	}
	merged, mergedDir, err := model.Open(filepath.Join(cfg.Output.Dir, "merged"))
	if err != nil {
		t.Fatal(err)
	}
	defer mergedDir.Close()
	mergedLoss := graphLoss(t, merged, nil, b, batch, seq)
	refMerged, _, err := testmodels.Reference(filepath.Join(cfg.Output.Dir, "merged"), in)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss: base %.6f; base+adapter tune %.6f, PyTorch %.6f; merged tune %.6f, PyTorch %.6f", without, withAdapter, refLoss, mergedLoss, refMerged)
	for name, got := range map[string]float32{"PyTorch base+adapter": refLoss, "tune merged": mergedLoss, "PyTorch merged": refMerged} {
		if d := math.Abs(float64(got-withAdapter)) / float64(withAdapter); d > 1e-5 {
			t.Errorf("%s loss %.7f, tune base+adapter %.7f", name, got, withAdapter)
		}
	}
	return a
}
