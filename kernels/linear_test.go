package kernels

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
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
		for _, dt := range []dtype.DType{dtype.F32, dtype.BF16} {
			t.Run(fmt.Sprintf("m%d_%s", m, dt), func(t *testing.T) {
				const n, k = 300, 70
				x := randF32(r, m*k, 1)
				wv := randF32(r, n*k, 1)
				w := MatrixF32(n, k, wv)
				if dt == dtype.BF16 {
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

// BenchmarkLinearVsPyTorch runs the same projection in tune (f32 activations,
// bf16 weights) and in PyTorch (Debian's python3-torch, bf16 and f32, 2
// threads) in one run, and reports the ratio tune/PyTorch-bf16: what a user
// who would otherwise pick PyTorch on this CPU gives up.
func BenchmarkLinearVsPyTorch(b *testing.B) {
	const m, n, k = 256, 1536, 576
	out, err := exec.Command("/usr/bin/python3", "testdata/bench_linear.py", fmt.Sprint(m), fmt.Sprint(n), fmt.Sprint(k)).Output()
	if err != nil {
		b.Fatalf("PyTorch peer: %v (run make setup)", err)
	}
	var peer struct{ F32, BF16 float64 }
	if err := json.Unmarshal(out, &peer); err != nil {
		b.Fatalf("PyTorch peer printed %q: %v", out, err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	x := randF32(r, m*k, 1)
	w := bf16Matrix(n, k, randF32(r, n*k, 1))
	y := make([]float32, m*n)
	b.ResetTimer()
	for b.Loop() {
		LinearForward(y, x, m, w, nil)
	}
	tune := 2 * m * n * k * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(tune, "tune_GFLOP/s")
	b.ReportMetric(peer.BF16, "torch_bf16_GFLOP/s")
	b.ReportMetric(peer.F32, "torch_f32_GFLOP/s")
	b.ReportMetric(tune/peer.BF16, "tune/torch_bf16")
}
