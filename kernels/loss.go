package kernels

import (
	"math"
	"slices"
)

// IgnoreIndex marks a target that does not count in the loss, as in PyTorch.
const IgnoreIndex = -100

// headChunkBytes bounds the logits of one chunk of rows: the (N, V) logits
// and their gradient never exist whole (594 MiB each for 1024 tokens of a
// 152k vocabulary), only a chunk of rows at a time.
const headChunkBytes = 32 << 20

// HeadLoss is the language-model head fused with cross-entropy. Its buffers
// are sized at the first call and reused.
type HeadLoss struct {
	// ChunkRows, when set, overrides how many rows are multiplied at once.
	ChunkRows int

	rows   []int // the rows whose target counts
	xc     []float32
	logits []float32
	dxc    []float32
	perRow []float64
}

// ChunkRows is how many rows of logits HeadLoss computes at once for a
// vocabulary of v.
func ChunkRows(v int) int { return max(16, headChunkBytes/(4*max(v, 1))) }

// Run returns the sum over the rows i of x (N, K) whose target is not
// IgnoreIndex of −log softmax(x_i·Wᵀ)[targets_i], with W (V, K) the head, and
// how many rows counted. With dx not nil it also writes dx (N, K), the
// gradient of gradScale times that sum (zero on ignored rows). Ignored rows
// cost nothing: only counted rows are gathered and multiplied.
func (h *HeadLoss) Run(p *Pool, dx, x []float32, n int, w Matrix, targets []int32, gradScale float32) (sum float64, counted int) {
	k, v := w.Cols, w.Rows
	h.rows = h.rows[:0]
	for i, t := range targets[:n] {
		if t != IgnoreIndex {
			h.rows = append(h.rows, i)
		}
	}
	if dx != nil {
		clear(dx[:n*k])
	}
	c := min(ChunkRows(v), len(h.rows))
	if c == 0 {
		return 0, 0
	}
	h.xc = grow(h.xc, c*k)
	h.logits = grow(h.logits, c*v)
	if dx != nil {
		h.dxc = grow(h.dxc, c*k)
	}
	if h.ChunkRows > 0 {
		c = min(h.ChunkRows, len(h.rows))
	}
	h.perRow = slices.Grow(h.perRow[:0], c)[:c]
	perRow := h.perRow
	for start := 0; start < len(h.rows); start += c {
		rows := h.rows[start:min(start+c, len(h.rows))]
		m := len(rows)
		for j, r := range rows {
			copy(h.xc[j*k:(j+1)*k], x[r*k:(r+1)*k])
		}
		logits := h.logits[:m*v]
		Linear(p, logits, h.xc[:m*k], m, w, nil)
		sv := active.simd
		p.For(m, 1, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				// The row becomes e^(z − max) once; its sum gives the loss,
				// and scaled it is the softmax, the gradient less the target.
				row := logits[j*v : (j+1)*v]
				t := targets[rows[j]]
				zt := row[t]
				mx := sv.rowMax(row)
				s := sv.expSum(row, mx)
				perRow[j] = float64(mx) + math.Log(s) - float64(zt)
				if dx == nil {
					continue
				}
				Scale(row, float32(float64(gradScale)/s))
				row[t] -= gradScale
			}
		})
		for j := range m {
			sum += perRow[j]
		}
		if dx != nil {
			LinearDX(p, h.dxc[:m*k], logits, m, w, false)
			for j, r := range rows {
				copy(dx[r*k:(r+1)*k], h.dxc[j*k:(j+1)*k])
			}
		}
	}
	return sum, len(h.rows)
}

// grow returns buf with length n, reallocating only when it is too short.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
