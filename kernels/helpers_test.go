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

func bf16Matrix(rows, cols int, v []float32) Matrix {
	b := make([]byte, 2*len(v))
	for i, f := range v {
		u := dtype.F32ToBF16(f)
		b[2*i], b[2*i+1] = byte(u), byte(u>>8)
	}
	m, err := NewMatrix(dtype.BF16, rows, cols, b)
	if err != nil {
		panic(err)
	}
	return m
}
