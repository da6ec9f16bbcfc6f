package gguf

import (
	"slices"
	"testing"
)

// TestPermuteRows pins the permutation to convert_hf_to_gguf's
// reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2) on small cases.
func TestPermuteRows(t *testing.T) {
	// 2 heads of 4 rows, 1 column: per head [0 1 | 2 3] -> [0 2 1 3].
	got := PermuteRows([]float32{0, 1, 2, 3, 4, 5, 6, 7}, 8, 2)
	if want := []float32{0, 2, 1, 3, 4, 6, 5, 7}; !slices.Equal(got, want) {
		t.Fatalf("PermuteRows = %v, want %v", got, want)
	}
	// 1 head of 6 rows, 2 columns: rows [a b c | d e f] -> [a d b e c f].
	w := []float32{0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5}
	got = PermuteRows(w, 6, 1)
	if want := []float32{0, 0, 3, 3, 1, 1, 4, 4, 2, 2, 5, 5}; !slices.Equal(got, want) {
		t.Fatalf("PermuteRows = %v, want %v", got, want)
	}
	if back := UnpermuteRows(got, 6, 1); !slices.Equal(back, w) {
		t.Fatalf("UnpermuteRows = %v, want %v", back, w)
	}
	// Rows of bytes (a quantized row is whole blocks): the same reordering.
	bw := []byte{10, 11, 12, 13, 14, 15, 16, 17}
	if got, want := UnpermuteRows(PermuteRows(bw, 4, 1), 4, 1), bw; !slices.Equal(got, want) {
		t.Fatalf("byte rows: %v, want %v", got, want)
	}
	if got, want := PermuteRows(bw, 4, 1), []byte{10, 11, 14, 15, 12, 13, 16, 17}; !slices.Equal(got, want) {
		t.Fatalf("PermuteRows(bytes) = %v, want %v", got, want)
	}
}

// TestTensorNames checks the names convert_hf_to_gguf gives (its
// MODEL_TENSOR table for llama and qwen) both ways.
func TestTensorNames(t *testing.T) {
	for hf, want := range map[string]string{
		"model.embed_tokens.weight":                       "token_embd.weight",
		"model.norm.weight":                               "output_norm.weight",
		"lm_head.weight":                                  "output.weight",
		"model.layers.0.input_layernorm.weight":           "blk.0.attn_norm.weight",
		"model.layers.12.post_attention_layernorm.weight": "blk.12.ffn_norm.weight",
		"model.layers.3.self_attn.q_proj.weight":          "blk.3.attn_q.weight",
		"model.layers.3.self_attn.k_proj.bias":            "blk.3.attn_k.bias",
		"model.layers.3.self_attn.o_proj.weight":          "blk.3.attn_output.weight",
		"model.layers.3.self_attn.q_norm.weight":          "blk.3.attn_q_norm.weight",
		"model.layers.3.self_attn.k_norm.weight":          "blk.3.attn_k_norm.weight",
		"model.layers.7.mlp.gate_proj.weight":             "blk.7.ffn_gate.weight",
		"model.layers.7.mlp.up_proj.weight":               "blk.7.ffn_up.weight",
		"model.layers.7.mlp.down_proj.weight":             "blk.7.ffn_down.weight",
	} {
		got, _, ok := TensorName(hf)
		if !ok || got != want {
			t.Errorf("TensorName(%q) = %q, %v; want %q", hf, got, ok, want)
		}
		back, _, ok := HFTensorName(want)
		if !ok || back != hf {
			t.Errorf("HFTensorName(%q) = %q, %v; want %q", want, back, ok, hf)
		}
	}
	for _, bad := range []string{"blk.x.attn_q.weight", "blk.-1.attn_q.weight", "blk.01.attn_q.weight", "blk.0.attn_qkv.weight", "rope_freqs.weight", "blk.0"} {
		if hf, _, ok := HFTensorName(bad); ok {
			t.Errorf("HFTensorName(%q) = %q, want no name", bad, hf)
		}
	}
}
