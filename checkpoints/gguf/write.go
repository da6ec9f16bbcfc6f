package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/internal/dtype"
)

// GGUF is the file format of llama.cpp and Ollama: a header of typed
// key-value metadata and tensor descriptions, then the tensor data, each
// tensor starting at a multiple of the file's alignment. tune reads and
// writes version 3 (little-endian); version 2 has the same layout and is read
// too. Version 1 (32-bit counts) is long gone from the ecosystem and refused.
const (
	Magic            = "GGUF"
	Version          = 3
	DefaultAlignment = 32
	// AlignmentKey overrides the default alignment; llama.cpp requires it
	// to be a UINT32 power of two.
	AlignmentKey = "general.alignment"
	// MaxDims and MaxName are llama.cpp's GGML_MAX_DIMS and
	// GGML_MAX_NAME: files beyond them load nowhere, so neither side accepts them.
	MaxDims = 4
	MaxName = 64
)

// Type is a tensor element type, numbered as in ggml.h.
type Type uint32

// The tensor types tune reads and writes: the floats and the block formats
// of internal/quant. Other ggml types (Q2_K, Q3_K, the IQ formats...) are
// refused by name rather than guessed at.
const (
	F32  Type = 0
	F16  Type = 1
	Q4_0 Type = 2
	Q4_1 Type = 3
	Q5_0 Type = 6
	Q5_1 Type = 7
	Q8_0 Type = 8
	Q4_K Type = 12
	Q5_K Type = 13
	Q6_K Type = 14
	BF16 Type = 30
)

// Q8_0BlockSize is the values of one Q8_0 block (and of Q4_0, Q4_1, Q5_0,
// Q5_1); a row of a tensor in one of these must be a multiple of it.
const Q8_0BlockSize = 32

// types maps the tensor types tune handles to their element types.
func types() map[Type]dtype.DType {
	return map[Type]dtype.DType{
		F32: dtype.F32, F16: dtype.F16, BF16: dtype.BF16,
		Q4_0: dtype.Q4_0, Q4_1: dtype.Q4_1, Q5_0: dtype.Q5_0, Q5_1: dtype.Q5_1, Q8_0: dtype.Q8_0,
		Q4_K: dtype.Q4_K, Q5_K: dtype.Q5_K, Q6_K: dtype.Q6_K,
	}
}

// DType is the element type of t, as kernels.NewMatrix and internal/quant
// take it; "" for a type tune does not handle.
func (t Type) DType() dtype.DType { return types()[t] }

// ggmlNames are ggml.h's names of its tensor types, so that a type tune does
// not read is refused by the name users see in llama.cpp's output. Numbers
// ggml retired (4, 5, 31-33, 36-38) have no name.
var ggmlNames = [...]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
	10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
	16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
	24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
	34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

func (t Type) String() string {
	if int(t) < len(ggmlNames) && ggmlNames[t] != "" {
		return ggmlNames[t]
	}
	return "type " + strconv.FormatUint(uint64(t), 10)
}

// layout is how many values one block holds and how many bytes it takes; ok
// is false for types tune does not handle.
func (t Type) layout() (values, bytes int64, ok bool) {
	d := t.DType()
	if v, b := d.Block(); v != 0 {
		return int64(v), int64(b), true
	}
	if s := d.Size(); s != 0 {
		return 1, int64(s), true
	}
	return 0, 0, false
}

// ByteSize is the size in bytes of a tensor of type t with GGUF dims (the
// first dimension varies fastest). It fails for unknown types, a first
// dimension that does not fill whole blocks, or sizes beyond int64.
func ByteSize(t Type, dims []uint64) (int64, error) {
	values, size, ok := t.layout()
	if !ok {
		return 0, fmt.Errorf("unsupported tensor type %s (tune handles %s)", t, strings.Join(Supported(), ", "))
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

// ValueType numbers metadata value types as the GGUF spec does.
type ValueType uint32

// The metadata value types.
const (
	Uint8   ValueType = 0
	Int8    ValueType = 1
	Uint16  ValueType = 2
	Int16   ValueType = 3
	Uint32  ValueType = 4
	Int32   ValueType = 5
	Float32 ValueType = 6
	Bool    ValueType = 7
	String  ValueType = 8
	Array   ValueType = 9
	Uint64  ValueType = 10
	Int64   ValueType = 11
	Float64 ValueType = 12
)

// Size is the encoded size of a fixed-size value type, 0 for strings,
// arrays and unknown types.
func (t ValueType) Size() int {
	switch t {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16:
		return 2
	case Uint32, Int32, Float32:
		return 4
	case Uint64, Int64, Float64:
		return 8
	}
	return 0
}

// String is the type's name in the GGUF spec (UINT8 ... FLOAT64).
func (t ValueType) String() string {
	names := [...]string{"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// KV is one metadata entry. Value holds the Go type of its GGUF type:
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64,
// int64 or float64, or a slice of one of them for an array. GGUF allows
// arrays of arrays but llama.cpp refuses them, so tune does too.
type KV struct {
	Key   string
	Value any
}

func AlignUp(n, a uint64) uint64 {
	if r := n % a; r != 0 {
		return n + a - r
	}
	return n
}

// ValueTypeOf maps a Go metadata value to its GGUF type; for a slice, t is
// the element type and array is true.
func ValueTypeOf(v any) (t ValueType, array bool, ok bool) {
	switch v.(type) {
	case uint8:
		return Uint8, false, true
	case int8:
		return Int8, false, true
	case uint16:
		return Uint16, false, true
	case int16:
		return Int16, false, true
	case uint32:
		return Uint32, false, true
	case int32:
		return Int32, false, true
	case float32:
		return Float32, false, true
	case bool:
		return Bool, false, true
	case string:
		return String, false, true
	case uint64:
		return Uint64, false, true
	case int64:
		return Int64, false, true
	case float64:
		return Float64, false, true
	case []uint8:
		return Uint8, true, true
	case []int8:
		return Int8, true, true
	case []uint16:
		return Uint16, true, true
	case []int16:
		return Int16, true, true
	case []uint32:
		return Uint32, true, true
	case []int32:
		return Int32, true, true
	case []float32:
		return Float32, true, true
	case []bool:
		return Bool, true, true
	case []string:
		return String, true, true
	case []uint64:
		return Uint64, true, true
	case []int64:
		return Int64, true, true
	case []float64:
		return Float64, true, true
	}
	return 0, false, false
}

// Tensor is one tensor to write. Data is called when the writer reaches
// the tensor, once, so that a converter can produce tensors one at a time and
// a model is never held in memory twice; it must return exactly the bytes
// that Type and Dims call for.
type Tensor struct {
	Name string
	Dims []uint64 // GGUF order: Dims[0] is the row length (PyTorch's last dimension)
	Type Type
	Data func() ([]byte, error)
}

// Write writes a GGUF v3 file atomically (see WriteFileAtomic): the
// metadata in the given order, the tensor descriptions, then each tensor's
// data padded to the alignment (general.alignment when kv sets it, else
// 32). Tensors are laid out back to back in the given order, which is what
// llama.cpp's loader insists on.
func Write(path string, kv []KV, tensors []Tensor) error {
	if err := checkpoints.WriteFileAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := encode(bw, kv, tensors); err != nil {
			return err
		}
		return bw.Flush()
	}); err != nil {
		return err
	}
	return nil
}

// encode validates everything it can before writing a byte, then streams.
func encode(w io.Writer, kv []KV, tensors []Tensor) error {
	align := uint64(DefaultAlignment)
	seen := make(map[string]bool, len(kv))
	for _, e := range kv {
		if seen[e.Key] {
			return fmt.Errorf("metadata key %q given twice", e.Key)
		}
		seen[e.Key] = true
		if _, _, ok := ValueTypeOf(e.Value); !ok {
			return fmt.Errorf("metadata %q: unsupported value type %T", e.Key, e.Value)
		}
		if e.Key == AlignmentKey {
			a, ok := e.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("%s must be a UINT32 power of two, got %v (%T)", AlignmentKey, e.Value, e.Value)
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
		case len(t.Name) >= MaxName:
			return fmt.Errorf("tensor name %q is %d bytes; llama.cpp allows at most %d", t.Name, len(t.Name), MaxName-1)
		case len(t.Dims) > MaxDims:
			return fmt.Errorf("tensor %q has %d dimensions; GGUF allows at most %d", t.Name, len(t.Dims), MaxDims)
		case t.Data == nil:
			return fmt.Errorf("tensor %q has no data", t.Name)
		}
		names[t.Name] = true
		size, err := ByteSize(t.Type, t.Dims)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		offsets[i], sizes[i] = off, size
		off = AlignUp(off+uint64(size), align)
	}

	cw := &countingWriter{w: w}
	cw.write([]byte(Magic))
	cw.u32(Version)
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
	t, array, _ := ValueTypeOf(v)
	if array {
		c.u32(uint32(Array))
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
	if p := AlignUp(c.n, align) - c.n; p > 0 {
		c.write(make([]byte, p))
	}
}
