package gguf

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
)

// TestBlockTypes: every block format has ggml's type number, name, byte size
// and element type, and Encode/Decode are internal/quant's; other ggml
// types are refused by name.
func TestBlockTypes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		t     Type
		num   uint32
		bytes int64 // of a [2·256, 3] tensor
	}{
		{Q4_0, 2, 3 * 16 * 18}, {Q4_1, 3, 3 * 16 * 20}, {Q5_0, 6, 3 * 16 * 22}, {Q5_1, 7, 3 * 16 * 24},
		{Q8_0, 8, 3 * 16 * 34}, {Q4_K, 12, 3 * 2 * 144}, {Q5_K, 13, 3 * 2 * 176}, {Q6_K, 14, 3 * 2 * 210},
	} {
		d := c.t.DType()
		if uint32(c.t) != c.num || c.t.String() != string(d) || !d.Quantized() {
			t.Errorf("type %d: number %d, name %s, dtype %q", c.num, uint32(c.t), c.t, d)
		}
		if n, err := ByteSize(c.t, []uint64{512, 3}); err != nil || n != c.bytes {
			t.Errorf("%s: ByteSize([512 3]) = %d, %v; want %d", c.t, n, err, c.bytes)
		}
		values, _ := d.Block()
		if _, err := ByteSize(c.t, []uint64{uint64(values) + 16, 3}); err == nil || !strings.Contains(err.Error(), "not a multiple of the "+c.t.String()) {
			t.Errorf("%s: rows of %d values: err = %v", c.t, values+16, err)
		}
		v := make([]float32, 2*values)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		b, err := Encode(c.t, v)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(b))
		if err := quant.Quantize(d, want, v); err != nil || !slices.Equal(b, want) {
			t.Errorf("%s: Encode differs from quant.Quantize (%v)", c.t, err)
		}
		got, err := Decode(c.t, b)
		if err != nil {
			t.Fatal(err)
		}
		deq := make([]float32, len(v))
		quant.Dequantize(d, deq, b)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(deq[i]) {
				t.Fatalf("%s: Decode[%d] = %g, quant.Dequantize %g", c.t, i, got[i], deq[i])
			}
		}
		if _, err := Encode(c.t, v[:values-1]); err == nil || !strings.Contains(err.Error(), "not whole") {
			t.Errorf("%s: Encode of %d values: err = %v", c.t, values-1, err)
		}
		if _, err := Decode(c.t, b[1:]); err == nil || !strings.Contains(err.Error(), "not whole") {
			t.Errorf("%s: Decode of %d bytes: err = %v", c.t, len(b)-1, err)
		}
	}
	for num, name := range map[Type]string{10: "Q2_K", 11: "Q3_K", 23: "IQ4_XS", 99: "type 99"} {
		if num.String() != name || num.DType() != "" {
			t.Errorf("type %d: %s, dtype %q", uint32(num), num, num.DType())
		}
		if _, err := ByteSize(num, []uint64{256}); err == nil || !strings.Contains(err.Error(), "unsupported tensor type "+name) {
			t.Errorf("%s: err = %v", name, err)
		}
		if _, err := Encode(num, make([]float32, 256)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: Encode err = %v", name, err)
		}
	}
	if F16.DType() != dtype.F16 || BF16.DType() != dtype.BF16 || F32.DType() != dtype.F32 {
		t.Errorf("float types: %q %q %q", F16.DType(), BF16.DType(), F32.DType())
	}
}
