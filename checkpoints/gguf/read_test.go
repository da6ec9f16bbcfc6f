package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/fixture"
)

// allKinds is one metadata entry of every value type, scalar and array.
func allKinds() []KV {
	return []KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "u8", Value: uint8(200)}, {Key: "i8", Value: int8(-5)}, {Key: "u16", Value: uint16(65000)}, {Key: "i16", Value: int16(-300)},
		{Key: "u32", Value: uint32(1 << 31)}, {Key: "i32", Value: int32(-1 << 30)}, {Key: "f32", Value: float32(1.5e-5)},
		{Key: "bool", Value: true}, {Key: "u64", Value: uint64(1 << 60)}, {Key: "i64", Value: int64(-1 << 60)}, {Key: "f64", Value: 0.1},
		{Key: "empty string", Value: ""},
		{Key: "au8", Value: []uint8{1, 2, 255}}, {Key: "ai8", Value: []int8{-1, 2}}, {Key: "au16", Value: []uint16{7}}, {Key: "ai16", Value: []int16{-7, 8}},
		{Key: "au32", Value: []uint32{1, 2, 3}}, {Key: "ai32", Value: []int32{-1, 6}}, {Key: "af32", Value: []float32{-1000, 0.5}},
		{Key: "abool", Value: []bool{true, false}}, {Key: "astr", Value: []string{"a", "", "ünï"}}, {Key: "au64", Value: []uint64{1 << 63}},
		{Key: "ai64", Value: []int64{-9}}, {Key: "af64", Value: []float64{math.Pi}}, {Key: "aempty", Value: []string{}},
	}
}

// sampleTensors covers every tensor type, a padded (unaligned) size and an
// empty tensor.
func sampleTensors(t *testing.T) ([]Tensor, map[string][]float32) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	want := map[string][]float32{}
	var out []Tensor
	add := func(name string, typ Type, dims ...uint64) {
		n := 1
		for _, d := range dims {
			n *= int(d)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		b, err := Encode(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := Decode(typ, b)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = dec
		out = append(out, Tensor{Name: name, Dims: dims, Type: typ, Data: bytesOf(b)})
	}
	add("a.f32", F32, 3, 5)
	add("b.f16", F16, 7)
	add("c.bf16", BF16, 4, 2, 3)
	add("d.q8_0", Q8_0, 64, 3)
	add("e.empty", F32, 0, 4)
	add("f.scalar", F32)
	return out, want
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	tensors, want := sampleTensors(t)
	if err := Write(path, allKinds(), tensors); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Version != 3 || g.Alignment != 32 || g.DataOffset%32 != 0 {
		t.Fatalf("version %d alignment %d data offset %d", g.Version, g.Alignment, g.DataOffset)
	}
	if !reflect.DeepEqual(g.KV, allKinds()) {
		t.Fatalf("metadata differs:\n got %#v\nwant %#v", g.KV, allKinds())
	}
	if len(g.Tensors) != len(tensors) {
		t.Fatalf("%d tensors, want %d", len(g.Tensors), len(tensors))
	}
	var next uint64
	for i, ti := range g.Tensors {
		w := tensors[i]
		if ti.Name != w.Name || ti.Type != w.Type || !reflect.DeepEqual(ti.Dims, w.Dims) && len(w.Dims) > 0 {
			t.Fatalf("tensor %d: %+v, wrote %s %s %v", i, ti, w.Name, w.Type, w.Dims)
		}
		if ti.Offset != next {
			t.Fatalf("tensor %q at %d, want back-to-back layout offset %d", ti.Name, ti.Offset, next)
		}
		next = AlignUp(ti.Offset+uint64(ti.Size), 32)
		v, err := g.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(v, want[ti.Name]) {
			t.Fatalf("tensor %q data differs", ti.Name)
		}
	}
	if v, ok := g.Lookup("af64"); !ok || v.([]float64)[0] != math.Pi {
		t.Fatalf("Lookup af64 = %v, %v", v, ok)
	}
	st, _ := os.Stat(path)
	if st.Size() != g.DataOffset+int64(next) {
		t.Fatalf("file is %d bytes, want %d (data padded to the alignment)", st.Size(), g.DataOffset+int64(next))
	}
}

func TestCustomAlignment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.gguf")
	tensors, _ := sampleTensors(t)
	kv := []KV{{Key: AlignmentKey, Value: uint32(64)}}
	if err := Write(path, kv, tensors); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Alignment != 64 || g.DataOffset%64 != 0 {
		t.Fatalf("alignment %d, data offset %d", g.Alignment, g.DataOffset)
	}
	for _, ti := range g.Tensors {
		if ti.Offset%64 != 0 {
			t.Fatalf("tensor %q at %d", ti.Name, ti.Offset)
		}
	}
}

// ggufBytes writes a GGUF into memory for the malformed-file tests.
func ggufBytes(t testing.TB, kv []KV, tensors []Tensor) []byte {
	b, err := written(t, kv, tensors)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// written is what Write puts in a file.
func written(t testing.TB, kv []KV, tensors []Tensor) ([]byte, error) {
	path := filepath.Join(t.TempDir(), "w.gguf")
	if err := Write(path, kv, tensors); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

func TestReadMalformed(t *testing.T) {
	one := []Tensor{{Name: "w", Dims: []uint64{4}, Type: F32, Data: bytesOf(make([]byte, 16))}}
	two := append(one, Tensor{Name: "v", Dims: []uint64{8}, Type: F32, Data: bytesOf(make([]byte, 32))})
	good := ggufBytes(t, []KV{{Key: "k", Value: "value"}}, one)
	// Field positions in good: magic 0, version 4, n_tensors 8, n_kv 16,
	// key length 24, key "k" 32, type 33, string length 37, "value" 45,
	// tensor name length 50, "w" 58, n_dims 59, dim 63, type 71, offset 75.
	patch := func(b []byte, at int, v any) []byte {
		c := bytes.Clone(b)
		switch x := v.(type) {
		case uint32:
			binary.LittleEndian.PutUint32(c[at:], x)
		case uint64:
			binary.LittleEndian.PutUint64(c[at:], x)
		case string:
			copy(c[at:], x)
		}
		return c
	}
	twoFile := ggufBytes(t, nil, two)
	// two: header 24, tensor "w" name 24..33, n_dims 33, dim 37, type 45, offset 49;
	// "v": name 57..66, n_dims 66, dim 70, type 78, offset 82.
	type badCase struct {
		name string
		file []byte
		want string
	}
	cases := []badCase{
		{"magic", patch(good, 0, "GGML"), `bad magic "GGML"`},
		{"version", patch(good, 4, uint32(7)), "unsupported GGUF version 7"},
		{"big endian", patch(good, 4, uint32(3<<24)), "big-endian"},
		{"short", good[:20], "too short"},
		{"kv count", patch(good, 16, uint64(1<<40)), "metadata count 1099511627776 is more than"},
		{"tensor count", patch(good, 8, uint64(1<<40)), "tensor count 1099511627776 is more than"},
		{"key length", patch(good, 24, uint64(1<<50)), "metadata key 0 at byte 24 has length 1125899906842624, beyond the end"},
		{"value length", patch(good, 37, uint64(1000)), `metadata "k" at byte 37 has length 1000, beyond the end`},
		{"value type", patch(good, 33, uint32(13)), `metadata "k" has unknown value type 13`},
		{"name length", patch(good, 50, uint64(999)), "tensor 0 name at byte 50 has length 999"},
		{"n_dims", patch(good, 59, uint32(5)), `tensor "w" has 5 dimensions`},
		{"tensor type", patch(good, 71, uint32(17)), `tensor "w": unsupported tensor type IQ2_XS (tune handles F32, F16`},
		{"misaligned", patch(good, 75, uint64(4)), `tensor "w" offset 4 is not a multiple of the alignment 32`},
		{"out of range", patch(good, 75, uint64(64)), `tensor "w" bytes [64, 80) lie beyond the 32-byte data section`},
		{"huge dim", patch(good, 63, uint64(1<<62)), `tensor "w": dims [4611686018427387904]: byte size overflows`},
		{"truncated", good[:len(good)-20], `tensor "w" bytes [0, 16) lie beyond the 12-byte data section`},
		{"overlap", patch(twoFile, 82, uint64(0)), `tensors "w" and "v" overlap at byte 0`},
		{"dup tensor", patch(twoFile, 65, "w"), `tensor "w" appears twice`},
		// "a" at 32, "b" at 32+1+4+1+8 = 46.
		{"dup key", patch(ggufBytes(t, []KV{{Key: "a", Value: uint8(1)}, {Key: "b", Value: uint8(1)}}, nil), 46, "a"), `metadata key "a" appears twice`},
	}
	badAlign := ggufBytes(t, []KV{{Key: AlignmentKey, Value: uint32(32)}}, nil)
	// value at 24+8+17+4 = 53
	cases = append(cases,
		badCase{"alignment", patch(badAlign, 53, uint32(48)), "general.alignment 48 is not a power of two"},
		badCase{"alignment type", patch(ggufBytes(t, []KV{{Key: "general.alignmenX", Value: uint64(32)}}, nil), 32, AlignmentKey), "general.alignment must be a UINT32, got UINT64"},
		badCase{"nested array", nestedArray(), `metadata "n" is an array of arrays`},
		badCase{"array length", patch(ggufBytes(t, []KV{{Key: "n", Value: []uint32{1}}}, nil), 24+8+1+4+4, uint64(1<<61)), `metadata "n": array of 2305843009213693952 elements of 4 bytes is longer than the rest`},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := fixture.WriteTemp(t, "bad.gguf", c.file)
			g, err := Open(path)
			if err == nil {
				g.Close()
			}
			fixture.WantErr(t, err, c.want)
			if !strings.HasPrefix(err.Error(), path+": ") {
				t.Fatalf("error %q does not start with the file name", err)
			}
		})
	}
}

func nestedArray() []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("GGUF")
	binary.Write(&b, le, uint32(3))
	binary.Write(&b, le, uint64(0))
	binary.Write(&b, le, uint64(1))
	binary.Write(&b, le, uint64(1))
	b.WriteString("n")
	binary.Write(&b, le, uint32(Array))
	binary.Write(&b, le, uint32(Array))
	binary.Write(&b, le, uint64(1))
	b.Write(make([]byte, 16))
	return b.Bytes()
}

func TestQ8_0(t *testing.T) {
	// A block whose values land exactly on halves of the quantum checks the
	// rounding (half away from zero, as C's roundf).
	x := make([]float32, 64)
	for i := range 32 {
		x[i] = float32(i-16) * 0.25
	}
	x[31] = 127 * 0.25 / 2 // max|x| = 15.875 -> d = 0.125
	x[0] = -0.0625 * 3     // -0.1875 / 0.125 = -1.5 -> -2
	x[1] = 0.0625          // 0.5 -> 1
	// second block all zeros: d = 0, every q = 0
	b, err := Encode(Q8_0, x)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 68 {
		t.Fatalf("%d bytes, want 68", len(b))
	}
	if d := dtype.F16ToF32(binary.LittleEndian.Uint16(b)); d != 0.125 {
		t.Fatalf("scale %g, want 0.125", d)
	}
	if q0, q1, q31 := int8(b[2]), int8(b[3]), int8(b[2+31]); q0 != -2 || q1 != 1 || q31 != 127 {
		t.Fatalf("q = %d %d %d, want -2 1 127", q0, q1, q31)
	}
	if !bytes.Equal(b[34:], make([]byte, 34)) {
		t.Fatalf("zero block encodes as %v", b[34:])
	}
	// Random data: within half a quantum, plus what the f16 rounding of the
	// scale adds (|q|·|d−d16| ≤ 127·|d−d16|).
	r := rand.New(rand.NewPCG(5, 6))
	v := make([]float32, 32*200)
	for i := range v {
		v[i] = float32(r.NormFloat64() * math.Pow(10, float64(i/32%7-3)))
	}
	b, _ = Encode(Q8_0, v)
	back, err := Decode(Q8_0, b)
	if err != nil {
		t.Fatal(err)
	}
	for blk := range len(v) / 32 {
		_, bound := fixture.Q8_0Quantum(v[blk*32 : blk*32+32])
		for i := blk * 32; i < blk*32+32; i++ {
			if e := math.Abs(float64(v[i] - back[i])); e > bound {
				t.Fatalf("value %d: %g -> %g, error %g > %g", i, v[i], back[i], e, bound)
			}
		}
	}
	if _, err := Encode(Q8_0, make([]float32, 31)); err == nil {
		t.Fatal("31 values quantized without error")
	}
}

// Int takes every GGUF integer type and nothing else.
func TestInt(t *testing.T) {
	for _, c := range []struct {
		v    any
		want int64
		ok   bool
	}{
		{uint8(255), 255, true}, {int8(-3), -3, true}, {uint16(65535), 65535, true}, {int16(-7), -7, true},
		{uint32(1 << 31), 1 << 31, true}, {int32(-9), -9, true}, {int64(-1 << 40), -1 << 40, true},
		{uint64(1 << 62), 1 << 62, true}, {uint64(1 << 63), 0, false}, {float32(1), 0, false}, {"1", 0, false}, {true, 0, false},
	} {
		if got, ok := Int(c.v); got != c.want || ok != c.ok {
			t.Errorf("Int(%T %v) = %d, %v; want %d, %v", c.v, c.v, got, ok, c.want, c.ok)
		}
	}
}
