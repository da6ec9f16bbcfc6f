package train

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/tune-dev/tune/model"
)

// stepAllocBytes is what a steady-state step may allocate: Gorgonia's tape and
// the kernels' closures make a few small objects per op, while every buffer
// (activations, workspace, gradients, logits chunks) is sized at the first
// step; one activation buffer of this model is 64 KiB.
const stepAllocBytes = 96 << 10

// After the first step, a training step allocates no buffer: bytes allocated
// per step stay under stepAllocBytes, with LoRA and with DoRA.
func TestSteadyStepAllocatesNoBuffers(t *testing.T) {
	for _, dora := range []string{"false", "true"} {
		t.Run("dora="+dora, func(t *testing.T) {
			steadyStepAllocates(t, "lora.use_dora="+dora)
		})
	}
}

func steadyStepAllocates(t *testing.T, overrides ...string) {
	cfg := demoConfig(t, append([]string{"train.batch_size=4", "lora.target_modules=[all-linear]", "lora.dropout=0.1"}, overrides...)...)
	path, err := resolveModel(cfg.Model.Path, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, files, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	a, err := newAdapter(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, recompute := range []bool{false, true} {
		tr, err := newTrainer(m, a, cfg.Train, cfg.Data.SeqLen, recompute)
		if err != nil {
			t.Fatal(err)
		}
		step := randomSteps(t, tr, m.Config.Vocab, cfg.Train.BatchSize*cfg.Data.SeqLen)
		step()
		step()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const steps = 5
		for range steps {
			step()
		}
		runtime.ReadMemStats(&after)
		perStep := (after.TotalAlloc - before.TotalAlloc) / steps
		t.Logf("activation checkpointing %v: %d bytes, %d objects allocated per step", recompute, perStep, (after.Mallocs-before.Mallocs)/steps)
		if perStep > stepAllocBytes {
			t.Errorf("activation checkpointing %v: a steady step allocates %d bytes, want under %d", recompute, perStep, stepAllocBytes)
		}
		tr.close()
	}
}

// randomSteps returns a function that makes one training step of tr on
// random token ids, n of them, from a fixed seed.
func randomSteps(t *testing.T, tr *trainer, vocab, n int) func() {
	rng := rand.New(rand.NewPCG(1, 1))
	b := model.Batch{IDs: make([]int32, n)}
	return func() {
		t.Helper()
		for i := range b.IDs {
			b.IDs[i] = int32(rng.IntN(vocab))
		}
		l, k, err := tr.micro(b, 3)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tr.update(l, k, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
}
