package kernels

// SwiGLU computes out = silu(gate)∘up, the gated MLP activation of
// Llama-family models. All slices have one length.
func SwiGLU(p *Pool, out, gate, up []float32) {
	v := active.simd
	p.For(len(out), 4096, func(lo, hi int) {
		v.swiglu(out[lo:hi], gate[lo:hi], up[lo:hi])
	})
}

// SwiGLUBackward computes dgate and dup from dout.
func SwiGLUBackward(p *Pool, dgate, dup, dout, gate, up []float32) {
	v := active.simd
	p.For(len(dout), 4096, func(lo, hi int) {
		v.swigluBack(dgate[lo:hi], dup[lo:hi], dout[lo:hi], gate[lo:hi], up[lo:hi])
	})
}
