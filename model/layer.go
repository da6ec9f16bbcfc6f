package model

import (
	"github.com/tune-dev/tune/kernels"
)

// This file is the decoder layer, forward next to backward, over plain slices
// (llm.c's way). The training graph (one op per layer, graph.go) and the
// KV-cache decoder (decode.go) both run it: one definition of the model.
// Shapes: N rows (tokens), D = Hidden, Q = Heads·HeadDim, KV = KVHeads·HeadDim,
// I = Intermediate; "x is (N, D)" means a row-major []float32 of N·D values.

// The projections of a layer, in Projections() order.
const (
	projQ = iota
	projK
	projV
	projO
	projGate
	projUp
	projDown
	numProj
)

// LoRA is a low-rank update of one projection as a layer computes it:
// y += Scale·drop(x)·Aᵀ·Bᵀ with A (R, in) and B (out, R), both float32.
// With M set it is DoRA instead (dora.go): M (out) is the magnitude.
type LoRA struct {
	A, B    []float32
	M       []float32 // DoRA's magnitude vector; nil for LoRA
	R       int
	Scale   float32
	Dropout float64 // probability; 0 for none (and at evaluation)
	Salt    uint64  // the dropout site's identity: kernels.DropoutSalt(PEFT key)
}

// LoRAs are a layer's adapters by projection; nil where there is none.
type LoRAs [numProj]*LoRA

// loraGrads receive the gradients of a layer's adapters, by projection.
type loraGrads [numProj]struct{ A, B, M []float32 }

// weight is projection i's frozen matrix and bias.
func (ly *Layer) weight(i int) (kernels.Matrix, []float32) {
	switch i {
	case projQ:
		return ly.Q, ly.QBias
	case projK:
		return ly.K, ly.KBias
	case projV:
		return ly.V, ly.VBias
	case projO:
		return ly.O, ly.OBias
	case projGate:
		return ly.Gate, nil
	case projUp:
		return ly.Up, nil
	}
	return ly.Down, nil
}

// acts is what a layer's forward keeps for its backward. With activation
// checkpointing all layers share one, refilled by running the forward again.
type acts struct {
	rstd1, rstd2 []float32          // (N): 1/rms of the layer's input and of x2
	qPre, kPre   []float32          // (N, Q), (N, KV): q and k before their norms (qwen3)
	qRstd, kRstd []float32          // (N·Heads), (N·KVHeads)
	q, k, v      []float32          // attention inputs, q and k rotated: (N, Q), (N, KV), (N, KV)
	att, lse     []float32          // attention output (N, Q) and log-sum-exp (N·Heads)
	x2           []float32          // residual stream after attention (N, D)
	gate, up     []float32          // (N, I); silu(gate)∘up is recomputed, not kept
	u            [numProj][]float32 // (N, R): drop(x)·Aᵀ of each adapter
	// DoRA projections only: pre is (N, out), the output before the
	// magnitude (x'·W₀ᵀ + s·x'·Aᵀ·Bᵀ); rnorm is (out), 1/‖W₀ + s·B·A‖, and
	// c is m·rnorm, the scale of the output rows.
	pre, rnorm, c [numProj][]float32
}

// workspace holds a layer's temporaries, shared by every layer.
type workspace struct {
	h       []float32 // (N, D) a normed input
	act     []float32 // (N, I) silu(gate)∘up
	o       []float32 // (N, max(D, Q)) a projection's output
	xd      []float32 // (N, max in) a LoRA input after dropout
	yl      []float32 // (N, max out) a LoRA's B product
	t       []float32 // (N, max R)
	dyc     []float32 // (N, max out) DoRA: the gradient of the scaled direction
	pt      []float32 // (max R, max out) DoRA's norms: W₀·Aᵀ
	gram    []float32 // (max R, max R) DoRA's norms: A·Aᵀ
	dh, dx2 []float32 // (N, D)
	dI, dG  []float32 // (N, I)
	dU      []float32 // (N, I)
	dq, dk  []float32 // (N, Q), (N, KV)
	dv      []float32 // (N, KV)
	datt    []float32 // (N, Q)
}

// stack runs the layers of one model over N rows at a time: Batch sequences
// of seq tokens in training, or N new tokens of one sequence in decoding.
type stack struct {
	m      *Model
	pool   *kernels.Pool
	rot    *kernels.Rotary
	n, seq int
	maxR   int
	dora   bool       // some adapter is DoRA
	norms  *baseNorms // DoRA: ‖W₀‖² of the rows, shared with later stacks
	ws     workspace
}

func (m *Model) rotary(positions int) *kernels.Rotary {
	c := m.Config
	return kernels.NewRotary(kernels.InvFreq(c.HeadDim, c.RopeTheta, c.RopeScaling), positions)
}

// attention is the shape of the stack's attention: Batch sequences of seq.
func (s *stack) attention() kernels.AttentionShape {
	c := s.m.Config
	return kernels.AttentionShape{Batch: s.n / s.seq, Seq: s.seq, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Window: c.SlidingWindow}
}

func (s *stack) dims() (d, q, kv, inter int) { return dims(s.m.Config) }

func dims(c Config) (d, q, kv, inter int) {
	return c.Hidden, c.Heads * c.HeadDim, c.KVHeads * c.HeadDim, c.Intermediate
}

// adapterKind says what sits on a projection.
type adapterKind uint8

const (
	noAdapter adapterKind = iota
	loraAdapter
	doraAdapter
)

// kindOf is the kind of an adapter (nil for none).
func kindOf(ad *LoRA) adapterKind {
	switch {
	case ad == nil:
		return noAdapter
	case ad.M != nil:
		return doraAdapter
	}
	return loraAdapter
}

// newActs allocates one layer's kept activations for N rows; adapted says
// what sits on each projection (another layer's kind never lowers it).
func (s *stack) newActs(adapted [numProj]adapterKind) *acts {
	return layoutActs(s.m.Config, s.n, s.maxR, adapted, makeF32)
}

// layoutActs lays out one layer's kept activations for n rows, taking each
// buffer from alloc: make for a run, a counter for Memory, so that the
// estimate and the allocation are one piece of code.
func layoutActs(c Config, n, maxR int, adapted [numProj]adapterKind, alloc func(int) []float32) *acts {
	f := alloc
	d, q, kv, inter := dims(c)
	a := &acts{rstd1: f(n), rstd2: f(n), q: f(n * q), k: f(n * kv), v: f(n * kv),
		att: f(n * q), lse: f(n * c.Heads), x2: f(n * d), gate: f(n * inter), up: f(n * inter)}
	if c.QKNorm {
		a.qPre, a.kPre, a.qRstd, a.kRstd = f(n*q), f(n*kv), f(n*c.Heads), f(n*c.KVHeads)
	}
	for i, kind := range adapted {
		if kind != noAdapter {
			a.u[i] = f(n * maxR)
		}
		if kind == doraAdapter {
			_, out := ProjectionShape(c, Projections()[i])
			a.pre[i], a.rnorm[i], a.c[i] = f(n*out), f(out), f(out)
		}
	}
	return a
}

func makeF32(n int) []float32 { return make([]float32, n) }

// counter is an allocator that allocates nothing and adds up the bytes
// asked for: the sizing half of layoutActs and layoutWorkspace.
type counter struct{ bytes int64 }

func (c *counter) alloc(n int) []float32 {
	c.bytes += 4 * int64(n)
	return nil
}

// ensureWorkspace allocates the workspace at the first run, with the gradient
// buffers when a backward pass will run.
func (s *stack) ensureWorkspace(backward bool) {
	if s.ws.h == nil || (backward && s.ws.dh == nil) {
		s.allocWorkspace(backward)
	}
}

// allocWorkspace sizes the shared temporaries; backward adds the gradient ones.
func (s *stack) allocWorkspace(backward bool) {
	s.ws = layoutWorkspace(s.m.Config, s.n, s.maxR, backward, s.dora, makeF32)
	if s.dora && s.norms == nil {
		s.norms = newBaseNorms(s.m.Config.Layers)
	}
}

// layoutWorkspace lays out the shared temporaries for n rows, taking each
// buffer from alloc (see layoutActs).
func layoutWorkspace(c Config, n, maxR int, backward, dora bool, alloc func(int) []float32) workspace {
	f := alloc
	d, q, kv, inter := dims(c)
	wide := max(d, q, kv, inter)
	var ws workspace
	ws.act = f(n * inter)
	ws.h, ws.o, ws.xd, ws.yl, ws.t = f(n*d), f(n*max(d, q)), f(n*wide), f(n*wide), f(n*max(maxR, 1))
	if dora {
		ws.pt, ws.gram = f(maxR*wide), f(maxR*maxR)
	}
	if backward && dora {
		ws.dyc = f(n * wide)
	}
	if backward {
		ws.dh, ws.dx2 = f(n*d), f(n*d)
		ws.dI, ws.dG, ws.dU = f(n*inter), f(n*inter), f(n*inter)
		ws.dq, ws.dk, ws.dv, ws.datt = f(n*q), f(n*kv), f(n*kv), f(n*q)
	}
	return ws
}

// kvCache receives a layer's keys and values during decoding: rows
// start..start+N−1 are written, and attention reads rows 0..start+N−1.
type kvCache struct {
	k, v  []float32 // (capacity, KV)
	start int
}

// forward runs layer l: y = layer(x), both (N, D), keeping in a what backward
// needs. pos and seg are (N); seed draws the dropout masks. With cache set,
// the layer's keys and values go to the cache and attention reads all of it.
func (s *stack) forward(l int, y, x []float32, a *acts, lo *LoRAs, pos, seg []int32, seed int32, cache *kvCache) {
	c := s.m.Config
	ly := &s.m.Layers[l]
	p, n, w := s.pool, s.n, &s.ws
	d, _, kvd, inter := s.dims()
	eps := float32(c.RMSNormEps)

	h := w.h[:n*d]
	kernels.RMSNorm(p, h, a.rstd1, x, ly.AttnNorm, eps)
	q, k, v := a.q, a.k, a.v
	if cache != nil {
		k = cache.k[cache.start*kvd : (cache.start+n)*kvd]
		v = cache.v[cache.start*kvd : (cache.start+n)*kvd]
	}
	if c.QKNorm {
		s.project(l, projQ, a.qPre, h, lo, a, seed)
		s.project(l, projK, a.kPre, h, lo, a, seed)
		kernels.RMSNorm(p, q, a.qRstd, a.qPre, ly.QNorm, eps)
		kernels.RMSNorm(p, k, a.kRstd, a.kPre, ly.KNorm, eps)
	} else {
		s.project(l, projQ, q, h, lo, a, seed)
		s.project(l, projK, k, h, lo, a, seed)
	}
	s.project(l, projV, v, h, lo, a, seed)
	s.rot.Apply(p, q, q, pos)
	s.rot.Apply(p, k, k, pos)
	// One attention kernel for both: training attends within the batch, the
	// decoder's new rows attend to the whole cache.
	shape := s.attention()
	if cache != nil {
		end := cache.start + n
		shape.Batch, shape.Seq = 1, end
		k, v = cache.k[:end*kvd], cache.v[:end*kvd]
	}
	kernels.FlashAttention(p, a.att, a.lse, q, k, v, seg, shape)
	o := w.o[:n*d]
	s.project(l, projO, o, a.att, lo, a, seed)
	add(a.x2, x, o)

	kernels.RMSNorm(p, h, a.rstd2, a.x2, ly.MLPNorm, eps)
	s.project(l, projGate, a.gate, h, lo, a, seed)
	s.project(l, projUp, a.up, h, lo, a, seed)
	act := w.act[:n*inter]
	kernels.SwiGLU(p, act, a.gate, a.up)
	s.project(l, projDown, o, act, lo, a, seed)
	add(y, a.x2, o)
}

// backward computes dx (N, D) and the adapters' gradients g from dy, given
// the layer's input x and what forward kept in a. dx may not alias dy.
func (s *stack) backward(l int, dx, dy, x []float32, a *acts, lo *LoRAs, g *loraGrads, pos, seg []int32, seed int32) {
	c := s.m.Config
	ly := &s.m.Layers[l]
	p, n, w := s.pool, s.n, &s.ws
	d := c.Hidden

	// MLP: y = x2 + down(silu(gate)∘up), gate and up of h2 = norm(x2).
	act := w.act[:n*c.Intermediate]
	if lo[projDown] != nil { // the adapter's gradient needs down's input
		kernels.SwiGLU(p, act, a.gate, a.up)
	}
	s.projectBack(l, projDown, w.dI, false, dy, act, lo, a, g, seed)
	kernels.SwiGLUBackward(p, w.dG, w.dU, w.dI, a.gate, a.up)
	h := w.h[:n*d]
	kernels.RMSNormApply(p, h, a.x2, ly.MLPNorm, a.rstd2)
	s.projectBack(l, projGate, w.dh, false, w.dG, h, lo, a, g, seed)
	s.projectBack(l, projUp, w.dh, true, w.dU, h, lo, a, g, seed)
	copy(w.dx2, dy)
	kernels.RMSNormDX(p, w.dx2, w.dh, a.x2, ly.MLPNorm, a.rstd2, true)

	// Attention: x2 = x + o(attention(rope(q), rope(k), v)) of h1 = norm(x).
	s.projectBack(l, projO, w.datt, false, w.dx2, a.att, lo, a, g, seed)
	kernels.FlashAttentionBackward(p, w.dq, w.dk, w.dv, w.datt, a.att, a.lse, a.q, a.k, a.v, seg, s.attention())
	s.rot.Inverse(p, w.dq, w.dq, pos)
	s.rot.Inverse(p, w.dk, w.dk, pos)
	if c.QKNorm {
		kernels.RMSNormDX(p, w.dq, w.dq, a.qPre, ly.QNorm, a.qRstd, false)
		kernels.RMSNormDX(p, w.dk, w.dk, a.kPre, ly.KNorm, a.kRstd, false)
	}
	kernels.RMSNormApply(p, h, x, ly.AttnNorm, a.rstd1)
	s.projectBack(l, projQ, w.dh, false, w.dq, h, lo, a, g, seed)
	s.projectBack(l, projK, w.dh, true, w.dk, h, lo, a, g, seed)
	s.projectBack(l, projV, w.dh, true, w.dv, h, lo, a, g, seed)
	copy(dx, w.dx2)
	kernels.RMSNormDX(p, dx, w.dh, x, ly.AttnNorm, a.rstd1, true)
}

// project computes y = x·Wᵀ + bias for projection i of layer l, plus its
// adapter's Scale·drop(x)·Aᵀ·Bᵀ, keeping drop(x)·Aᵀ in a.u[i]; a DoRA
// adapter also keeps its norms and unscaled output (dora.go).
func (s *stack) project(l, i int, y, x []float32, lo *LoRAs, a *acts, seed int32) {
	wm, bias := s.m.Layers[l].weight(i)
	p, n := s.pool, s.n
	ad := lo[i]
	dora := kindOf(ad) == doraAdapter
	var pre []float32
	switch {
	case !dora:
		kernels.Linear(p, y, x, n, wm, bias)
	case ad.Dropout > 0:
		kernels.Linear(p, y, x, n, wm, nil) // the bias comes after the scaling
	default:
		pre = a.pre[i][:n*wm.Rows]
		kernels.Linear(p, pre, x, n, wm, nil)
	}
	if ad == nil {
		return
	}
	in := x
	if ad.Dropout > 0 {
		in = s.ws.xd[:n*wm.Cols]
		kernels.Dropout(p, in, x, ad.Dropout, ad.Salt, seed)
	}
	u := a.u[i][:n*ad.R]
	kernels.Linear(p, u, in, n, kernels.MatrixF32(ad.R, wm.Cols, ad.A), nil)
	yl := s.ws.yl[:n*wm.Rows]
	kernels.Linear(p, yl, u, n, kernels.MatrixF32(wm.Rows, ad.R, ad.B), nil)
	if !dora {
		kernels.Axpy(ad.Scale, yl, y)
		return
	}
	directionNorms(p, a.rnorm[i], wm, s.norms.of(l, i, wm), ad, s.ws.pt, s.ws.gram)
	for o, rn := range a.rnorm[i] {
		a.c[i][o] = ad.M[o] * rn
	}
	if ad.Dropout > 0 {
		pre = a.pre[i][:n*wm.Rows]
		kernels.Linear(p, pre, in, n, wm, nil) // x'·W₀ᵀ: y holds it at c = 1
		kernels.Axpy(-1, pre, y)
	}
	kernels.Axpy(ad.Scale, yl, pre)
	doraOutput(p, y, pre, a.c[i], bias, n, ad.Dropout > 0)
}

// projectBack is project's gradient: dx = dy·W (added with accumulate) plus
// the adapter's path, and the adapter's gradients into g[i]:
// dB = s·dyᵀ·u, t = s·dy·B, dA = tᵀ·drop(x), dx += drop(t·A). DoRA puts
// dy⊙c in the place of dy (and of dy in dx's base term without dropout),
// and with dropout adds drop((dy⊙(c − 1))·W₀) to dx.
func (s *stack) projectBack(l, i int, dx []float32, accumulate bool, dy, x []float32, lo *LoRAs, a *acts, g *loraGrads, seed int32) {
	wm, _ := s.m.Layers[l].weight(i)
	p, n := s.pool, s.n
	ad := lo[i]
	dora := kindOf(ad) == doraAdapter
	dyBase, dyAd := dy, dy
	var dyc []float32
	if dora {
		dyc = s.ws.dyc[:n*wm.Rows]
		doraBack(p, g[i].M, dyc, dy, a.pre[i][:n*wm.Rows], a.c[i], a.rnorm[i], n)
		dyAd = dyc
		if ad.Dropout <= 0 {
			dyBase = dyc
		}
	}
	kernels.LinearDX(p, dx, dyBase, n, wm, accumulate)
	if ad == nil {
		return
	}
	r, in, out := ad.R, wm.Cols, wm.Rows
	kernels.LinearDW(p, g[i].B, dyAd, a.u[i][:n*r], n, out, r, ad.Scale, false)
	t := s.ws.t[:n*r]
	kernels.LinearDX(p, t, dyAd, n, kernels.MatrixF32(out, r, ad.B), false)
	kernels.Scale(t, ad.Scale)
	aMat := kernels.MatrixF32(r, in, ad.A)
	if ad.Dropout <= 0 {
		kernels.LinearDW(p, g[i].A, t, x, n, r, in, 1, false)
		kernels.LinearDX(p, dx, t, n, aMat, true)
		return
	}
	xd := s.ws.xd[:n*in]
	kernels.Dropout(p, xd, x, ad.Dropout, ad.Salt, seed)
	kernels.LinearDW(p, g[i].A, t, xd, n, r, in, 1, false)
	if dora {
		doraShift(p, dyc, dy, a.c[i], n)
		kernels.LinearDX(p, xd, dyc, n, wm, false)
		kernels.LinearDX(p, xd, t, n, aMat, true)
	} else {
		kernels.LinearDX(p, xd, t, n, aMat, false)
	}
	kernels.Dropout(p, xd, xd, ad.Dropout, ad.Salt, seed)
	kernels.Axpy(1, xd, dx)
}

func add(dst, a, b []float32) {
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}
