package export

import (
	"cmp"
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model"
)

// GGUF writes the model in baseDir, merged with the PEFT adapter in
// adapterDir ("" for none), as one GGUF file llama.cpp and Ollama run
// directly. typ is f32, f16, bf16, q8_0, q4_0 or q4_k: it applies to the
// matrices, quantized with ggml's reference rounding (internal/quant); norms,
// biases and other 1-D tensors stay F32 as llama.cpp requires. A matrix whose
// rows are not whole blocks of the type falls back as llama-quantize's
// llama_tensor_get_type does: Q4_K to Q5_0 (rows of 32-value blocks), and
// anything else to F16. The fallbacks are returned, for the user to be told.
//
// Tensors are produced one at a time while the file is written: each base
// tensor is read from the memory-mapped checkpoint, the adapter's delta
// scale·B·A added in float32, q/k rows permuted for llama-arch models, and
// the result converted once, so memory stays near one tensor however large
// the model. The metadata is what llama.cpp reads: the hyperparameters under
// the architecture's prefix, rope scaling (linear as rope.scaling.*, llama3
// as a rope_freqs tensor of per-frequency divisors, as convert_hf_to_gguf
// emits it), and the tokenizer with its chat template.
func GGUF(baseDir, adapterDir, outPath, typ string) ([]Fallback, error) {
	t, err := ParseType(typ)
	if err != nil {
		return nil, err
	}
	var fallbacks []Fallback
	// model.Open checks every tensor the architecture needs is there with
	// the right shape and a float dtype; it maps, it does not copy.
	m, md, err := model.Open(baseDir)
	if err != nil {
		return nil, err
	}
	defer md.Close()
	cfg := m.Config
	arch, err := ggufArch(cfg.ModelType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", baseDir, err)
	}
	var adapter *lora.Adapter
	if adapterDir != "" {
		if adapter, err = lora.FromPEFT(adapterDir, cfg); err != nil {
			return nil, err
		}
	}
	kv, err := modelKV(cfg, arch, t, filepath.Base(filepath.Clean(baseDir)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", baseDir, err)
	}
	vkv, err := vocabKV(baseDir, cfg.Vocab)
	if err != nil {
		return nil, err
	}
	kv = append(kv, vkv...)

	var tensors []gguf.Tensor
	if cfg.RopeScaling.Type == "llama3" {
		factors := model.RopeFreqFactors(cfg)
		tensors = append(tensors, gguf.Tensor{Name: "rope_freqs.weight", Dims: []uint64{uint64(len(factors))}, Type: gguf.F32,
			Data: func() ([]byte, error) { return gguf.Encode(gguf.F32, factors) }})
	}
	type entry struct {
		hf, name string
		layer    int
		module   string
	}
	var entries []entry
	for _, hf := range md.Names() {
		name, layer, module, skip, err := ggufName(hf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", baseDir, err)
		}
		if !skip {
			entries = append(entries, entry{hf, name, layer, module})
		}
	}
	// token_embd, then the layers in order, then output_norm and output: the
	// order convert_hf_to_gguf writes (llama.cpp looks tensors up by name).
	rank := func(e entry) int {
		switch e.name {
		case "token_embd.weight":
			return -2
		case "output_norm.weight":
			return math.MaxInt - 1
		case "output.weight":
			return math.MaxInt
		}
		return e.layer
	}
	slices.SortStableFunc(entries, func(a, b entry) int { return cmp.Compare(rank(a), rank(b)) })
	for _, e := range entries {
		info, _ := md.Info(e.hf)
		var mod *lora.Module
		if adapter != nil && e.module != "" && filepath.Ext(e.hf) == ".weight" {
			mod = adapter.Module(e.layer, e.module)
			if mod != nil && allZero(mod.A) && allZero(mod.B) {
				mod = nil
			}
		}
		heads := 0
		if permutesQK(arch) {
			heads = qkHeads(cfg, e.module)
		}
		out := t
		if len(info.Shape) < 2 {
			out = gguf.F32
		} else if out = fitType(t, info.Shape[len(info.Shape)-1]); out != t {
			fallbacks = append(fallbacks, Fallback{Tensor: e.name, Type: out})
		}
		hf := e.hf
		tensors = append(tensors, gguf.Tensor{Name: e.name, Dims: ggufDims(info.Shape), Type: out,
			Data: func() ([]byte, error) { return convertTensor(md, hf, out, adapter, mod, heads) }})
	}
	if err := gguf.Write(outPath, kv, tensors); err != nil {
		return nil, fmt.Errorf("GGUF: %w", err)
	}
	return fallbacks, nil
}

// A Fallback is a matrix the GGUF export stored as Type rather than the type
// asked for, its rows not being whole blocks of that type.
type Fallback struct {
	Tensor string
	Type   gguf.Type
}

// fitType is the type a matrix with rows of cols values is stored as when t
// is asked for: t if the rows are whole blocks of t, else llama-quantize's
// fallback (Q4_K -> Q5_0 -> F16, the others -> F16).
func fitType(t gguf.Type, cols int) gguf.Type {
	for {
		if _, err := t.DType().RowBytes(cols); err == nil {
			return t
		}
		if t == gguf.Q4_K {
			t = gguf.Q5_0
			continue
		}
		return gguf.F16
	}
}

// convertTensor produces one output tensor: base (+ delta), permuted rows
// when heads > 0, converted to out.
func convertTensor(md model.Checkpoint, name string, out gguf.Type, a *lora.Adapter, m *lora.Module, heads int) ([]byte, error) {
	t, err := md.Tensor(name)
	if err != nil {
		return nil, err
	}
	st, err := storedType(t.DType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if st == out && m == nil && heads == 0 {
		return t.Data, nil // already what the file needs: no copy
	}
	v, err := gguf.Decode(st, t.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rows := 1
	if len(t.Shape) > 0 {
		rows = t.Shape[0]
	}
	if m != nil {
		if m.Out*m.In != len(v) {
			return nil, fmt.Errorf("%s: %d values, the adapter's delta has %d", name, len(v), m.Out*m.In)
		}
		a.MergeInto(m, v)
	}
	if heads > 0 {
		if rows%(2*heads) != 0 {
			return nil, fmt.Errorf("%s: %d rows do not split into %d heads of an even size", name, rows, heads)
		}
		v = gguf.PermuteRows(v, rows, heads)
	}
	return gguf.Encode(out, v)
}

// modelKV is the general.* and <arch>.* metadata llama.cpp's loader reads.
func modelKV(cfg model.Config, arch string, t gguf.Type, name string) ([]gguf.KV, error) {
	u32 := func(n int) uint32 { return uint32(n) }
	kv := []gguf.KV{
		{Key: "general.architecture", Value: arch},
		{Key: "general.type", Value: "model"},
		{Key: "general.name", Value: name},
		{Key: "general.file_type", Value: fileType(t)},
		{Key: "general.quantization_version", Value: uint32(2)},
		{Key: arch + ".vocab_size", Value: u32(cfg.Vocab)},
		{Key: arch + ".context_length", Value: u32(cfg.MaxPositions)},
		{Key: arch + ".embedding_length", Value: u32(cfg.Hidden)},
		{Key: arch + ".block_count", Value: u32(cfg.Layers)},
		{Key: arch + ".feed_forward_length", Value: u32(cfg.Intermediate)},
		{Key: arch + ".attention.head_count", Value: u32(cfg.Heads)},
		{Key: arch + ".attention.head_count_kv", Value: u32(cfg.KVHeads)},
		{Key: arch + ".attention.layer_norm_rms_epsilon", Value: float32(cfg.RMSNormEps)},
		{Key: arch + ".rope.freq_base", Value: float32(cfg.RopeTheta)},
		{Key: arch + ".rope.dimension_count", Value: u32(cfg.HeadDim)},
	}
	if cfg.HeadDim*cfg.Heads != cfg.Hidden {
		// llama.cpp assumes hidden/heads unless told.
		kv = append(kv,
			gguf.KV{Key: arch + ".attention.key_length", Value: u32(cfg.HeadDim)},
			gguf.KV{Key: arch + ".attention.value_length", Value: u32(cfg.HeadDim)})
	}
	switch cfg.RopeScaling.Type {
	case "":
	case "linear":
		kv = append(kv,
			gguf.KV{Key: arch + ".rope.scaling.type", Value: "linear"},
			gguf.KV{Key: arch + ".rope.scaling.factor", Value: float32(cfg.RopeScaling.Factor)})
	case "llama3":
		if arch != "llama" {
			return nil, fmt.Errorf("rope_scaling llama3 on %s: llama.cpp applies rope_freqs only to llama-arch models", cfg.ModelType)
		}
	default:
		return nil, fmt.Errorf("rope_scaling %q has no GGUF equivalent tune writes", cfg.RopeScaling.Type)
	}
	return kv, nil
}
