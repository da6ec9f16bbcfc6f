package train

import (
	"context"
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/datasets"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/model"
)

// EvalResult is the mean next-token cross-entropy over every predicted token.
type EvalResult struct {
	Loss       float64 `json:"loss"`
	Perplexity float64 `json:"perplexity"`
	Tokens     int     `json:"tokens"`   // predicted tokens
	Examples   int     `json:"examples"` // records read
	Rows       int     `json:"rows"`     // packed rows of seq tokens run
}

// EvaluateDataset evaluates a data set's rows (packed, in file order), the
// first maxBatches batches of them (0: all).
func EvaluateDataset(ctx context.Context, m *model.Model, pool *kernels.Pool, ds *datasets.Dataset, maxBatches, batch, seq int, adapter model.Adapter) (EvalResult, error) {
	l, err := ds.Loader(datasets.LoaderOptions{Seq: seq, Packing: true})
	if err != nil {
		return EvalResult{}, err
	}
	rows := l.RowsInEpoch(0)
	if maxBatches > 0 {
		rows = min(rows, maxBatches*batch)
	}
	left := rows
	next := func() (datasets.Row, bool, error) {
		if left == 0 {
			return datasets.Row{}, false, nil
		}
		left--
		return l.Next()
	}
	res, err := evaluateRows(ctx, m, pool, next, rows, batch, seq, adapter)
	res.Examples = ds.Examples()
	return res, err
}

// evaluateRows runs n rows that next yields in batches, forward only.
func evaluateRows(ctx context.Context, m *model.Model, pool *kernels.Pool, next func() (datasets.Row, bool, error), n, batch, seq int, adapter model.Adapter) (EvalResult, error) {
	res := EvalResult{Rows: n}
	if n == 0 {
		return res, fmt.Errorf("evaluate: no examples")
	}
	batch = min(batch, n)
	gr, err := m.Build(batch, seq, adapter, model.Options{Pool: pool})
	if err != nil {
		return res, err
	}
	vm := G.NewTapeMachine(gr.G)
	defer vm.Close()
	var sum float64
	for start := 0; start < n; start += batch {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		b := model.Batch{}
		for range batch {
			r, ok, err := next()
			if err != nil {
				return res, err
			}
			if !ok {
				r = datasets.PaddingRow(seq) // fills a short last batch
			}
			b.IDs = append(b.IDs, r.IDs...)
			b.Labels = append(b.Labels, r.Labels...)
			b.Positions = append(b.Positions, r.Positions...)
			b.Segments = append(b.Segments, r.Segments...)
		}
		if err := gr.Feed(b); err != nil {
			return res, err
		}
		if err := vm.RunAll(); err != nil {
			return res, fmt.Errorf("evaluate: %w", err)
		}
		if n := gr.Counted(); n > 0 {
			sum += float64(gr.Loss.Value().Data().(float32)) * float64(n)
			res.Tokens += n
		}
		vm.Reset()
	}
	if res.Tokens == 0 {
		return res, fmt.Errorf("evaluate: no token to predict (every example is a single token or fully masked)")
	}
	res.Loss = sum / float64(res.Tokens)
	res.Perplexity = math.Exp(res.Loss)
	return res, nil
}
