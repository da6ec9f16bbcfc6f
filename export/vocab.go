package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/tokenizer"
)

// vocabKV builds the tokenizer.* metadata from dir's tokenizer (see
// tokenizer.GGUFMetadata), padded to vocab entries.
func vocabKV(dir string, vocab int) ([]gguf.KV, error) {
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("GGUF needs the tokenizer: %w", err)
	}
	kv, err := tok.GGUFMetadata(vocab, configTokenIDs(dir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer.json"), err)
	}
	return kv, nil
}

// configTokenIDs reads bos/eos/pad ids from config.json, which
// convert_hf_to_gguf falls back on when tokenizer_config.json names none. A
// list (Llama 3.1's several eos ids) names no single token and is skipped.
func configTokenIDs(dir string) map[string]int {
	out := map[string]int{}
	var c map[string]json.RawMessage
	b, err := os.ReadFile(filepath.Join(dir, hf.ConfigFile))
	if err != nil || json.Unmarshal(b, &c) != nil {
		return out
	}
	for key, field := range map[string]string{"bos": "bos_token_id", "eos": "eos_token_id", "padding": "pad_token_id"} {
		var id int
		if raw, ok := c[field]; ok && json.Unmarshal(raw, &id) == nil {
			out[key] = id
		}
	}
	return out
}
