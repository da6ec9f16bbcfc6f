// Package quant is the one implementation of ggml's block formats (Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K): dequantization exactly as
// ggml-quants.c's dequantize_row_* computes it, and quantization equal to its
// reference rounding (quantize_row_*_ref, the path llama-quantize takes
// without an importance matrix). kernels (products on quantized weights) and
// checkpoints/gguf (reading and writing GGUF tensors) both use it, so a
// format's bytes mean one thing everywhere.
//
// Bit-for-bit equality with ggml rests on evaluating its float32 expressions
// in the same order with each operation rounded: products that feed a sum are
// converted to float32 explicitly, which stops the Go compiler from fusing
// them into FMAs (a C compiler told -ffp-contract=fast may fuse them; the
// published formula, and numpy, do not). internal/testmodels/reference's
// ggml_quants.py is an independent numpy rendering of the same formulas that
// the tests hold this package to.
package quant
