package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tune-dev/tune/internal/dtype"
)

// Quantize stores src as blocks of t in dst with ggml's reference rounding
// (quantize_row_*_ref). len(src) must be whole blocks and dst hold exactly
// their bytes.
func Quantize(t dtype.DType, dst []byte, src []float32) error {
	values, size := t.Block()
	if values == 0 {
		return fmt.Errorf("quantize: %s is not a block format", t)
	}
	if len(src)%values != 0 {
		return fmt.Errorf("quantize %s: %d values are not whole %d-value blocks", t, len(src), values)
	}
	if len(dst) != len(src)/values*size {
		return fmt.Errorf("quantize %s: %d values need %d bytes, given %d", t, len(src), len(src)/values*size, len(dst))
	}
	block := formatOf(t).quant
	for i := range len(src) / values {
		block(dst[i*size:(i+1)*size], src[i*values:(i+1)*values])
	}
	return nil
}

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, dtype.F32ToF16(f)) }

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// inv is ggml's `d ? 1.0f/d : 0.0f`.
func inv(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

// signedMax is the value of largest magnitude, the first of equals.
func signedMax(x []float32) (amax, vmax float32) {
	for _, v := range x {
		if amax < abs32(v) {
			amax, vmax = abs32(v), v
		}
	}
	return amax, vmax
}

// minMax is the least and greatest value, starting from ±FLT_MAX.
func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// quantQ4_0 is quantize_row_q4_0_ref: d = max/-8 with max the value of
// largest magnitude, q = min(15, trunc(x/d + 8.5)).
func quantQ4_0(b []byte, x []float32) {
	_, vmax := signedMax(x)
	d := vmax / -8
	id := inv(d)
	putF16(b, d)
	for j := range 16 {
		x0, x1 := float32(x[j]*id), float32(x[j+16]*id)
		b[2+j] = min(15, byte(int8(x0+8.5))) | min(15, byte(int8(x1+8.5)))<<4
	}
}

// quantQ4_1 is quantize_row_q4_1_ref: d = (max - min)/15, m = min,
// q = min(15, trunc((x - min)/d + 0.5)).
func quantQ4_1(b []byte, x []float32) {
	lo, hi := minMax(x)
	d := (hi - lo) / 15
	id := inv(d)
	putF16(b, d)
	putF16(b[2:], lo)
	for j := range 16 {
		x0, x1 := float32((x[j]-lo)*id), float32((x[j+16]-lo)*id)
		b[4+j] = min(15, byte(int8(x0+0.5))) | min(15, byte(int8(x1+0.5)))<<4
	}
}

// quantQ5_0 is quantize_row_q5_0_ref: Q4_0 with 32 levels, the fifth bits
// gathered into qh.
func quantQ5_0(b []byte, x []float32) {
	_, vmax := signedMax(x)
	d := vmax / -16
	id := inv(d)
	putF16(b, d)
	var qh uint32
	for j := range 16 {
		x0, x1 := float32(x[j]*id), float32(x[j+16]*id)
		q0, q1 := min(31, byte(int8(x0+16.5))), min(31, byte(int8(x1+16.5)))
		b[6+j] = q0&0xf | (q1&0xf)<<4
		qh |= uint32(q0&0x10)>>4<<j | uint32(q1&0x10)>>4<<(j+16)
	}
	binary.LittleEndian.PutUint32(b[2:], qh)
}

// quantQ5_1 is quantize_row_q5_1_ref: Q4_1 with 32 levels (no clamp, as in
// ggml: (max - min)/31 keeps every value within them).
func quantQ5_1(b []byte, x []float32) {
	lo, hi := minMax(x)
	d := (hi - lo) / 31
	id := inv(d)
	putF16(b, d)
	putF16(b[2:], lo)
	var qh uint32
	for j := range 16 {
		x0, x1 := float32((x[j]-lo)*id), float32((x[j+16]-lo)*id)
		q0, q1 := byte(x0+0.5), byte(x1+0.5)
		b[8+j] = q0&0xf | (q1&0xf)<<4
		qh |= uint32(q0&0x10)>>4<<j | uint32(q1&0x10)>>4<<(j+16)
	}
	binary.LittleEndian.PutUint32(b[4:], qh)
}

// quantQ8_0 is quantize_row_q8_0_ref: d = max|x|/127, q = roundf(x·(1/d))
// (half away from zero), with d and 1/d in float32 rather than the f16 d.
func quantQ8_0(b []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	id := inv(d)
	putF16(b, d)
	for j, v := range x {
		b[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

// nearestInt is ggml's nearest_int: round to nearest, ties to even, by adding
// 1.5·2²³ in float32 and reading the low mantissa bits (exact for
// |f| <= 4194303; beyond, the same bits as ggml's).
func nearestInt(f float32) int {
	v := float32(f) + 12582912
	return int(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// makeQKX2 is ggml's make_qkx2_quants: the scale and min (returned negated,
// as the_min) of an affine nmax-level quantization of x, searched over nstep
// candidate scales around nmax/(max - min) for the least weighted squared
// error; L receives the levels.
func makeQKX2(nmax int, x, weights []float32, L, laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := sumW * x[0]
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(L[:n])
		return 0, -lo
	}
	fmax := float32(nmax)
	clamp := func(l int) uint8 { return uint8(max(0, min(nmax, l))) }
	iscale := fmax / (hi - lo)
	scale = 1 / iscale
	var bestError float32
	for i := range n {
		L[i] = clamp(nearestInt(iscale * (x[i] - lo)))
		diff := float32(scale*float32(L[i])) + lo - x[i]
		bestError += float32(weights[i] * float32(diff*diff))
	}
	if nstep < 1 {
		return scale, -lo
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fmax) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i := range n {
			l := clamp(nearestInt(iscale * (x[i] - lo)))
			laux[i] = l
			w, fl := weights[i], float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(w * fl * fl)
			sumXL += float32(w * fl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := range n {
				diff := float32(thisScale*float32(laux[i])) + thisMin - x[i]
				curError += float32(weights[i] * float32(diff*diff))
			}
			if curError < bestError {
				copy(L[:n], laux[:n])
				bestError, scale, lo = curError, thisScale, thisMin
			}
		}
	}
	return scale, -lo
}

// quantKScales is the shared middle of quantize_row_q4_K_ref and
// quantize_row_q5_K_ref: the eight sub-block scales and mins of x found with
// makeQKX2, stored as 6-bit values under f16 super-scales d and dmin (b[0:16]),
// then every value requantized to nmax levels against the stored scales.
func quantKScales(b []byte, x []float32, L []uint8, nmax int, rmin, rdelta float32, nstep int) {
	var scales, mins [8]float32
	var w32 [32]float32
	var laux [32]uint8
	var maxScale, maxMin float32
	for j := range 8 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			w32[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2(nmax, xs, w32[:], L[32*j:32*j+32], laux[:], rmin, rdelta, nstep)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := b[4:16]
	for j := range 8 {
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j], sc[j+4] = ls, lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	putF16(b, maxScale/63)
	putF16(b[2:], maxMin/63)
	d, dmin := f16(b), f16(b[2:])
	for j := range 8 {
		s, m := scaleMinK4(j, sc)
		dj := d * float32(s)
		if dj == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for i := range 32 {
			L[32*j+i] = uint8(max(0, min(nmax, nearestInt((x[32*j+i]+dm)/dj))))
		}
	}
}

// quantQ4_K is quantize_row_q4_K_ref (make_qkx2_quants with 15 levels,
// rmin -1, rdelta 0.1, 20 steps).
func quantQ4_K(b []byte, x []float32) {
	var L [256]uint8
	quantKScales(b, x, L[:], 15, -1, 0.1, 20)
	q := b[16:144]
	for j := 0; j < 256; j += 64 {
		for l := range 32 {
			q[l] = L[j+l] | L[j+l+32]<<4
		}
		q = q[32:]
	}
}

// quantQ5_K is quantize_row_q5_K_ref (31 levels, rmin -0.5, rdelta 0.1, 15
// steps), the fifth bits in qh.
func quantQ5_K(b []byte, x []float32) {
	var L [256]uint8
	quantKScales(b, x, L[:], 31, -0.5, 0.1, 15)
	qh, ql := b[16:48], b[48:176]
	clear(qh)
	m1, m2 := byte(1), byte(2)
	for n := 0; n < 256; n += 64 {
		for j := range 32 {
			l1, l2 := L[n+j], L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
		ql = ql[32:]
	}
}

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it is all zeros.
const groupMaxEps = 1e-15

// makeQX is ggml's make_qx_quants with rmse_type 1 and no weights (the
// weight of a value is its square): a symmetric quantization of x to levels
// -nmax..nmax-1 (stored +nmax in L), the scale searched over 18 candidates
// around -nmax/max for the least weighted squared error.
func makeQX(nmax int, x []float32, L []int8) float32 {
	amax, vmax := signedMax(x)
	if amax < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	fmax := float32(nmax)
	clamp := func(l int) int { return max(-nmax, min(nmax-1, l)) }
	iscale := -fmax / vmax
	var sumLX, sumL2 float32
	for i, v := range x {
		l := clamp(nearestInt(iscale * v))
		L[i] = int8(l + nmax)
		w, fl := v*v, float32(l)
		sumLX += float32(w * v * fl)
		sumL2 += float32(w * fl * fl)
	}
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fmax + float32(0.1*float32(is))) / vmax
		sumLX, sumL2 = 0, 0
		for _, v := range x {
			l := clamp(nearestInt(iscale * v))
			w, fl := v*v, float32(l)
			sumLX += float32(w * v * fl)
			sumL2 += float32(w * fl * fl)
		}
		if sumL2 > 0 && float32(sumLX*sumLX) > float32(best*sumL2) {
			for i, v := range x {
				L[i] = int8(nmax + clamp(nearestInt(iscale*v)))
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// quantQ6_K is quantize_row_q6_K_ref: sixteen sub-blocks of 16 quantized by
// makeQX to 64 levels, their scales stored as int8 under an f16 d, every
// value then requantized against the stored scale.
func quantQ6_K(b []byte, x []float32) {
	var L [256]int8
	var scales [16]float32
	var maxScale, maxAbs float32
	for ib := range 16 {
		s := makeQX(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		scales[ib] = s
		if abs32(s) > maxAbs {
			maxAbs, maxScale = abs32(s), s
		}
	}
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	if maxAbs < groupMaxEps {
		clear(b)
		return
	}
	iscale := -128 / maxScale
	putF16(b[208:], 1/iscale)
	for ib := range 16 {
		sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
	}
	d := f16(b[208:])
	for j := range 16 {
		dj := d * float32(int8(sc[j]))
		if dj == 0 {
			continue
		}
		for i := range 16 {
			l := max(-32, min(31, nearestInt(x[16*j+i]/dj)))
			L[16*j+i] = int8(l + 32)
		}
	}
	for j := 0; j < 256; j += 128 {
		for l := range 32 {
			u := func(i int) byte { return byte(L[j+l+i]) }
			ql[l] = u(0)&0xf | (u(64)&0xf)<<4
			ql[l+32] = u(32)&0xf | (u(96)&0xf)<<4
			qh[l] = u(0)>>4 | (u(32)>>4)<<2 | (u(64)>>4)<<4 | (u(96)>>4)<<6
		}
		ql, qh = ql[64:], qh[32:]
	}
}
