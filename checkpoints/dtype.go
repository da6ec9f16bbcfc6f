// Package checkpoints reads and writes model files: safetensors (memory-mapped,
// validated like the reference Python library), Hugging Face model directories,
// and atomic file writes for everything tune saves.
package checkpoints

// DType names a stored element type, spelled as in safetensors headers.
type DType string

// The safetensors dtypes. The list follows huggingface/safetensors so that any
// file the Python library writes can be opened here.
const (
	BOOL        DType = "BOOL"
	F4          DType = "F4" // float4 e2m1, two per byte
	F6_E2M3     DType = "F6_E2M3"
	F6_E3M2     DType = "F6_E3M2"
	U8          DType = "U8"
	I8          DType = "I8"
	F8_E5M2     DType = "F8_E5M2"
	F8_E4M3     DType = "F8_E4M3"
	F8_E8M0     DType = "F8_E8M0"
	F8_E4M3FNUZ DType = "F8_E4M3FNUZ"
	F8_E5M2FNUZ DType = "F8_E5M2FNUZ"
	I16         DType = "I16"
	U16         DType = "U16"
	F16         DType = "F16"
	BF16        DType = "BF16"
	I32         DType = "I32"
	U32         DType = "U32"
	F32         DType = "F32"
	C64         DType = "C64"
	F64         DType = "F64"
	I64         DType = "I64"
	U64         DType = "U64"
)

// dtypeRank is the position of each dtype in the Python library's Dtype enum
// (increasing alignment); SortLikeSafetensors orders by it.
func (d DType) rank() int {
	switch d {
	case BOOL:
		return 0
	case F4:
		return 1
	case F6_E2M3:
		return 2
	case F6_E3M2:
		return 3
	case U8:
		return 4
	case I8:
		return 5
	case F8_E5M2:
		return 6
	case F8_E4M3:
		return 7
	case F8_E8M0:
		return 8
	case F8_E4M3FNUZ:
		return 9
	case F8_E5M2FNUZ:
		return 10
	case I16:
		return 11
	case U16:
		return 12
	case F16:
		return 13
	case BF16:
		return 14
	case I32:
		return 15
	case U32:
		return 16
	case F32:
		return 17
	case C64:
		return 18
	case F64:
		return 19
	case I64:
		return 20
	case U64:
		return 21
	}
	return -1
}

// Bits is the number of bits per element, 0 if the dtype is unknown. It exists
// because F4 and F6 elements are smaller than a byte.
func (d DType) Bits() int {
	switch d {
	case F4:
		return 4
	case F6_E2M3, F6_E3M2:
		return 6
	case BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ:
		return 8
	case I16, U16, F16, BF16:
		return 16
	case I32, U32, F32:
		return 32
	case C64, F64, I64, U64:
		return 64
	}
	return 0
}

// Size is the number of bytes per element, 0 if the dtype is unknown or its
// elements are smaller than a byte (F4, F6_*; use Bits for those).
func (d DType) Size() int {
	b := d.Bits()
	if b%8 != 0 {
		return 0
	}
	return b / 8
}

// Valid reports whether d is a dtype the safetensors format defines.
func (d DType) Valid() bool { return d.Bits() != 0 }
