package checkpoints

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
)

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestWriteSafetensorsBytes compares written files with bytes computed by hand
// and with the vectors of the Python library's own tests.
func TestWriteSafetensorsBytes(t *testing.T) {
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
			if err := WriteSafetensors(path, tt.tensors, tt.metadata); err != nil {
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

func TestWriteSafetensorsRoundTrip(t *testing.T) {
	tensors := []Tensor{
		{"model.layers.0.self_attn.q_proj.weight", dtype.BF16, []int{2, 3}, seq(12)},
		{"model.norm.weight", dtype.F32, []int{4}, f32bytes(1, -2, 3.5, 0)},
		{"scalar", dtype.F64, []int{}, seq(8)},
		{"empty", dtype.F16, []int{0, 7}, nil},
		{"ids", dtype.I64, []int{1, 2}, seq(16)},
		{"mask", dtype.BOOL, []int{3}, []byte{1, 0, 1}},
		{"fp4", dtype.F4, []int{4}, []byte{0x12, 0x34}},
		{"ünïcode ✓", dtype.U16, []int{1}, []byte{1, 2}},
	}
	md := map[string]string{"format": "pt", "note": "line\nbreak \"quoted\""}
	path := filepath.Join(t.TempDir(), "rt.safetensors")
	if err := WriteSafetensors(path, tensors, md); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSafetensors(path)
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

func TestWriteSafetensorsErrors(t *testing.T) {
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
			wantErr(t, WriteSafetensors(path, tt.tensors, nil), tt.want)
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file exists after a failed write: %v", err)
			}
		})
	}
}

func TestSortLikeSafetensors(t *testing.T) {
	ts := []Tensor{{Name: "b", DType: dtype.BF16}, {Name: "c", DType: dtype.F32}, {Name: "a", DType: dtype.BF16}, {Name: "d", DType: dtype.U8}, {Name: "e", DType: dtype.I64}}
	SortLikeSafetensors(ts)
	var got []string
	for _, x := range ts {
		got = append(got, x.Name)
	}
	if want := []string{"e", "c", "a", "b", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

// listDir returns the names in dir, to spot leftover temporary files.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	errMidway := errors.New("disk on fire")
	tests := []struct {
		name    string
		write   func(w io.Writer) error
		panics  bool
		wantErr string
	}{
		{"success", func(w io.Writer) error { _, err := io.WriteString(w, "new contents"); return err }, false, ""},
		{"fails midway", func(w io.Writer) error {
			if _, err := io.WriteString(w, "half of the new"); err != nil {
				return err
			}
			return errMidway
		}, false, "disk on fire"},
		{"panics midway", func(w io.Writer) error {
			io.WriteString(w, "partial")
			panic("boom")
		}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.bin")
			if err := os.WriteFile(path, []byte("old contents"), 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			func() {
				defer func() {
					if r := recover(); (r != nil) != tt.panics {
						t.Errorf("recover() = %v", r)
					}
				}()
				err = WriteFileAtomic(path, tt.write)
			}()
			got, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			switch {
			case tt.panics:
				if string(got) != "old contents" {
					t.Errorf("contents = %q after a panic", got)
				}
			case tt.wantErr != "":
				wantErr(t, err, tt.wantErr)
				if !errors.Is(err, errMidway) {
					t.Errorf("error %v does not wrap the write error", err)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %v does not name the file", err)
				}
				if string(got) != "old contents" {
					t.Errorf("contents = %q after a failed write", got)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != "new contents" {
					t.Errorf("contents = %q", got)
				}
			}
			if names := listDir(t, dir); !reflect.DeepEqual(names, []string{"state.bin"}) {
				t.Errorf("directory holds %v, want only state.bin", names)
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want the old file's 0600", st.Mode().Perm())
			}
		})
	}
}

func TestWriteFileAtomicNewFileAndErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.json")
	if err := WriteFileAtomic(path, func(w io.Writer) error { _, err := w.Write([]byte("{}")); return err }); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("new file: %v %v", st, err)
	}
	ok := func(w io.Writer) error { return nil }
	wantErr(t, WriteFileAtomic(dir, ok), "is a directory")
	wantErr(t, WriteFileAtomic(filepath.Join(dir, "no", "such", "x"), ok), filepath.Join(dir, "no", "such", "x"))
	if names := listDir(t, dir); !reflect.DeepEqual(names, []string{"new.json"}) {
		t.Errorf("directory holds %v", names)
	}
}
