package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tune-dev/tune/internal/fixture"
)

// checkInfos asserts what a successful parse promises: every tensor lies in
// the data section, holds exactly the bytes its dtype and shape need, and no
// two tensors overlap.
func checkInfos(t *testing.T, infos []TensorInfo, dataLen int64) {
	t.Helper()
	sorted := slices.Clone(infos)
	slices.SortFunc(sorted, func(a, b TensorInfo) int { return cmp.Compare(a.Begin, b.Begin) })
	var prevEnd int64
	seen := map[string]bool{}
	for _, ti := range sorted {
		if seen[ti.Name] || ti.Name == metadataKey {
			t.Fatalf("duplicate or reserved name %q", ti.Name)
		}
		seen[ti.Name] = true
		if ti.Begin < 0 || ti.Begin > ti.End || ti.End > dataLen {
			t.Fatalf("tensor %q [%d,%d] outside data of %d bytes", ti.Name, ti.Begin, ti.End, dataLen)
		}
		if ti.Begin < prevEnd {
			t.Fatalf("tensor %q [%d,%d] overlaps the previous one ending at %d", ti.Name, ti.Begin, ti.End, prevEnd)
		}
		prevEnd = ti.End
		need, problem := byteSize(ti.DType, ti.Shape)
		if problem != "" || need != ti.End-ti.Begin {
			t.Fatalf("tensor %q: %d bytes for %s %v (%s)", ti.Name, ti.End-ti.Begin, ti.DType, ti.Shape, problem)
		}
		if n := (Tensor{Shape: ti.Shape}).NumElements(); n < 0 {
			t.Fatalf("tensor %q: NumElements < 0 for accepted shape %v", ti.Name, ti.Shape)
		}
	}
}

// FuzzParseHeader: seeds live in testdata/fuzz/FuzzParseHeader.
func FuzzParseHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, header []byte, dataLen int64) {
		infos, md, err := parseHeader(header, dataLen)
		if err != nil {
			if infos != nil || md != nil {
				t.Fatal("results returned with an error")
			}
			return
		}
		checkInfos(t, infos, dataLen)
	})
}

func FuzzOpen(f *testing.F) {
	f.Add(fileBytes(`{}      `, nil))
	f.Add(fileBytes(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, fixture.Seq(8)))
	f.Add(fileBytes(`{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"z":{"dtype":"I64","shape":[0,3],"data_offsets":[2,2]}}`, fixture.Seq(2)))
	f.Add(fileBytes(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"F4","shape":[2],"data_offsets":[4,5]}}`, fixture.Seq(5)))
	f.Add(fileBytes(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}`, fixture.Seq(12)))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, '{', '}'})
	f.Add([]byte{1, 2, 3})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, file []byte) {
		path := filepath.Join(dir, "fuzz.safetensors")
		if err := os.WriteFile(path, file, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path)
		if err != nil {
			return
		}
		defer s.Close()
		// Opened, so the prefix and header are sane; recompute the data section.
		start := 8 + int64(binary.LittleEndian.Uint64(file))
		data := file[start:]
		infos := s.Infos()
		checkInfos(t, infos, int64(len(data)))
		var covered int64
		for _, ti := range infos {
			covered += ti.End - ti.Begin
		}
		if covered != int64(len(data)) {
			t.Fatalf("tensors cover %d of %d data bytes", covered, len(data))
		}
		for _, name := range s.Names() {
			tn, err := s.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := s.Info(name)
			if !bytes.Equal(tn.Data, data[info.Begin:info.End]) {
				t.Fatalf("tensor %q: mapped data differs from the file's bytes", name)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
