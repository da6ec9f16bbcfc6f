// Package checkpoints holds what every file tune saves shares: atomic writes
// (WriteFileAtomic, WriteDirAtomic), so that a crash leaves the old file or
// the new one and never half of one, and JSON helpers (errors that say
// where, objects read in order with duplicate keys refused). The formats
// live in subpackages, one each, as the standard library keeps image/png
// beside image/jpeg:
//
//   - safetensors: tensors by name, memory-mapped, validated like the
//     reference Python library; written in its layout.
//   - hf: a Hugging Face model directory (config.json and one or more
//     safetensors files, with or without an index) as one set of tensors.
//   - peft: a PEFT LoRA adapter directory (adapter_config.json and
//     adapter_model.safetensors), the format vLLM, TGI and transformers load.
//   - gguf: the GGUF writer for llama.cpp and Ollama, with the ggml tensor
//     types tune stores (F32, F16, BF16, Q8_0).
package checkpoints
