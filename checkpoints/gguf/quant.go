package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tune-dev/tune/internal/dtype"
)

// Encode stores float32 values as tensor type t: F32 as is, F16 and BF16
// rounded to nearest even (the kernels' conversions, which are PyTorch's),
// Q8_0 as llama.cpp quantizes it. The values are one tensor in row-major
// order; for Q8_0 their count must be a multiple of 32 (rows are).
func Encode(t Type, v []float32) ([]byte, error) {
	switch t {
	case F32, F16, BF16:
		return dtype.Encode(t.dtype(), v)
	case Q8_0:
		if len(v)%Q8_0BlockSize != 0 {
			return nil, fmt.Errorf("Q8_0: %d values are not a whole number of %d-value blocks", len(v), Q8_0BlockSize)
		}
		out := make([]byte, len(v)/Q8_0BlockSize*q8_0BlockBytes)
		quantizeQ8_0(out, v)
		return out, nil
	}
	return nil, fmt.Errorf("encode: unsupported tensor type %s", t)
}

// dtype is the element type of F32, F16 and BF16 ("" for the others).
func (t Type) dtype() dtype.DType {
	return map[Type]dtype.DType{F32: dtype.F32, F16: dtype.F16, BF16: dtype.BF16}[t]
}

// Decode widens data of tensor type t to float32 values.
func Decode(t Type, b []byte) ([]float32, error) {
	switch t {
	case F32, F16, BF16:
		return dtype.Decode(t.dtype(), b)
	case Q8_0:
		if len(b)%q8_0BlockBytes != 0 {
			return nil, fmt.Errorf("Q8_0 data of %d bytes is not whole %d-byte blocks", len(b), q8_0BlockBytes)
		}
		out := make([]float32, len(b)/q8_0BlockBytes*Q8_0BlockSize)
		dequantizeQ8_0(out, b)
		return out, nil
	}
	return nil, fmt.Errorf("decode: unsupported tensor type %s", t)
}

// quantizeQ8_0 is llama.cpp's quantize_row_q8_0_ref: for each block of 32
// values, d = max|x|/127 is stored as f16 and each value as
// q = roundf(x·(1/d)), rounding half away from zero, with d and 1/d in
// float32 (not the f16-rounded d), so the bytes equal llama.cpp's and
// gguf-py's. len(src) must be a multiple of 32 and dst hold 34 bytes per block.
func quantizeQ8_0(dst []byte, src []float32) {
	for blk := range len(src) / Q8_0BlockSize {
		x := src[blk*Q8_0BlockSize : (blk+1)*Q8_0BlockSize]
		out := dst[blk*q8_0BlockBytes : (blk+1)*q8_0BlockBytes]
		var amax float32
		for _, v := range x {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(out, dtype.F32ToF16(d))
		for j, v := range x {
			out[2+j] = byte(int8(math.Round(float64(v * id))))
		}
	}
}

// dequantizeQ8_0 is llama.cpp's dequantize_row_q8_0: x = q·d with the f16
// scale widened to float32.
func dequantizeQ8_0(dst []float32, src []byte) {
	for blk := range len(src) / q8_0BlockBytes {
		in := src[blk*q8_0BlockBytes : (blk+1)*q8_0BlockBytes]
		d := dtype.F16ToF32(binary.LittleEndian.Uint16(in))
		for j := range Q8_0BlockSize {
			dst[blk*Q8_0BlockSize+j] = float32(int8(in[2+j])) * d
		}
	}
}
