package plan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/load"
	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/train"
)

// Speed is a measurement of this machine's kernels at a config's shapes:
// one decoder layer's training step and the head's loss, from which a
// step of the whole model is predicted.
type Speed struct {
	LayerS float64 `json:"layer_s"` // a step of a one-layer model (forward, backward, update) with a tiny vocabulary
	HeadS  float64 `json:"head_s"`  // the head and loss, forward and backward, over every row, whole vocabulary
	Cached bool    `json:"cached"`  // read from the cache, not measured now
	// Load is the 1-minute load average per core of the other jobs when it
	// was measured: a time taken while they held the cores is no prediction
	// for a quieter machine, nor the reverse.
	Load float64 `json:"load_per_core"`
}

// loadPerCore is the 1-minute load average over the logical cores, or -1
// where the system does not say.
func loadPerCore() float64 {
	a, err := load.Avg()
	if err != nil {
		return -1
	}
	return a.Load1 / float64(runtime.NumCPU())
}

// stale reports whether a cached measurement was taken under a load that
// differs from now's by more than half a core's worth per core.
func (s Speed) stale(now float64) bool {
	return now >= 0 && s.Load >= 0 && math.Abs(s.Load-now) > 0.5
}

// StepS predicts a step: grad_accum micro-batches through every layer and
// the head, whose cost scales with the share of tokens that count in the
// loss (kernels.HeadLoss multiplies only those rows).
func (s Speed) StepS(cfg *configs.Config, layers int, counted float64) float64 {
	return float64(cfg.Train.GradAccum) * (float64(layers)*s.LayerS + counted*s.HeadS)
}

// speedKey names a measurement: the machine, the kernels and every shape
// and choice that changes the time.
func speedKey(cfg *configs.Config, w Weights, m Machine) string {
	variant, _ := kernels.Variant()
	c := w.Config
	t := cfg.Train
	key := fmt.Sprintf("v1|%s|%d|%s|%d|%s|%d,%d,%d,%d,%d,%d,%d,%v,%v|%s|b%d s%d|r%d %v d%v|ckpt %v",
		m.CPU, runtime.NumCPU(), variant, t.Threads, c.ModelType, c.Hidden, c.Intermediate, c.Heads, c.KVHeads, c.HeadDim, c.Vocab, c.SlidingWindow, c.AttentionBias, c.QKNorm,
		w.DType, t.BatchSize, cfg.Data.SeqLen, cfg.LoRA.R, cfg.LoRA.TargetModules, cfg.LoRA.Dropout > 0, t.ActivationCheckpointing)
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:12])
}

// MeasureSpeed times the config's layer and head on this machine, or reads
// the figures measured before under cacheDir.
func MeasureSpeed(ctx context.Context, cfg *configs.Config, w Weights, m Machine, cacheDir string) (Speed, error) {
	path := filepath.Join(cacheDir, "speed-"+speedKey(cfg, w, m)+".json")
	// The load of the others, read before this process adds its own.
	others := loadPerCore()
	if b, err := os.ReadFile(path); err == nil {
		var s Speed
		if json.Unmarshal(b, &s) == nil && s.LayerS > 0 && !s.stale(others) {
			s.Cached = true
			return s, nil
		}
	}
	s, err := measureSpeed(ctx, cfg, w, cacheDir)
	s.Load = others
	if err != nil {
		return s, err
	}
	err = checkpoints.WriteFileAtomic(path, func(f io.Writer) error { return json.NewEncoder(f).Encode(s) })
	return s, err
}

func measureSpeed(ctx context.Context, cfg *configs.Config, w Weights, cacheDir string) (Speed, error) {
	var s Speed
	// One decoder layer of the config's shape, random weights of its dtype,
	// trained for a few steps by the code a run uses (train.Bench).
	spec, err := layerSpec(w.Config, layerDType(w.DType), cfg.Data.SeqLen)
	if err != nil {
		return s, err
	}
	dir := filepath.Join(cacheDir, "layer-"+specKey(spec))
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		if err := checkpoints.WriteDirAtomic(dir, func(tmp string) error { return builtin.Write(tmp, spec) }); err != nil {
			return s, fmt.Errorf("make the timing model: %w", err)
		}
	}
	probe := *cfg
	probe.Model.Path = dir
	probe.Train.GradAccum = 1
	probe.LoRA.Layers, probe.LoRA.LastLayers, probe.LoRA.InitFrom = nil, 0, ""
	res, err := train.Bench(ctx, &probe, 3, cacheDir)
	if err != nil {
		return s, fmt.Errorf("time a layer: %w", err)
	}
	s.LayerS = res.StepS

	// The head at the whole vocabulary is timed on a slice of it, the
	// chunked loss being linear in the vocabulary.
	c := w.Config
	n := cfg.Train.BatchSize * cfg.Data.SeqLen
	v := min(c.Vocab, 8192)
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, v*c.Hidden)
	for i := range vals {
		vals[i] = rng.Float32()*0.2 - 0.1
	}
	raw, err := encode(w.DType, vals)
	if err != nil {
		return s, err
	}
	head, err := kernels.NewMatrix(w.DType, v, c.Hidden, raw)
	if err != nil {
		return s, err
	}
	x, dx := make([]float32, n*c.Hidden), make([]float32, n*c.Hidden)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	targets := make([]int32, n)
	for i := range targets {
		targets[i] = int32(rng.IntN(v))
	}
	pool := kernels.NewPool(cfg.Train.Threads)
	defer pool.Close()
	var h kernels.HeadLoss
	var times []float64
	for i := range 4 {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		start := time.Now()
		h.Run(pool, dx, x, n, head, targets, 1)
		if i > 0 { // the first sizes the buffers
			times = append(times, time.Since(start).Seconds())
		}
	}
	slices.Sort(times)
	s.HeadS = times[len(times)/2] * float64(c.Vocab) / float64(v)
	return s, nil
}

// layerSpec is a built-in model of one layer of c's shape, with a small vocabulary.
func layerSpec(c model.Config, dt dtype.DType, seq int) (builtin.Spec, error) {
	arch := c.ModelType
	if !slices.Contains([]string{"llama", "mistral", "qwen2", "qwen3"}, arch) {
		arch = "llama"
	}
	s := builtin.Spec{Arch: arch, Hidden: c.Hidden, Intermediate: c.Intermediate, Layers: 1, Heads: c.Heads, KVHeads: c.KVHeads,
		Vocab: 256, Tied: true, RopeTheta: c.RopeTheta, AttentionBias: c.OutputBias, SlidingWindow: c.SlidingWindow,
		DType: dt, Seed: 7, MaxPositions: max(seq, 256)}
	if c.HeadDim != c.Hidden/c.Heads {
		s.HeadDim = c.HeadDim
	}
	if dt != dtype.F32 && dt != dtype.BF16 && dt != dtype.F16 {
		return s, fmt.Errorf("time a layer: weights of dtype %s", dt)
	}
	return s, nil
}

func specKey(s builtin.Spec) string {
	b, _ := json.Marshal(s)
	h := sha256.Sum256(b)
	return strings.ToLower(hex.EncodeToString(h[:8]))
}

// layerDType is the weight dtype the timed layer is made in: the config's,
// but bf16 for a block format, which a generated Hugging Face layer cannot
// hold. Its products widen blocks into the same float32 panels bf16 widens
// into; the head, timed in the config's own format, carries the difference.
func layerDType(dt dtype.DType) dtype.DType {
	if dt.Quantized() {
		return dtype.BF16
	}
	return dt
}

// encode stores values as dt, quantizing them for a block format.
func encode(dt dtype.DType, v []float32) ([]byte, error) {
	if !dt.Quantized() {
		return dtype.Encode(dt, v)
	}
	n, err := dt.RowBytes(len(v))
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	return b, quant.Quantize(dt, b, v)
}
