package kernels

import (
	"math/rand/v2"

	"github.com/tune-dev/tune/internal/dtype"
)

func randF32(r *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (r.Float32()*2 - 1) * scale
	}
	return v
}

func bf16Matrix(rows, cols int, v []float32) Matrix { return halfMatrix(dtype.BF16, rows, cols, v) }
