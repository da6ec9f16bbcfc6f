package kernels

import (
	"fmt"
	"math"
)

// Flash attention: the naive attention's results (attention_naive_test.go), computed
// tile by tile so that no [seq, seq] score matrix exists, with the tile
// products done by small dense helpers (flash_ref.go, and their assembly
// twins in flash_amd64.s). The forward is FlashAttention-2's: a tile of query
// rows walks the key tiles with an online softmax. The backward recomputes
// each tile's probabilities from lse, also query tile by query tile, adding
// into dk and dv, which its worker owns.
//
// A tile pairs up to br query rows with up to flashBc keys. The scores are
// held transposed, Sᵀ (keys × queries), so that the softmax statistics of a
// query are a column and run across queries in vector lanes. Queries are
// pre-scaled by scale·log2(e) and the exponentials are base 2.
//
// Scratch lives on the worker goroutine's stack (fixed-size arrays, about
// 50 KiB forward and 84 KiB backward), so a call allocates nothing but the
// closure it hands to Pool.For; only a HeadDim above 512 makes the tiles
// outgrow the arrays, and then each worker allocates its tiles once per call.

const (
	flashBc    = 64   // keys per tile
	flashMaxBr = 64   // query rows per tile, at most
	flashTileN = 4096 // floats in one tile buffer (16 KiB)
)

func (v simdVariant) mul(m, n, k int, a []float32, ars, acs int, b []float32, ldb int, c []float32, ldc int, mode int, rs []float32) {
	if v == simdAVX2 {
		mulAVX2(m, n, k, a, ars, acs, b, ldb, c, ldc, mode, rs)
		return
	}
	mulRef(m, n, k, a, ars, acs, b, ldb, c, ldc, mode, rs)
}

func (v simdVariant) softmax(s []float32, rows, cols, ld int, m, l, alpha []float32) {
	if v == simdAVX2 {
		softmaxAVX2(s, rows, cols, ld, m, l, alpha)
		return
	}
	softmaxRef(s, rows, cols, ld, m, l, alpha)
}

func (v simdVariant) expSub(s []float32, rows, cols, ld int, sub []float32) {
	if v == simdAVX2 {
		expSubAVX2(s, rows, cols, ld, sub)
		return
	}
	expSubRef(s, rows, cols, ld, sub)
}

func (v simdVariant) dsoft(p, dp []float32, rows, cols, ld int, dd []float32, scale float32) {
	if v == simdAVX2 {
		dsoftAVX2(p, dp, rows, cols, ld, dd, scale)
		return
	}
	dsoftRef(p, dp, rows, cols, ld, dd, scale)
}

// FlashAttention computes out = softmax(q·kᵀ/√d + mask)·v per head, as
// the naive attention does, and lse, the natural log-sum-exp of each row's
// scaled scores, which FlashAttentionBackward needs.
//
// q and out are (B·Tq, Heads·HeadDim); k and v are (B·Tk, KVHeads·HeadDim)
// with Tk = s.Seq, and Tq = len(q)/(B·Heads·HeadDim) ≤ Tk. Query row i of a
// sequence sits at key position Tk−Tq+i: training passes Tq = Tk, a decoder
// passes its KV cache as k and v and its Tq new tokens as q. seg is (B·Tk)
// segment ids (nil: one segment): a query sees the
// keys of its own segment up to its own position, the s.Window most recent
// when Window > 0, and a padding row (segment 0) sees only itself, so its out
// row is its v row. lse is (B, Heads, Tq): row i of
// head h of sequence b at lse[(b·Heads+h)·Tq+i]. Query head h reads key/value
// head h/(Heads/KVHeads).
//
// Work is split over (batch, kv head, tile of query rows) on p (nil: the
// calling goroutine); every out row is written by one worker, so results do
// not depend on the number of threads.
func FlashAttention(p *Pool, out, lse, q, k, v []float32, seg []int32, s AttentionShape) {
	flashForward(active.simd, p, out, lse, q, k, v, seg, s)
}

// FlashAttentionBackward computes dq, dk and dv (all overwritten) from dout,
// the forward's out and lse, and its inputs, shapes as for FlashAttention:
// dq and dout like q, dk and dv like k. The probabilities are recomputed tile
// by tile from lse (FlashAttention-2: D = rowsum(dout∘out), dS = P∘(dP − D)).
//
// Work is split over (batch, kv head): one worker owns the dk and dv rows of
// its kv head and the dq columns of that head's query heads, so no two
// workers write the same value and results are bitwise the same for any
// number of threads. (So at most Batch·KVHeads workers are busy.)
func FlashAttentionBackward(p *Pool, dq, dk, dv, dout, out, lse, q, k, v []float32, seg []int32, s AttentionShape) {
	flashBackward(active.simd, p, dq, dk, dv, dout, out, lse, q, k, v, seg, s)
}

// flashGeom is what every tile of one call shares.
type flashGeom struct {
	AttentionShape
	tq, g, qw, kw int
	br            int // query rows per tile, a multiple of 8
	scale         float32
	seg           []int32
	// exact: the nonzero segment ids of each row rise from run to run, so
	// the keys a query sees are an interval and a tile's mask follows from
	// its rows' intervals. Otherwise partly seen tiles are masked key by key.
	exact bool
}

// flashRow is one query row of a tile.
type flashRow struct {
	pos, lo, hi int // key position; first and last key it may see
	q           int // offset of its head's values in q, out, dq and dout
	lse         int // index in lse
}

func newFlashGeom(fn string, s AttentionShape, nq, nk, nout, nlse int, seg []int32) flashGeom {
	if s.Batch <= 0 || s.Seq <= 0 || s.Heads <= 0 || s.KVHeads <= 0 || s.HeadDim <= 0 || s.Heads%s.KVHeads != 0 || s.Window < 0 {
		panic(fmt.Sprintf("kernels: %s: bad shape %+v", fn, s))
	}
	g := flashGeom{AttentionShape: s, g: s.Heads / s.KVHeads, qw: s.Heads * s.HeadDim, kw: s.KVHeads * s.HeadDim, seg: seg}
	g.tq = nq / (s.Batch * g.qw)
	switch {
	case nq != g.tq*s.Batch*g.qw || g.tq > s.Seq:
		panic(fmt.Sprintf("kernels: %s: q has %d values, not (B·Tq, %d) with Tq ≤ %d", fn, nq, g.qw, s.Seq))
	case nk != s.Batch*s.Seq*g.kw:
		panic(fmt.Sprintf("kernels: %s: k and v need %d values, have %d", fn, s.Batch*s.Seq*g.kw, nk))
	case nout != nq || nlse != s.Batch*s.Heads*g.tq:
		panic(fmt.Sprintf("kernels: %s: out has %d values and lse %d, want %d and %d", fn, nout, nlse, nq, s.Batch*s.Heads*g.tq))
	case seg != nil && len(seg) != s.Batch*s.Seq:
		panic(fmt.Sprintf("kernels: %s: seg has %d ids, want %d", fn, len(seg), s.Batch*s.Seq))
	}
	g.br = min(flashMaxBr, max(8, flashTileN/s.HeadDim&^7))
	g.scale = s.scale()
	g.exact = segmentsAreRuns(seg, s.Batch, s.Seq)
	return g
}

// segmentsAreRuns reports whether the nonzero ids of each row of seg rise
// from run to run, as packing numbers examples, so no id has two runs.
func segmentsAreRuns(seg []int32, batch, seq int) bool {
	if seg == nil {
		return true
	}
	for b := range batch {
		row := seg[b*seq : (b+1)*seq]
		var last int32
		seen := false
		for j, id := range row {
			if id == 0 || (j > 0 && id == row[j-1]) {
				continue
			}
			if seen && id <= last {
				return false
			}
			last, seen = id, true
		}
	}
	return true
}

// tileFloats is the size of one tile buffer.
func (g *flashGeom) tileFloats() int { return max(flashTileN, g.HeadDim*g.br) }

// segOf is the segment ids of sequence b, nil when there is one segment.
func (g *flashGeom) segOf(b int) []int32 {
	if g.seg == nil {
		return nil
	}
	return g.seg[b*g.Seq : (b+1)*g.Seq]
}

// runs tracks, over rising key positions, where the run of equal segment ids
// holding the current position began, so that each row's first visible key
// costs O(1) after the first.
type runs struct {
	sg         []int32
	prev       int // last position seen, −1 before the first
	start, win int
}

func (g *flashGeom) newRuns(sg []int32) runs { return runs{sg: sg, prev: -1, win: g.Window} }

// interval is the visible keys [lo, hi] of the query at key position pos
// (exact for an exact geometry, else a superset that masking narrows).
func (g *flashGeom) interval(rs *runs, pos int) (lo, hi int) {
	sg := rs.sg
	if sg != nil && pos != rs.prev {
		if rs.prev < 0 {
			floor := 0
			if rs.win > 0 {
				floor = max(0, pos-rs.win+1)
			}
			rs.start = pos
			for rs.start > floor && sg[rs.start-1] == sg[pos] {
				rs.start--
			}
		} else {
			for j := rs.prev + 1; j <= pos; j++ {
				if sg[j] != sg[j-1] {
					rs.start = j
				}
			}
		}
		rs.prev = pos
	}
	if sg != nil && sg[pos] == 0 {
		return pos, pos
	}
	if sg != nil && g.exact {
		lo = rs.start
	}
	if g.Window > 0 {
		lo = max(lo, pos-g.Window+1)
	}
	return lo, pos
}

// span is the keys any of rows may see.
func span(rows []flashRow) (lo, hi int) {
	lo, hi = math.MaxInt, -1
	for _, r := range rows {
		lo, hi = min(lo, r.lo), max(hi, r.hi)
	}
	return lo, hi
}

// cover says whether any row of a tile sees a key in [j0, j1), and whether
// every row sees every key there (no mask needed).
func (g *flashGeom) cover(rows []flashRow, j0, j1 int) (some, all bool) {
	all = g.exact
	for _, r := range rows {
		if r.lo < j1 && r.hi >= j0 {
			some = true
		}
		if r.lo > j0 || r.hi < j1-1 {
			all = false
		}
	}
	return some, all
}

// scores fills Sᵀ (row stride br) with the scores of the rows (their
// pre-scaled Qᵀ in qt, nc columns) against keys j0.. up to flashBc of them
// and at most jhi, −inf where a row may not see the key. It returns how many
// keys that is (0: none of the rows sees any, nothing done) and the offset
// of key j0 in k, given kb, that of key 0.
func (g *flashGeom) scores(v simdVariant, st, qt []float32, nc int, k []float32, kb int, rows []flashRow, sg []int32, j0, jhi int) (bc, kt int) {
	bc = min(flashBc, jhi+1-j0)
	some, all := g.cover(rows, j0, j0+bc)
	if !some {
		return 0, 0
	}
	kt = kb + j0*g.kw
	v.mul(bc, nc, g.HeadDim, k[kt:], g.kw, 1, qt, g.br, st, g.br, mulSet, nil)
	if !all {
		g.mask(st, g.br, rows, sg, j0, bc)
	}
	return bc, kt
}

// mask sets to −inf the scores of Sᵀ (keys j0.. by rows, row stride ld) that
// a row may not see.
func (g *flashGeom) mask(st []float32, ld int, rows []flashRow, sg []int32, j0, bc int) {
	ninf := float32(math.Inf(-1))
	for c, r := range rows {
		if g.exact || sg[r.pos] == 0 {
			for j := j0; j < min(r.lo, j0+bc); j++ {
				st[(j-j0)*ld+c] = ninf
			}
			for j := max(r.hi+1, j0); j < j0+bc; j++ {
				st[(j-j0)*ld+c] = ninf
			}
			continue
		}
		for j := j0; j < j0+bc; j++ {
			if !visible(sg, r.pos, j, g.Window) {
				st[(j-j0)*ld+c] = ninf
			}
		}
	}
}

// packQT writes the rows' query vectors transposed into qt (HeadDim × ld),
// times mul, with zeros in the columns past the rows.
func (g *flashGeom) packQT(v simdVariant, qt []float32, ld int, src []float32, rows []flashRow, mul float32) {
	d := g.HeadDim
	if v == simdAVX2 {
		packAVX2(qt, ld, src, rows, d, mul)
	} else {
		packRef(qt, ld, src, rows, d, mul)
	}
	if len(rows) < ld {
		for l := range d {
			clear(qt[l*ld+len(rows) : (l+1)*ld])
		}
	}
}

// fwdScratch is one forward worker's tiles.
type fwdScratch struct {
	qt, st, o   []float32 // Qᵀ (d × br), Sᵀ then Pᵀ (flashBc × br), O (br × d)
	m, l, alpha [flashMaxBr]float32
	rows        [flashMaxBr]flashRow
}

func flashForward(v simdVariant, p *Pool, out, lse, q, k, vv []float32, seg []int32, s AttentionShape) {
	g := newFlashGeom("FlashAttention", s, len(q), len(k), len(out), len(lse), seg)
	if len(vv) != len(k) {
		panic(fmt.Sprintf("kernels: FlashAttention: v has %d values, k %d", len(vv), len(k)))
	}
	// The G query heads of a kv head are stacked, position-major, so that a
	// tile of rows shares its keys and values (a decoder's G heads fill one
	// tile instead of G mostly empty ones).
	tiles := (g.g*g.tq + g.br - 1) / g.br
	p.For(s.Batch*s.KVHeads*tiles, 1, func(lo, hi int) {
		g := g // this worker's copy: the closure then holds g by value
		var arr [3 * flashTileN]float32
		buf := arr[:]
		if n := 3 * g.tileFloats(); n > len(buf) {
			buf = make([]float32, n)
		}
		n := g.tileFloats()
		sc := fwdScratch{qt: buf[:n], st: buf[n : 2*n], o: buf[2*n : 3*n]}
		for u := lo; u < hi; u++ {
			// Tiles alternate from both ends of a head's rows: a contiguous
			// share of units then holds as many long rows as short ones.
			t := zigzag(u%tiles, tiles)
			bk := u / tiles
			if u+1 < hi {
				g.prefetchForward(out, q, u+1, tiles)
			}
			g.forwardTile(v, &sc, out, lse, q, k, vv, bk/s.KVHeads, bk%s.KVHeads, t)
		}
	})
}

// zigzag orders the tiles of a head from both ends, 0, n−1, 1, n−2, ...:
// a contiguous share of units then holds as many long rows as short ones.
func zigzag(i, n int) int {
	if i%2 == 0 {
		return i / 2
	}
	return n - 1 - i/2
}

// prefetchForward asks for the q and out rows of unit u, which this worker
// runs next: they are read and written once, from memory.
func (g *flashGeom) prefetchForward(out, q []float32, u, tiles int) {
	bk, t := u/tiles, zigzag(u%tiles, tiles)
	b, kh := bk/g.KVHeads, bk%g.KVHeads
	r0 := t * g.br
	r1 := min(r0+g.br, g.g*g.tq) - 1
	i0, i1 := r0/g.g, r1/g.g
	off := (b*g.tq+i0)*g.qw + kh*g.g*g.HeadDim
	prefetchRows(q, off, i1-i0+1, g.qw, g.g*g.HeadDim)
	prefetchRows(out, off, i1-i0+1, g.qw, g.g*g.HeadDim)
}

// forwardTile computes the out rows and lse of tile t of the stacked query
// rows of kv head kh in sequence b.
func (g *flashGeom) forwardTile(v simdVariant, sc *fwdScratch, out, lse, q, k, vv []float32, b, kh, t int) {
	d, br := g.HeadDim, g.br
	r0 := t * br
	rows := sc.rows[:min(br, g.g*g.tq-r0)]
	sg := g.segOf(b)
	rs := g.newRuns(sg)
	for c := range rows {
		i, h := (r0+c)/g.g, kh*g.g+(r0+c)%g.g
		pos := g.Seq - g.tq + i
		lo, hi := g.interval(&rs, pos)
		rows[c] = flashRow{pos: pos, lo: lo, hi: hi, q: (b*g.tq+i)*g.qw + h*d, lse: (b*g.Heads+h)*g.tq + i}
	}
	g.packQT(v, sc.qt, br, q, rows, g.scale*math.Log2E)
	for c := range br {
		sc.m[c], sc.l[c] = float32(math.Inf(-1)), 0
	}
	o := sc.o[:len(rows)*d]
	clear(o)
	kb := b*g.Seq*g.kw + kh*d  // key 0 of this sequence and kv head
	nc := (len(rows) + 7) &^ 7 // columns of Sᵀ worth computing
	jlo, jhi := span(rows)
	for j0 := jlo; j0 <= jhi; j0 += flashBc {
		bc, kt := g.scores(v, sc.st, sc.qt, nc, k, kb, rows, sg, j0, jhi)
		if bc == 0 {
			continue
		}
		v.softmax(sc.st, bc, nc, br, sc.m[:], sc.l[:], sc.alpha[:])
		v.mul(len(rows), d, bc, sc.st, 1, br, vv[kt:], g.kw, o, d, mulScale, sc.alpha[:])
	}
	for c, r := range rows {
		l := sc.l[c]
		lse[r.lse] = sc.m[c]*math.Ln2 + float32(math.Log(float64(l)))
		sc.l[c] = 1 / l
	}
	v.mul(len(rows), d, 0, nil, 0, 0, nil, 0, o, d, mulScale, sc.l[:]) // O·diag(1/l)
	for c, r := range rows {
		copy(out[r.q:r.q+d], o[c*d:(c+1)*d])
	}
}

// bwdScratch is one backward worker's tiles.
type bwdScratch struct {
	qt, dot []float32 // Qᵀ scaled by scale·log2(e), dOᵀ (d × br)
	st, dpt []float32 // Sᵀ then Pᵀ; dPᵀ then dSᵀ (flashBc × br)
	dq      []float32 // dQ accumulator (br × d)
	lse, dd [flashMaxBr]float32
	rows    [flashMaxBr]flashRow
}

func flashBackward(v simdVariant, p *Pool, dq, dk, dv, dout, out, lse, q, k, vv []float32, seg []int32, s AttentionShape) {
	g := newFlashGeom("FlashAttentionBackward", s, len(q), len(k), len(out), len(lse), seg)
	if len(vv) != len(k) || len(dk) != len(k) || len(dv) != len(k) || len(dq) != len(q) || len(dout) != len(q) {
		panic(fmt.Sprintf("kernels: FlashAttentionBackward: lengths q %d dq %d dout %d k %d v %d dk %d dv %d",
			len(q), len(dq), len(dout), len(k), len(vv), len(dk), len(dv)))
	}
	tiles := (g.tq + g.br - 1) / g.br
	p.For(s.Batch*s.KVHeads, 1, func(lo, hi int) {
		g := g
		var arr [5 * flashTileN]float32
		buf := arr[:]
		if n := 5 * g.tileFloats(); n > len(buf) {
			buf = make([]float32, n)
		}
		n := g.tileFloats()
		sc := bwdScratch{qt: buf[:n], dot: buf[n : 2*n], st: buf[2*n : 3*n], dpt: buf[3*n : 4*n], dq: buf[4*n : 5*n]}
		for u := lo; u < hi; u++ {
			b, kh := u/s.KVHeads, u%s.KVHeads
			for j := range g.Seq {
				at := (b*g.Seq+j)*g.kw + kh*g.HeadDim
				clear(dk[at : at+g.HeadDim])
				clear(dv[at : at+g.HeadDim])
			}
			for h := kh * g.g; h < (kh+1)*g.g; h++ {
				for t := range tiles {
					if t+1 < tiles {
						// The next tile's rows, read from memory.
						i0 := (t + 1) * g.br
						off, n := (b*g.tq+i0)*g.qw+h*g.HeadDim, min(g.br, g.tq-i0)
						prefetchRows(q, off, n, g.qw, g.HeadDim)
						prefetchRows(dout, off, n, g.qw, g.HeadDim)
						prefetchRows(out, off, n, g.qw, g.HeadDim)
					}
					g.backwardTile(v, &sc, dq, dk, dv, dout, out, lse, q, k, vv, b, h, t)
				}
			}
		}
	})
}

// backwardTile adds the contributions of query rows t·br.. of head h in
// sequence b to dk and dv, and writes their dq.
func (g *flashGeom) backwardTile(v simdVariant, sc *bwdScratch, dq, dk, dv, dout, out, lse, q, k, vv []float32, b, h, t int) {
	d, br := g.HeadDim, g.br
	kh := h / g.g
	i0 := t * br
	rows := sc.rows[:min(br, g.tq-i0)]
	sg := g.segOf(b)
	rs := g.newRuns(sg)
	for c := range rows {
		i := i0 + c
		pos := g.Seq - g.tq + i
		lo, hi := g.interval(&rs, pos)
		rows[c] = flashRow{pos: pos, lo: lo, hi: hi, q: (b*g.tq+i)*g.qw + h*d, lse: (b*g.Heads+h)*g.tq + i}
	}
	clear(sc.lse[:])
	clear(sc.dd[:])
	for c, r := range rows {
		sc.lse[c] = lse[r.lse] * math.Log2E
		sc.dd[c] = dot(dout[r.q:r.q+d], out[r.q:r.q+d])
	}
	g.packQT(v, sc.qt, br, q, rows, g.scale*math.Log2E)
	g.packQT(v, sc.dot, br, dout, rows, 1)
	dqa := sc.dq[:len(rows)*d]
	clear(dqa)
	q0 := rows[0].q // the rows of q, dout and dq are g.qw apart
	kb := b*g.Seq*g.kw + kh*d
	nc := (len(rows) + 7) &^ 7
	jlo, jhi := span(rows)
	for j0 := jlo; j0 <= jhi; j0 += flashBc {
		bc, kt := g.scores(v, sc.st, sc.qt, nc, k, kb, rows, sg, j0, jhi)
		if bc == 0 {
			continue
		}
		v.expSub(sc.st, bc, nc, br, sc.lse[:])                                             // Pᵀ
		v.mul(bc, d, len(rows), sc.st, br, 1, dout[q0:], g.qw, dv[kt:], g.kw, mulAdd, nil) // dV += Pᵀ·dO
		v.mul(bc, nc, d, vv[kt:], g.kw, 1, sc.dot, br, sc.dpt, br, mulSet, nil)            // dPᵀ = V·dOᵀ
		v.dsoft(sc.st, sc.dpt, bc, nc, br, sc.dd[:], g.scale)                              // dSᵀ
		v.mul(bc, d, len(rows), sc.dpt, br, 1, q[q0:], g.qw, dk[kt:], g.kw, mulAdd, nil)   // dK += dSᵀ·Q
		v.mul(len(rows), d, bc, sc.dpt, 1, br, k[kt:], g.kw, dqa, d, mulAdd, nil)          // dQ += dS·K
	}
	for c, r := range rows {
		copy(dq[r.q:r.q+d], dqa[c*d:(c+1)*d])
	}
}

// checkTile panics unless the operands of a tile product cover what it reads
// and writes (the assembly does not check).
func checkTile(m, n, k, na, ars, acs, nb, ldb, nc, ldc, mode, nrs int) {
	ok := ars >= 0 && acs >= 0 && ldb >= 0 && ldc >= n && (m-1)*ldc+n <= nc && (mode != mulScale || nrs >= m)
	if k > 0 {
		ok = ok && (m-1)*ars+(k-1)*acs < na && (k-1)*ldb+n <= nb
	}
	if !ok {
		panic(fmt.Sprintf("kernels: flash tile product (%d×%d×%d) out of its operands", m, n, k))
	}
}

// checkVec panics unless s holds a (rows × cols) tile of row stride ld with
// cols a multiple of 8, and each vector holds cols values.
func checkVec(s []float32, rows, cols, ld int, vecs ...[]float32) {
	ok := cols%8 == 0 && ld >= cols && (rows-1)*ld+cols <= len(s)
	for _, v := range vecs {
		ok = ok && len(v) >= cols
	}
	if !ok {
		panic(fmt.Sprintf("kernels: flash tile (%d×%d, stride %d) out of its operands", rows, cols, ld))
	}
}
