// Package dtype names the element types of stored tensors, spelled as in
// safetensors headers (and ggml's block formats, as GGUF names them, with
// their block geometry), and converts IEEE half and bfloat16 values to and from
// float32 with PyTorch's rounding. It is the leaf below both kernels (which
// compute on f16/bf16 weights) and checkpoints (which reads and writes them),
// so that neither imports the other and each type has one owner.
package dtype
