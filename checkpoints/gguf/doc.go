// Package gguf reads and writes GGUF files, the format of llama.cpp and
// Ollama: typed key-value metadata, tensor descriptions in ggml's dimension
// order, then the tensor data aligned. Open memory-maps a file and checks
// every count, size and offset against the file before allocating for it, so
// a corrupt or hostile file is an error of one line naming the key or tensor.
// Write encodes the ggml tensor types tune exports (F32, F16, BF16, Q8_0) with
// llama.cpp's rounding, and validates everything before writing a byte,
// atomically. Names maps llama.cpp's tensor names to Hugging Face's.
package gguf
