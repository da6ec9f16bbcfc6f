package tokenizer

import (
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tune-dev/tune/checkpoints/gguf"
)

// llama.cpp's token types (llama_token_type / gguf TokenType), the values
// of tokenizer.ggml.token_type.
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

// knownPreTokenizers are the byte-level pre-tokenizers llama.cpp knows, by
// the name it gives them (tokenizer.ggml.pre), with the Hugging Face
// pre_tokenizer that splits the same way (llama-vocab.cpp's regex_exprs for
// that name). convert_hf_to_gguf recognises a tokenizer by hashing its output
// on a test text; comparing the pre-tokenizer is the same decision for the
// tokenizers tune supports, without the test text.
var knownPreTokenizers = []ggufPreTokenizer{
	{names: []string{"llama-bpe", "llama3", "llama-v3"}, regex: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, ignoreMerges: true, cleanSpaces: true},
	{names: []string{"qwen2", "deepseek-r1-qwen"}, regex: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, nfc: true},
	{names: []string{"smollm"}, digits: true, gpt2: true},
	{names: []string{"gpt-2", "gpt2"}, gpt2: true},
}

type ggufPreTokenizer struct {
	names        []string // the first is the one tune writes
	regex        string   // a Split's pattern, "" for none
	digits       bool     // a Digits(individual_digits) step first
	gpt2         bool     // ByteLevel's own GPT-2 regex
	ignoreMerges bool     // llama.cpp looks a whole word up before merging
	nfc          bool     // the Hugging Face tokenizer normalizes to NFC first
	cleanSpaces  bool     // decoding cleans up spaces (llama.cpp's clean_spaces)
}

// preTokenizerName names a byte-level pre-tokenizer as llama.cpp does.
func preTokenizerName(pre []PreTokenizerStep) (string, error) {
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
	if len(regexes) == 1 {
		for _, k := range knownPreTokenizers {
			if k.digits == digits && (k.gpt2 && regexes[0] == "gpt2" || !k.gpt2 && regexes[0] == k.regex) {
				return k.names[0], nil
			}
		}
	}
	return "", fmt.Errorf("pre-tokenizer %q is not one tune can name for llama.cpp (known: llama-bpe, qwen2, gpt-2, smollm)", regexes)
}

// GGUFMetadata is the tokenizer.* metadata of a GGUF file for this
// tokenizer, padded to vocab entries (the embedding's rows; a GGUF vocabulary
// must match it). It follows convert_hf_to_gguf: a SentencePiece-style BPE
// (byte_fallback, ▁ for spaces) becomes tokenizer.ggml.model "llama" with
// scores and token types; a byte-level BPE becomes "gpt2" with merges and
// the pre-tokenizer's name. fallbackIDs are config.json's bos/eos/padding
// ids, used where the tokenizer names none.
func (t *Tokenizer) GGUFMetadata(vocab int, fallbackIDs map[string]int) ([]gguf.KV, error) {
	v := t.Vocabulary()
	byteLevel := v.ByteLevel
	if !byteLevel && !v.ByteFallback {
		return nil, fmt.Errorf("neither byte-level nor byte-fallback BPE; llama.cpp has no matching tokenizer")
	}

	n := vocab
	for _, id := range v.Tokens {
		n = max(n, id+1)
	}
	for _, a := range v.Added {
		n = max(n, a.ID+1)
	}
	if n > vocab {
		return nil, fmt.Errorf("token id %d is beyond vocab_size %d of config.json", n-1, vocab)
	}
	tokens := make([]string, vocab)
	types := make([]int32, vocab)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("[PAD%d]", i)
		types[i] = TokenUnused
	}
	byteToken := regexp.MustCompile(`^<0x[0-9A-Fa-f]{2}>$`)
	for s, id := range v.Tokens {
		tokens[id], types[id] = s, TokenNormal
		if v.ByteFallback && byteToken.MatchString(s) {
			types[id] = TokenByte
		}
	}
	for _, a := range v.Added {
		tokens[a.ID] = a.Content
		if a.Special {
			types[a.ID] = TokenControl
		} else {
			types[a.ID] = TokenUserDefined
		}
	}
	// The unknown token stays UNKNOWN even when it is also an added special
	// token (Llama 2 lists <unk> there), as in convert_hf_to_gguf's output.
	if v.Unknown >= 0 {
		types[v.Unknown] = TokenUnknown
	}

	var kv []gguf.KV
	if byteLevel {
		preName, err := preTokenizerName(v.PreTokenizer)
		if err != nil {
			return nil, err
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

	special := func(key string, id int, ok bool) {
		if !ok {
			id, ok = fallbackIDs[key]
		}
		if ok && id >= 0 && id < vocab {
			kv = append(kv, gguf.KV{Key: "tokenizer.ggml." + key + "_token_id", Value: uint32(id)})
		}
	}
	bos, hasBOS := t.BOS()
	eos, hasEOS := t.EOS()
	pad, hasPAD := t.PAD()
	special("bos", bos, hasBOS)
	special("eos", eos, hasEOS)
	special("unknown", v.Unknown, v.Unknown >= 0)
	special("padding", pad, hasPAD)
	// Whether BOS/EOS are added is what the tokenizer does, whichever of
	// tokenizer.json's post-processor or tokenizer_config's flags decides it.
	probe := t.Encode("a", true)
	addBOS := hasBOS && len(probe) > 0 && probe[0] == bos
	addEOS := hasEOS && len(probe) > 1 && probe[len(probe)-1] == eos
	kv = append(kv,
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: addBOS},
		gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: addEOS})
	if c := t.ChatTemplate(); c != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Value: c})
	}
	return kv, nil
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
		if t == TokenUserDefined || t == TokenControl {
			scores[i] = -1000
		}
	}
	seen := make([]bool, len(tokens))
	for rank, m := range merges {
		for k := 1; k < len(m); k++ {
			if m[k] != ' ' {
				continue
			}
			if id, ok := vocab[m[:k]+m[k+1:]]; ok && !seen[id] && types[id] == TokenNormal {
				seen[id] = true
				scores[id] = -float32(rank + 1)
			}
			break
		}
	}
	return scores
}

// ggufVocab is the tokenizer.ggml.* metadata of a GGUF file.
type ggufVocab struct {
	model, pre string
	tokens     []string
	types      []int32
	scores     []float32
	merges     []string
	ids        map[string]int // bos, eos, unknown, padding -> id
	addBOS     bool
	addEOS     bool
	spacePrefx bool
	template   string
}

// FromGGUF builds the tokenizer a GGUF file's tokenizer.ggml.* metadata
// describes, as llama.cpp reads it: "gpt2" is a byte-level BPE split by the
// pre-tokenizer tokenizer.ggml.pre names, "llama" a SentencePiece BPE that
// merges by score with byte fallback. It builds the tokenizer.json Hugging
// Face would have for the same vocabulary, so encoding runs the same code as
// for a tokenizer.json. Errors name the metadata key.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v, err := readGGUFVocab(f)
	if err != nil {
		return nil, err
	}
	doc, cleanup, err := v.tokenizerJSON()
	if err != nil {
		return nil, err
	}
	t, err := parseTokenizer(doc)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.ggml metadata: %w", err)
	}
	t.vocabSize = max(t.vocabSize, len(v.tokens))
	t.specialNames = map[string]string{}
	for key, name := range map[string]string{"bos": "bos_token", "eos": "eos_token", "unknown": "unk_token", "padding": "pad_token"} {
		if id, ok := v.ids[key]; ok {
			t.specialNames[name] = v.tokens[id]
		}
	}
	t.bos, t.eos, t.pad = idOr(v.ids, "bos"), idOr(v.ids, "eos"), idOr(v.ids, "padding")
	var w wrapProcessor
	if v.addBOS && t.bos >= 0 {
		w.before = []int{t.bos}
	}
	if v.addEOS && t.eos >= 0 {
		w.after = []int{t.eos}
	}
	t.post = w
	t.chatTemplate = v.template
	t.cleanup = cleanup
	return t, nil
}

// GGUFFiles writes the tokenizer of a GGUF file as Hugging Face files, for
// a model directory made from a GGUF base (a merged export): the
// tokenizer.json FromGGUF builds, and a tokenizer_config.json with the special
// tokens, whether BOS/EOS are added, the chat template and the clean-up of
// spaces. Loading them gives FromGGUF's tokenizer.
func GGUFFiles(f *gguf.File) (tokenizerJSON, tokenizerConfig []byte, err error) {
	v, err := readGGUFVocab(f)
	if err != nil {
		return nil, nil, err
	}
	doc, cleanup, err := v.tokenizerJSON()
	if err != nil {
		return nil, nil, err
	}
	cfg := map[string]any{"add_bos_token": v.addBOS, "add_eos_token": v.addEOS, "clean_up_tokenization_spaces": cleanup}
	for key, name := range map[string]string{"bos": "bos_token", "eos": "eos_token", "unknown": "unk_token", "padding": "pad_token"} {
		if id, ok := v.ids[key]; ok {
			cfg[name] = v.tokens[id]
		}
	}
	if v.template != "" {
		cfg["chat_template"] = v.template
	}
	c, err := json.MarshalIndent(cfg, "", "  ")
	return doc, c, err
}

func idOr(ids map[string]int, key string) int {
	if id, ok := ids[key]; ok {
		return id
	}
	return -1
}

func readGGUFVocab(f *gguf.File) (*ggufVocab, error) {
	v := &ggufVocab{ids: map[string]int{}}
	var err error
	if v.model, err = meta[string](f, "tokenizer.ggml.model", true); err != nil {
		return nil, err
	}
	if v.model != "gpt2" && v.model != "llama" {
		return nil, fmt.Errorf("tokenizer.ggml.model: %q is not supported; expected gpt2 (byte-level BPE) or llama (SentencePiece)", v.model)
	}
	if v.pre, err = meta[string](f, "tokenizer.ggml.pre", false); err != nil {
		return nil, err
	}
	if v.tokens, err = meta[[]string](f, "tokenizer.ggml.tokens", true); err != nil {
		return nil, err
	}
	if len(v.tokens) == 0 {
		return nil, fmt.Errorf("tokenizer.ggml.tokens: empty")
	}
	if v.types, err = meta[[]int32](f, "tokenizer.ggml.token_type", false); err != nil {
		return nil, err
	}
	if v.types == nil {
		v.types = make([]int32, len(v.tokens))
		for i := range v.types {
			v.types[i] = TokenNormal
		}
	}
	if v.scores, err = meta[[]float32](f, "tokenizer.ggml.scores", false); err != nil {
		return nil, err
	}
	if v.scores == nil {
		v.scores = make([]float32, len(v.tokens))
	}
	for key, n := range map[string]int{"tokenizer.ggml.token_type": len(v.types), "tokenizer.ggml.scores": len(v.scores)} {
		if n != len(v.tokens) {
			return nil, fmt.Errorf("%s: %d entries for %d tokens", key, n, len(v.tokens))
		}
	}
	if v.merges, err = meta[[]string](f, "tokenizer.ggml.merges", v.model == "gpt2"); err != nil {
		return nil, err
	}
	for _, key := range []string{"bos", "eos", "unknown", "padding"} {
		k := "tokenizer.ggml." + key + "_token_id"
		raw, ok := f.Lookup(k)
		if !ok {
			continue
		}
		id, ok := gguf.Int(raw)
		if !ok || id < 0 || id >= int64(len(v.tokens)) {
			return nil, fmt.Errorf("%s: %v; expected a token id below %d", k, raw, len(v.tokens))
		}
		v.ids[key] = int(id)
	}
	// llama.cpp's defaults: SentencePiece and Llama 3 add BOS, others not.
	addBOS := v.model == "llama" || slices.Contains(knownPreTokenizers[0].names, v.pre)
	if v.addBOS, err = metaOr(f, "tokenizer.ggml.add_bos_token", addBOS); err != nil {
		return nil, err
	}
	if v.addEOS, err = metaOr(f, "tokenizer.ggml.add_eos_token", false); err != nil {
		return nil, err
	}
	if v.spacePrefx, err = metaOr(f, "tokenizer.ggml.add_space_prefix", v.model == "llama"); err != nil {
		return nil, err
	}
	if v.template, err = meta[string](f, "tokenizer.chat_template", false); err != nil {
		return nil, err
	}
	return v, nil
}

// meta reads a metadata value of type T; a missing key is an error when
// required, else T's zero value.
func meta[T any](f *gguf.File, key string, required bool) (T, error) {
	var zero T
	raw, ok := f.Lookup(key)
	if !ok {
		if required {
			return zero, fmt.Errorf("%s: missing", key)
		}
		return zero, nil
	}
	v, ok := raw.(T)
	if !ok {
		return zero, fmt.Errorf("%s: expected %T, got %T", key, zero, raw)
	}
	return v, nil
}

func metaOr[T any](f *gguf.File, key string, def T) (T, error) {
	if _, ok := f.Lookup(key); !ok {
		return def, nil
	}
	return meta[T](f, key, true)
}

// tokenizerJSON is the tokenizer.json of the vocabulary: every token in
// model.vocab (a string listed twice keeps its last id, as llama.cpp's
// token-to-id map does), control, user-defined and unknown tokens also as
// added tokens matched on the raw text, as llama.cpp's special-token
// partition matches them. Two things GGUF does not record are taken from the
// Hugging Face tokenizers of the models whose pre-tokenizer it names: Qwen's
// NFC normalizer (llama.cpp skips it, so it splits non-NFC text differently
// from the model's own tokenizer) and Llama 3's clean-up of spaces on decoding
// (which llama.cpp does too).
func (v *ggufVocab) tokenizerJSON() (doc []byte, cleanup bool, err error) {
	vocab := make(map[string]int, len(v.tokens))
	var added []map[string]any
	for id, s := range v.tokens {
		if !utf8.ValidString(s) {
			return nil, false, fmt.Errorf("tokenizer.ggml.tokens: token %d is not valid UTF-8", id)
		}
		vocab[s] = id
		if typ := v.types[id]; (typ == TokenControl || typ == TokenUserDefined || typ == TokenUnknown) && s != "" {
			added = append(added, map[string]any{"id": id, "content": s, "special": typ != TokenUserDefined, "normalized": false})
		}
	}
	model := map[string]any{"type": "BPE", "vocab": vocab}
	tj := map[string]any{"model": model, "added_tokens": added}
	switch v.model {
	case "gpt2":
		model["merges"] = v.merges
		var steps []any
		pre, ok := preTokenizerByName(v.pre)
		if !ok {
			names := []string{}
			for _, k := range knownPreTokenizers {
				names = append(names, k.names...)
			}
			return nil, false, fmt.Errorf("tokenizer.ggml.pre: %q is not a pre-tokenizer tune reproduces (known: %s)", v.pre, strings.Join(names, ", "))
		}
		if pre.digits {
			steps = append(steps, map[string]any{"type": "Digits", "individual_digits": true})
		}
		if pre.regex != "" {
			steps = append(steps, map[string]any{"type": "Split", "pattern": map[string]any{"Regex": pre.regex}, "behavior": "Isolated", "invert": false})
		}
		steps = append(steps, map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": pre.gpt2})
		tj["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": steps}
		tj["decoder"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}
		model["ignore_merges"], cleanup = pre.ignoreMerges, pre.cleanSpaces
		if pre.nfc {
			tj["normalizer"] = map[string]any{"type": "NFC"}
		}
	case "llama":
		model["merges"] = v.spmMerges(vocab)
		model["byte_fallback"] = true
		model["fuse_unk"] = true
		if id, ok := v.ids["unknown"]; ok {
			model["unk_token"] = v.tokens[id]
		}
		norm := []any{map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}}
		if v.spacePrefx {
			norm = append([]any{map[string]any{"type": "Prepend", "prepend": "▁"}}, norm...)
		}
		tj["normalizer"] = map[string]any{"type": "Sequence", "normalizers": norm}
		tj["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}}
	}
	doc, err = json.Marshal(tj)
	return doc, cleanup, err
}

func preTokenizerByName(name string) (ggufPreTokenizer, bool) {
	for _, k := range knownPreTokenizers {
		if slices.Contains(k.names, name) {
			return k, true
		}
	}
	return knownPreTokenizers[0], false
}

// maxSPMPiece bounds the pieces spmMerges splits, in bytes.
const maxSPMPiece = 256

// spmMerges turns SentencePiece scores into BPE merges: llama.cpp's
// tokenizer repeatedly joins the adjacent pair whose join is a token with the
// highest score, which is BPE with a merge "a b" for every split of a normal
// token into two tokens, ranked by the token's score (ties by id).
func (v *ggufVocab) spmMerges(vocab map[string]int) [][2]string {
	type cand struct {
		id    int
		score float32
	}
	var order []cand
	for id, s := range v.tokens {
		// Splitting costs the square of a token's length: a token longer
		// than any real piece (Llama 2's longest is 16 characters) is
		// left to be matched whole, so a hostile vocabulary cannot stall.
		if v.types[id] == TokenNormal && len(s) <= maxSPMPiece && utf8.RuneCountInString(s) > 1 && vocab[s] == id {
			order = append(order, cand{id, v.scores[id]})
		}
	}
	slices.SortStableFunc(order, func(a, b cand) int { return cmp.Compare(b.score, a.score) })
	var merges [][2]string
	for _, c := range order {
		s := v.tokens[c.id]
		for k := range s {
			if k == 0 {
				continue
			}
			if _, ok := vocab[s[:k]]; !ok {
				continue
			}
			if _, ok := vocab[s[k:]]; ok {
				merges = append(merges, [2]string{s[:k], s[k:]})
			}
		}
	}
	return merges
}

func loadGGUF(path string) (*Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	t, err := FromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t, nil
}
