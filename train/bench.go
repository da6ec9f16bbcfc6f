package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/model"
)

// BenchResult is what `tune bench` measures: training steps of a config's
// model, adapter, batch and sequence length on random token ids.
type BenchResult struct {
	TokensPerS   float64   `json:"tokens_per_s"` // batch·seq·grad_accum over the median step time
	BestTokensS  float64   `json:"best_tokens_per_s"`
	StepS        float64   `json:"step_s"` // median
	StepsS       []float64 `json:"steps_s"`
	PeakRSSBytes int64     `json:"peak_rss_bytes"`
	Kernels      string    `json:"kernels"`
	Threads      int       `json:"threads"`
	Batch        int       `json:"batch"`
	Seq          int       `json:"seq"`
	GradAccum    int       `json:"grad_accum"`
	Recompute    bool      `json:"activation_checkpointing"`
	Model        string    `json:"model"`
}

// Bench times steps training steps after one warm-up step, with the config's
// model, LoRA, optimizer, batch, seq_len, threads and activation
// checkpointing, on random token ids: no dataset is read. Built-in models are
// made under cacheDir.
func Bench(ctx context.Context, cfg *configs.Config, steps int, cacheDir string) (BenchResult, error) {
	t := cfg.Train
	res := BenchResult{Batch: t.BatchSize, Seq: cfg.Data.SeqLen, GradAccum: t.GradAccum, Recompute: t.ActivationCheckpointing}
	if steps < 1 {
		return res, &configs.FieldError{File: cfg.Path, Path: "--steps", Msg: fmt.Sprintf("%d: at least one step is needed", steps)}
	}
	if err := checkComputeDType(cfg); err != nil {
		return res, err
	}
	path, err := resolveModel(cfg.Model.Path, filepath.Join(cacheDir, builtinName(cfg.Model.Path)))
	if err != nil {
		return res, err
	}
	res.Model = path
	// Making a built-in model's files took memory the run never holds: let it
	// go, and restart the peak count (Linux; elsewhere the peak includes it).
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	m, files, err := model.Open(path)
	if err != nil {
		return res, err
	}
	defer files.Close()
	if cfg.Data.SeqLen > m.Config.MaxPositions {
		return res, &configs.FieldError{File: cfg.Path, Path: "data.seq_len", Msg: fmt.Sprintf("%d exceeds the model's max_position_embeddings %d", cfg.Data.SeqLen, m.Config.MaxPositions)}
	}
	adapter, err := newAdapter(cfg, m)
	if err != nil {
		return res, err
	}
	tr, err := newTrainer(m, adapter, t, cfg.Data.SeqLen, t.ActivationCheckpointing)
	if err != nil {
		return res, err
	}
	defer tr.close()
	res.Threads = tr.pool.Threads()
	res.Kernels, _ = kernels.Variant()

	rng := rand.New(rand.NewPCG(t.Seed, 0xbe))
	b := model.Batch{IDs: make([]int32, t.BatchSize*cfg.Data.SeqLen)}
	for step := 0; step <= steps; step++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		start := time.Now()
		var lossSum float64
		tokens := 0
		for micro := range t.GradAccum {
			for i := range b.IDs {
				b.IDs[i] = int32(rng.IntN(m.Config.Vocab))
			}
			l, n, err := tr.micro(b, dropoutSeed(t.Seed, step, micro))
			if err != nil {
				return res, err
			}
			lossSum, tokens = lossSum+l, tokens+n
		}
		if _, _, err := tr.update(lossSum, tokens, t.LR); err != nil {
			return res, err
		}
		if step > 0 { // the first step sizes every buffer
			res.StepsS = append(res.StepsS, time.Since(start).Seconds())
		}
	}
	sorted := slices.Sorted(slices.Values(res.StepsS))
	res.StepS = sorted[len(sorted)/2]
	perStep := float64(t.BatchSize * cfg.Data.SeqLen * t.GradAccum)
	res.TokensPerS = perStep / res.StepS
	res.BestTokensS = perStep / sorted[0]
	res.PeakRSSBytes = peakRSS()
	return res, nil
}

// BenchCacheDir is where Bench makes built-in models: the user's cache.
func BenchCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "tune", "builtin")
}
