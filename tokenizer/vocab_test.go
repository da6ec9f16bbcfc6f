package tokenizer

import (
	"slices"
	"testing"
)

// TestVocabulary: what the GGUF writer reads is tokenizer.json's own content,
// hand-checked against the small files of tokenizer_test.go.
func TestVocabulary(t *testing.T) {
	for _, pair := range []bool{false, true} {
		v := mustParse(t, smallByteLevel(pair), nil).Vocabulary()
		wantMerges := []string{"Ġ t", "h e", "Ġt he", "i n", "Ġ Ġ", "ĠĠ ĠĠ", "1 2", "Ċ Ċ"}
		if !slices.Equal(v.Merges, wantMerges) {
			t.Errorf("pair merges %v: merges %q, want %q", pair, v.Merges, wantMerges)
		}
		if len(v.Tokens) != 256+8 || v.Tokens["Ġthe"] != 258 || v.Unknown != -1 || v.ByteFallback || !v.ByteLevel {
			t.Errorf("tokens %d, Ġthe %d, unknown %d, byte fallback %v, byte level %v", len(v.Tokens), v.Tokens["Ġthe"], v.Unknown, v.ByteFallback, v.ByteLevel)
		}
		wantPre := []PreTokenizerStep{{Type: "Split", Pattern: llama3Pattern}, {Type: "ByteLevel"}}
		if !slices.Equal(v.PreTokenizer, wantPre) {
			t.Errorf("pre-tokenizer %+v, want %+v", v.PreTokenizer, wantPre)
		}
		wantAdded := []AddedToken{{264, "<|begin_of_text|>", true}, {265, "<|im_start|>", true}, {266, "<|im_end|>", true}, {267, "<think>", false}}
		if !slices.Equal(v.Added, wantAdded) {
			t.Errorf("added %+v, want %+v", v.Added, wantAdded)
		}
	}

	v := mustParse(t, smallSentencePiece(), nil).Vocabulary()
	if !v.ByteFallback || v.ByteLevel || v.Unknown != 0 || len(v.PreTokenizer) != 0 || len(v.Merges) != 10 || v.Merges[4] != "▁hel lo" {
		t.Errorf("SentencePiece-style: byte fallback %v, byte level %v, unknown %d, pre %v, merges %q", v.ByteFallback, v.ByteLevel, v.Unknown, v.PreTokenizer, v.Merges)
	}

	tj := smallByteLevel(false)
	tj["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Digits", "individual_digits": true},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
	}}
	tj["decoder"] = nil
	v = mustParse(t, tj, nil).Vocabulary()
	wantPre := []PreTokenizerStep{{Type: "Digits", IndividualDigits: true}, {Type: "ByteLevel", UseRegex: true}}
	if !slices.Equal(v.PreTokenizer, wantPre) || !v.ByteLevel {
		t.Errorf("SmolLM-style pre-tokenizer %+v (byte level %v), want %+v", v.PreTokenizer, v.ByteLevel, wantPre)
	}
}
