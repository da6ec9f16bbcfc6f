//go:build !purego

package kernels

import (
	"fmt"
	"unsafe"

	"github.com/tune-dev/tune/internal/dtype"
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
	simd:   simdAVX2,
	mr:     6,
	nr:     16,
	mul:    mul6x16AVX2Checked,
	packT:  packTAVX2,
	packN:  packNAVX2,
	dot3x4: dot3x4AVX2Checked,
}

// The assembly routines trust their arguments; the Go wrappers below check
// the bounds they will touch.

// mul6x16AVX2 is kernelSet.mul for a 6×16 tile (see mulRef).
//
//go:noescape
func mul6x16AVX2(kc int, a []float32, rsA, ksA int, b []float32, c []float32, ldc int, alpha float32, acc bool)

// The element kinds the assembly widens (ELEMBF16… in matmul_amd64.s).
const (
	elemF32 = iota
	elemBF16
	elemF16
)

// elem returns w's element kind for the assembly and a pointer to its flat
// element off, after checking that elements [off, end) exist.
func elem(w Matrix, off, end int) (int, unsafe.Pointer) {
	switch w.DType {
	case dtype.BF16:
		return elemBF16, unsafe.Pointer(&w.u16[off:end][0])
	case dtype.F16:
		return elemF16, unsafe.Pointer(&w.u16[off:end][0])
	}
	return elemF32, unsafe.Pointer(&w.f32[off:end][0])
}

// packT16AVX2 writes dst[16·l + j] = widen(src[j·ld + l]) for j < 16,
// l < kc8 (a multiple of 8), src holding elements of the given kind.
//
//go:noescape
func packT16AVX2(kind int, dst []float32, src unsafe.Pointer, ld, kc8 int)

// packN16AVX2 writes dst[16·l + j] = widen(src[l·ld + j]) for j < 16, l < kc.
//
//go:noescape
func packN16AVX2(kind int, dst []float32, src unsafe.Pointer, ld, kc int)

// dot3x4AVX2 writes out[4i + j] = sum over l < k8 (a multiple of 8) of
// xi[l]·widen(w[j·ldw + l]), i < 3, j < 4.
//
//go:noescape
func dot3x4AVX2(kind, k8 int, x0, x1, x2 []float32, w unsafe.Pointer, ldw int, out *[12]float32)

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
		kind, src := elem(w, j0*w.Cols+k0, (j0+15)*w.Cols+k0+kc8)
		packT16AVX2(kind, dst[:16*kc8], src, w.Cols, kc8)
	}
	if kc8 < kc {
		packTRef(dst[16*kc8:], 16, w, j0, 16, k0+kc8, kc-kc8)
	}
}

func packNAVX2(dst []float32, w Matrix, l0, kc, j0 int) {
	if kc <= 0 {
		return
	}
	kind, src := elem(w, l0*w.Cols+j0, (l0+kc-1)*w.Cols+j0+16)
	packN16AVX2(kind, dst[:16*kc], src, w.Cols, kc)
}

func dot3x4AVX2Checked(k int, x0, x1, x2 []float32, w Matrix, j0 int, out *[12]float32) {
	k8 := k &^ 7
	x0, x1, x2 = x0[:k], x1[:k], x2[:k]
	if k8 > 0 {
		kind, src := elem(w, j0*w.Cols, (j0+3)*w.Cols+k8)
		dot3x4AVX2(kind, k8, x0, x1, x2, src, w.Cols, out)
	} else {
		*out = [12]float32{}
	}
	if k8 < k {
		var tail [12]float32
		dot3x4Ref(x0, x1, x2, w, j0, k8, k, &tail)
		for i := range out {
			out[i] += tail[i]
		}
	}
}
