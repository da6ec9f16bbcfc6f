package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
)

// Matrix is a frozen row-major (Rows, Cols) weight kept in its stored element
// type: f32, f16, bf16, or one of ggml's block formats (Q4_0, Q8_0, Q4_K...),
// whose rows are whole blocks. A vector is a Matrix with one row.
type Matrix struct {
	DType      dtype.DType
	Rows, Cols int
	f32        []float32
	u16        []uint16
	q          []byte // block formats: Rows rows of rowBytes each
	rowBytes   int
}

// NewMatrix views data (little-endian, as in safetensors and GGUF) as a
// (rows, cols) matrix without copying when the bytes are suitably aligned
// (block formats always are), and copies them otherwise. The kernels compute
// on dtype.F32, dtype.F16 and dtype.BF16 weights and on the block formats of
// dtype.QuantTypes, which stay quantized in memory and are widened a block at
// a time inside the products.
func NewMatrix(dt dtype.DType, rows, cols int, data []byte) (Matrix, error) {
	if dt != dtype.F32 && dt != dtype.F16 && dt != dtype.BF16 && !dt.Quantized() {
		return Matrix{}, fmt.Errorf("dtype %s; tune reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K weights", dt)
	}
	if rows < 0 || cols < 0 {
		return Matrix{}, fmt.Errorf("kernels: %s matrix (%d, %d)", dt, rows, cols)
	}
	rowBytes, err := dt.RowBytes(cols)
	if err != nil {
		return Matrix{}, fmt.Errorf("kernels: %s matrix (%d, %d): %w", dt, rows, cols, err)
	}
	if len(data) != rows*rowBytes {
		return Matrix{}, fmt.Errorf("kernels: %s matrix (%d, %d) needs %d bytes, got %d", dt, rows, cols, rows*rowBytes, len(data))
	}
	n := rows * cols
	if dt.Quantized() {
		return Matrix{DType: dt, Rows: rows, Cols: cols, q: data, rowBytes: rowBytes}, nil
	}
	m := Matrix{DType: dt, Rows: rows, Cols: cols}
	if n == 0 {
		return m, nil
	}
	p := unsafe.Pointer(unsafe.SliceData(data))
	switch dt {
	case dtype.F32:
		if uintptr(p)%4 == 0 {
			m.f32 = unsafe.Slice((*float32)(p), n)
		} else {
			m.f32 = make([]float32, n)
			for i := range m.f32 {
				m.f32[i] = math.Float32frombits(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
			}
		}
	case dtype.F16, dtype.BF16:
		if uintptr(p)%2 == 0 {
			m.u16 = unsafe.Slice((*uint16)(p), n)
		} else {
			m.u16 = make([]uint16, n)
			for i := range m.u16 {
				m.u16[i] = uint16(data[2*i]) | uint16(data[2*i+1])<<8
			}
		}
	}
	return m, nil
}

// MatrixF32 wraps float32 values (not copied) as a (rows, cols) matrix.
func MatrixF32(rows, cols int, v []float32) Matrix {
	if len(v) != rows*cols {
		panic(fmt.Sprintf("kernels: MatrixF32(%d, %d) given %d values", rows, cols, len(v)))
	}
	return Matrix{DType: dtype.F32, Rows: rows, Cols: cols, f32: v}
}

// Row writes row i, widened to float32, into dst[:Cols].
func (m Matrix) Row(i int, dst []float32) {
	m.Range(i*m.Cols, dst[:m.Cols])
}

// Range widens the len(dst) elements starting at flat index off into dst.
func (m Matrix) Range(off int, dst []float32) {
	switch m.DType {
	case dtype.F32:
		copy(dst, m.f32[off:off+len(dst)])
	case dtype.BF16:
		src := m.u16[off : off+len(dst)]
		for j, b := range src {
			dst[j] = dtype.BF16ToF32(b)
		}
	case dtype.F16:
		src := m.u16[off : off+len(dst)]
		for j, b := range src {
			dst[j] = dtype.F16ToF32(b)
		}
	default:
		for len(dst) > 0 {
			row, col := off/m.Cols, off%m.Cols
			n := min(len(dst), m.Cols-col)
			dequantRow(quant.Dequantize, m, row, col, dst[:n], nil)
			off, dst = off+n, dst[n:]
		}
	}
}

// Float32 returns all elements widened to float32 (a copy unless f32).
func (m Matrix) Float32() []float32 {
	if m.DType == dtype.F32 {
		return m.f32
	}
	out := make([]float32, m.Rows*m.Cols)
	m.Range(0, out)
	return out
}

// Bytes is the memory the matrix takes in its stored type.
func (m Matrix) Bytes() int64 {
	if m.q != nil || m.DType.Quantized() {
		return int64(m.Rows) * int64(m.rowBytes)
	}
	return int64(m.Rows) * int64(m.Cols) * int64(m.DType.Size())
}

// quantized reports whether m holds a block format.
func (m Matrix) quantized() bool { return m.rowBytes != 0 }

// dequantRow writes W(row, col+j) for j < len(dst) into dst, widening the
// blocks it touches with dequant (a variant's, or internal/quant's
// reference): whole blocks straight into dst, a partial block at either end
// through buf (one block's values; allocated when nil and needed).
func dequantRow(dequant func(t dtype.DType, dst []float32, src []byte), m Matrix, row, col int, dst, buf []float32) {
	values, size := m.DType.Block()
	src := m.q[row*m.rowBytes : (row+1)*m.rowBytes]
	for len(dst) > 0 {
		b, in := col/values, col%values
		n := min(len(dst), values-in)
		if in == 0 && n == values {
			whole := len(dst) / values
			dequant(m.DType, dst[:whole*values], src[b*size:(b+whole)*size])
			n = whole * values
		} else {
			if len(buf) < values {
				buf = make([]float32, values)
			}
			dequant(m.DType, buf[:values], src[b*size:(b+1)*size])
			copy(dst[:n], buf[in:])
		}
		col, dst = col+n, dst[n:]
	}
}
