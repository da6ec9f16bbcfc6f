package gguf

import (
	"bytes"
	"cmp"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/fixture"
)

// FuzzRead feeds arbitrary bytes to the GGUF parser (Read minus the
// mmap). It must never panic or allocate beyond the input's size; on an
// error the message is one line; on success every tensor lies aligned inside
// the data section without overlap, and writing the parsed file back and
// reading it again gives the same metadata, tensors and data. Seeds live in
// testdata/fuzz/FuzzRead.
func FuzzRead(f *testing.F) {
	tensors := []Tensor{
		{Name: "a", Dims: []uint64{2, 2}, Type: F32, Data: bytesOf(fixture.Seq(16))},
		{Name: "b", Dims: []uint64{32}, Type: Q8_0, Data: bytesOf(fixture.Seq(34))},
		{Name: "c", Dims: []uint64{3}, Type: BF16, Data: bytesOf(fixture.Seq(6))},
	}
	f.Add(ggufBytes(f, allKinds(), tensors))
	f.Add(ggufBytes(f, []KV{{Key: AlignmentKey, Value: uint32(8)}}, tensors[:1]))
	f.Add(ggufBytes(f, nil, nil))
	f.Fuzz(func(t *testing.T, file []byte) {
		g, err := parse(file)
		if err != nil {
			if g != nil {
				t.Fatal("a result with an error")
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		dataLen := uint64(len(g.data))
		sorted := slices.Clone(g.Tensors)
		slices.SortFunc(sorted, func(a, b TensorInfo) int { return cmp.Compare(a.Offset, b.Offset) })
		var end uint64
		for _, ti := range sorted {
			size, err := ByteSize(ti.Type, ti.Dims)
			if err != nil || size != ti.Size {
				t.Fatalf("tensor %q: size %d, recomputed %d (%v)", ti.Name, ti.Size, size, err)
			}
			if ti.Offset%g.Alignment != 0 || ti.Offset+uint64(ti.Size) > dataLen {
				t.Fatalf("tensor %q at [%d,+%d) in %d bytes, alignment %d", ti.Name, ti.Offset, ti.Size, dataLen, g.Alignment)
			}
			if ti.Size > 0 && ti.Offset < end {
				t.Fatalf("tensor %q overlaps", ti.Name)
			}
			if ti.Size > 0 {
				end = ti.Offset + uint64(ti.Size)
			}
		}
		// Write back and read again. The writer packs tensors back to back,
		// so offsets may change; everything else must not.
		var out []Tensor
		for _, ti := range g.Tensors {
			b := bytes.Clone(g.data[ti.Offset : ti.Offset+uint64(ti.Size)])
			out = append(out, Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: bytesOf(b)})
		}
		back, err := written(t, g.KV, out)
		if err != nil {
			t.Fatalf("cannot write back what was read: %v", err)
		}
		g2, err := parse(back)
		if err != nil {
			t.Fatalf("cannot read back what was written: %v", err)
		}
		if len(g2.KV) != len(g.KV) || len(g2.Tensors) != len(g.Tensors) {
			t.Fatal("counts changed on the round trip")
		}
		for i := range g.KV {
			if g.KV[i].Key != g2.KV[i].Key || !sameValue(t, g.KV[i].Value, g2.KV[i].Value) {
				t.Fatalf("metadata %q changed: %#v -> %#v", g.KV[i].Key, g.KV[i].Value, g2.KV[i].Value)
			}
		}
		for i, ti := range g.Tensors {
			t2 := g2.Tensors[i]
			if ti.Name != t2.Name || ti.Type != t2.Type || !slices.Equal(ti.Dims, t2.Dims) {
				t.Fatalf("tensor %d changed: %+v -> %+v", i, ti, t2)
			}
			if !bytes.Equal(g.data[ti.Offset:ti.Offset+uint64(ti.Size)], g2.data[t2.Offset:t2.Offset+uint64(t2.Size)]) {
				t.Fatalf("tensor %q data changed", ti.Name)
			}
		}
	})
}

// sameValue compares two metadata values by type and encoding, so that NaNs
// equal themselves bit for bit (DeepEqual says NaN != NaN).
func sameValue(t testing.TB, a, b any) bool {
	x, errX := written(t, []KV{{Key: "v", Value: a}}, nil)
	y, errY := written(t, []KV{{Key: "v", Value: b}}, nil)
	return errX == nil && errY == nil && reflect.TypeOf(a) == reflect.TypeOf(b) && bytes.Equal(x, y)
}
