package kernels

import "math"

// simdVariant names one implementation of the vector helpers: flash
// attention's tiles (flash.go) and the elementwise kernels below.
type simdVariant uint8

const (
	simdRef  simdVariant = iota // portable Go (flash_ref.go, simd.go)
	simdAVX2                    // AVX2 + FMA assembly (flash_amd64.s, elem_amd64.s)
)

func (v simdVariant) String() string {
	if v == simdAVX2 {
		return "avx2"
	}
	return "ref"
}

// swiglu sets out = silu(gate)∘up; all three have one length.
func (v simdVariant) swiglu(out, gate, up []float32) {
	if v == simdAVX2 {
		swigluAVX2(out, gate, up)
		return
	}
	swigluRef(out, gate, up)
}

// swigluBack sets dgate and dup from dout, the gradient of swiglu.
func (v simdVariant) swigluBack(dgate, dup, dout, gate, up []float32) {
	if v == simdAVX2 {
		swigluBackAVX2(dgate, dup, dout, gate, up)
		return
	}
	swigluBackRef(dgate, dup, dout, gate, up)
}

// rowMax is the largest value of a non-empty x.
func (v simdVariant) rowMax(x []float32) float32 {
	if v == simdAVX2 {
		return rowMaxAVX2(x)
	}
	return rowMaxRef(x)
}

// expSum replaces x by e^(x − m) and returns the sum of the results, added
// in float64 (a row of logits less its maximum: the softmax's numerators and
// denominator).
func (v simdVariant) expSum(x []float32, m float32) float64 {
	if v == simdAVX2 {
		return expSumAVX2(x, m)
	}
	return expSumRef(x, m)
}

// sigmoid in float32 through exp2f: float64 math.Exp was a seventh of a
// training step's time.
func sigmoid(x float32) float32 { return 1 / (1 + exp2f(-x*math.Log2E)) }

func swigluRef(out, gate, up []float32) {
	up = up[:len(gate)]
	out = out[:len(gate)]
	for i, g := range gate {
		out[i] = g * sigmoid(g) * up[i]
	}
}

// d silu(g)/dg = σ(g)·(1 + g·(1−σ(g))).
func swigluBackRef(dgate, dup, dout, gate, up []float32) {
	n := len(dout)
	dgate, dup, gate, up = dgate[:n], dup[:n], gate[:n], up[:n]
	for i, d := range dout {
		g := gate[i]
		sg := sigmoid(g)
		dup[i] = d * g * sg
		dgate[i] = d * up[i] * sg * (1 + g*(1-sg))
	}
}

func rowMaxRef(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		if v > m {
			m = v
		}
	}
	return m
}

func expSumRef(x []float32, m float32) float64 {
	var s float64
	for i, v := range x {
		e := exp2f((v - m) * math.Log2E)
		x[i] = e
		s += float64(e)
	}
	return s
}
