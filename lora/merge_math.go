package lora

import (
	"errors"
	"math"
	"slices"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
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

// singular holds the singular values of a merged update, largest first, and
// how many the result keeps.
type singular struct {
	s    []float64
	kept int
}

// keptShare is Σ kept σ² / Σ σ², the share of the squared Frobenius norm
// the truncation keeps (1 for a zero update).
func (s singular) keptShare() float64 {
	var kept, all float64
	for i, v := range s.s {
		all += v * v
		if i < s.kept {
			kept += v * v
		}
	}
	if all == 0 {
		return 1
	}
	return kept / all
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
// ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ without forming ΔW: with ρ = Σ rᵢ, ΔW = Bs·As where
// Bs = [w₁s₁B₁ ...] is (out, ρ) and As = [A₁; ...] is (ρ, in). Thin QR
// factorisations Bs = Qb·Rb and Asᵀ = Qa·Ra make ΔW = Qb·(Rb·Raᵀ)·Qaᵀ, so the
// SVD of the small core Rb·Raᵀ = U·Σ·Vᵀ gives ΔW's: (Qb·U)·Σ·(Qa·V)ᵀ. The
// result is B = Qb·U_r·Σ_r, A = (Qa·V_r)ᵀ (PEFT's split: σ in B), and the
// work is O((in+out)·ρ²). Ranks beyond ΔW's own are zero rows and columns.
func svdMerge(in, out, r int, fs []factors) (a, b []float32, sv singular) {
	rho := 0
	for _, f := range fs {
		rho += f.R
	}
	a, b = make([]float32, r*in), make([]float32, out*r)
	if rho == 0 {
		return a, b, sv
	}
	bs := blas64.General{Rows: out, Cols: rho, Stride: rho, Data: make([]float64, out*rho)}
	at := blas64.General{Rows: in, Cols: rho, Stride: rho, Data: make([]float64, in*rho)}
	col := 0
	for _, f := range fs {
		c := f.Weight * f.Scale
		for o := range out {
			for k, v := range f.B[o*f.R : (o+1)*f.R] {
				bs.Data[o*rho+col+k] = c * float64(v)
			}
		}
		for k := range f.R {
			for i, v := range f.A[k*in : (k+1)*in] {
				at.Data[i*rho+col+k] = float64(v)
			}
		}
		col += f.R
	}
	qb, qa := thinQR(bs), thinQR(at)
	var core mat.Dense
	core.Mul(qb.r, qa.r.T())
	var svd mat.SVD
	if !svd.Factorize(&core, mat.SVDThin) {
		// Dgesvd fails only on NaN or Inf, which finite factors cannot give
		// at these sizes; keep the zero result rather than a wrong one.
		return a, b, sv
	}
	sv.s = svd.Values(nil)
	sv.kept = min(r, len(sv.s))
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	us := mat.NewDense(u.RawMatrix().Rows, sv.kept, nil) // U_r·Σ_r
	for i := range us.RawMatrix().Rows {
		for j := range sv.kept {
			us.Set(i, j, u.At(i, j)*sv.s[j])
		}
	}
	bNew := qb.apply(us)                                         // (out, kept)
	aNew := qa.apply(v.Slice(0, v.RawMatrix().Rows, 0, sv.kept)) // (in, kept)
	for o := range out {
		for j := range sv.kept {
			b[o*r+j] = float32(bNew.At(o, j))
		}
	}
	for j := range sv.kept {
		for i := range in {
			a[j*in+i] = float32(aNew.At(i, j))
		}
	}
	return a, b, sv
}

// reduced is M (n, ρ) = Q·R with Q having orthonormal columns. When n ≥ ρ it
// is a thin QR (R is (ρ, ρ), Q kept as Householder reflectors); otherwise Q
// is the identity and R is M itself, already no larger than ρ rows.
type reduced struct {
	r   mat.Matrix
	qr  *blas64.General // the reflectors, nil for the identity
	tau []float64
}

func thinQR(m blas64.General) reduced {
	n, rho := m.Rows, m.Cols
	if n < rho {
		return reduced{r: mat.NewDense(n, rho, m.Data)}
	}
	tau := make([]float64, rho)
	work := []float64{0}
	lapack64.Geqrf(m, tau, work, -1)
	work = make([]float64, int(work[0]))
	lapack64.Geqrf(m, tau, work, len(work))
	r := mat.NewDense(rho, rho, nil)
	for i := range rho {
		for j := i; j < rho; j++ {
			r.Set(i, j, m.Data[i*m.Stride+j])
		}
	}
	return reduced{r: r, qr: &m, tau: tau}
}

// apply returns Q·X for X (k, t), k the rows of R: an (n, t) matrix.
func (q reduced) apply(x mat.Matrix) *mat.Dense {
	k, t := x.Dims()
	if q.qr == nil {
		return mat.DenseCopyOf(x)
	}
	c := mat.NewDense(q.qr.Rows, t, nil) // X over zeros: Q·[X; 0] = Q_thin·X
	c.Slice(0, k, 0, t).(*mat.Dense).Copy(x)
	cm := c.RawMatrix()
	work := []float64{0}
	lapack64.Ormqr(blas.Left, blas.NoTrans, *q.qr, q.tau, cm, work, -1)
	work = make([]float64, max(int(work[0]), t))
	lapack64.Ormqr(blas.Left, blas.NoTrans, *q.qr, q.tau, cm, work, len(work))
	return c
}

// tiesMerge follows PEFT's ties_svd: each task update τᵢ = sᵢ·Bᵢ·Aᵢ keeps its
// int(density·in·out) entries of largest magnitude (magnitude_based_pruning);
// each entry's sign is that of Σᵢ τᵢ (the "total" election, 0 counting as +);
// the result is the mean of wᵢ·τᵢ over the τᵢ of that sign (disjoint_merge),
// and its best rank-r approximation is returned as svdMerge does. Unlike
// PEFT, the weights multiply τᵢ once (PEFT's svd path scales by sᵢ twice).
// It works on dense (out, in) updates: TIES is elementwise.
func tiesMerge(in, out, r int, fs []factors, density float64) (a, b []float32, sv singular, err error) {
	n := in * out
	a, b = make([]float32, r*in), make([]float32, out*r)
	if len(fs) == 0 {
		return a, b, sv, nil
	}
	taus := make([][]float64, len(fs))
	scratch := make([]float64, n)
	for i, f := range fs {
		t := make([]float64, n)
		for o := range out {
			row := t[o*in : (o+1)*in]
			for k := range f.R {
				c := f.Scale * float64(f.B[o*f.R+k])
				for j, v := range f.A[k*in : (k+1)*in] {
					row[j] += c * float64(v)
				}
			}
		}
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
	var svd mat.SVD
	if !svd.Factorize(d, mat.SVDThinV) {
		return nil, nil, sv, errors.New("the SVD of the TIES update did not converge (NaN or Inf in an adapter?)")
	}
	sv.s = svd.Values(nil)
	sv.kept = min(r, len(sv.s))
	var v mat.Dense
	svd.VTo(&v)
	vr := v.Slice(0, in, 0, sv.kept)
	var bNew mat.Dense
	bNew.Mul(d, vr) // ΔW·V_r = U_r·Σ_r
	for o := range out {
		for j := range sv.kept {
			b[o*r+j] = float32(bNew.At(o, j))
		}
	}
	for j := range sv.kept {
		for i := range in {
			a[j*in+i] = float32(vr.At(i, j))
		}
	}
	return a, b, sv, nil
}

// prune zeroes all but the k entries of t of largest magnitude, as
// torch.topk picks them; among equal magnitudes at the cut, the first in
// order stay. scratch is as long as t.
func prune(t []float64, k int, scratch []float64) {
	if k <= 0 {
		clear(t)
		return
	}
	for i, v := range t {
		scratch[i] = math.Abs(v)
	}
	slices.Sort(scratch)
	cut := scratch[len(t)-k]
	// Those above the cut all stay; of those at it, as many as fit.
	atCut := k - (len(t) - sort.Search(len(t), func(i int) bool { return scratch[i] > cut }))
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
