// Package hf opens a Hugging Face model directory the way transformers loads
// it (config.json, then model.safetensors, a sharded index, or every
// *.safetensors file) and presents its tensors as one namespace, memory-mapped
// and never copied. It leaves config.json's meaning to the model package.
package hf
