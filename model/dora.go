package model

import (
	"math"

	"github.com/tune-dev/tune/kernels"
)

// DoRA (Liu et al. 2024) on a projection, as PEFT's DoraLinearLayer computes
// it: with V = W₀ + s·B·A (out, in) and c = m / ‖V‖ per output row, the
// norm a constant of the backward pass (the paper's §4.3, PEFT's detach),
//
//	y = x·W₀ᵀ + bias + (c − 1)⊙(x'·W₀ᵀ) + c⊙(s·x'·Aᵀ·Bᵀ)
//
// where x' is x after the adapter's dropout. Without dropout (and at
// evaluation) x' = x and y = c⊙(x·W₀ᵀ + s·x·Aᵀ·Bᵀ) + bias; with it, the
// dropped input goes through W₀ a second time, as in PEFT.
//
// ‖V‖ is needed once per step per projection, never per token, and V is
// never formed: per row o,
//
//	‖V_o‖² = ‖W₀_o‖² + 2s·Σ_k B[o,k]·(W₀·Aᵀ)[o,k] + s²·B_o·(A·Aᵀ)·B_oᵀ
//
// where ‖W₀_o‖² is computed once per model and W₀·Aᵀ is an (out, R) product.

// baseNorms caches ‖W₀_o‖² of every projection a DoRA adapter sits on,
// computed at the first use: the frozen weights never change.
type baseNorms struct {
	sq [][numProj][]float64 // by layer and projection; nil until needed
}

func newBaseNorms(layers int) *baseNorms {
	return &baseNorms{sq: make([][numProj][]float64, layers)}
}

// of returns the squared row norms of layer l's projection i.
func (bn *baseNorms) of(l, i int, w kernels.Matrix) []float64 {
	if bn.sq[l][i] == nil {
		bn.sq[l][i] = rowSquares(w)
	}
	return bn.sq[l][i]
}

// rowSquares is Σ_j w[o,j]² of every row o, in float64.
func rowSquares(w kernels.Matrix) []float64 {
	out := make([]float64, w.Rows)
	row := make([]float32, w.Cols)
	for o := range out {
		w.Row(o, row)
		var s float64
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		out[o] = s
	}
	return out
}

// directionNorms writes 1/‖W₀ + s·B·A‖ of each of w's rows into rnorm (out),
// given base = ‖W₀_o‖²; pt (R·out) and gram (R·R) are scratch.
func directionNorms(p *kernels.Pool, rnorm []float32, w kernels.Matrix, base []float64, ad *LoRA, pt, gram []float32) {
	r, out := ad.R, w.Rows
	pt, gram = pt[:r*out], gram[:r*r]
	kernels.Linear(p, pt, ad.A, r, w, nil)                                    // (W₀·Aᵀ)ᵀ: (R, out)
	kernels.Linear(p, gram, ad.A, r, kernels.MatrixF32(r, w.Cols, ad.A), nil) // A·Aᵀ: (R, R)
	s := float64(ad.Scale)
	p.For(out, 256, func(lo, hi int) {
		for o := lo; o < hi; o++ {
			b := ad.B[o*r : (o+1)*r]
			var cross, sq float64
			for k, bk := range b {
				cross += float64(bk) * float64(pt[k*out+o])
				var gb float64
				for j, bj := range b {
					gb += float64(gram[k*r+j]) * float64(bj)
				}
				sq += float64(bk) * gb
			}
			n2 := base[o] + 2*s*cross + s*s*sq
			rnorm[o] = float32(1 / math.Sqrt(max(n2, 0)))
		}
	})
}

// DirectionNorms returns ‖W₀ + s·B·A‖ of every output row of a layer's
// projection (module is its Hugging Face name) for the adapter ad: the
// magnitude a DoRA adapter starts from, as PEFT initialises it.
func (m *Model) DirectionNorms(layer int, module string, ad *LoRA) []float32 {
	i := projIndex(module)
	w, _ := m.Layers[layer].weight(i)
	rn := make([]float32, w.Rows)
	directionNorms(nil, rn, w, rowSquares(w), ad, make([]float32, ad.R*w.Rows), make([]float32, ad.R*ad.R))
	for o, v := range rn {
		rn[o] = 1 / v
	}
	return rn
}

// projIndex is the index of a projection name in Projections(), or −1.
func projIndex(module string) int {
	for i, name := range Projections() {
		if name == module {
			return i
		}
	}
	return -1
}

// doraOutput finishes a DoRA projection's forward: pre (N, out) holds
// x'·W₀ᵀ + s·x'·Aᵀ·Bᵀ; y = c⊙pre + bias with c = m·rnorm, or with add set
// (dropout, where y holds x·W₀ᵀ − x'·W₀ᵀ) y += c⊙pre + bias.
func doraOutput(p *kernels.Pool, y, pre, c, bias []float32, n int, add bool) {
	out := len(c)
	p.For(n, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			yr, pr := y[r*out:(r+1)*out], pre[r*out:(r+1)*out]
			yr, pr = yr[:len(c)], pr[:len(c)]
			if add {
				for o, v := range pr {
					yr[o] += c[o] * v
				}
			} else {
				for o, v := range pr {
					yr[o] = c[o] * v
				}
			}
			if bias != nil {
				kernels.Axpy(1, bias, yr)
			}
		}
	})
}

// doraShift writes dy⊙(c − 1) into dst: the gradient of the dropped input's
// second pass through W₀.
func doraShift(p *kernels.Pool, dst, dy, c []float32, n int) {
	out := len(c)
	p.For(n, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d, g := dst[r*out:(r+1)*out], dy[r*out:(r+1)*out]
			d, g = d[:len(c)], g[:len(c)]
			for o, v := range g {
				d[o] = v * (c[o] - 1)
			}
		}
	})
}

// doraBack is the magnitude's part of a DoRA projection's backward, given
// the projection's upstream gradient dy (N, out), what forward kept in pre,
// and c = m·rnorm: dm_o = rnorm_o·Σ_r dy[r,o]·pre[r,o] (written to dm), and
// dyc = dy⊙c, the gradient that reaches the scaled direction.
func doraBack(p *kernels.Pool, dm, dyc, dy, pre, c, rnorm []float32, n int) {
	out := len(c)
	// Columns split among threads, so each dm_o is one thread's sum.
	p.For(out, 64, func(lo, hi int) {
		g, cs := dm[lo:hi], c[lo:hi]
		clear(g)
		for r := range n {
			d := dy[r*out+lo : r*out+hi]
			pr, dc := pre[r*out+lo:r*out+hi], dyc[r*out+lo:r*out+hi]
			pr, dc, g, cs := pr[:len(d)], dc[:len(d)], g[:len(d)], cs[:len(d)]
			for j, v := range d {
				g[j] += v * pr[j]
				dc[j] = v * cs[j]
			}
		}
		for j, rn := range rnorm[lo:hi] {
			g[j] *= rn
		}
	})
}
