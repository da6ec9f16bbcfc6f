package kernels

import "math"

// The tile helpers of the flash attention kernels in portable Go. Each states
// what its assembly twin in flash_amd64.s computes; the tests hold every
// variant to these.

// Modes of the tile product: what happens to C.
const (
	mulSet   = 0 // C = A·B
	mulAdd   = 1 // C += A·B
	mulScale = 2 // C = diag(rs)·C + A·B
)

// mulRef is the tile product C(m×n) (mode) A(m×k)·B(k×n), where
// A[i][l] = a[i·ars + l·acs], B[l][j] = b[l·ldb + j] and C[i][j] = c[i·ldc + j].
// The two strides of A let one routine read a tile or its transpose.
func mulRef(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, mode int, rs []float32) {
	for i := range m {
		ci := c[i*ldc : i*ldc+n]
		switch mode {
		case mulSet:
			clear(ci)
		case mulScale:
			s := rs[i]
			for j := range ci {
				ci[j] *= s
			}
		}
		for l := range k {
			Axpy(a[i*ars+l*acs], b[l*ldb:l*ldb+n], ci)
		}
	}
}

// softmaxRef is one step of the online softmax over an Sᵀ tile of rows keys
// by cols queries (row stride ld), in base 2: per query column c it raises the
// running maximum m[c] to cover the tile, sets alpha[c] = 2^(m_old − m_new),
// replaces S by P = 2^(S − m_new) and sets l[c] = alpha[c]·l[c] + Σ P. A
// column still at −inf (every key so far masked) subtracts 0 instead, so that
// its P and alpha are 0 rather than NaN.
func softmaxRef(s []float32, rows, cols, ld int, m, l, alpha []float32) {
	for c := range cols {
		mx := float32(math.Inf(-1))
		for r := range rows {
			mx = max(mx, s[r*ld+c])
		}
		mold := m[c]
		mnew := max(mold, mx)
		m[c] = mnew
		sub := mnew
		if math.IsInf(float64(sub), -1) {
			sub = 0
		}
		a := exp2f(mold - sub)
		alpha[c] = a
		var sum float32
		for r := range rows {
			e := exp2f(s[r*ld+c] - sub)
			s[r*ld+c] = e
			sum += e
		}
		l[c] = a*l[c] + sum
	}
}

// expSubRef sets s[r][c] = 2^(s[r][c] − sub[c]).
func expSubRef(s []float32, rows, cols, ld int, sub []float32) {
	for r := range rows {
		sr := s[r*ld : r*ld+cols]
		for c, x := range sr {
			sr[c] = exp2f(x - sub[c])
		}
	}
}

// dsoftRef is the softmax backward on a tile: dp[r][c] = p[r][c]·(dp[r][c] − dd[c])·scale.
func dsoftRef(p, dp []float32, rows, cols, ld int, dd []float32, scale float32) {
	for r := range rows {
		pr, dr := p[r*ld:r*ld+cols], dp[r*ld:r*ld+cols]
		for c := range dr {
			dr[c] = pr[c] * (dr[c] - dd[c]) * scale
		}
	}
}

// packRef writes d values of each row's query vector (src[r.q:]) times mul
// into column c of qt (row stride ld): qt[l·ld + c] = src[rows[c].q + l]·mul.
func packRef(qt []float32, ld int, src []float32, rows []flashRow, d int, mul float32) {
	for c, r := range rows {
		for l, x := range src[r.q : r.q+d] {
			qt[l*ld+c] = x * mul
		}
	}
}

// exp2f is 2^x in float32 to about 1 ulp, the same algorithm as the assembly:
// x clamped to [−127, 127] and split as n + f with n = round(x); 2^f = e^(f·ln2)
// from the Cephes expf polynomial on |f·ln2| ≤ ln2/2; 2^n put in the exponent
// bits, where n = −127 gives 0 (so exp2f(−Inf) = 0).
func exp2f(x float32) float32 {
	x = min(max(x, -127), 127)
	// Round to nearest even by adding and removing 1.5·2²³ (exact for
	// |x| < 2²²); the explicit conversion keeps the sum rounded to float32.
	// math.RoundToEven is a function call on amd64 v1, and this is the
	// elementwise kernels' exp (SwiGLU, the loss's softmax).
	const magic = 12582912
	n := float32(x+magic) - magic
	r := (x - n) * float32(math.Ln2)
	y := float32(1.9875691500e-4)
	y = y*r + 1.3981999507e-3
	y = y*r + 8.3334519073e-3
	y = y*r + 4.1665795894e-2
	y = y*r + 1.6666665459e-1
	y = y*r + 5.0000001201e-1
	y = (y*r)*r + r + 1
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}
