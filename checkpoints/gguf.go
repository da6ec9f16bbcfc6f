package checkpoints

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strconv"
)

// GGUF is the file format of llama.cpp and Ollama: a header of typed
// key-value metadata and tensor descriptions, then the tensor data, each
// tensor starting at a multiple of the file's alignment. tune reads and
// writes version 3 (little-endian); version 2 has the same layout and is read
// too. Version 1 (32-bit counts) is long gone from the ecosystem and refused.
const (
	ggufMagic            = "GGUF"
	GGUFVersion          = 3
	GGUFDefaultAlignment = 32
	// GGUFAlignmentKey overrides the default alignment; llama.cpp requires it
	// to be a UINT32 power of two.
	GGUFAlignmentKey = "general.alignment"
	// ggufMaxDims and ggufMaxName are llama.cpp's GGML_MAX_DIMS and
	// GGML_MAX_NAME: files beyond them load nowhere, so neither side accepts them.
	ggufMaxDims = 4
	ggufMaxName = 64
)

// GGMLType is a tensor element type, numbered as in ggml.h.
type GGMLType uint32

// The tensor types tune reads and writes. Other ggml types (K-quants and so
// on) are refused by name rather than guessed at.
const (
	GGMLF32  GGMLType = 0
	GGMLF16  GGMLType = 1
	GGMLQ8_0 GGMLType = 8
	GGMLBF16 GGMLType = 30
)

// Q8_0 stores blocks of 32 values as an f16 scale and 32 signed bytes.
const (
	Q8_0BlockSize  = 32
	q8_0BlockBytes = 2 + Q8_0BlockSize
)

func (t GGMLType) String() string {
	switch t {
	case GGMLF32:
		return "F32"
	case GGMLF16:
		return "F16"
	case GGMLQ8_0:
		return "Q8_0"
	case GGMLBF16:
		return "BF16"
	}
	return "type " + strconv.FormatUint(uint64(t), 10)
}

// layout is how many values one block holds and how many bytes it takes; ok
// is false for types tune does not handle.
func (t GGMLType) layout() (values, bytes int64, ok bool) {
	switch t {
	case GGMLF32:
		return 1, 4, true
	case GGMLF16, GGMLBF16:
		return 1, 2, true
	case GGMLQ8_0:
		return Q8_0BlockSize, q8_0BlockBytes, true
	}
	return 0, 0, false
}

// GGMLByteSize is the size in bytes of a tensor of type t with GGUF dims (the
// first dimension varies fastest). It fails for unknown types, a first
// dimension that does not fill whole blocks, or sizes beyond int64.
func GGMLByteSize(t GGMLType, dims []uint64) (int64, error) {
	values, size, ok := t.layout()
	if !ok {
		return 0, fmt.Errorf("unsupported tensor type %s (tune handles F32, F16, BF16 and Q8_0)", t)
	}
	n := uint64(1)
	for i, d := range dims {
		if d > math.MaxInt64 {
			return 0, fmt.Errorf("dimension %d is %d, beyond int64", i, d)
		}
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("dims %v: element count overflows int64", dims)
		}
		n = lo
	}
	if len(dims) > 0 && dims[0]%uint64(values) != 0 {
		return 0, fmt.Errorf("first dimension %d is not a multiple of the %s block size %d", dims[0], t, values)
	}
	blocks := n / uint64(values)
	hi, lo := bits.Mul64(blocks, uint64(size))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("dims %v: byte size overflows int64", dims)
	}
	return int64(lo), nil
}

// GGUFValueType numbers metadata value types as the GGUF spec does.
type GGUFValueType uint32

// The metadata value types.
const (
	GGUFUint8   GGUFValueType = 0
	GGUFInt8    GGUFValueType = 1
	GGUFUint16  GGUFValueType = 2
	GGUFInt16   GGUFValueType = 3
	GGUFUint32  GGUFValueType = 4
	GGUFInt32   GGUFValueType = 5
	GGUFFloat32 GGUFValueType = 6
	GGUFBool    GGUFValueType = 7
	GGUFString  GGUFValueType = 8
	GGUFArray   GGUFValueType = 9
	GGUFUint64  GGUFValueType = 10
	GGUFInt64   GGUFValueType = 11
	GGUFFloat64 GGUFValueType = 12
)

// scalarSize is the encoded size of a fixed-size value type, 0 for strings,
// arrays and unknown types.
func (t GGUFValueType) scalarSize() int {
	switch t {
	case GGUFUint8, GGUFInt8, GGUFBool:
		return 1
	case GGUFUint16, GGUFInt16:
		return 2
	case GGUFUint32, GGUFInt32, GGUFFloat32:
		return 4
	case GGUFUint64, GGUFInt64, GGUFFloat64:
		return 8
	}
	return 0
}

// KV is one metadata entry. Value holds the Go type of its GGUF type:
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64,
// int64 or float64, or a slice of one of them for an array. GGUF allows
// arrays of arrays but llama.cpp refuses them, so tune does too.
type KV struct {
	Key   string
	Value any
}

// GGUFTensorInfo describes one tensor of a GGUF file.
type GGUFTensorInfo struct {
	Name string
	// Dims are in GGUF order, the reverse of PyTorch's shape: Dims[0] is the
	// length of a row.
	Dims   []uint64
	Type   GGMLType
	Offset uint64 // from the start of the data section
	Size   int64  // bytes
}

// GGUF is an opened GGUF file: its metadata and tensor descriptions, with the
// tensor data memory-mapped (see Safetensors for the caveats of mapping).
type GGUF struct {
	Path       string
	Version    uint32
	KV         []KV             // in file order
	Tensors    []GGUFTensorInfo // in file order
	Alignment  uint64
	DataOffset int64 // where the data section starts in the file

	mapping []byte
	data    []byte // the data section, possibly empty
	byName  map[string]int
	kvIndex map[string]int
}

// ReadGGUF opens and validates a GGUF file. Errors are one line, name the file
// and say what is wrong, so that a corrupt or truncated download is reported
// rather than crashing a loader later.
func ReadGGUF(path string) (*GGUF, error) {
	f, size, err := openMappable(path, 24, "a GGUF header")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := mapFile(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	g, err := parseGGUF(m)
	if err != nil {
		unmapFile(m)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	g.Path = path
	g.mapping = m
	return g, nil
}

// Close unmaps the file; tensor data obtained earlier becomes invalid.
func (g *GGUF) Close() error {
	m := g.mapping
	g.mapping, g.data = nil, nil
	if m == nil {
		return nil
	}
	if err := unmapFile(m); err != nil {
		return fmt.Errorf("%s: munmap: %w", g.Path, err)
	}
	return nil
}

// Lookup returns the value of a metadata key.
func (g *GGUF) Lookup(key string) (any, bool) {
	i, ok := g.kvIndex[key]
	if !ok {
		return nil, false
	}
	return g.KV[i].Value, true
}

// Info describes the named tensor.
func (g *GGUF) Info(name string) (GGUFTensorInfo, bool) {
	i, ok := g.byName[name]
	if !ok {
		return GGUFTensorInfo{}, false
	}
	ti := g.Tensors[i]
	ti.Dims = slices.Clone(ti.Dims)
	return ti, true
}

// TensorData returns the named tensor's bytes, a read-only view into the
// mapping valid until Close.
func (g *GGUF) TensorData(name string) ([]byte, error) {
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
func (g *GGUF) Float32(name string) ([]float32, error) {
	b, err := g.TensorData(name)
	if err != nil {
		return nil, err
	}
	ti := g.Tensors[g.byName[name]]
	v, err := DecodeGGML(ti.Type, b)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", g.Path, name, err)
	}
	return v, nil
}

// ggufReader walks a byte slice, failing instead of reading past its end.
type ggufReader struct {
	b   []byte
	off int
}

func (r *ggufReader) left() int { return len(r.b) - r.off }

func (r *ggufReader) need(n int, what string) error {
	if n < 0 || n > r.left() {
		return fmt.Errorf("%s at byte %d runs past the end of the file (%d bytes left)", what, r.off, r.left())
	}
	return nil
}

func (r *ggufReader) u32(what string) (uint32, error) {
	if err := r.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *ggufReader) u64(what string) (uint64, error) {
	if err := r.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

func (r *ggufReader) str(what string) (string, error) {
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

// parseGGUF validates a whole GGUF file held in memory. Every count and
// length is checked against the bytes that remain before anything is
// allocated for it, so a hostile header cannot make it allocate more than the
// file's size.
func parseGGUF(b []byte) (*GGUF, error) {
	r := &ggufReader{b: b}
	if len(b) < 4 || string(b[:4]) != ggufMagic {
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
	g := &GGUF{Version: version, Alignment: GGUFDefaultAlignment, kvIndex: make(map[string]int, nKV), byName: make(map[string]int, nTensors)}
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
		v, err := r.value(GGUFValueType(typ), key)
		if err != nil {
			return nil, err
		}
		g.kvIndex[key] = len(g.KV)
		g.KV = append(g.KV, KV{Key: key, Value: v})
	}
	if v, ok := g.Lookup(GGUFAlignmentKey); ok {
		a, isU32 := v.(uint32)
		if !isU32 {
			return nil, fmt.Errorf("%s must be a UINT32, got %s", GGUFAlignmentKey, valueTypeName(v))
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%s %d is not a power of two", GGUFAlignmentKey, a)
		}
		g.Alignment = uint64(a)
	}
	g.Tensors = make([]GGUFTensorInfo, 0, nTensors)
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
	g.DataOffset = int64(alignUp(uint64(r.off), g.Alignment))
	if g.DataOffset < int64(len(b)) {
		g.data = b[g.DataOffset:]
	}
	if err := g.checkLayout(); err != nil {
		return nil, err
	}
	return g, nil
}

func (r *ggufReader) tensorInfo(i uint64) (GGUFTensorInfo, error) {
	var ti GGUFTensorInfo
	name, err := r.str(fmt.Sprintf("tensor %d name", i))
	if err != nil {
		return ti, err
	}
	if len(name) >= ggufMaxName {
		return ti, fmt.Errorf("tensor %d name %q is %d bytes; llama.cpp allows at most %d", i, name, len(name), ggufMaxName-1)
	}
	ti.Name = name
	nDims, err := r.u32(fmt.Sprintf("tensor %q dimension count", name))
	if err != nil {
		return ti, err
	}
	if nDims > ggufMaxDims {
		return ti, fmt.Errorf("tensor %q has %d dimensions; GGUF allows at most %d", name, nDims, ggufMaxDims)
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
	ti.Type = GGMLType(typ)
	if ti.Offset, err = r.u64(fmt.Sprintf("tensor %q offset", name)); err != nil {
		return ti, err
	}
	if ti.Size, err = GGMLByteSize(ti.Type, ti.Dims); err != nil {
		return ti, fmt.Errorf("tensor %q: %w", name, err)
	}
	return ti, nil
}

// checkLayout requires every tensor to start on the alignment, lie inside
// the data section and not overlap another.
func (g *GGUF) checkLayout() error {
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
func (r *ggufReader) value(t GGUFValueType, key string) (any, error) {
	what := fmt.Sprintf("metadata %q", key)
	if t == GGUFArray {
		et, err := r.u32(what + " array type")
		if err != nil {
			return nil, err
		}
		n, err := r.u64(what + " array length")
		if err != nil {
			return nil, err
		}
		return r.array(GGUFValueType(et), n, key)
	}
	if t == GGUFString {
		return r.str(what)
	}
	size := t.scalarSize()
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

func scalarAt(t GGUFValueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case GGUFUint8:
		return b[0]
	case GGUFInt8:
		return int8(b[0])
	case GGUFBool:
		return b[0] != 0
	case GGUFUint16:
		return le.Uint16(b)
	case GGUFInt16:
		return int16(le.Uint16(b))
	case GGUFUint32:
		return le.Uint32(b)
	case GGUFInt32:
		return int32(le.Uint32(b))
	case GGUFFloat32:
		return math.Float32frombits(le.Uint32(b))
	case GGUFUint64:
		return le.Uint64(b)
	case GGUFInt64:
		return int64(le.Uint64(b))
	case GGUFFloat64:
		return math.Float64frombits(le.Uint64(b))
	}
	panic("unreachable")
}

// array reads n elements of type t into the matching Go slice type.
func (r *ggufReader) array(t GGUFValueType, n uint64, key string) (any, error) {
	what := fmt.Sprintf("metadata %q", key)
	switch t {
	case GGUFArray:
		return nil, fmt.Errorf("%s is an array of arrays, which llama.cpp does not read", what)
	case GGUFString:
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
	size := t.scalarSize()
	if size == 0 {
		return nil, fmt.Errorf("%s: array has unknown element type %d", what, t)
	}
	if n > uint64(r.left())/uint64(size) {
		return nil, fmt.Errorf("%s: array of %d elements of %d bytes is longer than the rest of the file (%d bytes)", what, n, size, r.left())
	}
	raw := r.b[r.off : r.off+int(n)*size]
	r.off += len(raw)
	switch t {
	case GGUFUint8:
		return slices.Clone(raw), nil
	case GGUFInt8:
		return decodeSlice(raw, 1, func(b []byte) int8 { return int8(b[0]) }), nil
	case GGUFBool:
		return decodeSlice(raw, 1, func(b []byte) bool { return b[0] != 0 }), nil
	case GGUFUint16:
		return decodeSlice(raw, 2, binary.LittleEndian.Uint16), nil
	case GGUFInt16:
		return decodeSlice(raw, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }), nil
	case GGUFUint32:
		return decodeSlice(raw, 4, binary.LittleEndian.Uint32), nil
	case GGUFInt32:
		return decodeSlice(raw, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }), nil
	case GGUFFloat32:
		return decodeSlice(raw, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }), nil
	case GGUFUint64:
		return decodeSlice(raw, 8, binary.LittleEndian.Uint64), nil
	case GGUFInt64:
		return decodeSlice(raw, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }), nil
	case GGUFFloat64:
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

func alignUp(n, a uint64) uint64 {
	if r := n % a; r != 0 {
		return n + a - r
	}
	return n
}

// valueType maps a Go metadata value to its GGUF type; for a slice, elem is
// the element type and array is true.
func valueType(v any) (t GGUFValueType, array bool, ok bool) {
	switch v.(type) {
	case uint8:
		return GGUFUint8, false, true
	case int8:
		return GGUFInt8, false, true
	case uint16:
		return GGUFUint16, false, true
	case int16:
		return GGUFInt16, false, true
	case uint32:
		return GGUFUint32, false, true
	case int32:
		return GGUFInt32, false, true
	case float32:
		return GGUFFloat32, false, true
	case bool:
		return GGUFBool, false, true
	case string:
		return GGUFString, false, true
	case uint64:
		return GGUFUint64, false, true
	case int64:
		return GGUFInt64, false, true
	case float64:
		return GGUFFloat64, false, true
	case []uint8:
		return GGUFUint8, true, true
	case []int8:
		return GGUFInt8, true, true
	case []uint16:
		return GGUFUint16, true, true
	case []int16:
		return GGUFInt16, true, true
	case []uint32:
		return GGUFUint32, true, true
	case []int32:
		return GGUFInt32, true, true
	case []float32:
		return GGUFFloat32, true, true
	case []bool:
		return GGUFBool, true, true
	case []string:
		return GGUFString, true, true
	case []uint64:
		return GGUFUint64, true, true
	case []int64:
		return GGUFInt64, true, true
	case []float64:
		return GGUFFloat64, true, true
	}
	return 0, false, false
}

func valueTypeName(v any) string {
	t, array, ok := valueType(v)
	if !ok {
		return fmt.Sprintf("%T", v)
	}
	names := [...]string{"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"}
	if array {
		return "ARRAY of " + names[t]
	}
	return names[t]
}

// GGUFTensor is one tensor to write. Data is called when the writer reaches
// the tensor, once, so that a converter can produce tensors one at a time and
// a model is never held in memory twice; it must return exactly the bytes
// that Type and Dims call for.
type GGUFTensor struct {
	Name string
	Dims []uint64 // GGUF order: Dims[0] is the row length (PyTorch's last dimension)
	Type GGMLType
	Data func() ([]byte, error)
}

// WriteGGUF writes a GGUF v3 file atomically (see WriteFileAtomic): the
// metadata in the given order, the tensor descriptions, then each tensor's
// data padded to the alignment (general.alignment when kv sets it, else
// 32). Tensors are laid out back to back in the given order, which is what
// llama.cpp's loader insists on.
func WriteGGUF(path string, kv []KV, tensors []GGUFTensor) error {
	if err := WriteFileAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := writeGGUF(bw, kv, tensors); err != nil {
			return err
		}
		return bw.Flush()
	}); err != nil {
		return err
	}
	return nil
}

// writeGGUF validates everything it can before writing a byte, then streams.
func writeGGUF(w io.Writer, kv []KV, tensors []GGUFTensor) error {
	align := uint64(GGUFDefaultAlignment)
	seen := make(map[string]bool, len(kv))
	for _, e := range kv {
		if seen[e.Key] {
			return fmt.Errorf("metadata key %q given twice", e.Key)
		}
		seen[e.Key] = true
		if _, _, ok := valueType(e.Value); !ok {
			return fmt.Errorf("metadata %q: unsupported value type %T", e.Key, e.Value)
		}
		if e.Key == GGUFAlignmentKey {
			a, ok := e.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("%s must be a UINT32 power of two, got %v (%T)", GGUFAlignmentKey, e.Value, e.Value)
			}
			align = uint64(a)
		}
	}
	names := make(map[string]bool, len(tensors))
	offsets := make([]uint64, len(tensors))
	sizes := make([]int64, len(tensors))
	var off uint64
	for i, t := range tensors {
		switch {
		case names[t.Name]:
			return fmt.Errorf("tensor %q given twice", t.Name)
		case len(t.Name) >= ggufMaxName:
			return fmt.Errorf("tensor name %q is %d bytes; llama.cpp allows at most %d", t.Name, len(t.Name), ggufMaxName-1)
		case len(t.Dims) > ggufMaxDims:
			return fmt.Errorf("tensor %q has %d dimensions; GGUF allows at most %d", t.Name, len(t.Dims), ggufMaxDims)
		case t.Data == nil:
			return fmt.Errorf("tensor %q has no data", t.Name)
		}
		names[t.Name] = true
		size, err := GGMLByteSize(t.Type, t.Dims)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		offsets[i], sizes[i] = off, size
		off = alignUp(off+uint64(size), align)
	}

	cw := &countingWriter{w: w}
	cw.write([]byte(ggufMagic))
	cw.u32(GGUFVersion)
	cw.u64(uint64(len(tensors)))
	cw.u64(uint64(len(kv)))
	for _, e := range kv {
		cw.str(e.Key)
		cw.value(e.Value)
	}
	for i, t := range tensors {
		cw.str(t.Name)
		cw.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			cw.u64(d)
		}
		cw.u32(uint32(t.Type))
		cw.u64(offsets[i])
	}
	cw.pad(align)
	for i, t := range tensors {
		if cw.err != nil {
			return cw.err
		}
		b, err := t.Data()
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if int64(len(b)) != sizes[i] {
			return fmt.Errorf("tensor %q: %d bytes of data, but %s %v needs %d", t.Name, len(b), t.Type, t.Dims, sizes[i])
		}
		cw.write(b)
		cw.pad(align)
	}
	return cw.err
}

// value writes a metadata value with its type tag.
func (c *countingWriter) value(v any) {
	t, array, _ := valueType(v)
	if array {
		c.u32(uint32(GGUFArray))
		c.u32(uint32(t))
		c.array(v)
		return
	}
	c.u32(uint32(t))
	c.scalar(v)
}

func (c *countingWriter) scalar(v any) {
	var b [8]byte
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		c.write([]byte{x})
	case int8:
		c.write([]byte{byte(x)})
	case bool:
		if x {
			c.write([]byte{1})
		} else {
			c.write([]byte{0})
		}
	case uint16:
		le.PutUint16(b[:], x)
		c.write(b[:2])
	case int16:
		le.PutUint16(b[:], uint16(x))
		c.write(b[:2])
	case uint32:
		c.u32(x)
	case int32:
		c.u32(uint32(x))
	case float32:
		c.u32(math.Float32bits(x))
	case uint64:
		c.u64(x)
	case int64:
		c.u64(uint64(x))
	case float64:
		c.u64(math.Float64bits(x))
	case string:
		c.str(x)
	}
}

// array writes an array's length and elements (its types are written by value).
func (c *countingWriter) array(v any) {
	switch x := v.(type) {
	case []uint8:
		c.u64(uint64(len(x)))
		c.write(x)
	case []int8:
		writeEach(c, x)
	case []bool:
		writeEach(c, x)
	case []uint16:
		writeEach(c, x)
	case []int16:
		writeEach(c, x)
	case []uint32:
		writeEach(c, x)
	case []int32:
		writeEach(c, x)
	case []float32:
		writeEach(c, x)
	case []uint64:
		writeEach(c, x)
	case []int64:
		writeEach(c, x)
	case []float64:
		writeEach(c, x)
	case []string:
		writeEach(c, x)
	}
}

func writeEach[T any](c *countingWriter, x []T) {
	c.u64(uint64(len(x)))
	for _, e := range x {
		c.scalar(e)
	}
}

// countingWriter keeps the first error and the number of bytes written, so
// the encoder above reads as a straight sequence of fields.
type countingWriter struct {
	w   io.Writer
	n   uint64
	err error
}

func (c *countingWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += uint64(n)
	c.err = err
}

func (c *countingWriter) u32(v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	c.write(b[:])
}

func (c *countingWriter) u64(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	c.write(b[:])
}

func (c *countingWriter) str(s string) {
	c.u64(uint64(len(s)))
	c.write([]byte(s))
}

// pad writes zeros up to the next multiple of align (less than align bytes).
func (c *countingWriter) pad(align uint64) {
	if p := alignUp(c.n, align) - c.n; p > 0 {
		c.write(make([]byte, p))
	}
}
