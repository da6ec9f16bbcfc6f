package kernels

import (
	"fmt"
	"os"
	"strings"
)

// A kernelSet is one instruction-set variant of the matrix-product kernels:
// the register-blocked micro-kernel and the packers that widen frozen weights
// into its panels. The reference set is plain Go; the others are assembly
// and must compute what the reference does (see gemm_ref.go).
type kernelSet struct {
	name string

	// mr×nr is the tile of C the micro-kernel holds in registers.
	mr, nr int

	// mul sets C (mr×nr, rows ldc apart) to alpha·A·B, plus C when acc.
	// A(i, l) is a[i·rsA + l·ksA] for i < mr, l < kc; B is a packed panel,
	// B(l, j) = b[nr·l + j].
	mul func(kc int, a []float32, rsA, ksA int, b []float32, c []float32, ldc int, alpha float32, acc bool)

	// packT writes dst[nr·l + j] = W(j0+j, k0+l) for j < nr, l < kc: a panel
	// of nr whole rows of w, transposed and widened to float32.
	packT func(dst []float32, w Matrix, j0, k0, kc int)

	// packN writes dst[nr·l + j] = W(l0+l, j0+j) for j < nr, l < kc: a panel
	// of nr whole columns of w, widened to float32.
	packN func(dst []float32, w Matrix, l0, kc, j0 int)

	// dot3x4 writes out[4i + j] = sum over l < k of xi[l]·W(j0+j, l) for
	// i < 3, j < 4: the product of a few rows (decoding) with four rows of
	// w read in place, with no packing.
	dot3x4 func(k int, x0, x1, x2 []float32, w Matrix, j0 int, out *[12]float32)

	// simd is the variant of the vector helpers: flash attention's tiles
	// and the elementwise kernels (SwiGLU, the loss's softmax).
	simd simdVariant
}

// The variant every call uses, fixed once at start: TUNE_KERNELS when it names
// one this CPU runs, else the fastest there is. activeErr says why a
// TUNE_KERNELS value could not be honoured.
var active, activeErr = chooseVariant(os.Getenv("TUNE_KERNELS"))

// Variant names the kernel variant in use (ref, avx2). The error is non-nil
// when TUNE_KERNELS asks for a variant this build or CPU cannot run; the
// kernels then use the fastest one available, and a command should stop with
// the error rather than run something the user did not ask for.
func Variant() (string, error) { return active.name, activeErr }

// knownVariants are the names TUNE_KERNELS may take, slowest first.
var knownVariants = []string{"ref", "avx2", "avx512"}

// chooseVariant picks the variant for a TUNE_KERNELS value ("" = fastest).
func chooseVariant(env string) (*kernelSet, error) {
	have := availableVariants()
	best := have[len(have)-1]
	name := strings.ToLower(strings.TrimSpace(env))
	if name == "" {
		return best, nil
	}
	for _, v := range have {
		if v.name == name {
			return v, nil
		}
	}
	names := make([]string, len(have))
	for i, v := range have {
		names[i] = v.name
	}
	for _, k := range knownVariants {
		if k == name {
			return best, fmt.Errorf("TUNE_KERNELS=%s: %s (this machine runs %s)", env, unavailableReason(name), strings.Join(names, ", "))
		}
	}
	return best, fmt.Errorf("TUNE_KERNELS=%s: unknown kernel variant, want one of %s", env, strings.Join(knownVariants, ", "))
}

// refKernels is the portable variant, the one the others are tested against.
var refKernels = &kernelSet{
	name:  "ref",
	simd:  simdRef,
	mr:    6,
	nr:    16,
	mul:   microRef(6, 16),
	packT: func(dst []float32, w Matrix, j0, k0, kc int) { packTRef(dst, 16, w, j0, 16, k0, kc) },
	packN: func(dst []float32, w Matrix, l0, kc, j0 int) { packNRef(dst, 16, w, l0, kc, j0, 16) },
	dot3x4: func(k int, x0, x1, x2 []float32, w Matrix, j0 int, out *[12]float32) {
		dot3x4Ref(x0, x1, x2, w, j0, 0, k, out)
	},
}
