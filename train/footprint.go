package train

import (
	"encoding/json"
	"fmt"

	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// Footprint is the memory a run of a config allocates besides the base
// weights and the data, in bytes, by part. PlanFootprint builds the run's own
// adapter, optimizer and graph (newAdapter, newTrainer) over a model without
// weight data and asks them, so the figures are the allocations themselves.
type Footprint struct {
	Adapter   int64        `json:"adapter"`   // the LoRA A and B matrices
	Gradients int64        `json:"gradients"` // the step's accumulated gradient and the graph's own of A and B
	Optimizer int64        `json:"optimizer"` // AdamW's two moments
	Graph     model.Memory `json:"graph"`     // the training graph's buffers
	// Eval is the forward-only graph evaluation builds beside the training
	// one (zero when train.eval_every is 0).
	Eval model.Memory `json:"eval"`
}

// Total is the sum of the parts.
func (f Footprint) Total() int64 {
	return f.Adapter + f.Gradients + f.Optimizer + f.Graph.Total() + f.Eval.Total()
}

// PlanFootprint sizes a run of cfg over a model of config mc whose large
// matrices are stored as dt.
func PlanFootprint(cfg *configs.Config, mc model.Config, dt dtype.DType) (Footprint, error) {
	var f Footprint
	t := cfg.Train
	adapter, err := adapterLayout(cfg, mc)
	if err != nil {
		return f, err
	}
	m := model.Shaped(mc, dt)
	tr, err := newTrainer(m, adapter, t, cfg.Data.SeqLen, t.ActivationCheckpointing)
	if err != nil {
		return f, err
	}
	defer tr.close()
	for i, p := range tr.params {
		f.Adapter += 4 * int64(len(p))
		// tr.grads[i], and the dual value BindDualValues gives the node.
		f.Gradients += 4 * int64(len(tr.grads[i])+len(p))
		f.Optimizer += 4 * int64(len(tr.adam.M[i])+len(tr.adam.V[i]))
	}
	f.Graph = tr.gr.Memory()
	if t.EvalEvery > 0 {
		gr, err := m.Build(t.BatchSize, cfg.Data.SeqLen, adapter.Attach(false), model.Options{Pool: tr.pool})
		if err != nil {
			return f, err
		}
		f.Eval = gr.Memory()
	}
	return f, nil
}

// TouchCode runs two training steps of a two-layer model held in memory,
// with the config's LoRA choices and weights of dtype dt, so that the code
// a run executes is paged in: the plan measures what that adds to the
// resident memory (the program's own pages, counted in RSS once run).
func TouchCode(cfg *configs.Config, dt dtype.DType) error {
	spec := builtin.Demo()
	spec.DType = dt
	b, err := json.Marshal(spec.Config())
	if err != nil {
		return err
	}
	mc, err := model.ParseConfig(b)
	if err != nil {
		return err
	}
	src := memSource{}
	for _, t := range spec.Tensors() {
		src[t.Name] = t
	}
	m, err := model.Load(mc, src)
	if err != nil {
		return err
	}
	c := *cfg
	c.LoRA.Layers, c.LoRA.LastLayers, c.LoRA.InitFrom = nil, 0, ""
	t := c.Train
	t.BatchSize, t.Threads = 1, cfg.Train.Threads
	adapter, err := newAdapter(&c, m)
	if err != nil {
		return err
	}
	tr, err := newTrainer(m, adapter, t, 16, t.ActivationCheckpointing)
	if err != nil {
		return err
	}
	defer tr.close()
	tr.limitSet = true // leave the process's memory limit alone
	batch := model.Batch{IDs: make([]int32, 16)}
	for i := range batch.IDs {
		batch.IDs[i] = int32(i + 1)
	}
	for range 2 {
		l, n, err := tr.micro(batch, 1)
		if err != nil {
			return err
		}
		if _, _, err := tr.update(l, n, 1e-4); err != nil {
			return err
		}
	}
	return nil
}

// memSource is a model.Source over tensors held in memory.
type memSource map[string]safetensors.Tensor

func (s memSource) Has(name string) bool { _, ok := s[name]; return ok }

func (s memSource) Tensor(name string) (safetensors.Tensor, error) {
	t, ok := s[name]
	if !ok {
		return t, fmt.Errorf("no tensor %q", name)
	}
	return t, nil
}
