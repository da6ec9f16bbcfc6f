// Package gguf reads and writes GGUF files, the format of llama.cpp and
// Ollama: typed key-value metadata, tensor descriptions in ggml's dimension
// order, then the tensor data aligned. Open memory-maps a file and checks
// every count, size and offset against the file before allocating for it, so
// a corrupt or hostile file is an error of one line naming the key or tensor.
// Write encodes the ggml tensor types tune handles (F32, F16, BF16, and through
// internal/quant the block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
// Q6_K) with llama.cpp's rounding, and validates everything before writing a
// byte, atomically; Type.DType names each as kernels.NewMatrix takes it.
// Names maps llama.cpp's tensor names to Hugging Face's.
package gguf
