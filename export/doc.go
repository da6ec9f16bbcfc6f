// Package export turns what tune trains into files inference servers load:
// GGUF LoRA adapters and whole GGUF models (with the tokenizer's vocabulary)
// for llama.cpp and Ollama, merged Hugging Face safetensors directories for
// transformers and vLLM, and Ollama Modelfiles. Everything is checked against
// llama.cpp itself (through node-llama-cpp, internal/oracle/llamacpp) and
// PyTorch in this package's tests.
package export
