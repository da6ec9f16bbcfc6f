package train

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// trainer turns micro-batches into adapter updates: the model's graph with
// its gradients, and AdamW. A run (Run) and a benchmark (Bench) share it.
type trainer struct {
	t         configs.Train
	adapter   *lora.Adapter
	pool      *kernels.Pool
	gr        *model.Graph
	vm        G.VM
	gradNodes []*G.Node // in ParamsOf order
	params    [][]float32
	grads     [][]float32
	adam      *AdamW
	limitSet  bool
	oldLimit  int64 // the memory limit before boundHeap, restored by close
}

// checkComputeDType refuses a compute precision this build cannot honour.
// auto is f32 until the bf16 kernels (VDPBF16PS) exist.
func checkComputeDType(cfg *configs.Config) error {
	if cfg.Train.ComputeDType == "bf16" {
		return &configs.FieldError{File: cfg.Path, Path: "train.compute_dtype", Msg: "bf16 products need AVX512_BF16 kernels, which this build of tune does not have yet (products run in f32); use auto or f32"}
	}
	return nil
}

// newTrainer builds the graph for [batch, seq] with the loss's gradient with
// respect to every A and B (and DoRA magnitude), and the optimizer state.
func newTrainer(m *model.Model, adapter *lora.Adapter, t configs.Train, seq int, recompute bool) (*trainer, error) {
	tr := &trainer{t: t, adapter: adapter, pool: kernels.NewPool(t.Threads)}
	tr.params = ParamsOf(adapter)
	sizes := make([]int, len(tr.params))
	tr.grads = make([][]float32, len(tr.params))
	for i, p := range tr.params {
		sizes[i] = len(p)
		tr.grads[i] = make([]float32, len(p))
	}
	tr.adam = NewAdamW(sizes, t.Beta1, t.Beta2, t.Eps, t.WeightDecay)

	at := adapter.Attach(true)
	gr, err := m.Build(t.BatchSize, seq, at, model.Options{Pool: tr.pool, Recompute: recompute})
	if err != nil {
		tr.close()
		return nil, err
	}
	if _, err := G.Grad(gr.Loss, at.Nodes()...); err != nil {
		tr.close()
		return nil, fmt.Errorf("gradient graph: %w", err)
	}
	tr.gr = gr
	tr.vm = G.NewTapeMachine(gr.G, G.BindDualValues(at.Nodes()...))
	nodeOf := map[string]*G.Node{}
	for _, p := range at.Params() {
		nodeOf[p.Key] = p.Node
	}
	for _, w := range adapter.Weights() {
		tr.gradNodes = append(tr.gradNodes, nodeOf[w.Key])
	}
	return tr, nil
}

func (tr *trainer) close() {
	if tr.limitSet && tr.oldLimit > 0 {
		debug.SetMemoryLimit(tr.oldLimit)
	}
	if tr.vm != nil {
		tr.vm.Close()
	}
	tr.pool.Close()
}

// release lets the graph, the gradients and the optimizer's moments go once
// training is over, so that writing the outputs (the adapter, the loss plot)
// reuses their memory instead of adding to the run's peak, which the plan
// predicts as the training step's.
func (tr *trainer) release() {
	if tr.vm != nil {
		tr.vm.Close()
		tr.vm = nil
	}
	tr.gr, tr.gradNodes, tr.grads, tr.adam = nil, nil, nil, nil
	runtime.GC()
}

// micro runs one micro-batch forward and backward and adds its gradient,
// weighted by its counted tokens, to tr.grads: summed over micro-batches and
// divided by all their tokens, that is the gradient of one large batch.
// It returns the loss summed over the counted tokens, and their number.
func (tr *trainer) micro(b model.Batch, seed int32) (lossSum float64, tokens int, err error) {
	if err := tr.gr.Feed(b); err != nil {
		return 0, 0, err
	}
	tr.gr.SetSeed(seed)
	defer tr.vm.Reset()
	if err := tr.vm.RunAll(); err != nil {
		return 0, 0, err
	}
	n := tr.gr.Counted()
	if n == 0 {
		return 0, 0, nil
	}
	for i, node := range tr.gradNodes {
		gv, err := node.Grad()
		if err != nil {
			return 0, 0, err
		}
		g := gv.Data().([]float32)
		kernels.Axpy(float32(n), g, tr.grads[i])
		clear(g) // Gorgonia adds each run's gradient to the last
	}
	return float64(tr.gr.Loss.Value().Data().(float32)) * float64(n), n, nil
}

// update averages the accumulated gradients over tokens, checks them, clips
// them and takes an AdamW step at lr; it clears the gradients for the next
// step. Nothing is updated when the loss or the gradient norm is not finite.
func (tr *trainer) update(lossSum float64, tokens int, lr float64) (loss, norm float64, err error) {
	defer func() {
		for _, g := range tr.grads {
			clear(g)
		}
	}()
	for _, g := range tr.grads {
		kernels.Scale(g, 1/float32(tokens))
	}
	loss = lossSum / float64(tokens)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, 0, fmt.Errorf("the loss is %w (%g); the adapter was not updated", ErrNonFinite, loss)
	}
	norm = ClipGradNorm(tr.grads, tr.t.MaxGradNorm)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return loss, norm, fmt.Errorf("the gradient norm is %w (%g); the adapter was not updated", ErrNonFinite, norm)
	}
	tr.adam.Update(tr.params, tr.grads, lr)
	tr.boundHeap()
	return loss, norm, nil
}

// boundHeap sets, after the first step (when every buffer exists), a soft
// memory limit a little above the live heap, so the GC collects the step's
// few temporaries instead of letting the heap drift toward twice its size.
func (tr *trainer) boundHeap() {
	if tr.limitSet {
		return
	}
	tr.limitSet = true
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	live := int64(s[0].Value.Uint64())
	limit := live + live/4 + 64<<20
	if tr.oldLimit = debug.SetMemoryLimit(-1); tr.oldLimit < limit {
		return // a lower limit is already set (GOMEMLIMIT): keep it
	}
	debug.SetMemoryLimit(limit)
}
