// Package gguf writes GGUF files, the format of llama.cpp and Ollama: typed
// key-value metadata, tensor descriptions in ggml's dimension order, then the
// tensor data aligned. It encodes the ggml tensor types tune exports (F32,
// F16, BF16, Q8_0) with llama.cpp's rounding, and validates everything before
// writing a byte, atomically. tune reads no GGUF file; the tests read them
// back through internal/ggufread.
package gguf
