package ggufread

import (
	"math"

	"github.com/tune-dev/tune/internal/dtype"
)

// Q8_0Quantum is the step of Q8_0 on one 32-value block, and MaxError the
// most its round trip may move a value of the block: half a step, plus what
// rounding the scale to f16 (as llama.cpp stores it) adds over 127 steps.
func Q8_0Quantum(block []float32) (quantum, maxError float64) {
	var amax float32
	for _, f := range block {
		amax = max(amax, float32(math.Abs(float64(f))))
	}
	d := float64(amax / 127)
	d16 := float64(dtype.F16ToF32(dtype.F32ToF16(amax / 127)))
	return d16, 0.5*d16 + 127*math.Abs(d-d16) + 1e-12
}
