// Package kernels holds the numeric work of tune: matrix products against frozen
// weights stored as f32, f16, bf16 or one of ggml's block formats (Q4_0, Q8_0,
// Q4_K...; widened a block at a time while packing, never whole), RMSNorm, RoPE, causal grouped-query attention,
// SwiGLU and cross-entropy, each with its backward pass, and the Gorgonia ops that
// expose them to a graph.
//
// Frozen weights live inside the ops (as Matrix values viewing memory-mapped
// checkpoint bytes), not as graph nodes, so a bf16 model stays bf16 in memory while
// the graph's activations are float32. Every function here has a plain Go
// implementation; faster paths (assembly, GPU) slot in behind the same signatures.
//
// The matrix products of training (Linear, LinearDX, LinearDW) are packed and
// cache-blocked with a register-blocked micro-kernel, on a persistent worker Pool.
// Each instruction set has its own variant of the kernels: plain Go (ref, the
// reference the others are tested against: matmul_ref.go) and AVX2+FMA+F16C
// assembly (avx2: matmul_amd64.s and the dequantizers of dequant_amd64.s, built
// unless the purego tag is set; the reference dequantizer is internal/quant). The variant
// is chosen once at start from the CPU's features; TUNE_KERNELS=ref|avx2 forces
// one, and Variant reports which runs and whether TUNE_KERNELS could be honoured.
//
// Shapes are written as in the comments: x is (M, K) means a row-major []float32 of
// M*K values.
package kernels
