//go:build !purego

package kernels

//go:generate sh -c "go run ./_asm/gen_flash.go > flash_amd64.s"

// The assembly in flash_amd64.s; each is its namesake in flash_ref.go with
// the shapes restricted as said.

// flashPanelNAVX2 is mulRef on N rows of A and C, n a multiple of 8.
//
//go:noescape
func flashPanel1AVX2(k, n int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, mode int, rs *float32)

//go:noescape
func flashPanel2AVX2(k, n int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, mode int, rs *float32)

//go:noescape
func flashPanel3AVX2(k, n int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, mode int, rs *float32)

//go:noescape
func flashPanel4AVX2(k, n int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, mode int, rs *float32)

//go:noescape
func flashPanel5AVX2(k, n int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, mode int, rs *float32)

//go:noescape
func flashPanel6AVX2(k, n int, a *float32, ars, acs int, b *float32, ldb int, c *float32, ldc int, mode int, rs *float32)

// flashSoftmaxAVX2 is softmaxRef for rows ≥ 1 and cols a positive multiple of 8.
//
//go:noescape
func flashSoftmaxAVX2(s *float32, rows, cols, ld int, m, l, alpha *float32)

// flashExpSubAVX2 is expSubRef for rows ≥ 1 and cols a positive multiple of 8.
//
//go:noescape
func flashExpSubAVX2(s *float32, rows, cols, ld int, sub *float32)

// flashDSoftAVX2 is dsoftRef for rows ≥ 1 and cols a positive multiple of 8.
//
//go:noescape
func flashDSoftAVX2(p, dp *float32, rows, cols, ld int, dd *float32, scale float32)

// flashTransposeAVX2 sets dst[l·ld + i] = src[offs[i] + l]·mul for the 8
// rows i and l < d, d a multiple of 8.
//
//go:noescape
func flashTransposeAVX2(dst *float32, ld int, src *float32, offs *[8]int, d int, mul float32)

// packAVX2 is packRef: whole blocks of 8 rows and 8 values by the assembly,
// the edges by packRef.
func packAVX2(qt []float32, ld int, src []float32, rows []flashRow, d int, mul float32) {
	d8, c := d&^7, 0
	if d8 > 0 {
		var offs [8]int
		for ; c+8 <= len(rows); c += 8 {
			for i, r := range rows[c : c+8] {
				_ = src[r.q+d8-1] // the assembly reads src[r.q : r.q+d8]
				offs[i] = r.q
			}
			_ = qt[(d8-1)*ld+c+7]
			flashTransposeAVX2(&qt[c], ld, &src[0], &offs, d8, mul)
		}
	}
	packRef(qt[c:], ld, src, rows[c:], d8, mul)
	if d8 < d {
		packRef(qt[d8*ld:], ld, src[d8:], rows, d-d8, mul)
	}
}

// flashPrefetch asks for the cache lines of rows runs of n ≥ 1 floats at p,
// stride floats apart.
//
//go:noescape
func flashPrefetch(p *float32, rows, stride, n int)

// prefetchRows asks for rows runs of n floats of s from off on, stride apart,
// so that they arrive while the current tile computes. It only reads within s.
func prefetchRows(s []float32, off, rows, stride, n int) {
	if rows <= 0 || n <= 0 || off < 0 || off+(rows-1)*stride+n > len(s) {
		return
	}
	flashPrefetch(&s[off], rows, stride, n)
}

// mulAVX2 is mulRef: the assembly panels of up to 6 rows over the columns
// that fill vectors of 8, mulRef for the rest. It checks the extent of every
// operand first, since the assembly does not.
func mulAVX2(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, mode int, rs []float32) {
	if m <= 0 || n <= 0 {
		return
	}
	checkTile(m, n, k, len(a), ars, acs, len(b), ldb, len(c), ldc, mode, len(rs))
	n8 := n &^ 7
	if n8 > 0 {
		var bp *float32
		if k > 0 {
			bp = &b[0]
		}
		for i := 0; i < m; i += 6 {
			var ap, rp *float32
			if k > 0 {
				ap = &a[i*ars]
			}
			if mode == mulScale {
				rp = &rs[i]
			}
			cp := &c[i*ldc]
			switch min(6, m-i) {
			case 6:
				flashPanel6AVX2(k, n8, ap, ars, acs, bp, ldb, cp, ldc, mode, rp)
			case 5:
				flashPanel5AVX2(k, n8, ap, ars, acs, bp, ldb, cp, ldc, mode, rp)
			case 4:
				flashPanel4AVX2(k, n8, ap, ars, acs, bp, ldb, cp, ldc, mode, rp)
			case 3:
				flashPanel3AVX2(k, n8, ap, ars, acs, bp, ldb, cp, ldc, mode, rp)
			case 2:
				flashPanel2AVX2(k, n8, ap, ars, acs, bp, ldb, cp, ldc, mode, rp)
			case 1:
				flashPanel1AVX2(k, n8, ap, ars, acs, bp, ldb, cp, ldc, mode, rp)
			}
		}
	}
	if n8 < n {
		if k > 0 {
			b = b[n8:]
		}
		mulRef(m, n-n8, k, a, ars, acs, b, ldb, c[n8:], ldc, mode, rs)
	}
}

func softmaxAVX2(s []float32, rows, cols, ld int, m, l, alpha []float32) {
	if rows <= 0 || cols <= 0 {
		return
	}
	checkVec(s, rows, cols, ld, m, l, alpha)
	flashSoftmaxAVX2(&s[0], rows, cols, ld, &m[0], &l[0], &alpha[0])
}

func expSubAVX2(s []float32, rows, cols, ld int, sub []float32) {
	if rows <= 0 || cols <= 0 {
		return
	}
	checkVec(s, rows, cols, ld, sub)
	flashExpSubAVX2(&s[0], rows, cols, ld, &sub[0])
}

func dsoftAVX2(p, dp []float32, rows, cols, ld int, dd []float32, scale float32) {
	if rows <= 0 || cols <= 0 {
		return
	}
	checkVec(p, rows, cols, ld, dd)
	checkVec(dp, rows, cols, ld)
	flashDSoftAVX2(&p[0], &dp[0], rows, cols, ld, &dd[0], scale)
}
