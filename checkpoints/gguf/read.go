package gguf

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/tune-dev/tune/internal/mmap"
)

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name string
	// Dims are in GGUF order, the reverse of PyTorch's shape: Dims[0] is the
	// length of a row.
	Dims   []uint64
	Type   Type
	Offset uint64 // from the start of the data section
	Size   int64  // bytes
}

// File is an opened GGUF file: its metadata and tensor descriptions, with the
// tensor data memory-mapped (see Safetensors for the caveats of mapping).
type File struct {
	Path       string
	Version    uint32
	KV         []KV         // in file order
	Tensors    []TensorInfo // in file order
	Alignment  uint64
	DataOffset int64 // where the data section starts in the file

	mapping []byte
	data    []byte // the data section, possibly empty
	byName  map[string]int
	kvIndex map[string]int
}

// Open opens and validates a GGUF file. Errors are one line, name the file
// and say what is wrong, so that a corrupt or truncated download is reported
// rather than crashing a loader later.
func Open(path string) (*File, error) {
	f, size, err := mmap.Open(path, 24, "a GGUF header")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := mmap.Map(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	g, err := parse(m)
	if err != nil {
		mmap.Unmap(m)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	g.Path = path
	g.mapping = m
	return g, nil
}

// Close unmaps the file; tensor data obtained earlier becomes invalid.
func (g *File) Close() error {
	m := g.mapping
	g.mapping, g.data = nil, nil
	if m == nil {
		return nil
	}
	if err := mmap.Unmap(m); err != nil {
		return fmt.Errorf("%s: munmap: %w", g.Path, err)
	}
	return nil
}

// Lookup returns the value of a metadata key.
func (g *File) Lookup(key string) (any, bool) {
	i, ok := g.kvIndex[key]
	if !ok {
		return nil, false
	}
	return g.KV[i].Value, true
}

// Info describes the named tensor.
func (g *File) Info(name string) (TensorInfo, bool) {
	i, ok := g.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	ti := g.Tensors[i]
	ti.Dims = slices.Clone(ti.Dims)
	return ti, true
}

// TensorData returns the named tensor's bytes, a read-only view into the
// mapping valid until Close.
func (g *File) TensorData(name string) ([]byte, error) {
	i, ok := g.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", g.Path, name)
	}
	ti := g.Tensors[i]
	if ti.Size == 0 {
		return []byte{}, nil
	}
	if g.data == nil {
		return nil, fmt.Errorf("%s: tensor %q: file is closed", g.Path, name)
	}
	end := int64(ti.Offset) + ti.Size
	return g.data[ti.Offset:end:end], nil
}

// Float32 decodes the named tensor (F32, F16, BF16 or Q8_0) to float32 values,
// in the tensor's row-major order.
func (g *File) Float32(name string) ([]float32, error) {
	b, err := g.TensorData(name)
	if err != nil {
		return nil, err
	}
	ti := g.Tensors[g.byName[name]]
	v, err := Decode(ti.Type, b)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", g.Path, name, err)
	}
	return v, nil
}

// reader walks a byte slice, failing instead of reading past its end.
type reader struct {
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) need(n int, what string) error {
	if n < 0 || n > r.left() {
		return fmt.Errorf("%s at byte %d runs past the end of the file (%d bytes left)", what, r.off, r.left())
	}
	return nil
}

func (r *reader) u32(what string) (uint32, error) {
	if err := r.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) u64(what string) (uint64, error) {
	if err := r.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

func (r *reader) str(what string) (string, error) {
	start := r.off
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(r.left()) {
		return "", fmt.Errorf("%s at byte %d has length %d, beyond the end of the file (%d bytes left)", what, start, n, r.left())
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

// parse validates a whole GGUF file held in memory. Every count and
// length is checked against the bytes that remain before anything is
// allocated for it, so a hostile header cannot make it allocate more than the
// file's size.
func parse(b []byte) (*File, error) {
	r := &reader{b: b}
	if len(b) < 4 || string(b[:4]) != Magic {
		return nil, fmt.Errorf("bad magic %q: not a GGUF file", b[:min(4, len(b))])
	}
	r.off = 4
	version, err := r.u32("version")
	if err != nil {
		return nil, err
	}
	if version != 2 && version != 3 {
		if version != 0 && bits.ReverseBytes32(version) <= 3 {
			return nil, fmt.Errorf("GGUF version %d is big-endian; tune reads little-endian files", bits.ReverseBytes32(version))
		}
		return nil, fmt.Errorf("unsupported GGUF version %d (tune reads 2 and 3)", version)
	}
	nTensors, err := r.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := r.u64("metadata count")
	if err != nil {
		return nil, err
	}
	// A KV takes at least 13 bytes (key length, type, a 1-byte value) and a
	// tensor description at least 24 (name length, n_dims, type, offset).
	if nKV > uint64(r.left())/13 {
		return nil, fmt.Errorf("metadata count %d is more than the %d-byte file can hold", nKV, len(b))
	}
	if nTensors > uint64(r.left())/24 {
		return nil, fmt.Errorf("tensor count %d is more than the %d-byte file can hold", nTensors, len(b))
	}
	g := &File{Version: version, Alignment: DefaultAlignment, kvIndex: make(map[string]int, nKV), byName: make(map[string]int, nTensors)}
	g.KV = make([]KV, 0, nKV)
	for i := range nKV {
		key, err := r.str(fmt.Sprintf("metadata key %d", i))
		if err != nil {
			return nil, err
		}
		if _, dup := g.kvIndex[key]; dup {
			return nil, fmt.Errorf("metadata key %q appears twice", key)
		}
		typ, err := r.u32(fmt.Sprintf("metadata %q type", key))
		if err != nil {
			return nil, err
		}
		v, err := r.value(ValueType(typ), key)
		if err != nil {
			return nil, err
		}
		g.kvIndex[key] = len(g.KV)
		g.KV = append(g.KV, KV{Key: key, Value: v})
	}
	if v, ok := g.Lookup(AlignmentKey); ok {
		a, isU32 := v.(uint32)
		if !isU32 {
			return nil, fmt.Errorf("%s must be a UINT32, got %s", AlignmentKey, valueTypeName(v))
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%s %d is not a power of two", AlignmentKey, a)
		}
		g.Alignment = uint64(a)
	}
	g.Tensors = make([]TensorInfo, 0, nTensors)
	for i := range nTensors {
		ti, err := r.tensorInfo(i)
		if err != nil {
			return nil, err
		}
		if _, dup := g.byName[ti.Name]; dup {
			return nil, fmt.Errorf("tensor %q appears twice", ti.Name)
		}
		g.byName[ti.Name] = len(g.Tensors)
		g.Tensors = append(g.Tensors, ti)
	}
	g.DataOffset = int64(AlignUp(uint64(r.off), g.Alignment))
	if g.DataOffset < int64(len(b)) {
		g.data = b[g.DataOffset:]
	}
	if err := g.checkLayout(); err != nil {
		return nil, err
	}
	return g, nil
}

func (r *reader) tensorInfo(i uint64) (TensorInfo, error) {
	var ti TensorInfo
	name, err := r.str(fmt.Sprintf("tensor %d name", i))
	if err != nil {
		return ti, err
	}
	if len(name) >= MaxName {
		return ti, fmt.Errorf("tensor %d name %q is %d bytes; llama.cpp allows at most %d", i, name, len(name), MaxName-1)
	}
	ti.Name = name
	nDims, err := r.u32(fmt.Sprintf("tensor %q dimension count", name))
	if err != nil {
		return ti, err
	}
	if nDims > MaxDims {
		return ti, fmt.Errorf("tensor %q has %d dimensions; GGUF allows at most %d", name, nDims, MaxDims)
	}
	ti.Dims = make([]uint64, nDims)
	for j := range ti.Dims {
		if ti.Dims[j], err = r.u64(fmt.Sprintf("tensor %q dimension %d", name, j)); err != nil {
			return ti, err
		}
	}
	typ, err := r.u32(fmt.Sprintf("tensor %q type", name))
	if err != nil {
		return ti, err
	}
	ti.Type = Type(typ)
	if ti.Offset, err = r.u64(fmt.Sprintf("tensor %q offset", name)); err != nil {
		return ti, err
	}
	if ti.Size, err = ByteSize(ti.Type, ti.Dims); err != nil {
		return ti, fmt.Errorf("tensor %q: %w", name, err)
	}
	return ti, nil
}

// checkLayout requires every tensor to start on the alignment, lie inside
// the data section and not overlap another.
func (g *File) checkLayout() error {
	dataLen := uint64(len(g.data))
	order := make([]int, len(g.Tensors))
	for i := range order {
		order[i] = i
	}
	for _, ti := range g.Tensors {
		if ti.Offset%g.Alignment != 0 {
			return fmt.Errorf("tensor %q offset %d is not a multiple of the alignment %d", ti.Name, ti.Offset, g.Alignment)
		}
		if ti.Offset > dataLen || uint64(ti.Size) > dataLen-ti.Offset {
			return fmt.Errorf("tensor %q bytes [%d, %d) lie beyond the %d-byte data section (truncated file?)", ti.Name, ti.Offset, ti.Offset+uint64(ti.Size), dataLen)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(g.Tensors[a].Offset, g.Tensors[b].Offset), cmp.Compare(g.Tensors[a].Size, g.Tensors[b].Size))
	})
	var end uint64
	prev := -1
	for _, i := range order {
		ti := g.Tensors[i]
		if ti.Size == 0 {
			continue
		}
		if prev >= 0 && ti.Offset < end {
			return fmt.Errorf("tensors %q and %q overlap at byte %d of the data section", g.Tensors[prev].Name, ti.Name, ti.Offset)
		}
		end, prev = ti.Offset+uint64(ti.Size), i
	}
	return nil
}

// value reads one metadata value of type t.
func (r *reader) value(t ValueType, key string) (any, error) {
	what := fmt.Sprintf("metadata %q", key)
	if t == Array {
		et, err := r.u32(what + " array type")
		if err != nil {
			return nil, err
		}
		n, err := r.u64(what + " array length")
		if err != nil {
			return nil, err
		}
		return r.array(ValueType(et), n, key)
	}
	if t == String {
		return r.str(what)
	}
	size := t.Size()
	if size == 0 {
		return nil, fmt.Errorf("%s has unknown value type %d", what, t)
	}
	if err := r.need(size, what); err != nil {
		return nil, err
	}
	v := scalarAt(t, r.b[r.off:])
	r.off += size
	return v, nil
}

func scalarAt(t ValueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case Uint8:
		return b[0]
	case Int8:
		return int8(b[0])
	case Bool:
		return b[0] != 0
	case Uint16:
		return le.Uint16(b)
	case Int16:
		return int16(le.Uint16(b))
	case Uint32:
		return le.Uint32(b)
	case Int32:
		return int32(le.Uint32(b))
	case Float32:
		return math.Float32frombits(le.Uint32(b))
	case Uint64:
		return le.Uint64(b)
	case Int64:
		return int64(le.Uint64(b))
	case Float64:
		return math.Float64frombits(le.Uint64(b))
	}
	panic("unreachable")
}

// array reads n elements of type t into the matching Go slice type.
func (r *reader) array(t ValueType, n uint64, key string) (any, error) {
	what := fmt.Sprintf("metadata %q", key)
	switch t {
	case Array:
		return nil, fmt.Errorf("%s is an array of arrays, which llama.cpp does not read", what)
	case String:
		if n > uint64(r.left())/8 {
			return nil, fmt.Errorf("%s: array of %d strings is longer than the rest of the file (%d bytes)", what, n, r.left())
		}
		out := make([]string, n)
		for i := range out {
			s, err := r.str(fmt.Sprintf("%s element %d", what, i))
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	size := t.Size()
	if size == 0 {
		return nil, fmt.Errorf("%s: array has unknown element type %d", what, t)
	}
	if n > uint64(r.left())/uint64(size) {
		return nil, fmt.Errorf("%s: array of %d elements of %d bytes is longer than the rest of the file (%d bytes)", what, n, size, r.left())
	}
	raw := r.b[r.off : r.off+int(n)*size]
	r.off += len(raw)
	switch t {
	case Uint8:
		return slices.Clone(raw), nil
	case Int8:
		return decodeSlice(raw, 1, func(b []byte) int8 { return int8(b[0]) }), nil
	case Bool:
		return decodeSlice(raw, 1, func(b []byte) bool { return b[0] != 0 }), nil
	case Uint16:
		return decodeSlice(raw, 2, binary.LittleEndian.Uint16), nil
	case Int16:
		return decodeSlice(raw, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }), nil
	case Uint32:
		return decodeSlice(raw, 4, binary.LittleEndian.Uint32), nil
	case Int32:
		return decodeSlice(raw, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }), nil
	case Float32:
		return decodeSlice(raw, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }), nil
	case Uint64:
		return decodeSlice(raw, 8, binary.LittleEndian.Uint64), nil
	case Int64:
		return decodeSlice(raw, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }), nil
	case Float64:
		return decodeSlice(raw, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }), nil
	}
	panic("unreachable")
}

func decodeSlice[T any](raw []byte, size int, f func([]byte) T) []T {
	out := make([]T, len(raw)/size)
	for i := range out {
		out[i] = f(raw[i*size:])
	}
	return out
}

func valueTypeName(v any) string {
	t, array, ok := ValueTypeOf(v)
	switch {
	case !ok:
		return fmt.Sprintf("%T", v)
	case array:
		return "ARRAY of " + t.String()
	}
	return t.String()
}

// Int is a metadata value of any of GGUF's integer types as an int64; false
// for other types and for a uint64 beyond int64.
func Int(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}
