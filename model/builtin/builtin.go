package builtin

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
)

// Spec describes one generated model.
type Spec struct {
	Arch                   string // llama, mistral, qwen2, qwen3
	Hidden, Intermediate   int
	Layers, Heads, KVHeads int
	HeadDim                int // 0: Hidden/Heads, not written to config.json
	Vocab                  int
	Tied                   bool
	RopeTheta              float64
	RopeScaling            map[string]any // written as config.json's rope_scaling
	AttentionBias          bool           // llama's attention_bias
	SlidingWindow          int
	DType                  dtype.DType // F32 (default), F16 or BF16
	Shards                 int         // >1 writes an index and that many shards
	Seed                   uint64
	MaxPositions           int // max_position_embeddings; 0 means 256
}

func (s Spec) headDim() int {
	if s.HeadDim > 0 {
		return s.HeadDim
	}
	return s.Hidden / s.Heads
}

// Config is the config.json a Hugging Face model of this spec has.
func (s Spec) Config() map[string]any {
	arch := map[string]string{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[s.Arch]
	torchDType := map[dtype.DType]string{dtype.F32: "float32", dtype.F16: "float16", dtype.BF16: "bfloat16", "": "float32"}[s.DType]
	c := map[string]any{
		"architectures":           []string{arch},
		"model_type":              s.Arch,
		"hidden_size":             s.Hidden,
		"intermediate_size":       s.Intermediate,
		"num_hidden_layers":       s.Layers,
		"num_attention_heads":     s.Heads,
		"num_key_value_heads":     s.KVHeads,
		"vocab_size":              s.Vocab,
		"max_position_embeddings": cmp.Or(s.MaxPositions, 256),
		"rms_norm_eps":            1e-5,
		"rope_theta":              s.RopeTheta,
		"rope_scaling":            s.RopeScaling,
		"tie_word_embeddings":     s.Tied,
		"hidden_act":              "silu",
		"torch_dtype":             torchDType,
		"bos_token_id":            1,
		"eos_token_id":            2,
	}
	if s.HeadDim > 0 {
		c["head_dim"] = s.HeadDim
	}
	if s.AttentionBias {
		c["attention_bias"] = true
	}
	if s.SlidingWindow > 0 {
		c["sliding_window"] = s.SlidingWindow
	}
	return c
}

// Tensors returns the model's weights, in the order Hugging Face writes them.
func (s Spec) Tensors() []safetensors.Tensor {
	r := rand.New(rand.NewPCG(s.Seed, 0x7e57))
	var out []safetensors.Tensor
	s.each(func(name string, scale, offset float32, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = offset + (r.Float32()*2-1)*scale
		}
		out = append(out, encode(name, s.DType, shape, v))
	})
	return out
}

// Infos describes the tensors Tensors makes (names, dtype, shapes), in the
// same order, without making them: what `tune plan` needs of a built-in
// model that has not been generated yet.
func (s Spec) Infos() []safetensors.TensorInfo {
	var out []safetensors.TensorInfo
	dt := s.DType
	if dt == "" {
		dt = dtype.F32
	}
	var off int64
	s.each(func(name string, _, _ float32, shape ...int) {
		n := int64(dt.Size())
		for _, d := range shape {
			n *= int64(d)
		}
		out = append(out, safetensors.TensorInfo{Name: name, DType: dt, Shape: slices.Clone(shape), Begin: off, End: off + n})
		off += n
	})
	return out
}

// each calls add for every tensor, in the order Hugging Face writes them,
// with the scale and offset of its uniform random values.
func (s Spec) each(add func(name string, scale, offset float32, shape ...int)) {
	linear := func(name string, out, in int) {
		add(name, float32(math.Sqrt(3/float64(in))), 0, out, in)
	}
	hd := s.headDim()
	q, kv := s.Heads*hd, s.KVHeads*hd
	add("model.embed_tokens.weight", 1, 0, s.Vocab, s.Hidden)
	for i := range s.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", 0.2, 1, s.Hidden)
		linear(p+"self_attn.q_proj.weight", q, s.Hidden)
		linear(p+"self_attn.k_proj.weight", kv, s.Hidden)
		linear(p+"self_attn.v_proj.weight", kv, s.Hidden)
		if s.Arch == "qwen2" || s.AttentionBias {
			add(p+"self_attn.q_proj.bias", 0.1, 0, q)
			add(p+"self_attn.k_proj.bias", 0.1, 0, kv)
			add(p+"self_attn.v_proj.bias", 0.1, 0, kv)
		}
		if s.Arch == "qwen3" {
			add(p+"self_attn.q_norm.weight", 0.2, 1, hd)
			add(p+"self_attn.k_norm.weight", 0.2, 1, hd)
		}
		linear(p+"self_attn.o_proj.weight", s.Hidden, q)
		if s.AttentionBias {
			add(p+"self_attn.o_proj.bias", 0.1, 0, s.Hidden)
		}
		add(p+"post_attention_layernorm.weight", 0.2, 1, s.Hidden)
		linear(p+"mlp.gate_proj.weight", s.Intermediate, s.Hidden)
		linear(p+"mlp.up_proj.weight", s.Intermediate, s.Hidden)
		linear(p+"mlp.down_proj.weight", s.Hidden, s.Intermediate)
	}
	add("model.norm.weight", 0.2, 1, s.Hidden)
	if !s.Tied {
		linear("lm_head.weight", s.Vocab, s.Hidden)
	}
}

// encode stores float32 values as dtype, rounding to nearest even.
func encode(name string, dt dtype.DType, shape []int, v []float32) safetensors.Tensor {
	if dt == "" {
		dt = dtype.F32
	}
	b, err := dtype.Encode(dt, v)
	if err != nil {
		panic("builtin: " + err.Error()) // a Spec's DType is the program's choice
	}
	return safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: b}
}

// Write creates dir (if needed) and writes config.json and the safetensors.
func Write(dir string, s Spec) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(s.Config(), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, hf.ConfigFile), cfg, 0o644); err != nil {
		return err
	}
	tensors := s.Tensors()
	meta := map[string]string{"format": "pt"}
	if s.Shards <= 1 {
		return safetensors.Write(filepath.Join(dir, hf.SingleSafetensorsFile), tensors, meta)
	}
	weightMap := map[string]string{}
	var total int64
	per := (len(tensors) + s.Shards - 1) / s.Shards
	for k := range s.Shards {
		name := hf.ShardFile(k, s.Shards)
		part := tensors[min(k*per, len(tensors)):min((k+1)*per, len(tensors))]
		for _, t := range part {
			weightMap[t.Name] = name
			total += int64(len(t.Data))
		}
		if err := safetensors.Write(filepath.Join(dir, name), part, meta); err != nil {
			return err
		}
	}
	index, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, hf.SafetensorsIndexFile), index, 0o644)
}

// Demo is the built-in model of `tune run configs/demo.yaml`: a small llama
// (2 layers, hidden 64, vocabulary 128) that trains in about a minute on 2 cores.
func Demo() Spec {
	return Spec{Arch: "llama", Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 128, RopeTheta: 10000, DType: dtype.F32, Seed: 2024}
}

// Named returns the built-in model of `model.path: builtin:NAME`: tiny (the
// demo's), or the shape of a model people train, with random bf16 weights, so
// that `tune bench` and `tune plan` measure that shape without a download.
func Named(name string) (Spec, bool) {
	switch name {
	case "tiny":
		return Demo(), true
	case "smollm2-135m": // HuggingFaceTB/SmolLM2-135M
		return Spec{Arch: "llama", Hidden: 576, Intermediate: 1536, Layers: 30, Heads: 9, KVHeads: 3, Vocab: 49152, Tied: true, RopeTheta: 100000, DType: dtype.BF16, Seed: 135, MaxPositions: 8192}, true
	case "qwen2.5-0.5b": // Qwen/Qwen2.5-0.5B
		return Spec{Arch: "qwen2", Hidden: 896, Intermediate: 4864, Layers: 24, Heads: 14, KVHeads: 2, Vocab: 151936, Tied: true, RopeTheta: 1000000, DType: dtype.BF16, Seed: 500, MaxPositions: 32768}, true
	case "llama3.2-1b": // meta-llama/Llama-3.2-1B
		return Spec{Arch: "llama", Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8, Vocab: 128256, Tied: true, RopeTheta: 500000,
			RopeScaling: map[string]any{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
			DType:       dtype.BF16, Seed: 1024, MaxPositions: 131072}, true
	case "qwen2.5-7b": // Qwen/Qwen2.5-7B (and Qwen2.5-Coder-7B, the same shape)
		return Spec{Arch: "qwen2", Hidden: 3584, Intermediate: 18944, Layers: 28, Heads: 28, KVHeads: 4, Vocab: 152064, RopeTheta: 1000000, DType: dtype.BF16, Shards: 4, Seed: 7000, MaxPositions: 32768}, true
	}
	return Spec{}, false
}
