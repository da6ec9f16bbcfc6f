package safetensors

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/tune-dev/tune/internal/mmap"
)

// File is one opened .safetensors file. The data section is
// memory-mapped read-only, so opening a multi-GB checkpoint costs no RAM until
// tensors are touched, and the OS page cache is shared with other processes.
//
// Methods may be called from several goroutines, but not concurrently with
// Close. If the file is truncated by someone else while it is mapped, reading
// a tensor beyond the new end raises SIGBUS; tune's own writes never do this
// because they replace files by rename.
type File struct {
	path     string
	mapping  []byte // the whole file; nil when the data section is empty
	data     []byte // mapping[8+headerLen:]
	infos    map[string]TensorInfo
	names    []string // sorted
	ordered  []TensorInfo
	metadata map[string]string
	closed   bool
}

// Open opens and validates a safetensors file. The header is read
// with ordinary reads (it is bounded by maxHeaderSize); then the whole file is
// mapped, since mmap offsets must be page-aligned and the data section's start
// is not. Nothing is mapped when the data section is empty (mmap of length 0
// fails). Errors name the file.
func Open(path string) (*File, error) {
	f, size, err := mmap.Open(path, 8, "the 8-byte header length")
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping outlives the descriptor
	var prefix [8]byte
	if _, err := f.ReadAt(prefix[:], 0); err != nil {
		return nil, fmt.Errorf("%s: read header length: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > maxHeaderSize {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit (corrupt file?)", path, n, maxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("%s: header length %d runs past the end of the %d-byte file", path, n, size)
	}
	header := make([]byte, n)
	if _, err := f.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("%s: read header: %w", path, err)
	}
	dataLen := size - 8 - int64(n)
	infos, metadata, err := parseHeader(header, dataLen)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	s := &File{
		path:     path,
		infos:    make(map[string]TensorInfo, len(infos)),
		names:    make([]string, 0, len(infos)),
		ordered:  infos,
		metadata: metadata,
	}
	for _, info := range infos {
		s.infos[info.Name] = info
		s.names = append(s.names, info.Name)
	}
	slices.Sort(s.names)
	if dataLen > 0 {
		m, err := mmap.Map(f, int(size))
		if err != nil {
			return nil, fmt.Errorf("%s: mmap: %w", path, err)
		}
		s.mapping = m
		s.data = m[8+n:]
	}
	return s, nil
}

// Path is the path the file was opened with.
func (s *File) Path() string { return s.path }

// Names lists the tensor names, sorted.
func (s *File) Names() []string { return slices.Clone(s.names) }

// Infos lists the tensors in the order their bytes lie in the file, the order
// in which reading them touches the disk sequentially.
func (s *File) Infos() []TensorInfo {
	out := make([]TensorInfo, len(s.ordered))
	for i, t := range s.ordered {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Info describes one tensor without touching its data.
func (s *File) Info(name string) (TensorInfo, bool) {
	info, ok := s.infos[name]
	info.Shape = slices.Clone(info.Shape)
	return info, ok
}

// Tensor returns a tensor whose Data points into the memory map: no copy is
// made, and Data must not be used after Close.
func (s *File) Tensor(name string) (Tensor, error) {
	if s.closed {
		return Tensor{}, fmt.Errorf("%s: tensor %q: file is closed", s.path, name)
	}
	info, ok := s.infos[name]
	if !ok {
		return Tensor{}, fmt.Errorf("%s: no tensor %q", s.path, name)
	}
	t := Tensor{Name: name, DType: info.DType, Shape: slices.Clone(info.Shape)}
	if s.data != nil {
		t.Data = s.data[info.Begin:info.End:info.End]
	} else {
		t.Data = []byte{}
	}
	return t, nil
}

// Metadata returns a copy of the header's __metadata__ (nil when absent).
func (s *File) Metadata() map[string]string { return maps.Clone(s.metadata) }

// Close unmaps the file. Tensors obtained earlier become invalid. Closing
// twice is harmless.
func (s *File) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	m := s.mapping
	s.mapping, s.data = nil, nil
	if m == nil {
		return nil
	}
	if err := mmap.Unmap(m); err != nil {
		return fmt.Errorf("%s: munmap: %w", s.path, err)
	}
	return nil
}
