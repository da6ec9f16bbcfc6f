package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
)

// The oracle of the products below: the definitions as float64 loops, with
// the magnitude sum |a·b| of each dot product, which bounds the rounding error
// a float32 accumulation may make.

// refProduct returns C(i, j) = alpha·sum_l A(i, l)·B(l, j) and its magnitude,
// A and B given as functions.
func refProduct(m, n, k int, alpha float64, a, b func(i, j int) float64) (c, mag []float64) {
	c, mag = make([]float64, m*n), make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, g float64
			for l := range k {
				p := a(i, l) * b(l, j)
				s += p
				g += math.Abs(p)
			}
			c[i*n+j], mag[i*n+j] = alpha*s, math.Abs(alpha)*g
		}
	}
	return c, mag
}

// checkClose fails when got differs from want by more than 1e-5 of the
// magnitude (plus the float32 rounding of what was added to it).
func checkClose(t *testing.T, what string, got []float32, want, mag []float64) {
	t.Helper()
	for i := range want {
		tol := 1e-5*mag[i] + 1e-6*math.Abs(want[i]) + 1e-30
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol) {
			t.Fatalf("%s: element %d is %g, want %g (magnitude %g)", what, i, got[i], want[i], mag[i])
		}
	}
}

// halfMatrix rounds v to dt, bf16 or f16, as a checkpoint would store it.
func halfMatrix(dt dtype.DType, rows, cols int, v []float32) Matrix {
	round := dtype.F32ToBF16
	if dt == dtype.F16 {
		round = dtype.F32ToF16
	}
	b := make([]byte, 2*len(v))
	for i, f := range v {
		u := round(f)
		b[2*i], b[2*i+1] = byte(u), byte(u>>8)
	}
	m, err := NewMatrix(dt, rows, cols, b)
	if err != nil {
		panic(err)
	}
	return m
}

// weight is a random (rows, cols) matrix of dtype dt, its values widened,
// viewed at an odd offset in memory so no row is aligned.
func weight(r *rand.Rand, dt dtype.DType, rows, cols int) (Matrix, []float32) {
	v := randF32(r, rows*cols+1, 1)[1:]
	w := MatrixF32(rows, cols, v)
	if dt != dtype.F32 {
		w = halfMatrix(dt, rows, cols, v)
	}
	return w, w.Float32()
}

// unaligned returns n random values at an odd offset of a larger slice.
func unaligned(r *rand.Rand, n int) []float32 { return randF32(r, n+3, 1)[3:] }

// The shapes every variant is held to: ones, odd sizes, sizes around the
// tile (6×16), the vector width (8) and the cache blocks (kcMax, mcMax).
var productShapes = [][3]int{ // m, n, k
	{1, 1, 1}, {1, 5, 3}, {2, 16, 8}, {3, 17, 9}, {5, 15, 7}, {6, 16, 8},
	{7, 33, 13}, {8, 64, 64}, {12, 32, 1}, {13, 47, 65}, {37, 300, 70},
	{64, 130, 331}, {150, 40, 700}, {200, 24, 16}, {5, 1000, 24}, {4, 301, 1100}, {37, 1100, 40},
}

// pools are the thread counts the products run on: none, 2 and 3 workers.
func pools(t *testing.T) []*Pool {
	ps := []*Pool{nil, NewPool(2), NewPool(3)}
	t.Cleanup(func() {
		for _, p := range ps {
			p.Close()
		}
	})
	return ps
}

// TestLinearVariants holds every variant's Linear (y = x·Wᵀ + bias) to the
// float64 definition for each weight dtype, with and without bias.
func TestLinearVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ps := pools(t)
	for _, s := range productShapes {
		for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
			m, n, k := s[0], s[1], s[2]
			w, wv := weight(r, dt, n, k)
			x := unaligned(r, m*k)
			var bias []float32
			if (m+n)%2 == 0 {
				bias = unaligned(r, n)
			}
			want, mag := refProduct(m, n, k, 1,
				func(i, l int) float64 { return float64(x[i*k+l]) },
				func(l, j int) float64 { return float64(wv[j*k+l]) })
			for i := range want {
				if bias != nil {
					want[i] += float64(bias[i%n])
				}
			}
			for _, ks := range availableVariants() {
				for pi, p := range ps {
					y := unaligned(r, m*n)
					ks.linear(p, y, x, m, w, bias)
					checkClose(t, fmt.Sprintf("%s pool%d %v %s bias=%v", ks.name, pi, s, dt, bias != nil), y, want, mag)
				}
			}
		}
	}
}

// TestLinearDXVariants holds LinearDX (dx = dy·W, or dx += dy·W) to the
// definition for each weight dtype.
func TestLinearDXVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ps := pools(t)
	for _, s := range productShapes {
		for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
			m, n, k := s[0], s[1], s[2]
			w, wv := weight(r, dt, n, k)
			dy := unaligned(r, m*n)
			prod, mag := refProduct(m, k, n, 1,
				func(i, l int) float64 { return float64(dy[i*n+l]) },
				func(l, j int) float64 { return float64(wv[l*k+j]) })
			for _, ks := range availableVariants() {
				for pi, p := range ps {
					for _, accumulate := range []bool{false, true} {
						dx := unaligned(r, m*k)
						want := append([]float64(nil), prod...)
						if accumulate {
							for i, v := range dx {
								want[i] += float64(v)
							}
						}
						ks.linearDX(p, dx, dy, m, w, accumulate)
						checkClose(t, fmt.Sprintf("%s pool%d %v %s acc=%v", ks.name, pi, s, dt, accumulate), dx, want, mag)
					}
				}
			}
		}
	}
}

// TestLinearDWVariants holds LinearDW (dw = alpha·dyᵀ·x, or +=) to the
// definition, on the general shapes and on LoRA's: one side the rank.
func TestLinearDWVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	shapes := append([][3]int{{512, 16, 576}, {512, 576, 16}, {256, 4, 200}, {256, 200, 4}, {100, 64, 33}}, productShapes...)
	ps := pools(t)
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		const alpha = 0.5
		dy, x := unaligned(r, m*n), unaligned(r, m*k)
		prod, mag := refProduct(n, k, m, alpha,
			func(j, i int) float64 { return float64(dy[i*n+j]) },
			func(i, l int) float64 { return float64(x[i*k+l]) })
		for _, ks := range availableVariants() {
			for pi, p := range ps {
				for _, accumulate := range []bool{false, true} {
					dw := unaligned(r, n*k)
					want := append([]float64(nil), prod...)
					if accumulate {
						for i, v := range dw {
							want[i] += float64(v)
						}
					}
					ks.linearDW(p, dw, dy, x, m, n, k, alpha, accumulate)
					checkClose(t, fmt.Sprintf("%s pool%d %v acc=%v", ks.name, pi, s, accumulate), dw, want, mag)
				}
			}
		}
	}
}

// TestProductsEmpty: an empty reduction gives the bias, zero, or leaves an
// accumulated output alone; empty outputs touch nothing.
func TestProductsEmpty(t *testing.T) {
	for _, ks := range availableVariants() {
		w := MatrixF32(3, 0, nil)
		y := []float32{9, 9, 9, 9, 9, 9}
		ks.linear(nil, y, nil, 2, w, []float32{1, 2, 3})
		if fmt.Sprint(y) != "[1 2 3 1 2 3]" {
			t.Errorf("%s: K=0 with bias gives %v", ks.name, y)
		}
		ks.linear(nil, y, nil, 2, w, nil)
		if fmt.Sprint(y) != "[0 0 0 0 0 0]" {
			t.Errorf("%s: K=0 gives %v", ks.name, y)
		}
		dw := []float32{1, 2}
		ks.linearDW(nil, dw, nil, nil, 0, 1, 2, 1, true)
		if fmt.Sprint(dw) != "[1 2]" {
			t.Errorf("%s: M=0 accumulate changed dw to %v", ks.name, dw)
		}
		ks.linearDX(nil, nil, nil, 0, MatrixF32(4, 5, make([]float32, 20)), false)
	}
}

// TestMicroKernelVariants holds each variant's micro-kernel to the reference
// loops on both layouts of A (rows apart, as x and dy; and columns apart, as
// dyᵀ), odd reduction lengths, alpha and accumulation.
func TestMicroKernelVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, ks := range availableVariants() {
		for _, kc := range []int{0, 1, 3, 4, 5, 8, 33, 300} {
			for _, layout := range [][2]int{{kc + 1, 1}, {1, 7}} {
				for _, acc := range []bool{false, true} {
					rsA, ksA, mr, nr := layout[0], layout[1], ks.mr, ks.nr
					a := randF32(r, (mr-1)*rsA+max(kc-1, 0)*ksA+1, 1)
					b := randF32(r, nr*kc, 1)
					ldc := nr + 5
					c0 := randF32(r, (mr-1)*ldc+nr, 1)
					want, got := append([]float32(nil), c0...), append([]float32(nil), c0...)
					microRef(mr, nr)(kc, a, rsA, ksA, b, want, ldc, 0.75, acc)
					ks.mul(kc, a, rsA, ksA, b, got, ldc, 0.75, acc)
					for i := range want {
						tol := 1e-5 * float32(kc+1)
						if d := got[i] - want[i]; d > tol || d < -tol {
							t.Fatalf("%s kc %d layout %v acc %v: c[%d] = %g, reference %g", ks.name, kc, layout, acc, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

// TestDotVariants holds each variant's 3×4 dot-product kernel to the
// reference loops for each weight dtype and lengths around the vector width.
func TestDotVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, ks := range availableVariants() {
		for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
			for _, k := range []int{1, 7, 8, 9, 31, 64, 333} {
				w, _ := weight(r, dt, 9, k)
				x0, x1, x2 := unaligned(r, k), unaligned(r, k), unaligned(r, k)
				var want, got [12]float32
				dot3x4Ref(x0, x1, x2, w, 5, 0, k, &want)
				ks.dot3x4(k, x0, x1, x2, w, 5, &got)
				for i := range want {
					if d := got[i] - want[i]; d > 1e-5*float32(k) || d < -1e-5*float32(k) {
						t.Fatalf("%s %s k %d: out[%d] = %g, reference %g", ks.name, dt, k, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestPackersVariants: each variant's packers widen and place every value as
// the reference does, bit for bit (any NaN for any NaN), for every 16-bit
// pattern a bf16 or f16 weight may hold.
func TestPackersVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const rows, cols = 70, 77
	raw := make([]byte, 4*rows*cols+1)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	same := func(a, b float32) bool {
		return a == b || (a != a && b != b) || math.Float32bits(a) == math.Float32bits(b)
	}
	for _, ks := range availableVariants() {
		for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
			w, err := NewMatrix(dt, rows, cols, raw[1:1+rows*cols*dt.Size()])
			if err != nil {
				t.Fatal(err)
			}
			nr := ks.nr
			for _, kc := range []int{1, 7, 8, 16, 29, cols - 3} {
				want, got := make([]float32, nr*kc), make([]float32, nr*kc)
				packTRef(want, nr, w, 11, nr, 3, kc)
				ks.packT(got, w, 11, 3, kc)
				for i := range want {
					if !same(got[i], want[i]) {
						t.Fatalf("%s packT %s kc %d: [%d] = %#x, reference %#x", ks.name, dt, kc, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
					}
				}
				if kc > rows-5 {
					continue
				}
				packNRef(want, nr, w, 5, kc, cols-nr, nr)
				ks.packN(got, w, 5, kc, cols-nr)
				for i := range want {
					if !same(got[i], want[i]) {
						t.Fatalf("%s packN %s kc %d: [%d] = %#x, reference %#x", ks.name, dt, kc, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
					}
				}
			}
		}
	}
}

// TestProductsAllocateNothing: with a pool, a product in the steady state of
// training, or of decoding, allocates nothing (its packing buffers, and the
// blocks a quantized W is widened into, are the pool's).
func TestProductsAllocateNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	p := NewPool(2)
	defer p.Close()
	const m, n, k = 64, 96, 512
	for _, dt := range []dtype.DType{dtype.BF16, dtype.Q4_0, dtype.Q4_K} {
		var w Matrix
		if dt.Quantized() {
			w, _ = quantWeight(t, r, dt, n, k)
		} else {
			w, _ = weight(r, dt, n, k)
		}
		x, y, dy, dx, dw := randF32(r, m*k, 1), make([]float32, m*n), randF32(r, m*n, 1), make([]float32, m*k), make([]float32, n*k)
		step := func() {
			Linear(p, y, x, m, w, nil)
			LinearDX(p, dx, dy, m, w, false)
			LinearDW(p, dw, dy, x, m, n, k, 1, true)
			Linear(p, y, x, 1, w, nil)                      // decoding: the dot path
			LinearDW(p, dw[:8*k], dy, x, 2, 8, k, 1, false) // too small to share
		}
		step()
		if a := testing.AllocsPerRun(10, step); a != 0 {
			t.Errorf("%s: a step of three products allocates %g times", dt, a)
		}
	}
}

// TestProductNestedInPool: a product called from inside a pool loop (the
// pool busy) runs on its caller and still gets it right.
func TestProductNestedInPool(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	p := NewPool(2)
	defer p.Close()
	const m, n, k = 40, 50, 60
	w, wv := weight(r, dtype.F32, n, k)
	x := randF32(r, 2*m*k, 1)
	y := make([]float32, 2*m*n)
	p.For(2, 1, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			Linear(p, y[h*m*n:(h+1)*m*n], x[h*m*k:(h+1)*m*k], m, w, nil)
		}
	})
	for h := range 2 {
		want, mag := refProduct(m, n, k, 1,
			func(i, l int) float64 { return float64(x[h*m*k+i*k+l]) },
			func(l, j int) float64 { return float64(wv[j*k+l]) })
		checkClose(t, fmt.Sprintf("half %d", h), y[h*m*n:(h+1)*m*n], want, mag)
	}
}

// TestChooseVariant: TUNE_KERNELS picks a variant by name; an unknown name,
// or one this machine cannot run, is an error that names what it can.
func TestChooseVariant(t *testing.T) {
	have := availableVariants()
	best := have[len(have)-1]
	if v, err := chooseVariant(""); v != best || err != nil {
		t.Errorf(`chooseVariant("") = %s, %v; want %s`, v.name, err, best.name)
	}
	for _, ks := range have {
		if v, err := chooseVariant(" " + strings.ToUpper(ks.name)); v != ks || err != nil {
			t.Errorf("chooseVariant(%q) = %s, %v", ks.name, v.name, err)
		}
	}
	v, err := chooseVariant("sse9")
	if v != best || err == nil || !strings.Contains(err.Error(), "TUNE_KERNELS=sse9: unknown kernel variant, want one of ref, avx2, avx512") {
		t.Errorf(`chooseVariant("sse9") = %s, %v`, v.name, err)
	}
	for _, name := range knownVariants {
		if _, err := chooseVariant(name); err != nil && !strings.Contains(err.Error(), "this machine runs ref") {
			t.Errorf("chooseVariant(%q): %v", name, err)
		}
	}
}

// TestVariantEnv fails when TUNE_KERNELS names a variant this machine cannot
// run, so that a forced run never silently tests another one.
func TestVariantEnv(t *testing.T) {
	name, err := Variant()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel variant %s", name)
}
