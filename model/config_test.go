package model

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// llamaConfig is a valid config.json (TinyLlama's sizes) to vary.
func llamaConfig() map[string]any {
	return map[string]any{
		"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
		"num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
		"vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
	}
}

// TestParseConfigRefusesHostileSizes: every size is checked against a bound
// and against the others, with the field named, before anything is sized
// from it.
func TestParseConfigRefusesHostileSizes(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"a billion layers", map[string]any{"num_hidden_layers": 1000000000}, "num_hidden_layers: 1000000000"},
		{"huge hidden", map[string]any{"hidden_size": 1 << 30, "num_attention_heads": 1 << 10}, "hidden_size"},
		{"huge vocab", map[string]any{"vocab_size": 1 << 40}, "vocab_size"},
		{"huge intermediate", map[string]any{"intermediate_size": 1 << 31}, "intermediate_size"},
		{"huge heads", map[string]any{"num_attention_heads": 1 << 20, "num_key_value_heads": 1 << 20, "head_dim": 64}, "num_attention_heads"},
		{"huge head_dim", map[string]any{"head_dim": 1 << 20}, "head_dim"},
		{"q too wide", map[string]any{"num_attention_heads": 1024, "num_key_value_heads": 1024, "head_dim": 1024}, "num_attention_heads × head_dim"},
		{"huge positions", map[string]any{"max_position_embeddings": 1 << 40}, "max_position_embeddings"},
		{"kv heads do not divide", map[string]any{"num_key_value_heads": 5}, "num_key_value_heads"},
		{"more kv heads than heads", map[string]any{"num_key_value_heads": 64}, "num_key_value_heads"},
		{"negative layers", map[string]any{"num_hidden_layers": -1}, "num_hidden_layers: -1"},
		{"layers beyond int64", map[string]any{"num_hidden_layers": 1e30}, "num_hidden_layers"},
		{"fractional layers", map[string]any{"num_hidden_layers": 2.5}, "num_hidden_layers"},
		{"odd head_dim", map[string]any{"head_dim": 63}, "head_dim"},
		{"negative sliding window", map[string]any{"model_type": "mistral", "sliding_window": -5}, "sliding_window: -5"},
		{"negative eps", map[string]any{"rms_norm_eps": -1}, "rms_norm_eps"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := llamaConfig()
			maps.Copy(m, c.set)
			b, _ := json.Marshal(m)
			_, err := ParseConfig(b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
	b, _ := json.Marshal(llamaConfig())
	c, err := ParseConfig(b)
	if err != nil || c.Layers != 22 || c.HeadDim != 64 || c.KVHeads != 4 {
		t.Fatalf("valid config: %+v, %v", c, err)
	}
}

// TestSlidingWindow: mistral's null and 0 mean full attention; a window is kept.
func TestSlidingWindow(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want int
	}{{`null`, 0}, {`0`, 0}, {`4096`, 4096}} {
		m := llamaConfig()
		m["model_type"] = "mistral"
		m["sliding_window"] = json.RawMessage(c.raw)
		b, _ := json.Marshal(m)
		cfg, err := ParseConfig(b)
		if err != nil || cfg.SlidingWindow != c.want {
			t.Errorf("sliding_window %s: got %d, %v; want %d", c.raw, cfg.SlidingWindow, err, c.want)
		}
	}
}

// FuzzParseConfig: whatever config.json holds, ParseConfig returns an error
// or a configuration whose sizes are positive, within the bounds and
// consistent, so a model can be sized from it. Seeds: testdata/fuzz/FuzzParseConfig.
func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		for name, v := range map[string][2]int{
			"layers": {c.Layers, maxLayers}, "hidden": {c.Hidden, maxHidden}, "intermediate": {c.Intermediate, maxIntermediate},
			"heads": {c.Heads, maxHeads}, "kv heads": {c.KVHeads, maxHeads}, "head dim": {c.HeadDim, maxHeadDim},
			"vocab": {c.Vocab, maxVocab}, "positions": {c.MaxPositions, maxPositions},
		} {
			if v[0] <= 0 || v[0] > v[1] {
				t.Fatalf("%s = %d accepted (bound %d)", name, v[0], v[1])
			}
		}
		if c.Heads%c.KVHeads != 0 || c.HeadDim%2 != 0 || c.Heads*c.HeadDim > maxProjection || c.SlidingWindow < 0 {
			t.Fatalf("inconsistent sizes accepted: %+v", c)
		}
		if !(c.RMSNormEps > 0) || !(c.RopeTheta > 1) {
			t.Fatalf("eps %g, theta %g accepted", c.RMSNormEps, c.RopeTheta)
		}
	})
}
