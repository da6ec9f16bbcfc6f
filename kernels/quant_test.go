package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
)

// quantWeight is a random (rows, cols) matrix quantized to dt (as a GGUF
// file would hold it), viewed at an odd offset in memory, and its
// dequantization as a float32 matrix.
func quantWeight(t *testing.T, r *rand.Rand, dt dtype.DType, rows, cols int) (Matrix, Matrix) {
	t.Helper()
	v := randF32(r, rows*cols, 1)
	size, err := dt.RowBytes(cols)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, rows*size+1)[1:]
	if err := quant.Quantize(dt, raw, v); err != nil {
		t.Fatal(err)
	}
	w, err := NewMatrix(dt, rows, cols, raw)
	if err != nil {
		t.Fatal(err)
	}
	deq := make([]float32, rows*cols)
	quant.Dequantize(dt, deq, raw)
	return w, MatrixF32(rows, cols, deq)
}

// quantShapes are (m, n, k) products on quantized weights: K one block (32 or
// 256) or several, across the kc slice (320), rows and columns not multiples
// of the tile, M on the dot path (<= 16) and the packed one.
var quantShapes = [][3]int{
	{1, 5, 32}, {3, 17, 64}, {17, 33, 32}, {37, 300, 96}, {64, 130, 352}, {7, 40, 640},
	{1, 9, 256}, {6, 16, 256}, {20, 40, 512}, {13, 47, 768},
}

func sameBits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestQuantProducts: Linear and LinearDX on a quantized W equal the same
// products on its dequantization (float32 W) — bit for bit on the packed
// path, whose panels are the same values, and to float rounding on the dot
// path (M <= 16), which sums a row a chunk at a time — and both equal the
// float64 definition to float rounding; for every variant, format and pool.
func TestQuantProducts(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	ps := pools(t)
	for _, dt := range dtype.QuantTypes() {
		values, _ := dt.Block()
		for _, s := range quantShapes {
			m, n, k := s[0], s[1], s[2]
			if k%values != 0 {
				continue
			}
			w, wf := quantWeight(t, r, dt, n, k)
			wv := wf.Float32()
			x, dy := unaligned(r, m*k), unaligned(r, m*n)
			bias := unaligned(r, n)
			want, mag := refProduct(m, n, k, 1,
				func(i, l int) float64 { return float64(x[i*k+l]) },
				func(l, j int) float64 { return float64(wv[j*k+l]) })
			for i := range want {
				want[i] += float64(bias[i%n])
			}
			wantDX, magDX := refProduct(m, k, n, 1,
				func(i, l int) float64 { return float64(dy[i*n+l]) },
				func(l, j int) float64 { return float64(wv[l*k+j]) })
			for _, ks := range availableVariants() {
				for pi, p := range ps {
					what := fmt.Sprintf("%s pool%d %v %s", ks.name, pi, s, dt)
					y, yf := make([]float32, m*n), make([]float32, m*n)
					ks.linear(p, y, x, m, w, bias)
					ks.linear(p, yf, x, m, wf, bias)
					checkClose(t, what+" Linear", y, want, mag)
					if i := sameBits(y, yf); m > dotMaxRows && i >= 0 {
						t.Fatalf("%s Linear: y[%d] = %g, on the dequantized W %g", what, i, y[i], yf[i])
					}
					dx, dxf := unaligned(r, m*k), make([]float32, m*k)
					copy(dxf, dx)
					ks.linearDX(p, dx, dy, m, w, true)
					ks.linearDX(p, dxf, dy, m, wf, true)
					if i := sameBits(dx, dxf); i >= 0 {
						t.Fatalf("%s LinearDX: dx[%d] = %g, on the dequantized W %g", what, i, dx[i], dxf[i])
					}
					ks.linearDX(p, dx, dy, m, w, false)
					checkClose(t, what+" LinearDX", dx, wantDX, magDX)
				}
			}
		}
	}
}

// TestQuantPackersVariants: every variant's dequantizer equals
// internal/quant's (ggml's formulas) bit for bit on random blocks, and its
// packed panels of a quantized W equal the reference packers' panels of the
// dequantized W, at offsets that cut blocks.
func TestQuantPackersVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, dt := range dtype.QuantTypes() {
		values, size := dt.Block()
		const rows = 40
		cols := 3 * values
		raw := quant.RandomBlocks(r, dt, rows*cols/values)
		want := make([]float32, rows*cols)
		quant.Dequantize(dt, want, raw)
		w, err := NewMatrix(dt, rows, cols, raw)
		if err != nil {
			t.Fatal(err)
		}
		wf := MatrixF32(rows, cols, want)
		for _, ks := range availableVariants() {
			got := make([]float32, len(want))
			ks.dequant(dt, got, raw)
			if i := sameBits(got, want); i >= 0 {
				t.Fatalf("%s dequant %s: [%d] = %g, reference %g", ks.name, dt, i, got[i], want[i])
			}
			ks.dequant(dt, got[:values], raw[size:2*size]) // one block
			if i := sameBits(got[:values], want[values:2*values]); i >= 0 {
				t.Fatalf("%s dequant %s one block: [%d] = %g, reference %g", ks.name, dt, i, got[i], want[values+i])
			}
			for _, c := range [][4]int{{0, 0, 8, 16}, {3, 5, 29, 16}, {7, values - 3, values + 10, 9}, {24, 1, cols - 1, 16}} {
				j0, k0, kc, nc := c[0], c[1], c[2], c[3]
				g := gemm{ks: ks, w: w, trans: true}
				gf := gemm{ks: ks, w: wf, trans: true}
				bp, bpf := make([]float32, 16*kc), make([]float32, 16*kc)
				g.packB(bp, make([]float32, g.qtmpSize(kc, 16)), k0, kc, j0, nc)
				gf.packB(bpf, nil, k0, kc, j0, nc)
				if i := sameBits(bp, bpf); i >= 0 {
					t.Fatalf("%s packT %s %v: [%d] = %g, reference %g", ks.name, dt, c, i, bp[i], bpf[i])
				}
				// LinearDX's B is W itself: rows l0.., columns j0..
				l0, kcN, jc := c[0], min(c[2], rows-c[0]), c[1]
				ncN := min(2*ks.nr+3, cols-jc)
				g.trans, gf.trans = false, false
				bp, bpf = make([]float32, roundUp(ncN, 16)*kcN), make([]float32, roundUp(ncN, 16)*kcN)
				g.packB(bp, make([]float32, g.qtmpSize(kcN, ncN)), l0, kcN, jc, ncN)
				gf.packB(bpf, nil, l0, kcN, jc, ncN)
				if i := sameBits(bp, bpf); i >= 0 {
					t.Fatalf("%s packN %s %v: [%d] = %g, reference %g", ks.name, dt, c, i, bp[i], bpf[i])
				}
			}
		}
	}
}

// TestQuantMatrix: Row, Range (across rows, cutting blocks), Float32 and
// Bytes of a quantized matrix, and NewMatrix's refusals.
func TestQuantMatrix(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, dt := range dtype.QuantTypes() {
		values, size := dt.Block()
		rows, cols := 5, 2*values
		raw := quant.RandomBlocks(r, dt, rows*2)
		want := make([]float32, rows*cols)
		quant.Dequantize(dt, want, raw)
		w, err := NewMatrix(dt, rows, cols, raw)
		if err != nil {
			t.Fatal(err)
		}
		if i := sameBits(w.Float32(), want); i >= 0 {
			t.Fatalf("%s Float32 [%d]", dt, i)
		}
		row := make([]float32, cols)
		w.Row(3, row)
		if i := sameBits(row, want[3*cols:4*cols]); i >= 0 {
			t.Fatalf("%s Row 3 [%d]", dt, i)
		}
		for _, c := range [][2]int{{1, 5}, {values - 1, 2}, {cols - 3, cols + 7}, {7, 3*cols + 1}} {
			got := make([]float32, c[1])
			w.Range(c[0], got)
			if i := sameBits(got, want[c[0]:c[0]+c[1]]); i >= 0 {
				t.Fatalf("%s Range(%d, %d) [%d]", dt, c[0], c[1], i)
			}
		}
		if got := w.Bytes(); got != int64(rows*2*size) {
			t.Errorf("%s Bytes() = %d, want %d", dt, got, rows*2*size)
		}
		if _, err := NewMatrix(dt, rows, cols+1, raw); err == nil || !strings.Contains(err.Error(), "not whole") {
			t.Errorf("%s: cols %d: err = %v", dt, cols+1, err)
		}
		if _, err := NewMatrix(dt, rows, cols, raw[1:]); err == nil || !strings.Contains(err.Error(), "needs") {
			t.Errorf("%s: short data: err = %v", dt, err)
		}
	}
	if _, err := NewMatrix("Q2_K", 1, 256, make([]byte, 84)); err == nil || !strings.Contains(err.Error(), "Q2_K") {
		t.Errorf("Q2_K: err = %v", err)
	}
}
