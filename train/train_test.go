package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/datasets"
)

// demoConfig is configs/demo.yaml with overrides, writing under a temp dir.
func demoConfig(t *testing.T, overrides ...string) *configs.Config {
	t.Helper()
	out := filepath.Join(t.TempDir(), "run")
	cfg, err := configs.Load("../configs/demo.yaml", append([]string{"output.dir=" + out}, overrides...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func stepLosses(t *testing.T, metrics string) map[int]float64 {
	t.Helper()
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]float64{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r struct {
			Step int
			Loss *float64
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("metrics.jsonl: %q: %v", line, err)
		}
		if r.Loss != nil {
			if _, dup := out[r.Step]; dup {
				t.Fatalf("metrics.jsonl has step %d twice", r.Step)
			}
			out[r.Step] = *r.Loss
		}
	}
	return out
}

// TestMemorise: a small model memorises 8 examples; the loss falls below a
// tenth of its start.
func TestMemorise(t *testing.T) {
	cfg := demoConfig(t, "data.builtin_examples=8", "data.val_ratio=0", "train.batch_size=4", "train.max_steps=80",
		"train.lr=1e-2", "train.schedule=constant", "train.warmup_steps=0", "lora.r=16", "lora.alpha=16", "checkpoint.every=0", "train.eval_every=0")
	res, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss %.4f -> %.4f", res.FirstLoss, res.LastLoss)
	if !(res.LastLoss < res.FirstLoss/10) {
		t.Fatalf("loss %.4f -> %.4f: did not fall below a tenth", res.FirstLoss, res.LastLoss)
	}
	for _, f := range []string{"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "metrics.jsonl", "loss.png"} {
		if _, err := os.Stat(filepath.Join(cfg.Output.Dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestInterruptAndResume: a run cancelled (as by SIGINT) in step 8, an eval step, writes a
// checkpoint; resuming it gives exactly the losses and adapter of a run that
// was never stopped, with dropout and gradient accumulation on.
func TestInterruptAndResume(t *testing.T) {
	interruptAndResume(t, "train.max_steps=12", "train.grad_accum=2", "train.batch_size=2", "lora.dropout=0.1", "data.builtin_examples=40",
		"checkpoint.every=5", "checkpoint.keep_last=2", "train.eval_every=4")
}

// TestInterruptAndResumeDoRA: the same with DoRA: the magnitudes and their
// AdamW moments are in the checkpoint, and the resumed run is bitwise the
// uninterrupted one.
func TestInterruptAndResumeDoRA(t *testing.T) {
	interruptAndResume(t, "train.max_steps=12", "train.grad_accum=2", "train.batch_size=2", "lora.dropout=0.1", "data.builtin_examples=40",
		"checkpoint.every=5", "checkpoint.keep_last=2", "train.eval_every=4", "lora.use_dora=true", "lora.target_modules=[q_proj,v_proj,up_proj]")
}

// interruptAndResume runs the demo config with overrides (12 steps,
// checkpoints every 5) whole, and cut after step 8 then resumed, and compares.
func interruptAndResume(t *testing.T, overrides ...string) {
	t.Helper()
	whole := demoConfig(t, overrides...)
	if _, err := Run(context.Background(), whole, Options{}); err != nil {
		t.Fatal(err)
	}

	cut := demoConfig(t, overrides...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Run(ctx, cut, Options{OnStep: func(r StepRecord) {
		if r.Step == 8 { // an eval step (eval_every 4): the eval must still run
			cancel() // as SIGINT during step 8 would
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || !strings.HasSuffix(res.Checkpoint, "step-000008") {
		t.Fatalf("interrupted run: %+v", res)
	}
	if _, err := Run(context.Background(), cut, Options{Resume: "latest"}); err != nil {
		t.Fatal(err)
	}
	want, got := stepLosses(t, filepath.Join(whole.Output.Dir, "metrics.jsonl")), stepLosses(t, filepath.Join(cut.Output.Dir, "metrics.jsonl"))
	if len(got) != 12 || len(want) != 12 {
		t.Fatalf("steps logged: %d resumed, %d whole", len(got), len(want))
	}
	for s, w := range want {
		if got[s] != w {
			t.Errorf("step %d: loss %.9f after resume, %.9f uninterrupted", s, got[s], w)
		}
	}
	a, _ := os.ReadFile(filepath.Join(whole.Output.Dir, "adapter", "adapter_model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(cut.Output.Dir, "adapter", "adapter_model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("final adapters differ")
	}
	steps, _ := listSteps(filepath.Join(cut.Output.Dir, "checkpoints"))
	if len(steps) != 2 || steps[1] != 12 {
		t.Errorf("kept checkpoints %v, want the last 2 ending at 12", steps)
	}
}

func TestNonFiniteLossStops(t *testing.T) {
	cfg := demoConfig(t, "train.lr=1e30", "train.max_steps=5", "train.warmup_steps=0", "train.max_grad_norm=0", "checkpoint.every=1")
	_, err := Run(context.Background(), cfg, Options{})
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "is not a finite number") {
		t.Fatalf("error %v, want one saying the loss or gradient norm is not a finite number", err)
	}
}

// TestKilledCheckpointWriteLeavesPreviousOne: a checkpoint whose writing was
// killed (a half-written temporary directory, as WriteDirAtomic leaves) is
// ignored; --resume takes the previous complete one, and the next save
// removes the debris.
func TestKilledCheckpointWriteLeavesPreviousOne(t *testing.T) {
	overrides := []string{"train.max_steps=8", "checkpoint.every=4", "train.eval_every=0", "data.val_ratio=0"}
	cfg := demoConfig(t, overrides...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := Run(ctx, cfg, Options{OnStep: func(r StepRecord) {
		if r.Step == 4 {
			cancel()
		}
	}}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(cfg.Output.Dir, "checkpoints")
	partial := filepath.Join(root, ".step-000005.tmp-123")
	os.MkdirAll(partial, 0o755)
	os.WriteFile(filepath.Join(partial, "adapter_model.safetensors"), []byte("\x10\x00\x00"), 0o644)
	latest, err := LatestCheckpoint(root)
	if err != nil || !strings.HasSuffix(latest, "step-000004") {
		t.Fatalf("latest checkpoint %q, %v; want step-000004", latest, err)
	}
	res, err := Run(context.Background(), cfg, Options{Resume: "latest"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 4 {
		t.Errorf("resumed run made %d steps, want 4", res.Steps)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Error("the half-written checkpoint directory was not removed")
	}
}

// TestInitFromContinues: lora.init_from starts from a saved adapter, so the
// second run begins at the loss the first one reached, not at the base's.
func TestInitFromContinues(t *testing.T) {
	common := []string{"checkpoint.every=0", "train.eval_every=0", "data.val_ratio=0", "train.schedule=constant", "train.warmup_steps=0"}
	first := demoConfig(t, append(common, "train.max_steps=40")...)
	r1, err := Run(context.Background(), first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	second := demoConfig(t, append(common, "train.max_steps=1", "lora.init_from="+r1.AdapterDir)...)
	r2, err := Run(context.Background(), second, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first run %.4f -> %.4f; continued run starts at %.4f", r1.FirstLoss, r1.LastLoss, r2.FirstLoss)
	if !(r2.FirstLoss < r1.FirstLoss/2) {
		t.Fatalf("the continued run starts at loss %.4f, the fresh one started at %.4f", r2.FirstLoss, r1.FirstLoss)
	}
}

// TestUsedOutputDirRefused: a fresh run never mixes its checkpoints with an
// earlier run's in the same output.dir.
func TestUsedOutputDirRefused(t *testing.T) {
	cfg := demoConfig(t, "train.max_steps=2", "checkpoint.every=1", "train.eval_every=0", "data.val_ratio=0")
	if _, err := Run(context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "already holds checkpoints") || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("second fresh run into the same output.dir: %v", err)
	}
}

// TestEpochsWithAccumulationStopAtTheData: in epoch mode the last step is
// shorter rather than reaching into data past the last epoch.
func TestEpochsWithAccumulationStopAtTheData(t *testing.T) {
	cfg := demoConfig(t, "train.max_steps=0", "train.epochs=1", "train.grad_accum=4", "train.batch_size=4", "data.val_ratio=0", "train.eval_every=0", "checkpoint.every=0", "data.builtin_examples=50")
	var tokens int
	if _, err := Run(context.Background(), cfg, Options{OnStep: func(r StepRecord) { tokens += r.Tokens }}); err != nil {
		t.Fatal(err)
	}
	var want int
	for _, ex := range datasets.Counting(50, 128, cfg.Train.Seed) {
		want += len(ex.IDs) - 1 // every token but the first is predicted once
	}
	if tokens != want {
		t.Fatalf("one epoch trained on %d tokens; the data has %d to predict", tokens, want)
	}
}
