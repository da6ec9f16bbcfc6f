package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveLinear is y = x·Wᵀ + b in float64: the hand-checkable definition.
func naiveLinear(x []float32, m int, w []float32, n, k int, bias []float32) []float64 {
	y := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for l := range k {
				s += float64(x[i*k+l]) * float64(w[j*k+l])
			}
			if bias != nil {
				s += float64(bias[j])
			}
			y[i*n+j] = s
		}
	}
	return y
}

func maxDiff(a []float32, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-b[i]))
	}
	return d
}

// TestLinearPaths: the gemm path (many rows) and the loop path (few rows), for
// f32 and bf16 weights, agree with the float64 definition, forward, backward
// and weight gradient, on sizes that are not multiples of any block.
func TestLinearPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	for _, m := range []int{1, 3, 8, 37} {
		for _, dt := range []DType{F32, BF16} {
			t.Run(fmt.Sprintf("m%d_%s", m, dt), func(t *testing.T) {
				const n, k = 300, 70
				x := randF32(r, m*k, 1)
				wv := randF32(r, n*k, 1)
				w := MatrixF32(n, k, wv)
				if dt == BF16 {
					w = bf16Matrix(n, k, wv)
					wv = w.Float32() // the rounded values are the weights
				}
				bias := randF32(r, n, 1)
				y := make([]float32, m*n)
				LinearForward(y, x, m, w, bias)
				if d := maxDiff(y, naiveLinear(x, m, wv, n, k, bias)); d > 1e-4 {
					t.Errorf("forward differs by %g", d)
				}
				// dx = dy·W is the forward of Wᵀ: compare with naiveLinear over Wᵀ.
				dy := randF32(r, m*n, 1)
				dx := make([]float32, m*k)
				LinearBackwardInput(dx, dy, m, w)
				wt := make([]float32, k*n)
				for j := range n {
					for l := range k {
						wt[l*n+j] = wv[j*k+l]
					}
				}
				if d := maxDiff(dx, naiveLinear(dy, m, wt, k, n, nil)); d > 1e-4 {
					t.Errorf("backward differs by %g", d)
				}
				// c = 0.5·dyᵀ·x.
				c := make([]float32, n*k)
				MatMulTN(c, dy, x, m, n, k, 0.5)
				dyt := make([]float32, n*m)
				xt := make([]float32, k*m)
				for i := range m {
					for j := range n {
						dyt[j*m+i] = dy[i*n+j]
					}
					for l := range k {
						xt[l*m+i] = x[i*k+l]
					}
				}
				want := naiveLinear(dyt, n, xt, k, m, nil)
				for i := range want {
					want[i] *= 0.5
				}
				if d := maxDiff(c, want); d > 1e-4 {
					t.Errorf("weight gradient differs by %g", d)
				}
			})
		}
	}
}

func TestHalfConversions(t *testing.T) {
	cases := []struct {
		f    float32
		bf16 uint16
		f16  uint16
	}{
		{1, 0x3f80, 0x3c00},
		{-2, 0xc000, 0xc000},
		{65504, 0x4780, 0x7bff}, // bf16 rounds 0x477fe000 up
		{1e-8, 0x322c, 0x0000},
		{float32(math.Inf(1)), 0x7f80, 0x7c00},
		{5.9604645e-08, 0x3380, 0x0001}, // smallest f16 subnormal
		{1.00390625, 0x3f80, 0x3c04},    // bf16 ties to even (down)
		{1.01171875, 0x3f82, 0x3c0c},    // bf16 ties to even (up)
		{65520, 0x4780, 0x7c00},         // f16 overflows to inf
	}
	for _, c := range cases {
		if got := F32ToBF16(c.f); got != c.bf16 {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", c.f, got, c.bf16)
		}
		if got := F32ToF16(c.f); got != c.f16 {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.f, got, c.f16)
		}
	}
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		if f != f { // NaN
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("f16 %#04x -> %g -> %#04x", h, f, back)
		}
	}
}

// BenchmarkLinearForwardBF16 runs one projection of a SmolLM2-135M MLP over
// 256 tokens through both paths, side by side.
func BenchmarkLinearForwardBF16(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const m, n, k = 256, 1536, 576
	x := randF32(r, m*k, 1)
	w := bf16Matrix(n, k, randF32(r, n*k, 1))
	y := make([]float32, m*n)
	for _, path := range []struct {
		name string
		f    func(y, x []float32, m int, w Matrix, bias []float32)
	}{{"gemm", LinearForward}, {"loops", linearForwardLoops}} {
		b.Run(path.name, func(b *testing.B) {
			for b.Loop() {
				path.f(y, x, m, w, nil)
			}
			b.ReportMetric(2*m*n*k*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
