//go:build !purego

package kernels

import (
	"fmt"

	"golang.org/x/sys/cpu"
)

// hasAVX2 says the CPU and OS run the AVX2 kernels: 256-bit FMA, and F16C for
// widening f16 weights.
var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

func availableVariants() []*kernelSet {
	if hasAVX2 {
		return []*kernelSet{refKernels, avx2Kernels}
	}
	return []*kernelSet{refKernels}
}

func unavailableReason(name string) string {
	switch {
	case name == "avx2":
		return "this CPU lacks AVX2, FMA or F16C"
	case name == "avx512" && !cpu.X86.HasAVX512F:
		return "this CPU has no AVX-512"
	}
	return "no " + name + " kernels are written yet"
}

var avx2Kernels = &kernelSet{
	name:   "avx2",
	mr:     6,
	nr:     16,
	mul:    mul6x16AVX2Checked,
	packT:  packTAVX2,
	packN:  packNAVX2,
	dot3x4: dot3x4AVX2,
}

// The assembly routines trust their arguments; the Go wrappers below check
// the bounds they will touch.

// mul6x16AVX2 is kernelSet.mul for a 6×16 tile (see mulRef).
//
//go:noescape
func mul6x16AVX2(kc int, a []float32, rsA, ksA int, b []float32, c []float32, ldc int, alpha float32, acc bool)

// packT16F32AVX2 and the like write dst[16·l + j] = widen(src[j·ld + l]) for
// j < 16, l < kc8, a multiple of 8.
//
//go:noescape
func packT16F32AVX2(dst []float32, src []float32, ld, kc8 int)

//go:noescape
func packT16BF16AVX2(dst []float32, src []uint16, ld, kc8 int)

//go:noescape
func packT16F16AVX2(dst []float32, src []uint16, ld, kc8 int)

// packN16F32AVX2 and the like write dst[16·l + j] = widen(src[l·ld + j]) for
// j < 16, l < kc.
//
//go:noescape
func packN16F32AVX2(dst []float32, src []float32, ld, kc int)

//go:noescape
func packN16BF16AVX2(dst []float32, src []uint16, ld, kc int)

//go:noescape
func packN16F16AVX2(dst []float32, src []uint16, ld, kc int)

func mul6x16AVX2Checked(kc int, a []float32, rsA, ksA int, b []float32, c []float32, ldc int, alpha float32, acc bool) {
	if kc <= 0 {
		refKernels.mul(kc, a, rsA, ksA, b, c, ldc, alpha, acc)
		return
	}
	if rsA < 0 || ksA < 0 || len(a) <= 5*rsA+(kc-1)*ksA || len(b) < 16*kc || len(c) < 5*ldc+16 {
		panic(fmt.Sprintf("kernels: mul6x16 out of bounds: kc %d, a %d (%d, %d), b %d, c %d (%d)", kc, len(a), rsA, ksA, len(b), len(c), ldc))
	}
	mul6x16AVX2(kc, a, rsA, ksA, b, c, ldc, alpha, acc)
}

func packTAVX2(dst []float32, w Matrix, j0, k0, kc int) {
	kc8 := kc &^ 7
	if kc8 > 0 {
		off, end := j0*w.Cols+k0, (j0+15)*w.Cols+k0+kc8
		dst := dst[:16*kc8]
		switch w.DType {
		case F32:
			packT16F32AVX2(dst, w.f32[off:end], w.Cols, kc8)
		case BF16:
			packT16BF16AVX2(dst, w.u16[off:end], w.Cols, kc8)
		case F16:
			packT16F16AVX2(dst, w.u16[off:end], w.Cols, kc8)
		}
	}
	if kc8 < kc {
		packTRef(dst[16*kc8:], 16, w, j0, 16, k0+kc8, kc-kc8)
	}
}

func packNAVX2(dst []float32, w Matrix, l0, kc, j0 int) {
	if kc <= 0 {
		return
	}
	off, end := l0*w.Cols+j0, (l0+kc-1)*w.Cols+j0+16
	dst = dst[:16*kc]
	switch w.DType {
	case F32:
		packN16F32AVX2(dst, w.f32[off:end], w.Cols, kc)
	case BF16:
		packN16BF16AVX2(dst, w.u16[off:end], w.Cols, kc)
	case F16:
		packN16F16AVX2(dst, w.u16[off:end], w.Cols, kc)
	}
}

// dot3x4F32AVX2 and the like write out[4i + j] = sum over l < k8 (a multiple
// of 8) of xi[l]·widen(w[j·ldw + l]), i < 3, j < 4.
//
//go:noescape
func dot3x4F32AVX2(k8 int, x0, x1, x2 []float32, w []float32, ldw int, out *[12]float32)

//go:noescape
func dot3x4BF16AVX2(k8 int, x0, x1, x2 []float32, w []uint16, ldw int, out *[12]float32)

//go:noescape
func dot3x4F16AVX2(k8 int, x0, x1, x2 []float32, w []uint16, ldw int, out *[12]float32)

func dot3x4AVX2(k int, x0, x1, x2 []float32, w Matrix, j0 int, out *[12]float32) {
	k8 := k &^ 7
	x0, x1, x2 = x0[:k], x1[:k], x2[:k]
	off, end := j0*w.Cols, (j0+3)*w.Cols+k8
	switch w.DType {
	case F32:
		dot3x4F32AVX2(k8, x0, x1, x2, w.f32[off:end], w.Cols, out)
	case BF16:
		dot3x4BF16AVX2(k8, x0, x1, x2, w.u16[off:end], w.Cols, out)
	case F16:
		dot3x4F16AVX2(k8, x0, x1, x2, w.u16[off:end], w.Cols, out)
	}
	if k8 < k {
		var tail [12]float32
		dot3x4Ref(x0, x1, x2, w, j0, k8, k, &tail)
		for i := range out {
			out[i] += tail[i]
		}
	}
}
