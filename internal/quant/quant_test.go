package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
)

// oracle runs internal/testmodels/reference/ggml_quants.py (numpy, written
// from ggml-quants.c's formulas) on in and returns what it writes.
func oracle(t *testing.T, op string, typ dtype.DType, in []byte) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "testmodels", "reference", "ggml_quants.py")
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := os.WriteFile(src, in, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", script, op, strings.ToLower(string(typ)), src, dst)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("numpy oracle %s %s: %v: %s (the tests need Debian's python3-numpy: run `make setup`)", op, typ, err, stderr.Bytes())
	}
	out, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDequantizeOracle: for every format, Dequantize equals the numpy
// rendering of ggml's dequantize_row_* bit for bit on random blocks.
func TestDequantizeOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, typ := range dtype.QuantTypes() {
		t.Run(string(typ), func(t *testing.T) {
			values, _ := typ.Block()
			const n = 64
			src := RandomBlocks(rng, typ, n)
			got := make([]float32, n*values)
			Dequantize(typ, got, src)
			want := oracle(t, "dequant", typ, src)
			if len(want) != 4*len(got) {
				t.Fatalf("oracle gave %d bytes, want %d", len(want), 4*len(got))
			}
			for i, g := range got {
				w := binary.LittleEndian.Uint32(want[4*i:])
				if math.Float32bits(g) != w {
					t.Fatalf("value %d (block %d): %g (%#08x), numpy %g (%#08x)", i, i/values, g, math.Float32bits(g), math.Float32frombits(w), w)
				}
			}
		})
	}
}

// quantRows are the rows TestQuantizeOracle quantizes: normal, uniform and
// heavy-tailed values, and blocks that hit the formulas' edges (all zero,
// constant, one value, ties at half a step, tiny magnitudes).
func quantRows(rng *rand.Rand, values int) []float32 {
	var x []float32
	add := func(f func(i int) float32) {
		for i := range values {
			x = append(x, f(i))
		}
	}
	for range 4096 / values {
		add(func(int) float32 { return float32(rng.NormFloat64() * 0.02) })
	}
	add(func(int) float32 { return float32(rng.NormFloat64()) })
	add(func(int) float32 { return float32(rng.Float64()*2 - 1) })
	add(func(int) float32 { return float32(rng.Float64() * 3) }) // all positive: min > 0
	add(func(int) float32 { return -float32(rng.Float64()) })    // all negative
	add(func(int) float32 { return float32(rng.NormFloat64() * math.Exp(rng.NormFloat64()*2)) })
	add(func(int) float32 { return 0 })
	add(func(int) float32 { return 0.75 })
	add(func(i int) float32 {
		if i == 5 {
			return -3
		}
		return 0
	})
	add(func(i int) float32 { return float32(i%17-8) / 4 }) // exact levels and ties
	add(func(int) float32 { return float32(rng.NormFloat64() * 1e-6) })
	return x
}

// TestQuantizeOracle: for every format, Quantize equals the numpy rendering
// of ggml's quantize_row_*_ref byte for byte.
func TestQuantizeOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range dtype.QuantTypes() {
		t.Run(string(typ), func(t *testing.T) {
			values, size := typ.Block()
			x := quantRows(rng, values)
			got := make([]byte, len(x)/values*size)
			if err := Quantize(typ, got, x); err != nil {
				t.Fatal(err)
			}
			in := make([]byte, 4*len(x))
			for i, f := range x {
				binary.LittleEndian.PutUint32(in[4*i:], math.Float32bits(f))
			}
			want := oracle(t, "quant", typ, in)
			if !bytes.Equal(got, want) {
				for blk := range len(got) / size {
					g, w := got[blk*size:(blk+1)*size], want[blk*size:(blk+1)*size]
					if !bytes.Equal(g, w) {
						t.Fatalf("block %d differs from numpy:\n go    %x\n numpy %x", blk, g, w)
					}
				}
				t.Fatalf("%d bytes, numpy %d", len(got), len(want))
			}
		})
	}
}

// TestRoundTrip: quantizing then dequantizing moves no value by more than the
// format's step allows, and quantizing a dequantized block gives it back for
// the formats whose scale is exactly recoverable.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	// Worst error in units of the block's largest magnitude: half a step of
	// the format (plus the f16 rounding of the scale; for K-quants the 6-bit
	// sub-block scales and the min make it coarser). Q4_0 and Q5_0 map the
	// largest magnitude to -8 (-16), so the other sign's end is clamped to
	// +7 (+15): a whole step.
	bound := map[dtype.DType]float64{
		dtype.Q8_0: 0.5/127 + 0.002, dtype.Q4_0: 1.0/8 + 0.01, dtype.Q5_0: 1.0/16 + 0.005,
		dtype.Q4_1: 0.5 * 2 / 15 * 1.05, dtype.Q5_1: 0.5 * 2 / 31 * 1.05,
		dtype.Q4_K: 2.0 / 15, dtype.Q5_K: 2.0 / 31, dtype.Q6_K: 1.0 / 32,
	}
	for _, typ := range dtype.QuantTypes() {
		values, size := typ.Block()
		x := make([]float32, 16*values)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		q := make([]byte, 16*size)
		if err := Quantize(typ, q, x); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		Dequantize(typ, y, q)
		worst := 0.0
		for blk := range 16 {
			amax := 0.0
			for _, v := range x[blk*values : (blk+1)*values] {
				amax = max(amax, math.Abs(float64(v)))
			}
			for i := blk * values; i < (blk+1)*values; i++ {
				worst = max(worst, math.Abs(float64(y[i]-x[i]))/amax)
			}
		}
		t.Logf("%s: worst |error|/max|x| %.4f", typ, worst)
		if worst > bound[typ] {
			t.Errorf("%s: worst |error|/max|x| %.4f, bound %.4f", typ, worst, bound[typ])
		}
	}
}

func TestQuantizeErrors(t *testing.T) {
	for _, c := range []struct {
		t      dtype.DType
		n, out int
		want   string
	}{
		{dtype.Q4_K, 32, 18, "not whole 256-value blocks"},
		{dtype.Q8_0, 32, 33, "need 34 bytes"},
		{dtype.F16, 32, 64, "not a block format"},
	} {
		err := Quantize(c.t, make([]byte, c.out), make([]float32, c.n))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.t, err, c.want)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Dequantize Q4_0") {
			t.Errorf("Dequantize with a short src: recover() = %v", r)
		}
	}()
	Dequantize(dtype.Q4_0, make([]float32, 32), make([]byte, 17))
}
