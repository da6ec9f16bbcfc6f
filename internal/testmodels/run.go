package testmodels

import (
	"math/rand/v2"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/model"
)

// Forward is what one forward pass of the graph gives: the mean loss, the
// logits (B·T, V) and how many targets counted.
type Forward struct {
	Loss    float32
	Logits  []float32
	Counted int
}

// RunGraph builds the model's graph for batch×seq tokens (with an adapter, or
// nil), feeds b and runs it forward: the pass training and evaluation use.
func RunGraph(m *model.Model, b model.Batch, batch, seq int, adapter model.Adapter) (Forward, error) {
	pool := kernels.NewPool(0)
	defer pool.Close()
	gr, err := m.Build(batch, seq, adapter, model.Options{Pool: pool})
	if err != nil {
		return Forward{}, err
	}
	if err := gr.Feed(b); err != nil {
		return Forward{}, err
	}
	vm := G.NewTapeMachine(gr.G)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		return Forward{}, err
	}
	return Forward{
		Loss:    gr.Loss.Value().Data().(float32),
		Logits:  gr.Logits(),
		Counted: gr.Counted(),
	}, nil
}

// RandomBatch draws batch rows of seq token ids in [lo, hi), as tune's Batch
// and as the PyTorch reference's input.
func RandomBatch(r *rand.Rand, batch, seq, lo, hi int) (model.Batch, RefInput) {
	var b model.Batch
	var in RefInput
	for range batch {
		row := make([]int32, seq)
		for i := range row {
			row[i] = int32(lo + r.IntN(hi-lo))
		}
		b.IDs = append(b.IDs, row...)
		in.InputIDs = append(in.InputIDs, row)
	}
	return b, in
}
