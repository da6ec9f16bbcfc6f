package dtype

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Encode stores float32 values as little-endian elements of d (F32, F16 or
// BF16; the halves rounded to nearest even, as PyTorch does), the byte layout
// of safetensors and GGUF alike.
func Encode(d DType, v []float32) ([]byte, error) {
	le := binary.LittleEndian
	switch d {
	case F32:
		out := make([]byte, 4*len(v))
		for i, f := range v {
			le.PutUint32(out[4*i:], math.Float32bits(f))
		}
		return out, nil
	case F16, BF16:
		conv := F32ToF16
		if d == BF16 {
			conv = F32ToBF16
		}
		out := make([]byte, 2*len(v))
		for i, f := range v {
			le.PutUint16(out[2*i:], conv(f))
		}
		return out, nil
	}
	return nil, fmt.Errorf("encode: dtype %s; expected F32, F16 or BF16", d)
}

// Decode widens little-endian elements of d (F32, F16 or BF16) to float32.
func Decode(d DType, b []byte) ([]float32, error) {
	le := binary.LittleEndian
	switch d {
	case F32:
		if len(b)%4 != 0 {
			return nil, fmt.Errorf("F32 data of %d bytes is not whole elements", len(b))
		}
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
		return out, nil
	case F16, BF16:
		if len(b)%2 != 0 {
			return nil, fmt.Errorf("%s data of %d bytes is not whole elements", d, len(b))
		}
		conv := F16ToF32
		if d == BF16 {
			conv = BF16ToF32
		}
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = conv(le.Uint16(b[2*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("decode: dtype %s; expected F32, F16 or BF16", d)
}
