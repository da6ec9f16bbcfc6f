package kernels

import "github.com/tune-dev/tune/internal/dtype"

// The portable reference of the matrix-product kernels: plain Go that every
// assembly variant must equal (bit for bit for the packers, within float
// rounding for the micro-kernel, whose assembly fuses multiply and add).

// microRef returns kernelSet.mul as loops for an mr×nr tile.
func microRef(mr, nr int) func(kc int, a []float32, rsA, ksA int, b []float32, c []float32, ldc int, alpha float32, acc bool) {
	return func(kc int, a []float32, rsA, ksA int, b []float32, c []float32, ldc int, alpha float32, acc bool) {
		for i := range mr {
			ci := c[i*ldc : i*ldc+nr]
			for j := range ci {
				var s float32
				for l := range kc {
					s += a[i*rsA+l*ksA] * b[nr*l+j]
				}
				s *= alpha
				if acc {
					s += ci[j]
				}
				ci[j] = s
			}
		}
	}
}

// packTRef writes dst[nr·l + j] = W(j0+j, k0+l) for l < kc, j < rows, and
// zeros for rows <= j < nr: kernelSet.packT, and the tail of a partial panel.
func packTRef(dst []float32, nr int, w Matrix, j0, rows, k0, kc int) {
	dst = dst[:nr*kc]
	for j := range nr {
		if j >= rows {
			for l := range kc {
				dst[nr*l+j] = 0
			}
			continue
		}
		off := (j0+j)*w.Cols + k0
		switch w.DType {
		case dtype.F32:
			for l, v := range w.f32[off : off+kc] {
				dst[nr*l+j] = v
			}
		case dtype.BF16:
			for l, v := range w.u16[off : off+kc] {
				dst[nr*l+j] = dtype.BF16ToF32(v)
			}
		case dtype.F16:
			for l, v := range w.u16[off : off+kc] {
				dst[nr*l+j] = dtype.F16ToF32(v)
			}
		}
	}
}

// packNRef writes dst[nr·l + j] = W(l0+l, j0+j) for l < kc, j < cols, and
// zeros for cols <= j < nr: kernelSet.packN, and a partial panel.
func packNRef(dst []float32, nr int, w Matrix, l0, kc, j0, cols int) {
	for l := range kc {
		row := dst[nr*l : nr*l+nr]
		w.Range((l0+l)*w.Cols+j0, row[:cols])
		clear(row[cols:])
	}
}

// dot3x4Ref writes out[4i + j] = sum over l in [l0, l1) of xi[l]·W(j0+j, l),
// i < 3, j < 4: kernelSet.dot3x4 for l0 = 0, l1 = K, and the tail of others.
func dot3x4Ref(x0, x1, x2 []float32, w Matrix, j0, l0, l1 int, out *[12]float32) {
	xs := [3][]float32{x0[l0:l1], x1[l0:l1], x2[l0:l1]}
	for j := range 4 {
		off := (j0+j)*w.Cols + l0
		var s [3]float32
		switch w.DType {
		case dtype.F32:
			for l, v := range w.f32[off : off+l1-l0] {
				s[0] += xs[0][l] * v
				s[1] += xs[1][l] * v
				s[2] += xs[2][l] * v
			}
		case dtype.BF16, dtype.F16:
			widen := dtype.BF16ToF32
			if w.DType == dtype.F16 {
				widen = dtype.F16ToF32
			}
			for l, u := range w.u16[off : off+l1-l0] {
				v := widen(u)
				s[0] += xs[0][l] * v
				s[1] += xs[1][l] * v
				s[2] += xs[2][l] * v
			}
		}
		for i := range 3 {
			out[4*i+j] = s[i]
		}
	}
}
