// Package gguf writes GGUF files, the format of llama.cpp and Ollama: typed
// key-value metadata, tensor descriptions in ggml's dimension order, then the
// tensor data aligned. It encodes and decodes the ggml tensor types tune
// handles (F32, F16, BF16, and through internal/quant the block formats Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) with llama.cpp's rounding; Type.DType
// names each as kernels.NewMatrix takes it. It validates everything before
// writing a byte, atomically. tune reads no GGUF file; the tests read them
// back through internal/ggufread.
package gguf
