package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/fixture"
)

func TestOpenErrors(t *testing.T) {
	lenPrefix := func(n uint64, rest int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, n)
		return append(b, make([]byte, rest)...)
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "file is 0 bytes, too short for the 8-byte header length"},
		{"7 bytes", []byte{2, 0, 0, 0, 0, 0, 0}, "file is 7 bytes, too short"},
		{"header length beyond file", lenPrefix(100, 20), "header length 100 runs past the end of the 28-byte file"},
		{"header length just beyond file", append(lenPrefix(3, 0), "{}"...), "header length 3 runs past the end of the 10-byte file"},
		{"header length absurd", lenPrefix(1<<62, 8), "header length 4611686018427387904 exceeds the 100000000-byte limit"},
		{"header length max uint64", lenPrefix(^uint64(0), 8), "exceeds the 100000000-byte limit"},
		{"header not JSON", fileBytes("{not json}", nil), "header is not valid JSON"},
		{"header not object", fileBytes(`"str"`, nil), "header must be a JSON object"},
		{"wrong field types", fileBytes(`{"w":{"dtype":"F32","shape":{"0":4},"data_offsets":[0,16]}}`, make([]byte, 16)), `tensor "w": shape must be an array`},
		{"byte count", fileBytes(`{"model.norm.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}`, make([]byte, 12)),
			`model.safetensors: tensor "model.norm.weight": data_offsets [0,12] hold 12 bytes, but dtype F32 shape [4] needs 16`},
		{"truncated data", fileBytes(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 10)), "end is beyond the data section (10 bytes)"},
		{"trailing data", fileBytes(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 10)), "bytes [4,10) after the last tensor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fixture.WriteTemp(t, "model.safetensors", tt.file)
			s, err := Open(path)
			fixture.WantErr(t, err, tt.want)
			if s != nil {
				t.Error("got a file with an error")
			}
			if !strings.HasPrefix(err.Error(), path+": ") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

// TestOpenHugeHeaderNoAlloc checks that a header length above the
// limit is refused before anything is allocated, even when the file really is
// that large (a sparse file, so the test costs no disk).
func TestOpenHugeHeaderNoAlloc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.safetensors")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(binary.LittleEndian.AppendUint64(nil, 150_000_000)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(200_000_000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = Open(path)
	runtime.ReadMemStats(&after)
	fixture.WantErr(t, err, "header length 150000000 exceeds the 100000000-byte limit")
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("allocated %d bytes before refusing the header", grew)
	}
}

func TestOpenNotAFile(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir)
	fixture.WantErr(t, err, dir+": not a regular file")

	_, err = Open(filepath.Join(dir, "missing.safetensors"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
	fixture.WantErr(t, err, "missing.safetensors")
}

func TestOpenValid(t *testing.T) {
	tests := []struct {
		name   string
		header string
		data   []byte
		want   map[string]Tensor
		md     map[string]string
	}{
		{"empty header, no data (no mmap)", `{}`, nil, map[string]Tensor{}, nil},
		{"only zero-sized tensors, no data", `{"z":{"dtype":"F32","shape":[0,8],"data_offsets":[0,0]}}`, nil,
			map[string]Tensor{"z": {"z", dtype.F32, []int{0, 8}, []byte{}}}, nil},
		{"scalar", `{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}    `, []byte{0, 0, 128, 63},
			map[string]Tensor{"s": {"s", dtype.F32, []int{}, []byte{0, 0, 128, 63}}}, nil},
		{"two tensors and metadata", `{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[6,14]},"a":{"dtype":"I16","shape":[3],"data_offsets":[0,6]}}`, fixture.Seq(14),
			map[string]Tensor{
				"a": {"a", dtype.I16, []int{3}, fixture.Seq(6)},
				"b": {"b", dtype.BF16, []int{2, 2}, fixture.Seq(14)[6:]},
			}, map[string]string{"format": "pt"}},
		{"zero-sized tensor at the end", `{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"z":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}`, fixture.Seq(2),
			map[string]Tensor{"a": {"a", dtype.U8, []int{2}, fixture.Seq(2)}, "z": {"z", dtype.U8, []int{0}, []byte{}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(fixture.WriteTemp(t, "x.safetensors", fileBytes(tt.header, tt.data)))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if (len(tt.data) == 0) != (s.mapping == nil) {
				t.Errorf("mapped = %v with %d data bytes", s.mapping != nil, len(tt.data))
			}
			var names []string
			for n := range tt.want {
				names = append(names, n)
			}
			if len(names) == 0 {
				names = []string{}
			}
			slices.Sort(names)
			if got := s.Names(); !reflect.DeepEqual(got, names) {
				t.Errorf("Names() = %v, want %v", got, names)
			}
			for name, want := range tt.want {
				got, err := s.Tensor(name)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Tensor(%q) = %+v, want %+v", name, got, want)
				}
				if got.NumElements()*got.DType.Size() != len(got.Data) {
					t.Errorf("%q: %d elements but %d bytes", name, got.NumElements(), len(got.Data))
				}
				info, ok := s.Info(name)
				if !ok || info.DType != want.DType || !reflect.DeepEqual(info.Shape, want.Shape) || info.End-info.Begin != int64(len(want.Data)) {
					t.Errorf("Info(%q) = %+v, %v", name, info, ok)
				}
			}
			if got := s.Metadata(); !reflect.DeepEqual(got, tt.md) {
				t.Errorf("Metadata() = %v, want %v", got, tt.md)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	path := fixture.WriteTemp(t, "x.safetensors", fileBytes(
		`{"__metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, []byte{1, 2}))
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Info("nope"); ok {
		t.Error("Info of a missing tensor reported ok")
	}
	_, err = s.Tensor("nope")
	fixture.WantErr(t, err, path+`: no tensor "nope"`)

	// Returned values are copies: changing them must not change the file's view.
	s.Metadata()["k"] = "changed"
	info, _ := s.Info("a")
	info.Shape[0] = 99
	s.Names()[0] = "changed"
	tn, _ := s.Tensor("a")
	tn.Shape[0] = 99
	if s.Metadata()["k"] != "v" || s.Names()[0] != "a" {
		t.Error("metadata or names changed through a returned value")
	}
	if info, _ := s.Info("a"); info.Shape[0] != 2 {
		t.Error("shape changed through a returned value")
	}
	if cap(tn.Data) != len(tn.Data) {
		t.Error("Data has spare capacity into the next tensor")
	}
	if got := s.Infos(); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("Infos() = %+v", got)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = s.Tensor("a")
	fixture.WantErr(t, err, "file is closed")
}

// TestOpenIsMapped checks that tensor data comes from the map,
// not a copy: two lookups share memory.
func TestOpenIsMapped(t *testing.T) {
	s, err := Open(fixture.WriteTemp(t, "x.safetensors", fileBytes(
		`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, fixture.Seq(4))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a1, _ := s.Tensor("a")
	a2, _ := s.Tensor("a")
	if &a1.Data[0] != &a2.Data[0] || !bytes.Equal(a1.Data, fixture.Seq(4)) {
		t.Error("tensor data is not a view of one mapping")
	}
}
