package peft

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestModuleLayoutFollowsPEFT: ranks and alphas resolve as PEFT's
// get_pattern_key does (hand-worked): the first key in file order whose
// regex matches a suffix of the name starting at a dot wins; a key written
// later that also matches does not; no match gives r and lora_alpha.
func TestModuleLayoutFollowsPEFT(t *testing.T) {
	var cfg Config
	err := decodeConfig([]byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16,
		"rank_pattern": {"model.layers.1.self_attn.q_proj": 4, "q_proj": 2, "layers.1.self_attn.q_proj": 99, "mlp\\..*": 3},
		"alpha_pattern": {"v_proj": 5}}`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := cfg.Layout()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		module string
		r      int
		alpha  float64
	}{
		{"model.layers.1.self_attn.q_proj", 4, 16},  // the first key, whole name
		{"model.layers.11.self_attn.q_proj", 2, 16}, // not layer 1: "q_proj" after a dot
		{"model.layers.0.self_attn.v_proj", 8, 5},
		{"model.layers.0.mlp.up_proj", 3, 16},
		{"model.layers.0.self_attn.xq_proj", 8, 16}, // "q_proj" must follow a dot
	} {
		if r, a := l.Rank(c.module), l.Alpha(c.module); r != c.r || a != c.alpha {
			t.Errorf("%s: r %d alpha %g, want %d and %g", c.module, r, a, c.r, c.alpha)
		}
	}
	// Written back in the same order, as an object.
	b, err := json.Marshal(cfg.RankPattern)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"model.layers.1.self_attn.q_proj":4,"q_proj":2,"layers.1.self_attn.q_proj":99,"mlp\\..*":3}`; string(b) != want {
		t.Errorf("rank_pattern written as %s, want %s", b, want)
	}
	if b, _ := json.Marshal(NewConfig("m", 8, 16, 0, nil, nil, false)); !strings.Contains(string(b), `"rank_pattern":{}`) {
		t.Errorf("an empty rank_pattern must be {} as PEFT writes it: %s", b)
	}
}

// TestReadPatternErrors: a bad pattern is one line naming the file, the
// field and the key.
func TestReadPatternErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, WeightsFile), []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '}, 0o644)
	for _, c := range []struct{ cfg, want string }{
		{`"rank_pattern": {"q_proj": 2.5}`, `rank_pattern["q_proj"]: 2.5; expected a positive integer`},
		{`"rank_pattern": {"q_proj": 0}`, `rank_pattern["q_proj"]: 0; expected a positive integer`},
		{`"rank_pattern": {"q_proj": 262145}`, `rank_pattern["q_proj"]: 262145; expected a positive integer at most 262144`},
		{`"alpha_pattern": {"q_proj": "x"}`, `field alpha_pattern: "q_proj": got "x", expected a number`},
		{`"alpha_pattern": [1]`, `field alpha_pattern: not a JSON object`},
		{`"rank_pattern": {"(?=q)_proj": 2}`, `rank_pattern: key "(?=q)_proj" is not a regular expression tune can match`},
		{`"rank_pattern": {"q": 2, "q": 3}`, `duplicate key "q"`},
	} {
		path := filepath.Join(dir, ConfigFile)
		os.WriteFile(path, []byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16, `+c.cfg+`}`), 0o644)
		_, st, err := Read(dir)
		if st != nil {
			st.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line naming %s with %q", c.cfg, err, path, c.want)
		}
	}
}

// FuzzDecodeConfig: adapter_config.json comes from anywhere (a hub, a
// colleague); decoding never panics, and what decodes resolves every module
// or fails cleanly, and writes back to the same patterns in the same order.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "rank_pattern": {"q_proj": 4}, "alpha_pattern": {"model.layers.0.mlp.down_proj": 2}}`))
	f.Add([]byte(`{"r": 8, "target_modules": "q_proj", "layers_to_transform": 1, "rank_pattern": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg Config
		if decodeConfig(data, &cfg) != nil {
			return
		}
		if l, err := cfg.Layout(); err == nil {
			l.Rank("model.layers.0.self_attn.q_proj")
			l.Alpha("model.layers.0.self_attn.q_proj")
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			return // e.g. a NaN cannot be written back
		}
		var back Config
		if err := decodeConfig(b, &back); err != nil {
			t.Fatalf("written config does not decode: %v\n%s", err, b)
		}
		if !slices.Equal(back.RankPattern, cfg.RankPattern) || !slices.Equal(back.AlphaPattern, cfg.AlphaPattern) {
			t.Fatalf("patterns changed in a round trip: %v %v -> %v %v", cfg.RankPattern, cfg.AlphaPattern, back.RankPattern, back.AlphaPattern)
		}
	})
}
