package plan

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"unsafe"

	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/train"
)

// Part is one line of the memory estimate.
type Part struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	Note  string `json:"note,omitempty"`
}

// Memory is the estimate of a run's resident memory.
type Memory struct {
	Parts []Part `json:"parts"`
	// PeakBytes is the predicted peak resident memory (VmHWM, what
	// /usr/bin/time -v calls the maximum resident set size).
	PeakBytes int64 `json:"peak_bytes"`
	// HeapBytes is the part of the peak the Go heap holds: the run's
	// memory limit (GOMEMLIMIT) is set from it, so the estimate holds.
	HeapBytes int64 `json:"heap_bytes"`
	// FirstRunBytes, when not zero, is the peak while a built-in model is
	// generated (the first run of a builtin:NAME only).
	FirstRunBytes int64 `json:"first_run_bytes,omitempty"`
}

// Weights is what the base model's files hold, read from their headers
// (no weight is read).
type Weights struct {
	Config model.Config
	// DType is the stored dtype of the largest share of the bytes: the
	// projections' and embeddings' (model.Shaped builds with it).
	DType dtype.DType
	// ByDType is the bytes of every tensor by stored dtype. They are
	// memory-mapped; tune reads every one (model.CheckFinite), so all of them
	// end up resident, as page cache shared with other readers of the file.
	ByDType map[dtype.DType]int64
	// Unpermuted is the part of Copies that is a GGUF llama's q and k rows,
	// put back in Hugging Face's order when loaded.
	Unpermuted int64
	// Copies are the bytes tune copies out of the mapping: norm and bias
	// vectors widened to float32, and matrices at an address their dtype
	// cannot be read from in place.
	Copies int64
	// Generate is the built-in model's name when its files do not exist yet.
	Generate string
}

// Mapped is the bytes of every tensor.
func (w Weights) Mapped() int64 {
	var n int64
	for _, b := range w.ByDType {
		n += b
	}
	return n
}

// ReadWeights reads the headers of the model a config names. A built-in
// model not generated yet is described from its spec.
func ReadWeights(cfg *configs.Config) (Weights, error) {
	name, isBuiltin := strings.CutPrefix(cfg.Model.Path, "builtin:")
	dir := cfg.Model.Path
	if isBuiltin {
		dir = train.BuiltinDir(cfg)
		if _, err := os.Stat(dir + "/" + hf.ConfigFile); err != nil {
			return builtinWeights(cfg, name)
		}
	}
	ck, mc, err := model.OpenCheckpoint(dir)
	if err != nil {
		return Weights{}, cfg.Errorf("model.path", "%v", err)
	}
	defer ck.Close()
	w := Weights{Config: mc, ByDType: map[dtype.DType]int64{}}
	for _, n := range ck.Names() {
		if info, ok := ck.Info(n); ok && model.CopiedOnLoad(ck, n) {
			w.add(info.DType, info.Shape, info.End-info.Begin, false)
			w.Unpermuted += info.End - info.Begin
			continue
		}
		t, err := ck.Tensor(n) // a view of the mapping: nothing is read
		if err != nil {
			return Weights{}, err
		}
		w.add(t.DType, t.Shape, int64(len(t.Data)), aligned(t))
	}
	w.DType = w.major()
	return w, nil
}

func builtinWeights(cfg *configs.Config, name string) (Weights, error) {
	spec, ok := builtin.Named(name)
	if !ok {
		return Weights{}, cfg.Errorf("model.path", "unknown built-in model %q", cfg.Model.Path)
	}
	b, err := json.Marshal(spec.Config())
	if err != nil {
		return Weights{}, err
	}
	mc, err := model.ParseConfig(b)
	if err != nil {
		return Weights{}, err
	}
	w := Weights{Config: mc, ByDType: map[dtype.DType]int64{}, Generate: name}
	for _, t := range spec.Infos() {
		w.add(t.DType, t.Shape, t.End-t.Begin, true) // safetensors.Write aligns the data
	}
	w.DType = w.major()
	return w, nil
}

// aligned is whether a tensor's data can be read in place (kernels.NewMatrix
// views block formats at any address).
func aligned(t safetensors.Tensor) bool {
	if len(t.Data) == 0 || t.DType.Quantized() {
		return true
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(t.Data)))%uintptr(t.DType.Size()) == 0
}

func (w *Weights) add(dt dtype.DType, shape []int, bytes int64, aligned bool) {
	w.ByDType[dt] += bytes
	switch {
	case len(shape) == 1: // model.Load widens vectors to float32
		w.Copies += 4 * int64(shape[0])
	case !aligned:
		w.Copies += bytes
	}
}

func (w Weights) major() dtype.DType {
	var best dtype.DType
	for dt, b := range w.ByDType {
		if best == "" || b > w.ByDType[best] || (b == w.ByDType[best] && dt < best) {
			best = dt
		}
	}
	return best
}

// Measured is what the plan measures of this process rather than computes.
type Measured struct {
	// Base is what the process holds before the weights are read and the
	// graph is built: the Go runtime, the program, the tokenizer and the
	// data index (ResidentNow with the data open).
	Base    int64 `json:"base"`
	Code    int64 `json:"code"`    // the training code's pages (CodeCost)
	Outputs int64 `json:"outputs"` // writing the outputs (OutputsCost)
}

// EstimateMemory adds up a run's peak resident memory: what is measured of
// this process, the weights as mapped and copied, and the buffers the run's
// own code allocates (train.PlanFootprint).
func EstimateMemory(cfg *configs.Config, w Weights, ms Measured) (Memory, error) {
	fp, err := train.PlanFootprint(cfg, w.Config, w.DType)
	if err != nil {
		return Memory{}, err
	}
	var mem Memory
	add := func(name string, b int64, note string) {
		mem.Parts = append(mem.Parts, Part{name, b, note})
	}
	var dts []string
	for dt, b := range w.ByDType {
		dts = append(dts, fmt.Sprintf("%s %s", dt, Bytes(b)))
	}
	add("base weights", w.Mapped(), "memory-mapped "+strings.Join(dts, ", ")+"; resident once read, shared with the page cache")
	copies := "norm and bias vectors as f32"
	if w.Unpermuted > 0 {
		copies += fmt.Sprintf("; GGUF q/k rows reordered %s", Bytes(w.Unpermuted))
	}
	add("weight copies", w.Copies, copies)
	add("LoRA adapter", fp.Adapter, fmt.Sprintf("r=%d on %s", cfg.LoRA.R, strings.Join(cfg.LoRA.TargetModules, ",")))
	add("gradients", fp.Gradients, "the step's sum and the graph's own")
	add("AdamW moments", fp.Optimizer, "m and v, f32")
	g := fp.Graph
	actsNote := fmt.Sprintf("kept by each of %d layers", w.Config.Layers)
	if cfg.Train.ActivationCheckpointing {
		actsNote = "one layer's: activation checkpointing recomputes the rest"
	}
	add("activations", g.Activations, fmt.Sprintf("batch %d x seq %d, %s", cfg.Train.BatchSize, cfg.Data.SeqLen, actsNote))
	add("layer workspace", g.Workspace, "shared by the layers")
	add("graph values", g.Values+g.Tables, "layer outputs and the gradients between them")
	add("loss buffers", g.Loss, "logits in chunks, never whole")
	if fp.Eval.Total() > 0 {
		add("evaluation graph", fp.Eval.Total(), "forward only, built at each evaluation")
	}
	add("runtime, tokenizer, data", ms.Base, "measured: this process before the weights are read")
	add("training code", ms.Code, "measured: the program's pages a step runs")
	add("writing the outputs", ms.Outputs, "measured: the loss plot's code and fonts")
	heap := w.Copies + fp.Total()
	// The collector frees a step's garbage late: it runs when the heap has
	// grown by GOGC% (100) over the live heap, and the run's limit (below)
	// caps that; what it adds is this headroom.
	slack := heapSlack(heap)
	add("collector headroom", slack, "garbage between collections, bounded by the memory limit")
	mem.HeapBytes = heap + slack
	mem.PeakBytes = w.Mapped() + ms.Base + ms.Code + ms.Outputs + mem.HeapBytes
	if w.Generate != "" {
		// Tensors() holds the encoded model while Write writes it.
		mem.FirstRunBytes = ms.Base + 2*w.Mapped()
	}
	return mem, nil
}

// heapSlack is what the Go heap holds above its live bytes under the limit
// the run sets (MemoryLimit): garbage not yet collected, freed spans not yet
// returned, size-class rounding. Measured on tune runs of three model shapes
// (cmd/tune TestPlanMatchesPeakRSS): a few percent.
func heapSlack(live int64) int64 {
	return live/16 + 2<<20
}

// MemoryLimit is the GOMEMLIMIT a run of this estimate sets: the heap the
// estimate allows, plus the runtime's share of base. The collector works
// harder near it rather than let the heap outgrow the plan.
func (m Memory) MemoryLimit(base int64) int64 {
	return m.HeapBytes + base
}

// CodeCost is what running a training step adds to this process's
// resident program pages, measured by running two steps of a tiny model with
// the config's choices and weight dtype (train.TouchCode).
func CodeCost(cfg *configs.Config, dt dtype.DType) (int64, error) {
	before := train.StatusBytes("RssFile:")
	if err := train.TouchCode(cfg, dt); err != nil {
		return 0, fmt.Errorf("measure the training code: %w", err)
	}
	return max(train.StatusBytes("RssFile:")-before, 0), nil
}

// OutputsCost is what writing a run's outputs adds to this process's
// resident memory at most, measured by doing it: the loss plot's program
// pages and every byte it allocates (train.PlotLoss over a few steps, in a
// temporary directory).
func OutputsCost() (int64, error) {
	dir, err := os.MkdirTemp("", "tune-plan-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	var lines []byte
	for i := 1; i <= 3; i++ {
		lines = fmt.Appendf(lines, "{\"step\":%d,\"loss\":%d}\n", i, 4-i)
	}
	metrics := filepath.Join(dir, "metrics.jsonl")
	if err := os.WriteFile(metrics, lines, 0o644); err != nil {
		return 0, err
	}
	// The plot's code and fonts stay resident; its image and encoding
	// buffers are garbage after it, but were resident while it ran.
	ResidentNow()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	code := train.StatusBytes("RssFile:")
	if err := train.PlotLoss(metrics, filepath.Join(dir, "loss.png")); err != nil {
		return 0, fmt.Errorf("measure the loss plot: %w", err)
	}
	runtime.ReadMemStats(&m1)
	return max(train.StatusBytes("RssFile:")-code, 0) + int64(m1.TotalAlloc-m0.TotalAlloc), nil
}

// ResidentNow is this process's resident memory after a collection has
// returned the garbage to the system: what stays.
func ResidentNow() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return train.StatusBytes("VmRSS:")
}

// PeakResident is this process's peak resident memory so far (VmHWM).
func PeakResident() int64 { return train.StatusBytes("VmHWM:") }

// Bytes formats a size in decimal units, as the hardware notes and `free -h`
// readers expect: 1.23 GB, 456 MB.
func Bytes(b int64) string {
	switch {
	case b >= 1e9 || b <= -1e9:
		return fmt.Sprintf("%.2f GB", float64(b)/1e9)
	case b >= 1e6 || b <= -1e6:
		return fmt.Sprintf("%.0f MB", float64(b)/1e6)
	case b >= 1e3 || b <= -1e3:
		return fmt.Sprintf("%.0f kB", float64(b)/1e3)
	}
	return fmt.Sprintf("%d B", b)
}
