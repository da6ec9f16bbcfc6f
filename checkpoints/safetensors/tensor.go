package safetensors

import (
	"math"
	"strconv"
	"strings"

	"github.com/tune-dev/tune/internal/dtype"
)

// Tensor is one named tensor. Data is a read-only view: when the tensor came
// from a file it points into a memory map, and writing to it faults; it stays
// valid only until the file it came from is closed.
type Tensor struct {
	Name  string
	DType dtype.DType
	Shape []int
	Data  []byte
}

// NumElements is the product of Shape (1 for a scalar), or -1 when a
// dimension is negative or the product overflows int.
func (t Tensor) NumElements() int {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// TensorInfo describes one tensor of a safetensors header. Begin and End are
// byte offsets relative to the start of the data section.
type TensorInfo struct {
	Name       string
	DType      dtype.DType
	Shape      []int
	Begin, End int64
}

func numElements(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// byteSize is how many bytes shape elements of dtype d occupy. It fails on
// overflow and, for sub-byte dtypes, on element counts that do not fill whole
// bytes (the Python library rejects those too).
func byteSize(d dtype.DType, shape []int) (int64, string) {
	n, ok := numElements(shape)
	if !ok {
		return 0, "has too many elements (the product of its dimensions overflows)"
	}
	bits := int64(d.Bits())
	if bits == 0 {
		return 0, "has unknown dtype " + strconv.Quote(string(d))
	}
	nb := int64(n)
	if nb > math.MaxInt64/bits {
		return 0, "is too large in bytes (overflows)"
	}
	nbits := nb * bits
	if nbits%8 != 0 {
		return 0, "does not fill a whole number of bytes with dtype " + string(d)
	}
	return nbits / 8, ""
}

// formatInts writes a shape or offset pair the way JSON does: [2,3].
func formatInts[T int | int64](v []T) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, x := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(x), 10))
	}
	b.WriteByte(']')
	return b.String()
}

// F32 is an F32 tensor holding a copy of v (little-endian, as safetensors
// stores it).
func F32(name string, shape []int, v []float32) Tensor {
	b, _ := dtype.Encode(dtype.F32, v) // F32 always encodes
	return Tensor{Name: name, DType: dtype.F32, Shape: shape, Data: b}
}
