package quant

import (
	"encoding/binary"
	"fmt"

	"github.com/tune-dev/tune/internal/dtype"
)

// Dequantize widens the whole blocks of t in src into dst, as ggml's
// dequantize_row_* does. src must hold len(dst)/values blocks exactly; a
// mismatch, or a t that is not a block format, is the caller's bug and panics.
func Dequantize(t dtype.DType, dst []float32, src []byte) {
	values, size := t.Block()
	if values == 0 || len(dst)%values != 0 || len(src) != len(dst)/values*size {
		panic(fmt.Sprintf("quant: Dequantize %s: %d bytes into %d values", t, len(src), len(dst)))
	}
	block := formatOf(t).dequant
	for i := range len(dst) / values {
		block(dst[i*values:(i+1)*values], src[i*size:(i+1)*size])
	}
}

// A format is the code of one block format: one block at a time.
type format struct {
	dequant func(y []float32, b []byte)
	quant   func(b []byte, x []float32)
}

// formatOf is t's code; t must be a block format (callers check Block).
func formatOf(t dtype.DType) format {
	switch t {
	case dtype.Q4_0:
		return format{dequantQ4_0, quantQ4_0}
	case dtype.Q4_1:
		return format{dequantQ4_1, quantQ4_1}
	case dtype.Q5_0:
		return format{dequantQ5_0, quantQ5_0}
	case dtype.Q5_1:
		return format{dequantQ5_1, quantQ5_1}
	case dtype.Q8_0:
		return format{dequantQ8_0, quantQ8_0}
	case dtype.Q4_K:
		return format{dequantQ4_K, quantQ4_K}
	case dtype.Q5_K:
		return format{dequantQ5_K, quantQ5_K}
	case dtype.Q6_K:
		return format{dequantQ6_K, quantQ6_K}
	}
	panic("quant: no block format " + string(t))
}

// f16 reads the little-endian half at b[0:2] as float32.
func f16(b []byte) float32 { return dtype.F16ToF32(binary.LittleEndian.Uint16(b)) }

// dequantQ4_0: y = (q - 8)·d, low nibbles first, then high nibbles.
func dequantQ4_0(y []float32, b []byte) {
	d := f16(b)
	qs := b[2:18]
	for j, q := range qs {
		y[j] = float32(int(q&0xf)-8) * d
		y[j+16] = float32(int(q>>4)-8) * d
	}
}

// dequantQ4_1: y = q·d + m.
func dequantQ4_1(y []float32, b []byte) {
	d, m := f16(b), f16(b[2:])
	qs := b[4:20]
	for j, q := range qs {
		y[j] = float32(float32(q&0xf)*d) + m
		y[j+16] = float32(float32(q>>4)*d) + m
	}
}

// dequantQ5_0: y = (q - 16)·d with the fifth bits in qh.
func dequantQ5_0(y []float32, b []byte) {
	d := f16(b)
	qh := binary.LittleEndian.Uint32(b[2:])
	qs := b[6:22]
	for j, q := range qs {
		h0 := byte(qh>>j<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(int((q&0xf)|h0)-16) * d
		y[j+16] = float32(int((q>>4)|h1)-16) * d
	}
}

// dequantQ5_1: y = q·d + m with the fifth bits in qh.
func dequantQ5_1(y []float32, b []byte) {
	d, m := f16(b), f16(b[2:])
	qh := binary.LittleEndian.Uint32(b[4:])
	qs := b[8:24]
	for j, q := range qs {
		h0 := byte(qh>>j<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(float32((q&0xf)|h0)*d) + m
		y[j+16] = float32(float32((q>>4)|h1)*d) + m
	}
}

// dequantQ8_0: y = q·d.
func dequantQ8_0(y []float32, b []byte) {
	d := f16(b)
	for j, q := range b[2:34] {
		y[j] = float32(int8(q)) * d
	}
}

// scaleMinK4 is ggml's get_scale_min_k4: the 6-bit scale and min of
// sub-block j from the 12 packed bytes of a Q4_K or Q5_K block.
func scaleMinK4(j int, q []byte) (sc, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// ScalesK writes the multipliers of a Q4_K or Q5_K block b's eight
// sub-blocks: sm[2j] = d·sc and sm[2j+1] = dmin·m of sub-block j, the 6-bit
// sc and m unpacked by get_scale_min_k4. (kernels' assembly takes them so.)
func ScalesK(sm *[16]float32, b []byte) {
	d, dmin := f16(b), f16(b[2:])
	for j := range 8 {
		sc, m := scaleMinK4(j, b[4:16])
		sm[2*j], sm[2*j+1] = d*float32(sc), float32(dmin*float32(m))
	}
}

// dequantQ4_K: eight sub-blocks of 32, y = d·sc·q - dmin·m, the 64 values of
// a pair of sub-blocks from the low then high nibbles of 32 bytes.
func dequantQ4_K(y []float32, b []byte) {
	var sm [16]float32
	ScalesK(&sm, b)
	qs := b[16:144]
	for g := range 4 {
		d1, m1, d2, m2 := sm[4*g], sm[4*g+1], sm[4*g+2], sm[4*g+3]
		q := qs[32*g : 32*g+32]
		out := y[64*g : 64*g+64]
		for l, v := range q {
			out[l] = float32(d1*float32(v&0xf)) - m1
			out[l+32] = float32(d2*float32(v>>4)) - m2
		}
	}
}

// dequantQ5_K is dequantQ4_K with a fifth bit per value from qh.
func dequantQ5_K(y []float32, b []byte) {
	var sm [16]float32
	ScalesK(&sm, b)
	qh, qs := b[16:48], b[48:176]
	u1, u2 := byte(1), byte(2)
	for g := range 4 {
		d1, m1, d2, m2 := sm[4*g], sm[4*g+1], sm[4*g+2], sm[4*g+3]
		q := qs[32*g : 32*g+32]
		out := y[64*g : 64*g+64]
		for l, v := range q {
			lo, hi := v&0xf, v>>4
			if qh[l]&u1 != 0 {
				lo += 16
			}
			if qh[l]&u2 != 0 {
				hi += 16
			}
			out[l] = float32(d1*float32(lo)) - m1
			out[l+32] = float32(d2*float32(hi)) - m2
		}
		u1 <<= 2
		u2 <<= 2
	}
}

// dequantQ6_K: sixteen sub-blocks of 16 with signed 8-bit scales,
// y = d·sc·(q - 32), q's low four bits in ql and high two in qh.
func dequantQ6_K(y []float32, b []byte) {
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	d := f16(b[208:])
	for n := range 2 {
		l4, h2, s8, out := ql[64*n:], qh[32*n:], sc[8*n:], y[128*n:]
		for l := range 32 {
			is := l / 16
			q1 := int(l4[l]&0xf|(h2[l]>>0&3)<<4) - 32
			q2 := int(l4[l+32]&0xf|(h2[l]>>2&3)<<4) - 32
			q3 := int(l4[l]>>4|(h2[l]>>4&3)<<4) - 32
			q4 := int(l4[l+32]>>4|(h2[l]>>6&3)<<4) - 32
			out[l] = d * float32(int8(s8[is])) * float32(q1)
			out[l+32] = d * float32(int8(s8[is+2])) * float32(q2)
			out[l+64] = d * float32(int8(s8[is+4])) * float32(q3)
			out[l+96] = d * float32(int8(s8[is+6])) * float32(q4)
		}
	}
}
