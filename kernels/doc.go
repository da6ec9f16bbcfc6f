// Package kernels holds the numeric work of tune: matrix products against frozen
// weights stored as f32, f16 or bf16, RMSNorm, RoPE, causal grouped-query attention,
// SwiGLU and cross-entropy, each with its backward pass, and the Gorgonia ops that
// expose them to a graph.
//
// Frozen weights live inside the ops (as Matrix values viewing memory-mapped
// checkpoint bytes), not as graph nodes, so a bf16 model stays bf16 in memory while
// the graph's activations are float32. Every function here has a plain Go
// implementation; faster paths (assembly, GPU) slot in behind the same signatures.
//
// Shapes are written as in the comments: x is (M, K) means a row-major []float32 of
// M*K values.
package kernels
