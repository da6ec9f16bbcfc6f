package checkpoints

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tune-dev/tune/internal/dtype"
)

// EncodeGGML stores float32 values as tensor type t: F32 as is, F16 and BF16
// rounded to nearest even (the kernels' conversions, which are PyTorch's),
// Q8_0 as llama.cpp quantizes it. The values are one tensor in row-major
// order; for Q8_0 their count must be a multiple of 32 (rows are).
func EncodeGGML(t GGMLType, v []float32) ([]byte, error) {
	le := binary.LittleEndian
	switch t {
	case GGMLF32:
		out := make([]byte, 4*len(v))
		for i, f := range v {
			le.PutUint32(out[4*i:], math.Float32bits(f))
		}
		return out, nil
	case GGMLF16, GGMLBF16:
		conv := dtype.F32ToF16
		if t == GGMLBF16 {
			conv = dtype.F32ToBF16
		}
		out := make([]byte, 2*len(v))
		for i, f := range v {
			le.PutUint16(out[2*i:], conv(f))
		}
		return out, nil
	case GGMLQ8_0:
		if len(v)%Q8_0BlockSize != 0 {
			return nil, fmt.Errorf("Q8_0: %d values are not a whole number of %d-value blocks", len(v), Q8_0BlockSize)
		}
		out := make([]byte, len(v)/Q8_0BlockSize*q8_0BlockBytes)
		QuantizeQ8_0(out, v)
		return out, nil
	}
	return nil, fmt.Errorf("encode: unsupported tensor type %s", t)
}

// DecodeGGML widens data of tensor type t to float32 values.
func DecodeGGML(t GGMLType, b []byte) ([]float32, error) {
	le := binary.LittleEndian
	switch t {
	case GGMLF32:
		if len(b)%4 != 0 {
			return nil, fmt.Errorf("F32 data of %d bytes is not whole elements", len(b))
		}
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
		return out, nil
	case GGMLF16, GGMLBF16:
		if len(b)%2 != 0 {
			return nil, fmt.Errorf("%s data of %d bytes is not whole elements", t, len(b))
		}
		conv := dtype.F16ToF32
		if t == GGMLBF16 {
			conv = dtype.BF16ToF32
		}
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = conv(le.Uint16(b[2*i:]))
		}
		return out, nil
	case GGMLQ8_0:
		if len(b)%q8_0BlockBytes != 0 {
			return nil, fmt.Errorf("Q8_0 data of %d bytes is not whole %d-byte blocks", len(b), q8_0BlockBytes)
		}
		out := make([]float32, len(b)/q8_0BlockBytes*Q8_0BlockSize)
		DequantizeQ8_0(out, b)
		return out, nil
	}
	return nil, fmt.Errorf("decode: unsupported tensor type %s", t)
}

// QuantizeQ8_0 is llama.cpp's quantize_row_q8_0_ref: for each block of 32
// values, d = max|x|/127 is stored as f16 and each value as
// q = roundf(x·(1/d)), rounding half away from zero, with d and 1/d in
// float32 (not the f16-rounded d), so the bytes equal llama.cpp's and
// gguf-py's. len(src) must be a multiple of 32 and dst hold 34 bytes per block.
func QuantizeQ8_0(dst []byte, src []float32) {
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

// DequantizeQ8_0 is llama.cpp's dequantize_row_q8_0: x = q·d with the f16
// scale widened to float32.
func DequantizeQ8_0(dst []float32, src []byte) {
	for blk := range len(src) / q8_0BlockBytes {
		in := src[blk*q8_0BlockBytes : (blk+1)*q8_0BlockBytes]
		d := dtype.F16ToF32(binary.LittleEndian.Uint16(in))
		for j := range Q8_0BlockSize {
			dst[blk*Q8_0BlockSize+j] = float32(int8(in[2+j])) * d
		}
	}
}

// Q8_0Quantum is the step of Q8_0 on one 32-value block, and MaxError the
// most its round trip may move a value of the block: half a step, plus what
// rounding the scale to f16 (as llama.cpp stores it) adds over 127 steps.
func Q8_0Quantum(block []float32) (quantum, maxError float64) {
	var amax float32
	for _, f := range block {
		amax = max(amax, float32(math.Abs(float64(f))))
	}
	d := float64(amax / 127)
	d16 := float64(dtype.F16ToF32(dtype.F32ToF16(amax / 127)))
	return d16, 0.5*d16 + 127*math.Abs(d-d16) + 1e-12
}
