package kernels

import "math"

// IgnoreIndex marks a target that does not count in the loss, as in PyTorch.
const IgnoreIndex = -100

// CrossEntropyForward returns the mean of −log softmax(logits[i])[targets[i]]
// over the rows whose target is not IgnoreIndex, and how many rows counted.
// logits is (N, V), targets is (N). The loss is NaN when no row counts, as in
// PyTorch.
func CrossEntropyForward(logits []float32, targets []int32, vocab int) (loss float32, counted int) {
	n := len(targets)
	perRow := make([]float64, n)
	parallelFor(n, 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if targets[i] == IgnoreIndex {
				continue
			}
			row := logits[i*vocab : (i+1)*vocab]
			perRow[i] = logSumExp(row) - float64(row[targets[i]])
		}
	})
	var sum float64
	for i, t := range targets {
		if t != IgnoreIndex {
			sum += perRow[i]
			counted++
		}
	}
	return float32(sum / float64(counted)), counted
}

// CrossEntropyBackward writes dlogits = g/count·(softmax(logits) − onehot(target))
// for counted rows and zero for ignored ones.
func CrossEntropyBackward(dlogits, logits []float32, targets []int32, vocab int, g float32) {
	counted := 0
	for _, t := range targets {
		if t != IgnoreIndex {
			counted++
		}
	}
	scale := g / float32(max(counted, 1))
	parallelFor(len(targets), 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			drow := dlogits[i*vocab : (i+1)*vocab]
			if targets[i] == IgnoreIndex {
				clear(drow)
				continue
			}
			row := logits[i*vocab : (i+1)*vocab]
			lse := logSumExp(row)
			for j, v := range row {
				drow[j] = scale * float32(math.Exp(float64(v)-lse))
			}
			drow[targets[i]] -= scale
		}
	})
}

func logSumExp(row []float32) float64 {
	m := float32(math.Inf(-1))
	for _, v := range row {
		m = max(m, v)
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v - m))
	}
	return float64(m) + math.Log(s)
}
