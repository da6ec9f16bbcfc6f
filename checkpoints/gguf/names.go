package gguf

import (
	"fmt"
	"strconv"
	"strings"
)

// Tensor names: llama.cpp's (convert_hf_to_gguf's tensor map) beside Hugging
// Face's, for the architectures tune supports (llama, mistral, qwen2, qwen3).
var (
	topNames = map[string]string{
		"model.embed_tokens.weight": "token_embd.weight",
		"model.norm.weight":         "output_norm.weight",
		"lm_head.weight":            "output.weight",
	}
	// moduleNames are the projections inside a layer.
	moduleNames = map[string]string{
		"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
		"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
	}
	// layerNames maps what follows "model.layers.N." to what follows "blk.N.".
	layerNames = func() map[string]string {
		m := map[string]string{
			"input_layernorm.weight":          "attn_norm.weight",
			"post_attention_layernorm.weight": "ffn_norm.weight",
			"self_attn.q_norm.weight":         "attn_q_norm.weight",
			"self_attn.k_norm.weight":         "attn_k_norm.weight",
		}
		for hf, g := range moduleNames {
			path := "self_attn." + hf
			if strings.HasPrefix(g, "ffn_") {
				path = "mlp." + hf
			}
			m[path+".weight"] = g + ".weight"
			m[path+".bias"] = g + ".bias"
		}
		return m
	}()
	hfLayerNames = func() map[string]string {
		m := make(map[string]string, len(layerNames))
		for hf, g := range layerNames {
			m[g] = hf
		}
		return m
	}()
)

// ModuleName is llama.cpp's name of a Hugging Face projection ("q_proj" ->
// "attn_q"), "" for other names.
func ModuleName(module string) string { return moduleNames[module] }

// TensorName maps a Hugging Face tensor name to llama.cpp's, with its layer
// (-1 outside the layers); ok is false for names with no GGUF counterpart.
func TensorName(hf string) (name string, layer int, ok bool) {
	if g, ok := topNames[hf]; ok {
		return g, -1, true
	}
	return mapLayer(hf, "model.layers.", "blk.", layerNames)
}

// HFTensorName is TensorName's inverse: llama.cpp's name to Hugging Face's.
func HFTensorName(name string) (hf string, layer int, ok bool) {
	for h, g := range topNames {
		if g == name {
			return h, -1, true
		}
	}
	return mapLayer(name, "blk.", "model.layers.", hfLayerNames)
}

// mapLayer renames "<from>N.<tail>" to "<to>N.<table[tail]>".
func mapLayer(name, from, to string, table map[string]string) (string, int, bool) {
	rest, ok := strings.CutPrefix(name, from)
	if !ok {
		return "", -1, false
	}
	num, tail, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strconv.Itoa(n) != num {
		return "", -1, false
	}
	t, ok := table[tail]
	if !ok {
		return "", -1, false
	}
	return fmt.Sprintf("%s%d.%s", to, n, t), n, true
}

// PermuteRows reorders the rows of a (rows, len(w)/rows) matrix, or of a
// vector, the way convert_hf_to_gguf's LlamaModel.permute does for llama-arch
// q and k: view(heads, 2, rows/heads/2, cols).swapaxes(1, 2). Hugging Face
// stores them for the rotate-half RoPE, llama.cpp's llama architecture
// rotates interleaved pairs: within each head, new row 2j+s is old row
// s·half+j. T may be a byte, with rows of whole quantized blocks.
func PermuteRows[T any](w []T, rows, heads int) []T { return moveRows(w, rows, heads, false) }

// UnpermuteRows undoes PermuteRows.
func UnpermuteRows[T any](w []T, rows, heads int) []T { return moveRows(w, rows, heads, true) }

func moveRows[T any](w []T, rows, heads int, inverse bool) []T {
	out := make([]T, len(w))
	cols := len(w) / rows
	hd := rows / heads
	half := hd / 2
	for h := range heads {
		for j := range half {
			for s := range 2 {
				interleaved := (h*hd + 2*j + s) * cols
				halves := (h*hd + s*half + j) * cols
				dst, src := interleaved, halves
				if inverse {
					dst, src = halves, interleaved
				}
				copy(out[dst:dst+cols], w[src:src+cols])
			}
		}
	}
	return out
}
