package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/fixture"
)

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestWriteBytes compares written files with bytes computed by hand
// and with the vectors of the Python library's own tests.
func TestWriteBytes(t *testing.T) {
	tests := []struct {
		name     string
		tensors  []Tensor
		metadata map[string]string
		want     []byte
	}{
		{
			"one F32 tensor",
			[]Tensor{{"a", dtype.F32, []int{2}, f32bytes(1, 2)}},
			nil,
			append(append([]byte{56, 0, 0, 0, 0, 0, 0, 0},
				`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  `...),
				0, 0, 0x80, 0x3f, 0, 0, 0, 0x40),
		},
		{
			// safetensors/src/tensor.rs test_serialization: 64-byte header, no padding.
			"python vector attn.0",
			[]Tensor{{"attn.0", dtype.F32, []int{1, 2, 3}, f32bytes(0, 1, 2, 3, 4, 5)}},
			nil,
			append(append([]byte{64, 0, 0, 0, 0, 0, 0, 0},
				`{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`...),
				f32bytes(0, 1, 2, 3, 4, 5)...),
		},
		{
			// test_empty: "{}" padded to 8.
			"python vector empty", nil, nil,
			[]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '},
		},
		{
			"python vector empty with metadata", nil, map[string]string{"framework": "pt"},
			append([]byte{40, 0, 0, 0, 0, 0, 0, 0}, `{"__metadata__":{"framework":"pt"}}     `...),
		},
		{
			"empty metadata is omitted", nil, map[string]string{},
			[]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '},
		},
		{
			"metadata first and sorted, tensors in given order, serde escaping",
			[]Tensor{
				{"z<&>\u2028", dtype.U8, []int{1}, []byte{7}},
				{"a\"\\\n\x01", dtype.I8, []int{}, []byte{9}},
			},
			map[string]string{"b": "2", "a": "1"},
			append(append([]byte{160, 0, 0, 0, 0, 0, 0, 0},
				`{"__metadata__":{"a":"1","b":"2"},"z<&>`+"\u2028"+`":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a\"\\\n\u0001":{"dtype":"I8","shape":[],"data_offsets":[1,2]}}     `...),
				7, 9),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.safetensors")
			if err := Write(path, tt.tensors, tt.metadata); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("wrote\n%q\nwant\n%q", got, tt.want)
			}
			if n := binary.LittleEndian.Uint64(got); n%8 != 0 {
				t.Errorf("header length %d is not a multiple of 8", n)
			}
		})
	}
}

func TestWriteRoundTrip(t *testing.T) {
	tensors := []Tensor{
		{"model.layers.0.self_attn.q_proj.weight", dtype.BF16, []int{2, 3}, fixture.Seq(12)},
		{"model.norm.weight", dtype.F32, []int{4}, f32bytes(1, -2, 3.5, 0)},
		{"scalar", dtype.F64, []int{}, fixture.Seq(8)},
		{"empty", dtype.F16, []int{0, 7}, nil},
		{"ids", dtype.I64, []int{1, 2}, fixture.Seq(16)},
		{"mask", dtype.BOOL, []int{3}, []byte{1, 0, 1}},
		{"fp4", dtype.F4, []int{4}, []byte{0x12, 0x34}},
		{"ünïcode ✓", dtype.U16, []int{1}, []byte{1, 2}},
	}
	md := map[string]string{"format": "pt", "note": "line\nbreak \"quoted\""}
	path := filepath.Join(t.TempDir(), "rt.safetensors")
	if err := Write(path, tensors, md); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Metadata(); !reflect.DeepEqual(got, md) {
		t.Errorf("metadata = %v, want %v", got, md)
	}
	if len(s.Names()) != len(tensors) {
		t.Errorf("Names() = %v", s.Names())
	}
	var off int64
	for i, want := range tensors {
		got, err := s.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || !reflect.DeepEqual(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("tensor %q = %+v, want %+v", want.Name, got, want)
		}
		// Data is stored in the given order.
		if info := s.Infos()[i]; info.Name != want.Name || info.Begin != off {
			t.Errorf("tensor %d is %q at %d, want %q at %d", i, info.Name, info.Begin, want.Name, off)
		}
		off += int64(len(want.Data))
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"short data", []Tensor{{"a", dtype.F32, []int{4}, make([]byte, 12)}}, `tensor "a": has 12 bytes of data, but dtype F32 shape [4] needs 16`},
		{"unknown dtype", []Tensor{{"a", "F33", []int{1}, make([]byte, 4)}}, `tensor "a": unknown dtype "F33"`},
		{"negative dim", []Tensor{{"a", dtype.U8, []int{2, -1}, nil}}, `dimension 1 is negative`},
		{"overflow", []Tensor{{"a", dtype.U8, []int{math.MaxInt/2 + 1, 2}, nil}}, `too many elements`},
		{"duplicate", []Tensor{{"a", dtype.U8, []int{1}, []byte{1}}, {"a", dtype.U8, []int{1}, []byte{1}}}, `tensor "a" given twice`},
		{"reserved name", []Tensor{{"__metadata__", dtype.U8, []int{1}, []byte{1}}}, `is reserved`},
		{"empty name", []Tensor{{"", dtype.U8, []int{1}, []byte{1}}}, `empty name`},
		{"invalid UTF-8", []Tensor{{"\xff", dtype.U8, []int{1}, []byte{1}}}, `not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			fixture.WantErr(t, Write(path, tt.tensors, nil), tt.want)
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file exists after a failed write: %v", err)
			}
		})
	}
}

func TestSortLikePython(t *testing.T) {
	ts := []Tensor{{Name: "b", DType: dtype.BF16}, {Name: "c", DType: dtype.F32}, {Name: "a", DType: dtype.BF16}, {Name: "d", DType: dtype.U8}, {Name: "e", DType: dtype.I64}}
	sortLikePython(ts)
	var got []string
	for _, x := range ts {
		got = append(got, x.Name)
	}
	if want := []string{"e", "c", "a", "b", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

// sortLikePython orders tensors as the Python library stores them:
// larger-alignment dtypes first, then by name. Writing the result gives the
// same bytes as safetensors.torch.save_file for the same tensors.
func sortLikePython(tensors []Tensor) {
	slices.SortStableFunc(tensors, func(a, b Tensor) int {
		if ra, rb := rank(a.DType), rank(b.DType); ra != rb {
			return rb - ra
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// rank is the position of each dtype in the Python library's Dtype enum
// (increasing alignment); sortLikePython orders by it.
func rank(d dtype.DType) int {
	switch d {
	case dtype.BOOL:
		return 0
	case dtype.F4:
		return 1
	case dtype.F6_E2M3:
		return 2
	case dtype.F6_E3M2:
		return 3
	case dtype.U8:
		return 4
	case dtype.I8:
		return 5
	case dtype.F8_E5M2:
		return 6
	case dtype.F8_E4M3:
		return 7
	case dtype.F8_E8M0:
		return 8
	case dtype.F8_E4M3FNUZ:
		return 9
	case dtype.F8_E5M2FNUZ:
		return 10
	case dtype.I16:
		return 11
	case dtype.U16:
		return 12
	case dtype.F16:
		return 13
	case dtype.BF16:
		return 14
	case dtype.I32:
		return 15
	case dtype.U32:
		return 16
	case dtype.F32:
		return 17
	case dtype.C64:
		return 18
	case dtype.F64:
		return 19
	case dtype.I64:
		return 20
	case dtype.U64:
		return 21
	}
	return -1
}
