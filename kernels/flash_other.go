//go:build !amd64 || purego

package kernels

// Without the assembly every variant is the portable one.

func softmaxAVX2(s []float32, rows, cols, ld int, m, l, alpha []float32) {
	softmaxRef(s, rows, cols, ld, m, l, alpha)
}

func expSubAVX2(s []float32, rows, cols, ld int, sub []float32) { expSubRef(s, rows, cols, ld, sub) }

func dsoftAVX2(p, dp []float32, rows, cols, ld int, dd []float32, scale float32) {
	dsoftRef(p, dp, rows, cols, ld, dd, scale)
}

func packAVX2(qt []float32, ld int, src []float32, rows []flashRow, d int, mul float32) {
	packRef(qt, ld, src, rows, d, mul)
}

func prefetchRows(s []float32, off, rows, stride, n int) {}

func mulAVX2(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, mode int, rs []float32) {
	mulRef(m, n, k, a, ars, acs, b, ldb, c, ldc, mode, rs)
}
