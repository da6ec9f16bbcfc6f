package export

import (
	"fmt"
	"strings"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model"
)

// ggufArch is llama.cpp's architecture name for a Hugging Face model_type.
// Mistral has no architecture of its own in llama.cpp: convert_hf_to_gguf
// writes it as llama (and llama.cpp then ignores its sliding window).
func ggufArch(modelType string) (string, error) {
	switch modelType {
	case "llama", "mistral":
		return "llama", nil
	case "qwen2":
		return "qwen2", nil
	case "qwen3":
		return "qwen3", nil
	}
	return "", fmt.Errorf("model_type %q has no GGUF export (supported: llama, mistral, qwen2, qwen3)", modelType)
}

// permutesQK reports whether q and k rows must be reordered for llama.cpp.
// Hugging Face stores llama q/k for the rotate-half RoPE; llama.cpp's llama
// architecture rotates interleaved pairs, so convert_hf_to_gguf permutes the
// rows. Qwen2/3 use llama.cpp's NEOX RoPE, which is rotate-half: no change.
func permutesQK(arch string) bool { return arch == "llama" }

// ggufName maps a Hugging Face tensor name to llama.cpp's, with the layer
// (-1 outside layers) and, for projections, the module ("q_proj"). skip is
// true for tensors convert_hf_to_gguf drops (rotary inv_freq buffers).
func ggufName(hf string) (name string, layer int, module string, skip bool, err error) {
	if strings.HasSuffix(hf, "rotary_emb.inv_freq") {
		return "", -1, "", true, nil
	}
	name, layer, ok := gguf.TensorName(hf)
	if !ok {
		return "", -1, "", false, fmt.Errorf("tensor %q has no GGUF name (not part of a llama/mistral/qwen2/qwen3 model)", hf)
	}
	for _, m := range model.Projections() {
		if strings.Contains(hf, "."+m+".") {
			module = m
		}
	}
	return name, layer, module, false, nil
}

// qkHeads is the head count gguf.PermuteRows uses for a projection: n_head for q,
// n_kv_head for k, 0 for projections that are not permuted.
func qkHeads(cfg model.Config, module string) int {
	switch module {
	case "q_proj":
		return cfg.Heads
	case "k_proj":
		return cfg.KVHeads
	}
	return 0
}

// ParseType reads a GGUF tensor type as users write it: f32, f16, bf16,
// q8_0, q4_0, q4_k.
func ParseType(s string) (gguf.Type, error) {
	switch strings.ToLower(s) {
	case "f32":
		return gguf.F32, nil
	case "f16":
		return gguf.F16, nil
	case "bf16":
		return gguf.BF16, nil
	case "q8_0":
		return gguf.Q8_0, nil
	case "q4_0":
		return gguf.Q4_0, nil
	case "q4_k":
		return gguf.Q4_K, nil
	}
	return 0, fmt.Errorf("GGUF type %q: expected f32, f16, bf16, q8_0, q4_0 or q4_k", s)
}

// fileType is general.file_type, llama.cpp's llama_ftype for a whole model.
func fileType(t gguf.Type) uint32 {
	switch t {
	case gguf.F16:
		return 1 // LLAMA_FTYPE_MOSTLY_F16
	case gguf.Q8_0:
		return 7 // LLAMA_FTYPE_MOSTLY_Q8_0
	case gguf.Q4_0:
		return 2 // LLAMA_FTYPE_MOSTLY_Q4_0
	case gguf.Q4_K:
		return 14 // LLAMA_FTYPE_MOSTLY_Q4_K_S: every matrix Q4_K where it fits
	case gguf.BF16:
		return 32 // LLAMA_FTYPE_MOSTLY_BF16
	}
	return 0 // LLAMA_FTYPE_ALL_F32
}

// storedType is the checkpoint dtype as a GGML type, for decoding.
func storedType(d dtype.DType) (gguf.Type, error) {
	switch d {
	case dtype.F32:
		return gguf.F32, nil
	case dtype.F16:
		return gguf.F16, nil
	case dtype.BF16:
		return gguf.BF16, nil
	}
	return 0, fmt.Errorf("dtype %s: expected F32, F16 or BF16", d)
}

// ggufDims reverses a PyTorch shape into GGUF order.
func ggufDims(shape []int) []uint64 {
	d := make([]uint64, len(shape))
	for i, s := range shape {
		d[len(shape)-1-i] = uint64(s)
	}
	return d
}
