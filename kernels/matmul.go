package kernels

import (
	"fmt"
	"sync/atomic"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
)

// The three products of training, packed and cache-blocked in the manner of
// Goto and van de Geijn (BLIS): the frozen weight is widened to float32 panels
// of 16 columns while packing (kc×16 values, kept in L1 by the micro-kernel);
// activations are read in place, six rows at a time, from L2; the product of a
// tile (6×16 for AVX2) is a register-blocked FMA micro-kernel (kernelSet.mul).

// Cache blocks, in elements. The micro-kernel computes an mr×nr tile of C (the
// variant's); B is packed kc×nc at a time; A is walked mc rows at a time so
// that the rows it touches stay in L2 while B's panels pass through L1.

// Measured on Zen 3 (L1 32 KiB, L2 512 KiB): a kc×nc block of B of about
// 300 KiB and 48 rows of A together in L2 beat the classic L3-sized B block
// (nc 2048, mc 144) by 5-15% at the training shapes.
const (
	kcMax = 320
	mcMax = 48
	ncMax = 256
)

// Linear computes y = x·Wᵀ + bias, as torch.nn.Linear does.
// x is (M, K), w is (N, K), bias is nil or (N), y is (M, N).
func Linear(p *Pool, y, x []float32, m int, w Matrix, bias []float32) {
	active.linear(p, y, x, m, w, bias)
}

// LinearDX computes dx = dy·W, the gradient of Linear with respect to x, or
// adds it to dx when accumulate is set. dy is (M, N), w is (N, K), dx is (M, K).
func LinearDX(p *Pool, dx, dy []float32, m int, w Matrix, accumulate bool) {
	active.linearDX(p, dx, dy, m, w, accumulate)
}

// LinearDW computes dw = alpha·dyᵀ·x, the gradient of Linear with respect to
// its weight, or adds it to dw when accumulate is set: the LoRA A and B
// gradients. dy is (M, N), x is (M, K), dw is (N, K).
func LinearDW(p *Pool, dw, dy, x []float32, m, n, k int, alpha float32, accumulate bool) {
	active.linearDW(p, dw, dy, x, m, n, k, alpha, accumulate)
}

func (ks *kernelSet) linear(p *Pool, y, x []float32, m int, w Matrix, bias []float32) {
	n, k := w.Rows, w.Cols
	need("Linear", "x", x, m*k)
	need("Linear", "y", y, m*n)
	if bias != nil {
		need("Linear", "bias", bias, n)
	}
	p.gemm(gemm{ks: ks, m: m, n: n, k: k, a: x, rsA: k, ksA: 1, w: w, trans: true, c: y, ldc: n, alpha: 1, bias: bias, dot: m <= dotMaxRows})
}

func (ks *kernelSet) linearDX(p *Pool, dx, dy []float32, m int, w Matrix, accumulate bool) {
	n, k := w.Rows, w.Cols
	need("LinearDX", "dy", dy, m*n)
	need("LinearDX", "dx", dx, m*k)
	p.gemm(gemm{ks: ks, m: m, n: k, k: n, a: dy, rsA: n, ksA: 1, w: w, c: dx, ldc: k, alpha: 1, acc: accumulate})
}

func (ks *kernelSet) linearDW(p *Pool, dw, dy, x []float32, m, n, k int, alpha float32, accumulate bool) {
	need("LinearDW", "dy", dy, m*n)
	need("LinearDW", "x", x, m*k)
	need("LinearDW", "dw", dw, n*k)
	xm := Matrix{DType: dtype.F32, Rows: m, Cols: k, f32: x[:m*k]}
	p.gemm(gemm{ks: ks, m: n, n: k, k: m, a: dy, rsA: 1, ksA: n, w: xm, c: dw, ldc: k, alpha: alpha, acc: accumulate})
}

// need panics when a slice is shorter than its shape says: a caller's bug, as
// gonum's BLAS treats it.
func need(fn, name string, v []float32, n int) {
	if len(v) < n {
		panic(fmt.Sprintf("kernels: %s: %s has %d values, the shape needs %d", fn, name, len(v), n))
	}
}

// A gemm is one product C = alpha·A·B (+ C when acc, + bias when set) with C
// (m, n), rows ldc apart; A(i, l) = a[i·rsA + l·ksA]; B(l, j) = W(j, l) when
// trans, else W(l, j); the reduction runs over l < k.
type gemm struct {
	ks       *kernelSet
	m, n, k  int
	a        []float32
	rsA, ksA int
	w        Matrix
	trans    bool
	c        []float32
	ldc      int
	alpha    float32
	acc      bool
	bias     []float32 // nil or n values; only with !acc
	tm       int       // blocks of rows the workers share out, or 1
	chunk    int       // else the columns of C a worker takes at a time
	chunks   int       // how many chunks there are
	next     int64     // the next chunk to take (atomic)
	dot      bool      // few rows: dot products against W in place (dotBlock)
}

// gemm runs g on the pool's workers, or on the caller when the pool is nil,
// busy, or the product too small to share.
func (p *Pool) gemm(g gemm) {
	if g.m <= 0 || g.n <= 0 {
		return
	}
	if g.k <= 0 {
		g.fillBias()
		return
	}
	workers := g.split(p.Threads())
	if workers > 1 && p.acquire() {
		// The pool's slot holds the job so that handing it to the workers
		// allocates nothing; acquire made this goroutine its only user.
		p.job = g
		p.dispatch(workers, &p.job)
		p.job = gemm{}
		p.busy.Store(false)
		return
	}
	for w := range workers {
		g.part(p, w)
	}
}

// run is the pool's entry point: workers [lo, hi) of the split.
func (g *gemm) run(p *Pool, lo, hi int) {
	for w := lo; w < hi; w++ {
		g.part(p, w)
	}
}

// fillBias is the product with an empty reduction: C = bias, 0, or unchanged.
func (g *gemm) fillBias() {
	if g.acc {
		return
	}
	for i := range g.m {
		row := g.c[i*g.ldc : i*g.ldc+g.n]
		if g.bias != nil {
			copy(row, g.bias)
		} else {
			clear(row)
		}
	}
}

// split divides C among threads and returns how many workers share it.
// Splitting across columns duplicates nothing (A is read in place): the
// columns are cut into chunks, a few per worker, that the workers take in
// turn, so that one slowed by another process does less of them. Splitting
// down rows (tm blocks) makes every worker pack all of B; it is chosen when
// there are too few panels of columns for the threads to share evenly.
func (g *gemm) split(threads int) int {
	mr, nr := g.ks.mr, g.ks.nr
	unit := nr // columns are taken in whole panels, or rows of W for dot
	if g.dot {
		unit = 4
	}
	g.tm, g.chunk, g.chunks = 1, roundUp(g.n, unit), 1
	if threads <= 1 || g.m*g.n*g.k < minSharedWork {
		return 1
	}
	units, tiles := ceilDiv(g.n, unit), ceilDiv(g.m, mr)
	if !g.dot {
		// Work of the busiest worker, in multiply-adds, with packing B
		// counted at packCost multiply-adds an element.
		const packCost = 8
		colWork := ceilDiv(units, threads) * nr * tiles * mr * g.k
		rowWork := units*nr*ceilDiv(tiles, threads)*mr*g.k + packCost*units*nr*g.k
		if units < threads || colWork > rowWork {
			g.tm = min(threads, tiles)
			return g.tm
		}
	}
	perChunk := ncMax / unit // a chunk is at most one block of packed B
	if g.dot {
		perChunk = dotChunk / unit
	}
	chunks := threads * ceilDiv(units, threads*perChunk)
	g.chunk = ceilDiv(units, chunks) * unit
	g.chunks = ceilDiv(g.n, g.chunk)
	return min(threads, g.chunks)
}

// minSharedWork is the smallest product (multiply-adds) worth waking the pool
// for: below it the hand-off costs more than the second core saves.
const minSharedWork = 1 << 16

// part is worker w's share: its block of rows, or the column chunks it takes.
func (g *gemm) part(p *Pool, w int) {
	buf := p.scratch(g.scratchSize())
	defer p.release(buf)
	if g.dot {
		for c := g.take(); c < g.chunks; c = g.take() {
			g.dotBlock((*[12]float32)(buf), buf[12:], c*g.chunk, min((c+1)*g.chunk, g.n))
		}
		return
	}
	if g.tm > 1 {
		rows := ceilDiv(ceilDiv(g.m, g.ks.mr), g.tm) * g.ks.mr
		if i0 := w * rows; i0 < g.m {
			g.block(buf, i0, min(i0+rows, g.m), 0, g.n)
		}
		return
	}
	for c := g.take(); c < g.chunks; c = g.take() {
		g.block(buf, 0, g.m, c*g.chunk, min((c+1)*g.chunk, g.n))
	}
}

// take hands out the next column chunk.
func (g *gemm) take() int { return int(atomic.AddInt64(&g.next, 1) - 1) }

// scratchSize is the float32s a worker packs into: a kc×nc block of B, the
// zero-padded rows of A's last tile, one tile of C, and for a quantized W
// the rows it widens before packing (qtmpSize).
func (g *gemm) scratchSize() int {
	if g.dot {
		if g.w.quantized() { // and the rows dot3x4Quant widens
			return 12 + dotQuantScratch
		}
		return 12 // one 3×4 block of dot products
	}
	kcb, mr, nr := kcBlock(g.k), g.ks.mr, g.ks.nr
	ncb := min(ncMax, roundUp(g.chunk, nr))
	return kcb*ncb + mr*kcb + mr*nr + g.qtmpSize(kcb, ncb)
}

// qtmpSize is the float32s a quantized W is widened into before packing: one
// panel's nr rows of kc values (Linear), or the kc×nc block of B (LinearDX,
// whose panels cut across blocks, so the block is widened once for all).
func (g *gemm) qtmpSize(kcb, ncb int) int {
	switch {
	case !g.w.quantized():
		return 0
	case g.trans:
		return g.ks.nr*kcb + maxBlock
	}
	return kcb*ncb + maxBlock
}

// maxBlock is the most values a block of any format holds: the scratch
// dequantRow widens a partial block into.
const maxBlock = 256

// block computes C[i0:i1, j0:j1], the loops of Goto's algorithm: for each
// nc-column block, for each kc-slice of the reduction, pack B once, then run
// the micro-kernel over every mc-row block of A against every panel.
func (g *gemm) block(buf []float32, i0, i1, j0, j1 int) {
	kcb, mr, nr := kcBlock(g.k), g.ks.mr, g.ks.nr
	ncb := min(ncMax, roundUp(g.chunk, nr))
	mcb := max(mr, mcMax-mcMax%mr)
	bp := buf[:kcb*ncb]
	apad := buf[kcb*ncb : kcb*ncb+mr*kcb]
	tile := buf[kcb*ncb+mr*kcb : kcb*ncb+mr*kcb+mr*nr]
	qtmp := buf[kcb*ncb+mr*kcb+mr*nr:]
	for jc := j0; jc < j1; jc += ncb {
		nc := min(ncb, j1-jc)
		for pc := 0; pc < g.k; pc += kcb {
			kc := min(kcb, g.k-pc)
			g.packB(bp, qtmp, pc, kc, jc, nc)
			// Tiles before the first slice start from the bias, or zero.
			first := pc == 0
			acc := !first || g.acc || g.bias != nil
			for ic := i0; ic < i1; ic += mcb {
				mc := min(mcb, i1-ic)
				full := mc - mc%mr
				if full < mc { // the last tile's rows, padded with zeros
					g.padA(apad, ic+full, mc-full, pc, kc)
				}
				for jr := 0; jr < nc; jr += nr {
					cols := min(nr, nc-jr)
					bpan := bp[jr*kc : (jr+nr)*kc]
					for ir := 0; ir < mc; ir += mr {
						rows := min(mr, mc-ir)
						a, rsA, ksA := g.a[(ic+ir)*g.rsA+pc*g.ksA:], g.rsA, g.ksA
						if rows < mr {
							a, rsA, ksA = apad, kc, 1
						}
						c := g.c[(ic+ir)*g.ldc+jc+jr:]
						if rows == mr && cols == nr {
							if first && g.bias != nil {
								for i := range mr {
									copy(c[i*g.ldc:i*g.ldc+nr], g.bias[jc+jr:])
								}
							}
							g.ks.mul(kc, a, rsA, ksA, bpan, c, g.ldc, g.alpha, acc)
							continue
						}
						// A partial tile goes through a copy.
						if acc {
							for i := range rows {
								ti := tile[i*nr : i*nr+cols]
								if first && g.bias != nil {
									copy(ti, g.bias[jc+jr:])
								} else {
									copy(ti, c[i*g.ldc:])
								}
							}
						}
						g.ks.mul(kc, a, rsA, ksA, bpan, tile, nr, g.alpha, acc)
						for i := range rows {
							copy(c[i*g.ldc:i*g.ldc+cols], tile[i*nr:])
						}
					}
				}
			}
		}
	}
}

// dotChunk is the most rows of W a worker takes at a time on the dot path.
const dotChunk = 256

// dotMaxRows is the most rows of x for which Linear takes dot products against
// W in place: below it packing W would cost more than the product.
const dotMaxRows = 16

// dotBlock computes y[:, j0:j1] of Linear (C = x·Wᵀ + bias) as dot products
// of three rows of x with four rows of W at a time; W is read in blocks that
// stay in L2 while every group of three rows passes over them.
func (g *gemm) dotBlock(out *[12]float32, qbuf []float32, j0, j1 int) {
	k := g.k
	block := max(4, (256<<10)/int(max(1, g.w.Bytes()/int64(max(1, g.w.Rows))))&^3)
	for jb := j0; jb < j1; jb += block {
		je := min(jb+block, j1)
		for i := 0; i < g.m; i += 3 {
			rows := min(3, g.m-i)
			x0, x1, x2 := g.a[i*k:], g.a[min(i+1, g.m-1)*k:], g.a[min(i+2, g.m-1)*k:]
			j := jb
			for ; j+4 <= je; j += 4 {
				if g.w.quantized() {
					dot3x4Quant(g.ks, k, x0, x1, x2, g.w, j, out, qbuf)
				} else {
					g.ks.dot3x4(k, x0, x1, x2, g.w, j, out)
				}
				for r := range rows {
					c := g.c[(i+r)*g.ldc+j : (i+r)*g.ldc+j+4]
					for jj := range c {
						c[jj] = out[4*r+jj]
						if g.bias != nil {
							c[jj] += g.bias[j+jj]
						}
					}
				}
			}
			for ; j < je; j++ { // the last rows of an N not a multiple of 4
				for r := range rows {
					v := dotRow(g.a[(i+r)*k:(i+r+1)*k], g.w, j, qbuf)
					if g.bias != nil {
						v += g.bias[j]
					}
					g.c[(i+r)*g.ldc+j] = v
				}
			}
		}
	}
}

// dotRow is x·W(j, :); a quantized W is widened into qbuf
// (dotQuantScratch values) a chunk at a time.
func dotRow(x []float32, w Matrix, j int, qbuf []float32) float32 {
	var s float32
	row := j * w.Cols
	if w.quantized() {
		for l0 := 0; l0 < len(x); l0 += dotQuantChunk {
			v := qbuf[:min(dotQuantChunk, len(x)-l0)]
			dequantRow(quant.Dequantize, w, j, l0, v, nil) // whole blocks: no scratch
			for l, f := range v {
				s += x[l0+l] * f
			}
		}
		return s
	}
	switch w.DType {
	case dtype.F32:
		for l, v := range w.f32[row : row+len(x)] {
			s += x[l] * v
		}
	case dtype.BF16:
		for l, u := range w.u16[row : row+len(x)] {
			s += x[l] * dtype.BF16ToF32(u)
		}
	case dtype.F16:
		for l, u := range w.u16[row : row+len(x)] {
			s += x[l] * dtype.F16ToF32(u)
		}
	}
	return s
}

// packB packs B(pc:pc+kc, jc:jc+nc) as panels of 16 columns, the last one
// padded with zeros: panel q holds columns jc+16q… at bp[16q·kc:]. A
// quantized W is first widened into qtmp (packQuant).
func (g *gemm) packB(bp, qtmp []float32, pc, kc, jc, nc int) {
	nr := g.ks.nr
	if g.w.quantized() {
		g.packQuant(bp, qtmp, pc, kc, jc, nc)
		return
	}
	for jr := 0; jr < nc; jr += nr {
		dst := bp[jr*kc : (jr+nr)*kc]
		cols := min(nr, nc-jr)
		switch {
		case g.trans && cols == nr:
			g.ks.packT(dst, g.w, jc+jr, pc, kc)
		case g.trans:
			packTRef(dst, nr, g.w, jc+jr, cols, pc, kc)
		case cols == nr:
			g.ks.packN(dst, g.w, pc, kc, jc+jr)
		default:
			packNRef(dst, nr, g.w, pc, kc, jc+jr, cols)
		}
	}
}

// padA copies rows [i0, i0+rows) of A(:, pc:pc+kc) into the mr×kc dst, rows
// beyond zero, so that a partial tile reads nothing past A.
func (g *gemm) padA(dst []float32, i0, rows, pc, kc int) {
	for i := range g.ks.mr {
		di := dst[i*kc : (i+1)*kc]
		if i >= rows {
			clear(di)
			continue
		}
		base := (i0+i)*g.rsA + pc*g.ksA
		if g.ksA == 1 {
			copy(di, g.a[base:base+kc])
			continue
		}
		for l := range di {
			di[l] = g.a[base+l*g.ksA]
		}
	}
}

// kcBlock is the reduction slice: at most kcMax, the slices of equal length
// (a multiple of 8, which the packers take whole).
func kcBlock(k int) int {
	return min(roundUp(ceilDiv(k, ceilDiv(k, kcMax)), 8), k)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// packQuant is packB for a quantized W: the variant's dequantizer widens the
// blocks the panels need into qtmp, and the variant's float32 packers pack
// that, so a packed panel equals the one of the dequantized matrix bit for
// bit. For Linear each panel's nr rows of W(j, pc:pc+kc) are widened in
// turn; for LinearDX the rows W(pc+l, jc:jc+nc) once for the whole block.
func (g *gemm) packQuant(bp, qtmp []float32, pc, kc, jc, nc int) {
	nr := g.ks.nr
	if g.trans {
		for jr := 0; jr < nc; jr += nr {
			rows := min(nr, nc-jr)
			for j := range rows {
				dequantRow(g.ks.dequant, g.w, jc+jr+j, pc, qtmp[j*kc:(j+1)*kc], qtmp[nr*kc:])
			}
			view := Matrix{DType: dtype.F32, Rows: rows, Cols: kc, f32: qtmp[:rows*kc]}
			dst := bp[jr*kc : (jr+nr)*kc]
			if rows == nr {
				g.ks.packT(dst, view, 0, 0, kc)
			} else {
				packTRef(dst, nr, view, 0, rows, 0, kc)
			}
		}
		return
	}
	for l := range kc {
		dequantRow(g.ks.dequant, g.w, pc+l, jc, qtmp[l*nc:(l+1)*nc], qtmp[kc*nc:])
	}
	view := Matrix{DType: dtype.F32, Rows: kc, Cols: nc, f32: qtmp[:kc*nc]}
	for jr := 0; jr < nc; jr += nr {
		dst := bp[jr*kc : (jr+nr)*kc]
		if cols := min(nr, nc-jr); cols == nr {
			g.ks.packN(dst, view, 0, kc, jr)
		} else {
			packNRef(dst, nr, view, 0, kc, jr, cols)
		}
	}
}

// dotQuantChunk is the values of a quantized row the dot path widens at a
// time: a multiple of every block, small enough for L1.
const dotQuantChunk = 512

// dotQuantScratch is the float32s dot3x4Quant needs: four widened chunks
// and a 3×4 block of partial sums.
const dotQuantScratch = 4*dotQuantChunk + 12

// dot3x4Quant is kernelSet.dot3x4 for a quantized W: four rows are widened a
// chunk at a time by the variant's dequantizer (into qbuf, dotQuantScratch
// values) and the variant's float32 dot3x4 takes each chunk; the chunks'
// sums are added in order.
func dot3x4Quant(ks *kernelSet, k int, x0, x1, x2 []float32, w Matrix, j0 int, out *[12]float32, qbuf []float32) {
	buf, part := qbuf[:4*dotQuantChunk], (*[12]float32)(qbuf[4*dotQuantChunk:])
	*out = [12]float32{}
	for l0 := 0; l0 < k; l0 += dotQuantChunk {
		n := min(dotQuantChunk, k-l0)
		for j := range 4 {
			dequantRow(ks.dequant, w, j0+j, l0, buf[j*n:(j+1)*n], nil) // whole blocks
		}
		view := Matrix{DType: dtype.F32, Rows: 4, Cols: n, f32: buf[:4*n]}
		ks.dot3x4(n, x0[l0:l0+n], x1[l0:l0+n], x2[l0:l0+n], view, 0, part)
		for i, v := range part {
			out[i] += v
		}
	}
}
