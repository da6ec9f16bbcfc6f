package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/tune-dev/tune/internal/dtype"
)

// Matrix is a frozen row-major (Rows, Cols) weight kept in its stored element
// type. A vector is a Matrix with one row.
type Matrix struct {
	DType      dtype.DType
	Rows, Cols int
	f32        []float32
	u16        []uint16
}

// NewMatrix views data (little-endian, as in safetensors) as a (rows, cols)
// matrix without copying when the bytes are suitably aligned, and copies them
// otherwise. The kernels compute on dtype.F32, dtype.F16 and dtype.BF16 weights only.
func NewMatrix(dt dtype.DType, rows, cols int, data []byte) (Matrix, error) {
	if dt != dtype.F32 && dt != dtype.F16 && dt != dtype.BF16 {
		return Matrix{}, fmt.Errorf("dtype %s; tune reads dtype.F32, dtype.F16 and dtype.BF16 weights", dt)
	}
	n := rows * cols
	if rows < 0 || cols < 0 || len(data) != n*dt.Size() {
		return Matrix{}, fmt.Errorf("kernels: %s matrix (%d, %d) needs %d bytes, got %d", dt, rows, cols, n*dt.Size(), len(data))
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
	}
}

// Float32 returns all elements widened to float32 (a copy for f16/bf16).
func (m Matrix) Float32() []float32 {
	if m.DType == dtype.F32 {
		return m.f32
	}
	out := make([]float32, m.Rows*m.Cols)
	m.Range(0, out)
	return out
}

// Bytes is the memory the matrix takes in its stored type.
func (m Matrix) Bytes() int64 { return int64(m.Rows) * int64(m.Cols) * int64(m.DType.Size()) }
