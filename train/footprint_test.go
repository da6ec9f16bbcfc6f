package train

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// PlanFootprint equals what a trainer holds after its first steps: the live
// heap that building the adapter and the trainer and running two steps adds,
// measured by the Go runtime, against the figure computed without running.
func TestFootprintMatchesLiveHeap(t *testing.T) {
	// SmolLM2's layer shape and vocabulary, 4 layers, f32 weights: buffers
	// large enough that Gorgonia's bookkeeping is a small share.
	spec, _ := builtin.Named("smollm2-135m")
	spec.Layers, spec.DType = 4, dtype.F32
	dir := filepath.Join(t.TempDir(), "m")
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	m, files, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	for _, tc := range []struct {
		name      string
		overrides []string
	}{
		{"keep", []string{"data.seq_len=128", "train.batch_size=2", "lora.target_modules=[all-linear]", "lora.r=8"}},
		{"recompute", []string{"data.seq_len=256", "train.batch_size=1", "train.activation_checkpointing=true", "lora.target_modules=[q_proj,v_proj]", "lora.dropout=0.1"}},
		{"dora", []string{"data.seq_len=128", "train.batch_size=2", "lora.target_modules=[all-linear]", "lora.r=8", "lora.use_dora=true", "lora.dropout=0.05"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := demoConfig(t, append(tc.overrides, "train.eval_every=0")...)
			want, err := PlanFootprint(cfg, m.Config, dtype.F32)
			if err != nil {
				t.Fatal(err)
			}
			before := liveHeap()
			a, err := newAdapter(cfg, m)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := newTrainer(m, a, cfg.Train, cfg.Data.SeqLen, cfg.Train.ActivationCheckpointing)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.close()
			step := randomSteps(t, tr, m.Config.Vocab, cfg.Train.BatchSize*cfg.Data.SeqLen)
			step()
			step()
			got := liveHeap() - before
			runtime.KeepAlive(tr)
			err2 := float64(want.Total()-got) / float64(got)
			t.Logf("footprint %d (graph %+v), live heap %d: %+.2f%%", want.Total(), want.Graph, got, 100*err2)
			if err2 < -0.03 || err2 > 0.03 {
				t.Errorf("footprint %d bytes, live heap %d: off by %+.1f%%, want within 3%%", want.Total(), got, 100*err2)
			}
		})
	}
}
