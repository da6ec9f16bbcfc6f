package lora

import (
	"errors"
	"math"
	"slices"
	"sort"

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
func svdMerge(in, out, r int, fs []factors) (a, b []float32, sv singular) {
	rho := 0
	for _, f := range fs {
		rho += f.R
	}
	a, b = make([]float32, r*in), make([]float32, out*r)
	if rho == 0 {
		return a, b, sv
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
		return a, b, sv
	}
	sv.s = svd.Values(nil)
	sv.kept = min(r, len(sv.s))
	for sv.kept > 0 && !(sv.s[sv.kept-1] > 1e-12*sv.s[0]) {
		sv.kept--
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	var t, s mat.Dense
	t.Mul(la, v.Slice(0, v.RawMatrix().Rows, 0, sv.kept)) // La·V_r: (ρ, kept)
	s.Mul(u.Slice(0, u.RawMatrix().Rows, 0, sv.kept).T(), lb.T())
	for j := range sv.kept { // Σ_r⁻¹·U_rᵀ·Lbᵀ: (kept, ρ)
		for k := range rho {
			s.Set(j, k, s.At(j, k)/sv.s[j])
		}
	}
	// B = Bs·T and A = S·As, one input's block at a time, summed in float64.
	b64, a64 := make([]float64, out*sv.kept), make([]float64, sv.kept*in)
	tr, sr := t.RawMatrix(), s.RawMatrix()
	row = 0
	for _, f := range fs {
		c := f.Weight * f.Scale
		for o := range out {
			dst := b64[o*sv.kept : (o+1)*sv.kept]
			for k, bv := range f.B[o*f.R : (o+1)*f.R] {
				x := c * float64(bv)
				for j, tv := range tr.Data[(row+k)*tr.Stride : (row+k)*tr.Stride+sv.kept] {
					dst[j] += x * tv
				}
			}
		}
		for j := range sv.kept {
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
		for j := range sv.kept {
			b[o*r+j] = float32(b64[o*sv.kept+j])
		}
	}
	for i, v := range a64 {
		a[i] = float32(v) // rows j < kept of A, which is (r, in)
	}
	return a, b, sv
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
