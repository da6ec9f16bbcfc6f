package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/checkpoints/hf"
	"github.com/tune-dev/tune/tokenizer"
)

// llama.cpp's token types (llama_token_type / gguf TokenType).
const (
	tokNormal      int32 = 1
	tokUnknown     int32 = 2
	tokControl     int32 = 3
	tokUserDefined int32 = 4
	tokUnused      int32 = 5
	tokByte        int32 = 6
)

// Split regexes of the byte-level pre-tokenizers llama.cpp knows, by the
// name it gives them (tokenizer.ggml.pre). convert_hf_to_gguf recognises a
// tokenizer by hashing its output on a test text; comparing the regex is the
// same decision for the tokenizers tune supports, without the test text.
var knownPreTokenizers = []struct{ name, regex string }{
	{"llama-bpe", `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
	{"qwen2", `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
}

// vocabKV builds the tokenizer.* metadata from dir's tokenizer.json and
// tokenizer_config.json, padded to vocab entries (the embedding's rows; a
// GGUF vocabulary must match it). It follows convert_hf_to_gguf: a
// SentencePiece-style BPE (byte_fallback, ▁ for spaces) becomes
// tokenizer.ggml.model "llama" with scores and token types; a byte-level BPE
// becomes "gpt2" with merges and the pre-tokenizer's name.
func vocabKV(dir string, vocab int) ([]gguf.KV, error) {
	path := filepath.Join(dir, "tokenizer.json")
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("GGUF needs the tokenizer: %w", err)
	}
	v := tok.Vocabulary()
	byteLevel := v.ByteLevel
	if !byteLevel && !v.ByteFallback {
		return nil, fmt.Errorf("%s: neither byte-level nor byte-fallback BPE; llama.cpp has no matching tokenizer", path)
	}

	n := vocab
	for _, id := range v.Tokens {
		n = max(n, id+1)
	}
	for _, a := range v.Added {
		n = max(n, a.ID+1)
	}
	if n > vocab {
		return nil, fmt.Errorf("%s: token id %d is beyond vocab_size %d of config.json", path, n-1, vocab)
	}
	tokens := make([]string, vocab)
	types := make([]int32, vocab)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("[PAD%d]", i)
		types[i] = tokUnused
	}
	byteToken := regexp.MustCompile(`^<0x[0-9A-Fa-f]{2}>$`)
	for s, id := range v.Tokens {
		tokens[id], types[id] = s, tokNormal
		if v.ByteFallback && byteToken.MatchString(s) {
			types[id] = tokByte
		}
	}
	for _, a := range v.Added {
		tokens[a.ID] = a.Content
		if a.Special {
			types[a.ID] = tokControl
		} else {
			types[a.ID] = tokUserDefined
		}
	}
	// The unknown token stays UNKNOWN even when it is also an added special
	// token (Llama 2 lists <unk> there), as in convert_hf_to_gguf's output.
	if v.Unknown >= 0 {
		types[v.Unknown] = tokUnknown
	}

	var kv []gguf.KV
	if byteLevel {
		preName, err := preTokenizerName(v.PreTokenizer)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		kv = append(kv,
			gguf.KV{Key: "tokenizer.ggml.model", Value: "gpt2"},
			gguf.KV{Key: "tokenizer.ggml.pre", Value: preName},
			gguf.KV{Key: "tokenizer.ggml.tokens", Value: tokens},
			gguf.KV{Key: "tokenizer.ggml.token_type", Value: types},
			gguf.KV{Key: "tokenizer.ggml.merges", Value: v.Merges})
	} else {
		kv = append(kv,
			gguf.KV{Key: "tokenizer.ggml.model", Value: "llama"},
			gguf.KV{Key: "tokenizer.ggml.pre", Value: "default"},
			gguf.KV{Key: "tokenizer.ggml.tokens", Value: tokens},
			gguf.KV{Key: "tokenizer.ggml.scores", Value: spmScores(tokens, types, v.Merges, v.Tokens)},
			gguf.KV{Key: "tokenizer.ggml.token_type", Value: types})
	}

	cfgIDs := configTokenIDs(dir)
	special := func(key string, id int, ok bool) {
		if !ok {
			id, ok = cfgIDs[key]
		}
		if ok && id >= 0 && id < vocab {
			kv = append(kv, gguf.KV{Key: "tokenizer.ggml." + key + "_token_id", Value: uint32(id)})
		}
	}
	bos, hasBOS := tok.BOS()
	eos, hasEOS := tok.EOS()
	pad, hasPAD := tok.PAD()
	special("bos", bos, hasBOS)
	special("eos", eos, hasEOS)
	special("unknown", v.Unknown, v.Unknown >= 0)
	special("padding", pad, hasPAD)
	// Whether BOS/EOS are added is what the tokenizer does, whichever of
	// tokenizer.json's post-processor or tokenizer_config's flags decides it.
	probe := tok.Encode("a", true)
	addBOS := hasBOS && len(probe) > 0 && probe[0] == bos
	addEOS := hasEOS && len(probe) > 1 && probe[len(probe)-1] == eos
	kv = append(kv,
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: addBOS},
		gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: addEOS})
	if t := tok.ChatTemplate(); t != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Value: t})
	}
	return kv, nil
}

// preTokenizerName names a byte-level pre-tokenizer as llama.cpp does.
func preTokenizerName(pre []tokenizer.PreTokenizerStep) (string, error) {
	var regexes []string
	digits := false
	for _, c := range pre {
		switch c.Type {
		case "Split":
			regexes = append(regexes, c.Pattern)
		case "Digits":
			digits = c.IndividualDigits
		case "ByteLevel":
			if c.UseRegex {
				regexes = append(regexes, "gpt2")
			}
		default:
			return "", fmt.Errorf("pre_tokenizer %s is not one llama.cpp reproduces", c.Type)
		}
	}
	switch {
	case len(regexes) == 1 && regexes[0] == "gpt2" && digits:
		return "smollm", nil
	case len(regexes) == 1 && regexes[0] == "gpt2":
		return "gpt-2", nil
	case len(regexes) == 1 && !digits:
		for _, k := range knownPreTokenizers {
			if regexes[0] == k.regex {
				return k.name, nil
			}
		}
	}
	return "", fmt.Errorf("pre-tokenizer %q is not one tune can name for llama.cpp (known: llama-bpe, qwen2, gpt-2, smollm)", regexes)
}

// spmScores gives each token the score llama.cpp's SentencePiece tokenizer
// merges by (the higher, the earlier). A BPE tokenizer.json has merge ranks
// instead of scores, so a token made by a merge scores minus the best rank
// that makes it, which merges in the order the Hugging Face tokenizer does;
// tokens no merge makes (characters, bytes, specials) score 0, and added
// tokens -1000 as convert_hf_to_gguf gives them.
func spmScores(tokens []string, types []int32, merges []string, vocab map[string]int) []float32 {
	scores := make([]float32, len(tokens))
	for i, t := range types {
		if t == tokUserDefined || t == tokControl {
			scores[i] = -1000
		}
	}
	seen := make([]bool, len(tokens))
	for rank, m := range merges {
		for k := 1; k < len(m); k++ {
			if m[k] != ' ' {
				continue
			}
			if id, ok := vocab[m[:k]+m[k+1:]]; ok && !seen[id] && types[id] == tokNormal {
				seen[id] = true
				scores[id] = -float32(rank + 1)
			}
			break
		}
	}
	return scores
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
