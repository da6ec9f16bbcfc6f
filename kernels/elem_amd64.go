//go:build !purego

package kernels

//go:generate sh -c "go run ./_asm/gen_flash.go elem > elem_amd64.s"

// The assembly in elem_amd64.s works on whole vectors of 8; the wrappers
// below give it the multiple-of-8 prefix and the portable code the rest.

//go:noescape
func elemSwiGLUAVX2(out, gate, up *float32, n int)

//go:noescape
func elemSwiGLUBackAVX2(dgate, dup, dout, gate, up *float32, n int)

//go:noescape
func elemMaxAVX2(x *float32, n int) float32

//go:noescape
func elemExpSumAVX2(x *float32, n int, m float32) float64

func swigluAVX2(out, gate, up []float32) {
	n := len(gate)
	out, up = out[:n], up[:n]
	n8 := n &^ 7
	if n8 > 0 {
		elemSwiGLUAVX2(&out[0], &gate[0], &up[0], n8)
	}
	swigluRef(out[n8:], gate[n8:], up[n8:])
}

func swigluBackAVX2(dgate, dup, dout, gate, up []float32) {
	n := len(dout)
	dgate, dup, gate, up = dgate[:n], dup[:n], gate[:n], up[:n]
	n8 := n &^ 7
	if n8 > 0 {
		elemSwiGLUBackAVX2(&dgate[0], &dup[0], &dout[0], &gate[0], &up[0], n8)
	}
	swigluBackRef(dgate[n8:], dup[n8:], dout[n8:], gate[n8:], up[n8:])
}

func rowMaxAVX2(x []float32) float32 {
	n8 := len(x) &^ 7
	if n8 == 0 {
		return rowMaxRef(x)
	}
	m := elemMaxAVX2(&x[0], n8)
	if n8 < len(x) {
		m = max(m, rowMaxRef(x[n8:]))
	}
	return m
}

func expSumAVX2(x []float32, m float32) float64 {
	n8 := len(x) &^ 7
	var s float64
	if n8 > 0 {
		s = elemExpSumAVX2(&x[0], n8, m)
	}
	return s + expSumRef(x[n8:], m)
}
