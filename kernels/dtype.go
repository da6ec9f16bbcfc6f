package kernels

import (
	"fmt"
	"math"
	"unsafe"
)

// DType is the element type of a frozen weight.
type DType int

// The element types a frozen weight may have.
const (
	F32 DType = iota
	F16
	BF16
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// Size is the number of bytes of one element.
func (d DType) Size() int {
	if d == F32 {
		return 4
	}
	return 2
}

// BF16ToF32 widens a bfloat16 bit pattern exactly.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F32ToBF16 rounds to nearest even, as PyTorch does; NaN stays NaN.
func F32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// F16ToF32 widens an IEEE half bit pattern exactly, subnormals included.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for man&0x400 == 0 {
			man <<= 1
			e--
		}
		man &= 0x3ff
		return math.Float32frombits(sign | e<<23 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// F32ToF16 rounds to nearest even with overflow to infinity, as PyTorch does.
func F32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int32(u>>23&0xff) - 127 + 15
	man := u & 0x7fffff
	switch {
	case u&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case u&0x7fffffff == 0x7f800000:
		return sign | 0x7c00
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint32(14 - exp)
		half := uint32(1) << (shift - 1)
		rest := man & (1<<shift - 1)
		h := man >> shift
		if rest > half || (rest == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp)<<10 | man>>13
	rest := man & 0x1fff
	if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, which is the right answer
	}
	return sign | uint16(h)
}

// Matrix is a frozen row-major (Rows, Cols) weight kept in its stored element
// type. A vector is a Matrix with one row.
type Matrix struct {
	DType      DType
	Rows, Cols int
	f32        []float32
	u16        []uint16
}

// NewMatrix views data (little-endian, as in safetensors) as a (rows, cols)
// matrix without copying when the bytes are suitably aligned, and copies them
// otherwise.
func NewMatrix(dt DType, rows, cols int, data []byte) (Matrix, error) {
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
	case F32:
		if uintptr(p)%4 == 0 {
			m.f32 = unsafe.Slice((*float32)(p), n)
		} else {
			m.f32 = make([]float32, n)
			for i := range m.f32 {
				m.f32[i] = math.Float32frombits(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
			}
		}
	case F16, BF16:
		if uintptr(p)%2 == 0 {
			m.u16 = unsafe.Slice((*uint16)(p), n)
		} else {
			m.u16 = make([]uint16, n)
			for i := range m.u16 {
				m.u16[i] = uint16(data[2*i]) | uint16(data[2*i+1])<<8
			}
		}
	default:
		return Matrix{}, fmt.Errorf("kernels: unknown dtype %v", dt)
	}
	return m, nil
}

// MatrixF32 wraps float32 values (not copied) as a (rows, cols) matrix.
func MatrixF32(rows, cols int, v []float32) Matrix {
	if len(v) != rows*cols {
		panic(fmt.Sprintf("kernels: MatrixF32(%d, %d) given %d values", rows, cols, len(v)))
	}
	return Matrix{DType: F32, Rows: rows, Cols: cols, f32: v}
}

// Row writes row i, widened to float32, into dst[:Cols].
func (m Matrix) Row(i int, dst []float32) {
	m.Range(i*m.Cols, dst[:m.Cols])
}

// Range widens the len(dst) elements starting at flat index off into dst.
func (m Matrix) Range(off int, dst []float32) {
	switch m.DType {
	case F32:
		copy(dst, m.f32[off:off+len(dst)])
	case BF16:
		src := m.u16[off : off+len(dst)]
		for j, b := range src {
			dst[j] = BF16ToF32(b)
		}
	case F16:
		src := m.u16[off : off+len(dst)]
		for j, b := range src {
			dst[j] = F16ToF32(b)
		}
	}
}

// Float32 returns all elements widened to float32 (a copy for f16/bf16).
func (m Matrix) Float32() []float32 {
	if m.DType == F32 {
		return m.f32
	}
	out := make([]float32, m.Rows*m.Cols)
	m.Range(0, out)
	return out
}

// Bytes is the memory the matrix takes in its stored type.
func (m Matrix) Bytes() int64 { return int64(m.Rows) * int64(m.Cols) * int64(m.DType.Size()) }
