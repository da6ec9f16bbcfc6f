package testmodels

import (
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/model/builtin"
)

// Tiny is a small llama-architecture spec that tests vary.
func Tiny(arch string) builtin.Spec {
	return builtin.Spec{Arch: arch, Hidden: 32, Intermediate: 48, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 97, RopeTheta: 10000, DType: dtype.F32, Seed: 1}
}

// Variants are the architectures and options the forward pass must match
// PyTorch on, by name.
func Variants() map[string]builtin.Spec {
	v := map[string]builtin.Spec{}
	v["llama"] = Tiny("llama")
	s := Tiny("llama")
	s.KVHeads, s.Tied = 4, true // multi-head attention, tied embeddings
	v["llama_mha_tied"] = s
	s = Tiny("llama")
	s.RopeTheta = 500000
	s.RopeScaling = map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
	s.Tied = true
	v["llama3_rope"] = s
	s = Tiny("llama")
	s.RopeScaling = map[string]any{"type": "linear", "factor": 4.0}
	s.HeadDim = 16 // explicit head_dim unequal to hidden/heads
	v["llama_linear_rope_headdim"] = s
	s = Tiny("llama")
	s.AttentionBias = true
	v["llama_attention_bias"] = s
	s = Tiny("mistral")
	s.Heads, s.KVHeads, s.SlidingWindow = 8, 2, 5
	v["mistral_sliding"] = s
	s = Tiny("qwen2")
	s.Tied = true
	v["qwen2"] = s
	s = Tiny("qwen3")
	s.HeadDim = 16
	v["qwen3"] = s
	s = Tiny("llama")
	s.DType, s.Shards = dtype.BF16, 3
	v["llama_bf16_sharded"] = s
	s = Tiny("qwen2")
	s.DType = dtype.F16
	v["qwen2_f16"] = s
	return v
}
