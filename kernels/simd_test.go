package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// scaledUlps is how far a is from the float64 value want, in float32 ulps
// of scale (at least the smallest normal).
func scaledUlps(a float32, want, scale float64) float64 {
	return math.Abs(float64(a)-want) / (math.Max(scale, 0x1p-126) * 0x1p-23)
}

// elemInputs are random values over the range where the functions are not
// saturated, the edges of exp2f's clamp, and signed zeros, in lengths that
// exercise the vector body, its tail and a tail alone.
func elemInputs(r *rand.Rand, n int) []float32 {
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 30, -30, 88, -88, 100, -100, 200, -200}
	v := randF32(r, n, 16)
	for i := range v {
		if i%5 == 0 {
			v[i] = special[(i/5)%len(special)]
		}
	}
	return v
}

var elemLengths = []int{1, 7, 8, 9, 16, 23, 4096 + 5}

// Each variant's SwiGLU and its gradient equal float64 math within a few
// float32 ulps of the value's terms (the products of terms, where one
// rounding each adds an ulp), against an oracle that uses math.Exp.
func TestSwiGLUAgainstFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sig := func(g float64) float64 { return 1 / (1 + math.Exp(-g)) }
	for _, v := range simdVariants() {
		for _, n := range elemLengths {
			gate, up, dout := elemInputs(r, n), randF32(r, n, 2), randF32(r, n, 2)
			out, dgate, dup := make([]float32, n), make([]float32, n), make([]float32, n)
			v.swiglu(out, gate, up)
			v.swigluBack(dgate, dup, dout, gate, up)
			var worst [3]float64
			for i := range n {
				g, u, d := float64(gate[i]), float64(up[i]), float64(dout[i])
				s := sig(g)
				// Each error is judged in ulps of the size of the product's
				// factors: where σ underflows or the terms cancel, the
				// result is near 0 and only that much precision is owed.
				worst[0] = max(worst[0], scaledUlps(out[i], g*s*u, math.Abs(g*u)))
				worst[1] = max(worst[1], scaledUlps(dup[i], d*g*s, math.Abs(d*g)))
				worst[2] = max(worst[2], scaledUlps(dgate[i], d*u*s*(1+g*(1-s)), math.Abs(d*u)*(1+math.Abs(g))))
			}
			for k, name := range []string{"out", "dup", "dgate"} {
				if worst[k] > 8 {
					t.Errorf("%v n=%d: %s is %.1f ulp from float64", v, n, name, worst[k])
				}
			}
		}
	}
}

// rowMax is exact; expSum's values are 2^((x−m)·log2e) within 2 ulp and its sum is
// their float64 sum within float64 rounding of n terms.
func TestRowMaxExpSum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, v := range simdVariants() {
		for _, n := range elemLengths {
			x := elemInputs(r, n)
			want := x[0]
			for _, e := range x {
				want = max(want, e)
			}
			if got := v.rowMax(x); got != want {
				t.Errorf("%v n=%d: rowMax %g, want %g", v, n, got, want)
			}
			// The maximum anywhere in the row, the tail included.
			x[n-1] = want + 1
			if got := v.rowMax(x); got != want+1 {
				t.Errorf("%v n=%d: rowMax %g misses the last value %g", v, n, got, want+1)
			}
			m := want + 1
			orig := append([]float32(nil), x...)
			s := v.expSum(x, m)
			var sum, worst float64
			for i, e := range x {
				// The argument is rounded to float32 as the kernels round it
				// ((x − m)·log2e); the exponential of it is owed to 2 ulp.
				w := math.Exp2(float64((orig[i] - m) * math.Log2E))
				if float32(w) >= 0x1p-126 {
					worst = max(worst, scaledUlps(e, w, w))
				}
				sum += float64(e)
			}
			if worst > 2 {
				t.Errorf("%v n=%d: expSum values %.1f ulp from math.Exp", v, n, worst)
			}
			if math.Abs(s-sum) > 1e-12*sum {
				t.Errorf("%v n=%d: expSum returned %g, its values add to %g", v, n, s, sum)
			}
		}
	}
}
