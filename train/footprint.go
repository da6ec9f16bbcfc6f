package train

import (
	"github.com/tune-dev/tune/configs"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model"
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
	adapter, err := newAdapter(cfg, mc)
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
