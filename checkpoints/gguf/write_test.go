package gguf

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/fixture"
)

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	ok := Tensor{Name: "x", Dims: []uint64{2}, Type: F32, Data: bytesOf(make([]byte, 8))}
	cases := []struct {
		name    string
		kv      []KV
		tensors []Tensor
		want    string
	}{
		{"dup key", []KV{{"a", uint8(1)}, {"a", uint8(2)}}, nil, `key "a" given twice`},
		{"bad value", []KV{{"a", 3}}, nil, "unsupported value type int"},
		{"nested", []KV{{"a", [][]string{{"x"}}}}, nil, "unsupported value type"},
		{"alignment", []KV{{AlignmentKey, uint32(24)}}, nil, "power of two"},
		{"dup tensor", nil, []Tensor{ok, ok}, `tensor "x" given twice`},
		{"long name", nil, []Tensor{{Name: strings.Repeat("n", 64), Dims: []uint64{1}, Type: F32, Data: bytesOf(make([]byte, 4))}}, "at most 63"},
		{"dims", nil, []Tensor{{Name: "x", Dims: []uint64{1, 1, 1, 1, 1}, Type: F32, Data: bytesOf(make([]byte, 4))}}, "at most 4"},
		{"type", nil, []Tensor{{Name: "x", Dims: []uint64{32}, Type: 17, Data: bytesOf(nil)}}, "unsupported tensor type IQ2_XS"},
		{"block", nil, []Tensor{{Name: "x", Dims: []uint64{16, 2}, Type: Q8_0, Data: bytesOf(nil)}}, "not a multiple of the Q8_0 block size"},
		{"size", nil, []Tensor{{Name: "x", Dims: []uint64{3}, Type: F32, Data: bytesOf(make([]byte, 8))}}, "8 bytes of data, but F32 [3] needs 12"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".gguf")
			fixture.WantErr(t, Write(path, c.kv, c.tensors), c.want)
			if _, err := os.Stat(path); err == nil {
				t.Fatal("a failed write left a file behind")
			}
		})
	}
}

func TestEncodeHalf(t *testing.T) {
	v := []float32{0, -0, 1, -2.5, 65504, 1e-8, 3.14159, float32(math.Inf(1)), 70000}
	for _, c := range []struct {
		typ  Type
		conv func(float32) uint16
		back func(uint16) float32
	}{{F16, dtype.F32ToF16, dtype.F16ToF32}, {BF16, dtype.F32ToBF16, dtype.BF16ToF32}} {
		b, err := Encode(c.typ, v)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := Decode(c.typ, b)
		for i, f := range v {
			if h := binary.LittleEndian.Uint16(b[2*i:]); h != c.conv(f) {
				t.Fatalf("%s(%g) = %#04x, want %#04x", c.typ, f, h, c.conv(f))
			}
			if got[i] != c.back(c.conv(f)) {
				t.Fatalf("%s decode %d", c.typ, i)
			}
		}
	}
}

func bytesOf(b []byte) func() ([]byte, error) { return func() ([]byte, error) { return b, nil } }
