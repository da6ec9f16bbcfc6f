// Package model turns a Hugging Face config.json and its frozen weights into a
// Gorgonia graph for the Llama family: llama (Llama 2 and 3.x, CodeLlama,
// TinyLlama, SmolLM2), mistral, qwen2 and qwen3. It reads no files: the
// checkpoints package hands it bytes and tensors. A GGUF file (Open, gguf.go)
// is read as the checkpoint it was converted from: the configuration from its
// metadata as llama.cpp reads it, tensors under Hugging Face names, llama q/k
// rows unpermuted.
package model
