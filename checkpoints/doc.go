// Package checkpoints reads and writes model files: safetensors (memory-mapped,
// validated like the reference Python library), Hugging Face model directories,
// and atomic file writes for everything tune saves.
package checkpoints
