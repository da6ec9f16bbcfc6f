package lora

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas/blas64"
	lapackgo "gonum.org/v1/gonum/lapack/gonum"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// factors is one adapter's part of a module: the update Scale·B·A, A (R, In)
// and B (Out, R) row-major, and the adapter's merge weight.
type factors struct {
	A, B          []float32
	R             int
	Scale, Weight float64
}

// energy is how much of a merged update's squared Frobenius norm the
// rank-r result keeps.
type energy struct{ kept, total float64 }

// keptShare is kept/total, 1 for a zero update.
func (e energy) keptShare() float64 {
	if e.total == 0 {
		return 1
	}
	return e.kept / e.total
}

// energyOf is the energy of an update with singular values s (all of them)
// truncated to the first n.
func energyOf(s []float64, n int) energy {
	var e energy
	for i, v := range s {
		e.total += v * v
		if i < n {
			e.kept += v * v
		}
	}
	return e
}

// catMerge puts the factors side by side: A = [A₁; A₂; ...] with each block
// scaled by wᵢ·sᵢ (where PEFT's cat puts it), B = [B₁ B₂ ...]. So B·A is
// Σ wᵢ·sᵢ·Bᵢ·Aᵢ exactly, at rank r = Σ rᵢ (r given, for the empty module).
func catMerge(in, out, r int, fs []factors) (a, b []float32) {
	a, b = make([]float32, r*in), make([]float32, out*r)
	row := 0
	for _, f := range fs {
		c := float32(f.Weight * f.Scale)
		for i, v := range f.A {
			a[row*in+i] = c * v
		}
		for o := range out {
			copy(b[o*r+row:o*r+row+f.R], f.B[o*f.R:(o+1)*f.R])
		}
		row += f.R
	}
	return a, b
}

// svdMerge is the best rank-r approximation (Eckart–Young) of
// ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ without forming ΔW. With ρ = Σ rᵢ, ΔW = Bs·As where
// Bs = [w₁s₁B₁ ...] is (out, ρ) and As = [A₁; ...] is (ρ, in). LQ
// factorisations As = La·Qa and Bsᵀ = Lb·Qb (Q with orthonormal rows; on
// row-major data the reflectors run along contiguous rows, where QR of the
// tall transposes would stride) give ΔW = Qbᵀ·(Lbᵀ·La)·Qa, so the SVD of the
// small core Lbᵀ·La = U·Σ·Vᵀ is ΔW's: (Qbᵀ·U)·Σ·(Qaᵀ·V)ᵀ. Q is never formed:
//
//	B = Qbᵀ·U_r·Σ_r = ΔW·Qaᵀ·V_r = Bs·La·V_r
//	A = V_rᵀ·Qa = Σ_r⁻¹·U_rᵀ·Qb·ΔW = Σ_r⁻¹·U_rᵀ·Lbᵀ·As
//
// which puts σ in B, as PEFT does. The work is O((in+out)·ρ²). Ranks beyond
// ΔW's own (and σ below 1e-12 of the largest, which add nothing) are zero.
func svdMerge(in, out, r int, fs []factors) (a, b []float32, e energy) {
	rho := 0
	for _, f := range fs {
		rho += f.R
	}
	a, b = make([]float32, r*in), make([]float32, out*r)
	if rho == 0 {
		return a, b, e
	}
	as := blas64.General{Rows: rho, Cols: in, Stride: in, Data: make([]float64, rho*in)}
	bst := blas64.General{Rows: rho, Cols: out, Stride: out, Data: make([]float64, rho*out)}
	row := 0
	for _, f := range fs {
		c := f.Weight * f.Scale
		for i, v := range f.A {
			as.Data[row*in+i] = float64(v)
		}
		for o := range out {
			for k, v := range f.B[o*f.R : (o+1)*f.R] {
				bst.Data[(row+k)*out+o] = c * float64(v)
			}
		}
		row += f.R
	}
	la, lb := lowerLQ(as), lowerLQ(bst)
	var core mat.Dense
	core.Mul(lb.T(), la) // (min(out,ρ), min(in,ρ))
	var svd mat.SVD
	if !svd.Factorize(&core, mat.SVDThin) {
		// Dgesvd fails only on NaN or Inf, which finite factors cannot
		// give at these sizes; keep the zero result rather than a wrong one.
		return a, b, e
	}
	sv := svd.Values(nil)
	kept := min(r, len(sv))
	for kept > 0 && !(sv[kept-1] > 1e-12*sv[0]) {
		kept--
	}
	e = energyOf(sv, kept)
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	var t, s mat.Dense
	t.Mul(la, v.Slice(0, v.RawMatrix().Rows, 0, kept)) // La·V_r: (ρ, kept)
	s.Mul(u.Slice(0, u.RawMatrix().Rows, 0, kept).T(), lb.T())
	for j := range kept { // Σ_r⁻¹·U_rᵀ·Lbᵀ: (kept, ρ)
		for k := range rho {
			s.Set(j, k, s.At(j, k)/sv[j])
		}
	}
	// B = Bs·T and A = S·As, one input's block at a time, summed in float64.
	b64, a64 := make([]float64, out*kept), make([]float64, kept*in)
	tr, sr := t.RawMatrix(), s.RawMatrix()
	row = 0
	for _, f := range fs {
		c := f.Weight * f.Scale
		for o := range out {
			dst := b64[o*kept : (o+1)*kept]
			for k, bv := range f.B[o*f.R : (o+1)*f.R] {
				x := c * float64(bv)
				for j, tv := range tr.Data[(row+k)*tr.Stride : (row+k)*tr.Stride+kept] {
					dst[j] += x * tv
				}
			}
		}
		for j := range kept {
			dst := a64[j*in : (j+1)*in]
			for k := range f.R {
				y := sr.Data[j*sr.Stride+row+k]
				for i, av := range f.A[k*in : (k+1)*in] {
					dst[i] += y * float64(av)
				}
			}
		}
		row += f.R
	}
	for o := range out {
		for j := range kept {
			b[o*r+j] = float32(b64[o*kept+j])
		}
	}
	for i, v := range a64 {
		a[i] = float32(v) // rows j < kept of A, which is (r, in)
	}
	return a, b, e
}

// lowerLQ returns L of M = L·Q (M is (ρ, n), Q has orthonormal rows): the
// first min(ρ, n) columns of the lower triangle Gelqf leaves in M.
func lowerLQ(m blas64.General) *mat.Dense {
	rho, n := m.Rows, m.Cols
	k := min(rho, n)
	tau := make([]float64, k)
	work := []float64{0}
	lapack64.Gelqf(m, tau, work, -1)
	work = make([]float64, int(work[0]))
	lapack64.Gelqf(m, tau, work, len(work))
	l := mat.NewDense(rho, k, nil)
	for i := range rho {
		for j := 0; j <= i && j < k; j++ {
			l.Set(i, j, m.Data[i*m.Stride+j])
		}
	}
	return l
}

// tiesMerge follows PEFT's ties_svd: each task update τᵢ = sᵢ·Bᵢ·Aᵢ keeps its
// int(density·in·out) entries of largest magnitude (magnitude_based_pruning);
// each entry's sign is that of Σᵢ τᵢ (the "total" election, 0 counting as +);
// the result is the mean of wᵢ·τᵢ over the τᵢ of that sign (disjoint_merge),
// and its best rank-r approximation is returned as svdMerge does. Unlike
// PEFT, the weights multiply τᵢ once (PEFT's svd path scales by sᵢ twice).
// It works on dense (out, in) updates: TIES is elementwise.
func tiesMerge(in, out, r int, fs []factors, density float64) (a, b []float32, e energy) {
	n := in * out
	a, b = make([]float32, r*in), make([]float32, out*r)
	if len(fs) == 0 {
		return a, b, e
	}
	taus := make([][]float64, len(fs))
	scratch := make([]float64, n)
	rho := 0 // the rank of the sum before TIES, where its spectrum falls
	for i, f := range fs {
		rho += f.R
		t := make([]float64, n)
		bm, am := mat.NewDense(out, f.R, nil), mat.NewDense(f.R, in, nil)
		for j, v := range f.B {
			bm.RawMatrix().Data[j] = f.Scale * float64(v)
		}
		for j, v := range f.A {
			am.RawMatrix().Data[j] = float64(v)
		}
		mat.NewDense(out, in, t).Mul(bm, am)
		if density < 1 {
			prune(t, int(density*float64(n)), scratch)
		}
		taus[i] = t
	}
	merged := scratch
	for j := range merged {
		var total float64
		for _, t := range taus {
			total += t[j]
		}
		sign := 1.0
		if total < 0 {
			sign = -1
		}
		var sum float64
		count := 0
		for i, t := range taus {
			if t[j] != 0 && math.Signbit(t[j]) == math.Signbit(sign) {
				sum += fs[i].Weight * t[j]
				count++
			}
		}
		merged[j] = sum / float64(max(count, 1))
	}
	taus = nil
	d := mat.NewDense(out, in, merged)
	s, u, v := topSVD(d, min(r, in, out), rho)
	for _, x := range merged {
		e.total += x * x
	}
	e.kept = energyOf(s, len(s)).total
	kept := len(s)
	for o := range out {
		for j := range kept {
			b[o*r+j] = float32(u.At(o, j) * s[j]) // PEFT's split: σ in B
		}
	}
	for j := range kept {
		for i := range in {
			a[j*in+i] = float32(v.At(i, j))
		}
	}
	return a, b, e
}

// topSVD returns the k largest singular values of the dense (m, n) matrix d
// and their vectors, U (m, k) and V (n, k). gonum has only the full SVD,
// which for a 3584×3584 update took minutes here, so a block wider than k
// is refined by subspace iteration with
// Rayleigh–Ritz (Halko, Martinsson and Tropp 2011, algorithms 4.4 and 5.1)
// until every kept pair's residual ‖d·v − σ·u‖ is below 1e-10·σ₁, the
// accuracy of the full SVD for what float32 factors can hold. A block as
// wide as d takes the full SVD. Iterations shrink the error by about
// (σ_width+1 / σ_k)² each, so the block spans 2k and the expected rank
// (the rank of the sum before TIES), whose tail σ are far smaller.
func topSVD(d *mat.Dense, k, expected int) (s []float64, u, v *mat.Dense) {
	m, n := d.Dims()
	width := min(m, n, max(2*k, expected)+8)
	if width == min(m, n) {
		var svd mat.SVD
		if !svd.Factorize(d, mat.SVDThin) {
			// Only NaN or Inf make Dgesvd fail: give a zero result.
			return make([]float64, k), mat.NewDense(m, k, nil), mat.NewDense(n, k, nil)
		}
		var uf, vf mat.Dense
		svd.UTo(&uf)
		svd.VTo(&vf)
		return svd.Values(nil)[:k], mat.DenseCopyOf(uf.Slice(0, m, 0, k)), mat.DenseCopyOf(vf.Slice(0, n, 0, k))
	}
	r := rand.New(rand.NewPCG(uint64(m), uint64(n))) // the same result every run
	omega := mat.NewDense(n, width, nil)
	for i := range n {
		for j := range width {
			omega.Set(i, j, r.NormFloat64())
		}
	}
	qv, _ := orthonormal(omega)
	var y, z mat.Dense
	y.Mul(d, qv) // d·Q_V
	for range maxSubspaceIters {
		qu, _ := orthonormal(&y)
		z.Mul(d.T(), qu) // dᵀ·Q_U = Q_V'·R, so Q_Uᵀ·d = Rᵀ·Q_V'ᵀ
		next, rz := orthonormal(&z)
		var svd mat.SVD
		if !svd.Factorize(rz.T(), mat.SVDThin) {
			break
		}
		s = svd.Values(nil)[:k]
		var ur, vr mat.Dense
		svd.UTo(&ur)
		svd.VTo(&vr)
		u, v = new(mat.Dense), new(mat.Dense)
		u.Mul(qu, ur.Slice(0, width, 0, k))
		v.Mul(next, vr.Slice(0, width, 0, k))
		y.Mul(d, next) // the next step's product; also d·v = y·V̂
		var dv mat.Dense
		dv.Mul(&y, vr.Slice(0, width, 0, k))
		worst := 0.0
		for j := range k {
			var res float64
			for i := range m {
				x := dv.At(i, j) - s[j]*u.At(i, j)
				res += x * x
			}
			worst = max(worst, math.Sqrt(res))
		}
		if worst <= 1e-10*s[0] {
			break
		}
	}
	return s, u, v
}

// maxSubspaceIters bounds topSVD; the last iterate is returned if reached.
const maxSubspaceIters = 500

// orthonormal returns Q (m, k) with orthonormal columns and R (k, k) with
// y = Q·R, for y (m, k), m ≥ k.
func orthonormal(y *mat.Dense) (q, r *mat.Dense) {
	m, k := y.Dims()
	q = mat.DenseCopyOf(y)
	raw := q.RawMatrix()
	tau := make([]float64, k)
	work := []float64{0}
	var impl lapackgo.Implementation
	impl.Dgeqrf(m, k, raw.Data, raw.Stride, tau, work, -1)
	work = make([]float64, max(int(work[0]), k))
	impl.Dgeqrf(m, k, raw.Data, raw.Stride, tau, work, len(work))
	r = mat.NewDense(k, k, nil)
	for i := range k {
		for j := i; j < k; j++ {
			r.Set(i, j, raw.Data[i*raw.Stride+j])
		}
	}
	impl.Dorgqr(m, k, k, raw.Data, raw.Stride, tau, work, -1)
	if need := int(work[0]); need > len(work) {
		work = make([]float64, need)
	}
	impl.Dorgqr(m, k, k, raw.Data, raw.Stride, tau, work, len(work))
	return q, r
}

// nthSmallest reorders x and returns the value of rank n (from 0) in
// ascending order: quickselect (Hoare's partition, median-of-three pivot), in
// O(len(x)) on average where sorting 68M entries of a 7B MLP update took
// seconds. x must hold no NaN.
func nthSmallest(x []float64, n int) float64 {
	lo, hi := 0, len(x)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if x[mid] < x[lo] {
			x[mid], x[lo] = x[lo], x[mid]
		}
		if x[hi] < x[lo] {
			x[hi], x[lo] = x[lo], x[hi]
		}
		if x[hi] < x[mid] {
			x[hi], x[mid] = x[mid], x[hi]
		}
		p := x[mid]
		i, j := lo, hi
		for i <= j {
			for x[i] < p {
				i++
			}
			for x[j] > p {
				j--
			}
			if i <= j {
				x[i], x[j] = x[j], x[i]
				i++
				j--
			}
		}
		switch { // x[lo..j] ≤ p ≤ x[i..hi], and x[j+1..i-1] = p
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return x[n]
		}
	}
	return x[n]
}

// prune zeroes all but the k entries of t of largest magnitude, as
// torch.topk picks them; among equal magnitudes at the cut, the first in
// order stay. scratch is as long as t.
func prune(t []float64, k int, scratch []float64) {
	if k <= 0 {
		clear(t)
		return
	}
	if k >= len(t) {
		return
	}
	for i, v := range t {
		scratch[i] = math.Abs(v)
		if math.IsNaN(v) {
			scratch[i] = math.Inf(1) // a total order, so the selection ends
		}
	}
	cut := nthSmallest(scratch, len(t)-k)
	// Those above the cut all stay; of those at it, as many as fit.
	atCut := k
	for _, v := range t {
		if math.Abs(v) > cut {
			atCut--
		}
	}
	for i, v := range t {
		switch m := math.Abs(v); {
		case m > cut:
		case m == cut && atCut > 0:
			atCut--
		default:
			t[i] = 0
		}
	}
}
