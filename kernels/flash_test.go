package kernels

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// simdVariants is every variant this machine can run, the portable one first.
func simdVariants() []simdVariant {
	var vs []simdVariant
	for _, ks := range availableVariants() {
		vs = append(vs, ks.simd)
	}
	return vs
}

// relErr is max|a−b| / max|b|: the error relative to the tensor's scale,
// which is taken as at least 0.1 (the inputs are of order 1) so that a tensor
// that is zero but for rounding (dq and dk of one-key rows: T = 1, padding)
// is judged by its absolute error.
func relErr(a, b []float32) float64 {
	var d, m float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = max(m, math.Abs(float64(b[i])))
	}
	return d / max(m, 0.1)
}

// exp2f, and the exponential of each variant's expSub, is 2^x within 2 ulp
// over the normal range, exactly 1 at 0 and powers of 2 at integers, and 0
// at −Inf and below the smallest normal.
func TestExp2f(t *testing.T) {
	exact := []struct{ x, want float32 }{{0, 1}, {1, 2}, {-1, 0.5}, {10, 1024}, {-126, 0x1p-126}, {float32(math.Inf(-1)), 0}, {-127.2, 0}}
	var xs []float32
	for _, c := range exact {
		xs = append(xs, c.x)
	}
	for x := -126.0; x <= 127; x += 0.0137 {
		xs = append(xs, float32(x))
	}
	check := func(name string, got []float32) {
		for i, c := range exact {
			if got[i] != c.want {
				t.Errorf("%s(%g) = %g, want %g", name, c.x, got[i], c.want)
			}
		}
		worst := 0.0
		for i, x := range xs[len(exact):] {
			want := math.Exp2(float64(x))
			worst = max(worst, math.Abs(float64(got[len(exact)+i])-want)/want)
		}
		if worst > 2.4e-7 {
			t.Errorf("%s: worst relative error %g", name, worst)
		}
	}
	got := make([]float32, len(xs))
	for i, x := range xs {
		got[i] = exp2f(x)
	}
	check("exp2f", got)
	for _, v := range simdVariants() {
		n := len(xs) &^ 7
		got := slices.Clone(xs[:n])
		v.expSub(got, n/8, 8, 8, make([]float32, 8))
		got = append(got, xs[n:]...)
		for i := n; i < len(xs); i++ {
			got[i] = exp2f(xs[i]) // the last few, past whole vectors
		}
		check(v.String()+" expSub", got)
	}
}

// Each tile helper of each variant against the portable one and, for the
// product, against float64 sums; shapes cover every panel height (1-6 and
// more), column counts that are and are not multiples of 8 and 16, k = 0,
// strided and transposed A, and the three modes.
func TestFlashTileHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, v := range simdVariants() {
		for _, m := range []int{1, 2, 3, 4, 5, 6, 7, 13} {
			for _, n := range []int{8, 16, 20, 24, 40, 64, 3} {
				for _, k := range []int{0, 1, 5, 64} {
					for mode := mulSet; mode <= mulScale; mode++ {
						for _, trans := range []bool{false, true} {
							ars, acs := k+3, 1
							if trans {
								ars, acs = 1, m+2
							}
							a := randF32(r, max(m*ars+k*acs, 1), 1)
							ldb, ldc := n+5, n+1
							bm := randF32(r, max(k*ldb, 1), 1)
							c0 := randF32(r, m*ldc, 1)
							rs := randF32(r, m, 1)
							c := slices.Clone(c0)
							v.mul(m, n, k, a, ars, acs, bm, ldb, c, ldc, mode, rs)
							for i := range m {
								for j := range n {
									want := 0.0
									switch mode {
									case mulAdd:
										want = float64(c0[i*ldc+j])
									case mulScale:
										want = float64(rs[i]) * float64(c0[i*ldc+j])
									}
									for l := range k {
										want += float64(a[i*ars+l*acs]) * float64(bm[l*ldb+j])
									}
									if got := float64(c[i*ldc+j]); math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
										t.Fatalf("%v mul m%d n%d k%d mode %d trans %v: C[%d][%d] = %g, want %g", v, m, n, k, mode, trans, i, j, got, want)
									}
								}
								if ldc > n && c[i*ldc+n] != c0[i*ldc+n] {
									t.Fatalf("%v mul m%d n%d: wrote past column n", v, m, n)
								}
							}
						}
					}
				}
			}
		}
		for _, rows := range []int{1, 3, 64} {
			for _, cols := range []int{8, 64} {
				ld := cols + 8
				s0 := randF32(r, rows*ld, 8)
				for i := range s0 {
					if r.IntN(5) == 0 {
						s0[i] = float32(math.Inf(-1)) // masked
					}
				}
				for c := range cols { // one column wholly masked
					if c == 3 {
						for j := range rows {
							s0[j*ld+c] = float32(math.Inf(-1))
						}
					}
				}
				m0, l0 := randF32(r, cols, 4), randF32(r, cols, 2)
				m0[5] = float32(math.Inf(-1))
				l0[5] = 0
				want, got := slices.Clone(s0), slices.Clone(s0)
				wm, wl, wa := slices.Clone(m0), slices.Clone(l0), make([]float32, cols)
				gm, gl, ga := slices.Clone(m0), slices.Clone(l0), make([]float32, cols)
				softmaxRef(want, rows, cols, ld, wm, wl, wa)
				v.softmax(got, rows, cols, ld, gm, gl, ga)
				for _, p := range [][2][]float32{{got, want}, {gm, wm}, {gl, wl}, {ga, wa}} {
					if e := relErr(p[0], p[1]); e > 3e-7 || slices.ContainsFunc(p[0], func(x float32) bool { return x != x }) {
						t.Fatalf("%v softmax %dx%d: differs by %g or has NaN", v, rows, cols, e)
					}
				}
				if ga[3] != 0 && math.IsInf(float64(m0[3]), -1) || gl[5] < 0 {
					t.Fatalf("%v softmax: masked column: alpha %g l %g", v, ga[3], gl[5])
				}
				sub := randF32(r, cols, 4)
				want, got = slices.Clone(s0), slices.Clone(s0)
				expSubRef(want, rows, cols, ld, sub)
				v.expSub(got, rows, cols, ld, sub)
				if e := relErr(got, want); e > 3e-7 {
					t.Fatalf("%v expSub %dx%d: differs by %g", v, rows, cols, e)
				}
				p, dp0, dd := randF32(r, rows*ld, 1), randF32(r, rows*ld, 1), randF32(r, cols, 1)
				want, got = slices.Clone(dp0), slices.Clone(dp0)
				dsoftRef(p, want, rows, cols, ld, dd, 0.125)
				v.dsoft(p, got, rows, cols, ld, dd, 0.125)
				if e := relErr(got, want); e > 1e-7 {
					t.Fatalf("%v dsoft %dx%d: differs by %g", v, rows, cols, e)
				}
			}
		}
	}
}

// The query transpose of each variant equals the portable one for row
// counts and widths that are and are not multiples of 8, rows in any order.
func TestFlashPack(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, v := range simdVariants() {
		for _, n := range []int{1, 7, 8, 13, 64} {
			for _, d := range []int{4, 8, 20, 64} {
				src := randF32(r, 100*d, 1)
				rows := make([]flashRow, n)
				for i := range rows {
					rows[i].q = r.IntN(99*d + 1)
				}
				ld := n + 3
				want, got := make([]float32, d*ld), make([]float32, d*ld)
				packRef(want, ld, src, rows, d, 0.5)
				var g flashGeom
				g.HeadDim = d
				g.packQT(v, got, ld, src, rows, 0.5)
				for l := range d {
					for c := range n {
						if w := src[rows[c].q+l] * 0.5; got[l*ld+c] != w || want[l*ld+c] != w {
							t.Fatalf("%v pack n%d d%d: qt[%d][%d] = %g (ref %g), want %g", v, n, d, l, c, got[l*ld+c], want[l*ld+c], w)
						}
					}
					for c := n; c < ld; c++ {
						if got[l*ld+c] != 0 {
							t.Fatalf("%v pack n%d d%d: padding column %d not zero", v, n, d, c)
						}
					}
				}
			}
		}
	}
}

// flashCase is one attention problem; segKind is "one" (nil seg), "packed"
// (several examples then padding), "pad" (a row that is all padding after
// one example) or "mixed" (ids that recur: not runs, masked key by key).
type flashCase struct {
	b, t, h, kv, d, window int
	segKind                string
}

func (c flashCase) String() string {
	return fmt.Sprintf("B%d_T%d_H%d_KV%d_d%d_w%d_%s", c.b, c.t, c.h, c.kv, c.d, c.window, c.segKind)
}

func (c flashCase) shape() AttentionShape {
	return AttentionShape{Batch: c.b, Seq: c.t, Heads: c.h, KVHeads: c.kv, HeadDim: c.d, Window: c.window}
}

// segs returns the ids for the flash kernel (nil for one segment) and for the
// reference, which needs them spelled out.
func (c flashCase) segs(r *rand.Rand) (flash, ref []int32) {
	ref = make([]int32, c.b*c.t)
	for b := range c.b {
		row := ref[b*c.t : (b+1)*c.t]
		switch c.segKind {
		case "one":
			for i := range row {
				row[i] = 1
			}
		case "packed", "pad":
			id, left := int32(1), 1+r.IntN(max(c.t/3, 1))
			end := c.t - c.t/5 // padding after
			if c.segKind == "pad" {
				end = min(c.t, 1+c.t/4)
			}
			for i := range row {
				if i >= end {
					break
				}
				if left == 0 {
					id, left = id+1, 1+r.IntN(max(c.t/3, 1))
				}
				row[i] = id
				left--
			}
		case "mixed":
			for i := range row {
				row[i] = int32(1 + (i/3)%3)
			}
			row[len(row)-1] = 0
		}
	}
	if c.segKind == "one" {
		return nil, ref
	}
	return ref, ref
}

// flashCases covers B 1-2, T 1 to 512, H/KV 1/1, 4/2, 9/3, 14/2, HeadDim 64,
// 24 and 20 (not a multiple of 8), each segment kind, window on and off,
// varying the cheap dimensions together so that the reference stays quick.
func flashCases() []flashCase {
	var cs []flashCase
	hkv := [][2]int{{1, 1}, {4, 2}, {9, 3}, {14, 2}}
	ds := []int{64, 24, 20}
	kinds := []string{"one", "packed", "pad", "mixed"}
	i := 0
	for _, t := range []int{1, 7, 64, 65, 130} {
		for _, hk := range hkv {
			for _, kind := range kinds {
				w := 0
				if i%3 == 1 {
					w = 1 + t/4
				}
				cs = append(cs, flashCase{b: 1 + i%2, t: t, h: hk[0], kv: hk[1], d: ds[i%3], window: w, segKind: kind})
				i++
			}
		}
	}
	cs = append(cs,
		flashCase{b: 2, t: 512, h: 4, kv: 2, d: 64, segKind: "packed"},
		flashCase{b: 1, t: 512, h: 9, kv: 3, d: 64, window: 100, segKind: "one"},
		flashCase{b: 1, t: 300, h: 14, kv: 2, d: 24, segKind: "mixed"},
		flashCase{b: 1, t: 9, h: 2, kv: 1, d: 520, segKind: "packed"}, // tiles past the stack arrays
	)
	return cs
}

// flashData is the inputs of one problem; refSeg spells out the segment ids
// that seg (nil for one segment) stands for, as the reference needs them.
type flashData struct {
	s             AttentionShape
	q, k, v, dout []float32
	seg, refSeg   []int32
	qLen, kvLen   int
}

// outputs returns zeroed out, lse, dq, dk and dv for the problem.
func (f *flashData) outputs() (out, lse, dq, dk, dv []float32) {
	return make([]float32, f.qLen), make([]float32, f.s.Batch*f.s.Heads*f.s.Seq),
		make([]float32, f.qLen), make([]float32, f.kvLen), make([]float32, f.kvLen)
}

func newFlashData(r *rand.Rand, c flashCase) *flashData {
	s := c.shape()
	f := &flashData{s: s, qLen: c.b * c.t * c.h * c.d, kvLen: c.b * c.t * c.kv * c.d}
	f.q, f.k, f.v = randF32(r, f.qLen, 1), randF32(r, f.kvLen, 1), randF32(r, f.kvLen, 1)
	f.dout = randF32(r, f.qLen, 1)
	f.seg, f.refSeg = c.segs(r)
	return f
}

// naiveLse is log Σ_j exp(q·k_j·scale) over the keys row i of head h sees, in float64.
func naiveLse(q, k []float32, seg []int32, s AttentionShape, b, h, i int) float64 {
	qw, kw, d := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim, s.HeadDim
	kh := h / (s.Heads / s.KVHeads)
	sg := seg[b*s.Seq : (b+1)*s.Seq]
	var xs []float64
	for j := 0; j <= i; j++ {
		if !visible(sg, i, j, s.Window) {
			continue
		}
		dotv := 0.0
		for l := range d {
			dotv += float64(q[(b*s.Seq+i)*qw+h*d+l]) * float64(k[(b*s.Seq+j)*kw+kh*d+l])
		}
		xs = append(xs, dotv/math.Sqrt(float64(d)))
	}
	m := slices.Max(xs)
	sum := 0.0
	for _, x := range xs {
		sum += math.Exp(x - m)
	}
	return m + math.Log(sum)
}

// FlashAttention and FlashAttentionBackward, each variant, agree with
// AttentionForward and AttentionBackward (and lse with a float64 sum) within
// 1e-5 of each tensor's scale, and each variant agrees with the portable one.
func TestFlashMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range flashCases() {
		t.Run(c.String(), func(t *testing.T) {
			f := newFlashData(r, c)
			s := f.s
			refOut, _, rdq, rdk, rdv := f.outputs()
			AttentionForward(refOut, f.q, f.k, f.v, f.refSeg, s)
			AttentionBackward(rdq, rdk, rdv, f.dout, refOut, f.q, f.k, f.v, f.refSeg, s)
			var first [5][]float32
			for vi, v := range simdVariants() {
				out, lse, dq, dk, dv := f.outputs()
				flashForward(v, nil, out, lse, f.q, f.k, f.v, f.seg, s)
				flashBackward(v, nil, dq, dk, dv, f.dout, out, lse, f.q, f.k, f.v, f.seg, s)
				got := [5][]float32{out, lse, dq, dk, dv}
				for i, p := range [][2][]float32{{out, refOut}, {dq, rdq}, {dk, rdk}, {dv, rdv}} {
					if e := relErr(p[0], p[1]); e > 1e-5 || e != e {
						t.Errorf("%v: %s differs from the reference by %g", v, []string{"out", "dq", "dk", "dv"}[i], e)
					}
				}
				worst := 0.0
				for b := range c.b {
					for h := range c.h {
						for i := range c.t {
							want := naiveLse(f.q, f.k, f.refSeg, s, b, h, i)
							worst = max(worst, math.Abs(float64(lse[(b*c.h+h)*c.t+i])-want)/(1+math.Abs(want)))
						}
					}
				}
				if worst > 1e-6 {
					t.Errorf("%v: lse differs by %g", v, worst)
				}
				if vi == 0 {
					first = got
					continue
				}
				for i := range got {
					if e := relErr(got[i], first[i]); e > 1e-5 {
						t.Errorf("%v: %s differs from %v by %g", v, []string{"out", "lse", "dq", "dk", "dv"}[i], simdRef, e)
					}
				}
			}
		})
	}
}

// The results are bitwise the same on 1, 2 and 3 threads (and no pool), so
// that resuming a run on another thread count changes nothing.
func TestFlashThreadsBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	pools := []*Pool{nil, NewPool(1), NewPool(2), NewPool(3)}
	defer func() {
		for _, p := range pools {
			p.Close()
		}
	}()
	for _, c := range []flashCase{
		{b: 2, t: 130, h: 9, kv: 3, d: 64, segKind: "packed"},
		{b: 1, t: 200, h: 14, kv: 2, d: 24, window: 50, segKind: "one"},
		{b: 3, t: 65, h: 2, kv: 1, d: 20, segKind: "mixed"},
	} {
		f := newFlashData(r, c)
		for _, v := range simdVariants() {
			var first [5][]float32
			for pi, p := range pools {
				out, lse, dq, dk, dv := f.outputs()
				flashForward(v, p, out, lse, f.q, f.k, f.v, f.seg, f.s)
				flashBackward(v, p, dq, dk, dv, f.dout, out, lse, f.q, f.k, f.v, f.seg, f.s)
				got := [5][]float32{out, lse, dq, dk, dv}
				if pi == 0 {
					first = got
					continue
				}
				for i := range got {
					if !slices.Equal(got[i], first[i]) {
						t.Errorf("%v %v: %s on %d threads differs from 1", c, v, []string{"out", "lse", "dq", "dk", "dv"}[i], p.Threads())
					}
				}
			}
		}
	}
}

// Decoding: Tq new queries against a longer k/v (the cache) equal
// CachedAttention, and equal the last Tq rows of the full forward (with
// segments and a window); the backward of those rows equals the full
// backward with dout zero on the other rows.
func TestFlashDecoding(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, c := range []flashCase{
		{b: 1, t: 70, h: 14, kv: 2, d: 64, segKind: "one"},
		{b: 1, t: 130, h: 9, kv: 3, d: 24, window: 33, segKind: "one"},
		{b: 2, t: 65, h: 4, kv: 2, d: 64, segKind: "packed"},
		{b: 2, t: 40, h: 2, kv: 1, d: 20, window: 7, segKind: "mixed"},
	} {
		for _, tq := range []int{1, 3, 17} {
			for _, v := range simdVariants() {
				f := newFlashData(r, c)
				s, qw := f.s, c.h*c.d
				full, fullLse, fdq, fdk, fdv := f.outputs()
				flashForward(v, nil, full, fullLse, f.q, f.k, f.v, f.seg, s)
				// The last tq rows of each sequence, as a decoder would pass them.
				q, dout, want := make([]float32, c.b*tq*qw), make([]float32, c.b*tq*qw), make([]float32, c.b*tq*qw)
				for b := range c.b {
					from := (b*c.t + c.t - tq) * qw
					copy(q[b*tq*qw:], f.q[from:from+tq*qw])
					copy(dout[b*tq*qw:], f.dout[from:from+tq*qw])
					copy(want[b*tq*qw:], full[from:from+tq*qw])
				}
				out, lse := make([]float32, len(q)), make([]float32, c.b*c.h*tq)
				flashForward(v, nil, out, lse, q, f.k, f.v, f.seg, s)
				if e := relErr(out, want); e > 1e-6 {
					t.Errorf("%v Tq %d %v: differs from the full forward's last rows by %g", c, tq, v, e)
				}
				if f.seg == nil && c.b == 1 {
					cached := make([]float32, len(q))
					cs := s
					cs.Seq = tq
					CachedAttention(cached, q, f.k, f.v, c.t-tq, cs)
					if e := relErr(out, cached); e > 1e-5 {
						t.Errorf("%v Tq %d %v: differs from CachedAttention by %g", c, tq, v, e)
					}
				}
				// Backward of the tail rows vs the full backward with dout only there.
				fullDout := make([]float32, f.qLen)
				for b := range c.b {
					from := (b*c.t + c.t - tq) * qw
					copy(fullDout[from:from+tq*qw], dout[b*tq*qw:])
				}
				flashBackward(v, nil, fdq, fdk, fdv, fullDout, full, fullLse, f.q, f.k, f.v, f.seg, s)
				dq, dk, dv := make([]float32, len(q)), make([]float32, f.kvLen), make([]float32, f.kvLen)
				flashBackward(v, nil, dq, dk, dv, dout, out, lse, q, f.k, f.v, f.seg, s)
				wdq := make([]float32, len(q))
				for b := range c.b {
					from := (b*c.t + c.t - tq) * qw
					copy(wdq[b*tq*qw:], fdq[from:from+tq*qw])
				}
				for i, p := range [][2][]float32{{dq, wdq}, {dk, fdk}, {dv, fdv}} {
					if e := relErr(p[0], p[1]); e > 1e-5 || e != e {
						t.Errorf("%v Tq %d %v: %s differs from the full backward by %g", c, tq, v, []string{"dq", "dk", "dv"}[i], e)
					}
				}
			}
		}
	}
}

// The backward is the gradient of the forward: loss = Σ dout∘out, central
// differences in every input value of a small case with two segments, a
// window and padding.
func TestFlashBackwardFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	c := flashCase{b: 1, t: 9, h: 4, kv: 2, d: 8, window: 4}
	s := c.shape()
	seg := []int32{1, 1, 1, 1, 2, 2, 2, 2, 0}
	for _, v := range simdVariants() {
		q, k, vv := randF32(r, 9*32, 1), randF32(r, 9*16, 1), randF32(r, 9*16, 1)
		dout := randF32(r, 9*32, 1)
		out, lse := make([]float32, len(q)), make([]float32, 4*9)
		loss := func() float64 {
			flashForward(v, nil, out, lse, q, k, vv, seg, s)
			sum := 0.0
			for i := range out {
				sum += float64(out[i]) * float64(dout[i])
			}
			return sum
		}
		loss()
		dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(vv))
		flashBackward(v, nil, dq, dk, dv, dout, out, lse, q, k, vv, seg, s)
		for _, in := range []struct {
			name string
			x, g []float32
		}{{"q", q, dq}, {"k", k, dk}, {"v", vv, dv}} {
			for i := range in.x {
				const h = 1e-2
				x0 := in.x[i]
				in.x[i] = x0 + h
				up := loss()
				in.x[i] = x0 - h
				down := loss()
				in.x[i] = x0
				fd := (up - down) / (2 * h)
				if math.Abs(fd-float64(in.g[i])) > 2e-3*(1+math.Abs(fd)) {
					t.Errorf("%v: d loss/d %s[%d] = %g, finite difference %g", v, in.name, i, in.g[i], fd)
				}
			}
		}
	}
}

// Neither kernel allocates but for the closure handed to Pool.For: the tiles
// live on the workers' stacks.
func TestFlashAllocations(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	f := newFlashData(r, flashCase{b: 2, t: 130, h: 9, kv: 3, d: 64, segKind: "packed"})
	out, lse, dq, dk, dv := f.outputs()
	p := NewPool(2)
	defer p.Close()
	fwd := testing.AllocsPerRun(5, func() { FlashAttention(p, out, lse, f.q, f.k, f.v, f.seg, f.s) })
	bwd := testing.AllocsPerRun(5, func() {
		FlashAttentionBackward(p, dq, dk, dv, f.dout, out, lse, f.q, f.k, f.v, f.seg, f.s)
	})
	// Pool.For takes a closure, which escapes: that is the only allocation.
	if fwd > 1 || bwd > 1 {
		t.Errorf("allocations per call: forward %v, backward %v", fwd, bwd)
	}
}

// The training shapes of SmolLM2-135M (9 heads, 3 kv heads) and Qwen2.5-0.5B
// (14 heads, 2 kv heads), head dim 64, one causal segment.
var flashBenchShapes = []struct {
	name string
	s    AttentionShape
}{
	{"smol_B2_T256", AttentionShape{Batch: 2, Seq: 256, Heads: 9, KVHeads: 3, HeadDim: 64}},
	{"smol_B1_T512", AttentionShape{Batch: 1, Seq: 512, Heads: 9, KVHeads: 3, HeadDim: 64}},
	{"qwen_B1_T512", AttentionShape{Batch: 1, Seq: 512, Heads: 14, KVHeads: 2, HeadDim: 64}},
}

// flashCaseOf is the problem of shape s with one segment.
func flashCaseOf(s AttentionShape) flashCase {
	return flashCase{b: s.Batch, t: s.Seq, h: s.Heads, kv: s.KVHeads, d: s.HeadDim, window: s.Window, segKind: "one"}
}

// flashFlops is the useful work of a causal forward (4·d per visible pair;
// the backward is 2.5 times that), the count every implementation is held to.
func flashFlops(s AttentionShape) float64 {
	return 4 * float64(s.HeadDim) * float64(s.Batch*s.Heads*s.Seq*(s.Seq+1)/2)
}

// BenchmarkFlashAttention times forward and backward at the training shapes:
// the flash kernels (each variant, 1 and 2 threads) and the reference
// AttentionForward/AttentionBackward (GOMAXPROCS goroutines), in GFLOP/s of
// useful work.
func BenchmarkFlashAttention(b *testing.B) {
	for _, sh := range flashBenchShapes {
		f := newFlashData(rand.New(rand.NewPCG(1, 1)), flashCaseOf(sh.s))
		out, lse, dq, dk, dv := f.outputs()
		fl := flashFlops(sh.s)
		for _, v := range simdVariants() {
			for _, threads := range []int{1, 2} {
				p := NewPool(threads)
				b.Run(fmt.Sprintf("%s/%v_%dthr/fwd", sh.name, v, threads), func(b *testing.B) {
					for b.Loop() {
						flashForward(v, p, out, lse, f.q, f.k, f.v, nil, f.s)
					}
					b.ReportMetric(fl*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
				b.Run(fmt.Sprintf("%s/%v_%dthr/bwd", sh.name, v, threads), func(b *testing.B) {
					for b.Loop() {
						flashBackward(v, p, dq, dk, dv, f.dout, out, lse, f.q, f.k, f.v, nil, f.s)
					}
					b.ReportMetric(2.5*fl*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
				p.Close()
			}
		}
		b.Run(sh.name+"/reference/fwd", func(b *testing.B) {
			for b.Loop() {
				AttentionForward(out, f.q, f.k, f.v, f.refSeg, f.s)
			}
			b.ReportMetric(fl*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(sh.name+"/reference/bwd", func(b *testing.B) {
			for b.Loop() {
				AttentionBackward(dq, dk, dv, f.dout, out, f.q, f.k, f.v, f.refSeg, f.s)
			}
			b.ReportMetric(2.5*fl*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkFlashAttentionVsPyTorch runs, shape by shape and interleaved, the
// PyTorch peer (testdata/bench_attention.py: matmul, causal mask, softmax,
// matmul, as PyTorch 1.13 runs attention; bf16 and f32, 2 threads) and
// FlashAttention with its backward on 2 threads, and reports both and the
// ratio tune/PyTorch-bf16.
func BenchmarkFlashAttentionVsPyTorch(b *testing.B) {
	for _, sh := range flashBenchShapes {
		b.Run(sh.name, func(b *testing.B) {
			s := sh.s
			cmd := exec.Command("/usr/bin/python3", "testdata/bench_attention.py",
				fmt.Sprint(s.Batch), fmt.Sprint(s.Seq), fmt.Sprint(s.Heads), fmt.Sprint(s.KVHeads), fmt.Sprint(s.HeadDim))
			raw, err := cmd.Output()
			if err != nil {
				b.Fatalf("PyTorch peer: %v (run make setup)", err)
			}
			var peer struct{ F32, BF16 struct{ Fwd, Bwd float64 } }
			if err := json.Unmarshal(raw, &peer); err != nil {
				b.Fatalf("PyTorch peer printed %q: %v", raw, err)
			}
			f := newFlashData(rand.New(rand.NewPCG(1, 1)), flashCaseOf(s))
			out, lse, dq, dk, dv := f.outputs()
			p := NewPool(2)
			defer p.Close()
			var fwd, bwd time.Duration
			for b.Loop() {
				t0 := time.Now()
				FlashAttention(p, out, lse, f.q, f.k, f.v, nil, s)
				t1 := time.Now()
				FlashAttentionBackward(p, dq, dk, dv, f.dout, out, lse, f.q, f.k, f.v, nil, s)
				fwd, bwd = fwd+t1.Sub(t0), bwd+time.Since(t1)
			}
			fl := flashFlops(s) * float64(b.N)
			tf, tb := fl/fwd.Seconds()/1e9, 2.5*fl/bwd.Seconds()/1e9
			b.ReportMetric(tf, "tune_fwd_GFLOP/s")
			b.ReportMetric(tb, "tune_bwd_GFLOP/s")
			b.ReportMetric(peer.BF16.Fwd, "torch_bf16_fwd_GFLOP/s")
			b.ReportMetric(peer.BF16.Bwd, "torch_bf16_bwd_GFLOP/s")
			b.ReportMetric(peer.F32.Fwd, "torch_f32_fwd_GFLOP/s")
			b.ReportMetric(peer.F32.Bwd, "torch_f32_bwd_GFLOP/s")
			b.ReportMetric(tf/peer.BF16.Fwd, "fwd_tune/torch_bf16")
			b.ReportMetric(tb/peer.BF16.Bwd, "bwd_tune/torch_bf16")
		})
	}
}
