//go:build !amd64 || purego

package kernels

// Without the assembly every variant is the portable one.

func swigluAVX2(out, gate, up []float32) { swigluRef(out, gate, up) }

func swigluBackAVX2(dgate, dup, dout, gate, up []float32) {
	swigluBackRef(dgate, dup, dout, gate, up)
}

func rowMaxAVX2(x []float32) float32 { return rowMaxRef(x) }

func expSumAVX2(x []float32, m float32) float64 { return expSumRef(x, m) }
