package gguf

import (
	"fmt"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
)

// Encode stores float32 values as tensor type t: F32 as is, F16 and BF16
// rounded to nearest even (the kernels' conversions, which are PyTorch's),
// the block formats as ggml's reference quantizers do (internal/quant). The
// values are one tensor in row-major order; for a block format their count
// must be whole blocks (rows are).
func Encode(t Type, v []float32) ([]byte, error) {
	d := t.DType()
	switch {
	case d == "":
		return nil, fmt.Errorf("encode: unsupported tensor type %s", t)
	case d.Quantized():
		n, err := d.RowBytes(len(v))
		if err != nil {
			return nil, fmt.Errorf("encode: %w", err)
		}
		out := make([]byte, n)
		if err := quant.Quantize(d, out, v); err != nil {
			return nil, err
		}
		return out, nil
	}
	return dtype.Encode(d, v)
}

// Decode widens data of tensor type t to float32 values.
func Decode(t Type, b []byte) ([]float32, error) {
	d := t.DType()
	switch {
	case d == "":
		return nil, fmt.Errorf("decode: unsupported tensor type %s", t)
	case d.Quantized():
		values, size := d.Block()
		if len(b)%size != 0 {
			return nil, fmt.Errorf("%s data of %d bytes is not whole %d-byte blocks", t, len(b), size)
		}
		out := make([]float32, len(b)/size*values)
		quant.Dequantize(d, out, b)
		return out, nil
	}
	return dtype.Decode(d, b)
}
