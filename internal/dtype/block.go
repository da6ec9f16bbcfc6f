package dtype

import "fmt"

// The ggml block formats of GGUF files (named as ggml names them): each
// stores a run of values of one row as a block of a fixed number of bytes.
// They have no per-element size; Block gives their geometry and RowBytes the
// bytes of a row, which must be whole blocks.
const (
	Q4_0 DType = "Q4_0"
	Q4_1 DType = "Q4_1"
	Q5_0 DType = "Q5_0"
	Q5_1 DType = "Q5_1"
	Q8_0 DType = "Q8_0"
	Q4_K DType = "Q4_K"
	Q5_K DType = "Q5_K"
	Q6_K DType = "Q6_K"
)

// QuantTypes are the block formats tune reads, in the order of ggml's type
// numbers.
func QuantTypes() []DType { return []DType{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K} }

// Block is how many values one block of d holds and how many bytes it takes
// (ggml-common.h's block_* structs); 0, 0 for a type that is not a block
// format.
func (d DType) Block() (values, bytes int) {
	switch d {
	case Q4_0:
		return 32, 2 + 16 // d, qs[16]
	case Q4_1:
		return 32, 2 + 2 + 16 // d, m, qs[16]
	case Q5_0:
		return 32, 2 + 4 + 16 // d, qh[4], qs[16]
	case Q5_1:
		return 32, 2 + 2 + 4 + 16 // d, m, qh[4], qs[16]
	case Q8_0:
		return 32, 2 + 32 // d, qs[32]
	case Q4_K:
		return 256, 2 + 2 + 12 + 128 // d, dmin, scales[12], qs[128]
	case Q5_K:
		return 256, 2 + 2 + 12 + 32 + 128 // d, dmin, scales[12], qh[32], qs[128]
	case Q6_K:
		return 256, 128 + 64 + 16 + 2 // ql[128], qh[64], scales[16], d
	}
	return 0, 0
}

// Quantized reports whether d is a block format.
func (d DType) Quantized() bool {
	v, _ := d.Block()
	return v != 0
}

// RowBytes is the bytes of n consecutive values of one row stored as d: n
// times the element size, or whole blocks of a block format. It fails for a
// block format when n is not a multiple of its block, for an unknown or
// sub-byte dtype, and for a negative n.
func (d DType) RowBytes(n int) (int, error) {
	if n < 0 {
		return 0, fmt.Errorf("%s: %d values", d, n)
	}
	if values, bytes := d.Block(); values != 0 {
		if n%values != 0 {
			return 0, fmt.Errorf("%s: a row of %d values is not whole %d-value blocks", d, n, values)
		}
		return n / values * bytes, nil
	}
	if s := d.Size(); s != 0 {
		return n * s, nil
	}
	return 0, fmt.Errorf("dtype %s has no byte size per element", d)
}
