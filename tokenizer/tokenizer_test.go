package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// llama3Pattern is the Llama 3 / GPT-4 pre-tokenizer regex.
const llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// smallByteLevel is a real-shaped byte-level tokenizer.json: all 256 byte
// runes, a few merges (both serialisations), the Llama 3 split, special
// tokens and a ByteLevel decoder.
func smallByteLevel(pairMerges bool) map[string]any {
	vocab := map[string]int{}
	for b := range 256 {
		vocab[string(byteRune[b])] = b
	}
	merges := [][2]string{{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}, {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"}, {"1", "2"}, {"Ċ", "Ċ"}}
	var ms []any
	for _, m := range merges {
		vocab[m[0]+m[1]] = len(vocab)
		if pairMerges {
			ms = append(ms, []string{m[0], m[1]})
		} else {
			ms = append(ms, m[0]+" "+m[1])
		}
	}
	n := len(vocab)
	return map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": n, "content": "<|begin_of_text|>", "special": true, "normalized": false},
			map[string]any{"id": n + 1, "content": "<|im_start|>", "special": true, "normalized": false},
			map[string]any{"id": n + 2, "content": "<|im_end|>", "special": true, "normalized": false},
			map[string]any{"id": n + 3, "content": "<think>", "special": false, "normalized": false},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{
			"type":   "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair":   []any{},
			"special_tokens": map[string]any{
				"<|begin_of_text|>": map[string]any{"id": "<|begin_of_text|>", "ids": []int{n}, "tokens": []string{"<|begin_of_text|>"}},
			},
		},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "fuse_unk": false, "byte_fallback": false,
			"ignore_merges": true, "vocab": vocab, "merges": ms,
		},
	}
}

// smallSentencePiece is a Llama 2 shaped tokenizer.json with byte fallback.
func smallSentencePiece() map[string]any {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", b)] = len(vocab)
	}
	for _, s := range []string{"▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "el", "lo", "▁hel", "▁hello", "▁w", "or", "▁wor", "ld", "▁world"} {
		vocab[s] = len(vocab)
	}
	return map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true, "normalized": false},
			map[string]any{"id": 1, "content": "<s>", "special": true, "normalized": false},
			map[string]any{"id": 2, "content": "</s>", "special": true, "normalized": false},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{
			"type":           "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}},
		},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{
			"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true, "vocab": vocab,
			"merges": []string{"▁ h", "e l", "l o", "▁h el", "▁hel lo", "▁ w", "o r", "▁w or", "l d", "▁wor ld"},
		},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, tj map[string]any, cfg map[string]any) *Tokenizer {
	t.Helper()
	var c []byte
	if cfg != nil {
		c = mustJSON(t, cfg)
	}
	tok, err := parseJSON(mustJSON(t, tj), c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestByteLevelSmall(t *testing.T) {
	for _, pair := range []bool{false, true} {
		tok := mustParse(t, smallByteLevel(pair), nil)
		he, _ := tok.TokenID("Ġthe")
		got := tok.Encode(" the", false)
		if !slices.Equal(got, []int{he}) {
			t.Errorf("pair merges=%v: Encode(\" the\") = %v, want [%d]", pair, got, he)
		}
		bos, ok := tok.BOS()
		if !ok {
			t.Fatal("no BOS from the template")
		}
		im, _ := tok.TokenID("<|im_start|>")
		got = tok.Encode("<|im_start|>x", true)
		if want := []int{bos, im, int('x' - 33 + 0)}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("Encode with special = %v", got)
		}
		if s := tok.Decode(got, true); s != "x" {
			t.Errorf("Decode(skip) = %q, want %q", s, "x")
		}
		if s := tok.Decode(got, false); s != "<|begin_of_text|><|im_start|>x" {
			t.Errorf("Decode = %q", s)
		}
		// <think> is a non-special added token: kept by skipSpecial.
		if s := tok.Decode(tok.Encode("a<think>b", false), true); s != "a<think>b" {
			t.Errorf("Decode(skip) of non-special added token = %q", s)
		}
		// Digits split in groups of three, then merge "12".
		toks := tok.Tokens(tok.Encode("12345", false))
		if want := []string{"12", "3", "45"}; slices.Equal(toks, want) {
			t.Errorf("Tokens(12345) = %v: digits were not grouped by 3 first", toks)
		}
		if want := []string{"12", "3", "4", "5"}; !slices.Equal(toks, want) {
			t.Errorf("Tokens(12345) = %v, want %v", toks, want)
		}
	}
}

func TestSentencePieceSmall(t *testing.T) {
	tok := mustParse(t, smallSentencePiece(), map[string]any{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true, "add_eos_token": true})
	hello, _ := tok.TokenID("▁hello")
	world, _ := tok.TokenID("▁world")
	nl, _ := tok.TokenID("<0x0A>")
	got := tok.Encode("hello world\n", true)
	if want := []int{1, hello, world, nl, 2}; !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v (byte fallback for \\n, add_eos_token)", got, want)
	}
	if s := tok.Decode(got, true); s != "hello world\n" {
		t.Errorf("Decode = %q", s)
	}
	// é has no piece: two byte-fallback tokens, decoded back together.
	ids := tok.Encode("hé", false)
	if toks := tok.Tokens(ids); !slices.Equal(toks, []string{"▁h", "<0xC3>", "<0xA9>"}) {
		t.Errorf("Tokens(hé) = %v", toks)
	}
	if s := tok.Decode(ids, false); s != "hé" {
		t.Errorf("Decode(hé) = %q", s)
	}
	// An invalid byte run decodes to one U+FFFD per byte, like HF.
	c3, _ := tok.TokenID("<0xC3>")
	if s := tok.Decode([]int{hello, c3, c3}, false); s != "hello\uFFFD\uFFFD" {
		t.Errorf("Decode(invalid bytes) = %q", s)
	}
	if eos, ok := tok.EOS(); !ok || eos != 2 {
		t.Errorf("EOS = %d, %v", eos, ok)
	}
	if _, ok := tok.PAD(); ok {
		t.Error("PAD set without pad_token")
	}
}

func TestMetaspace(t *testing.T) {
	tj := smallSentencePiece()
	tj["normalizer"] = nil
	tj["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}
	tj["decoder"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}
	tok := mustParse(t, tj, nil)
	hello, _ := tok.TokenID("▁hello")
	world, _ := tok.TokenID("▁world")
	h, _ := tok.TokenID("h")
	if got := tok.Encode("hello world", false); !slices.Equal(got, []int{hello, world}) {
		t.Errorf("Encode = %v", got)
	}
	// prepend_scheme first: no ▁ after an added token.
	if got := tok.Encode("<s>hello", false); !slices.Equal(got[:2], []int{1, h}) {
		t.Errorf("Encode(<s>hello) = %v (%v)", got, tok.Tokens(got))
	}
	if s := tok.Decode([]int{hello, world}, false); s != "hello world" {
		t.Errorf("Decode = %q", s)
	}
}

func TestAddedTokenFlags(t *testing.T) {
	tj := smallByteLevel(false)
	n := len(tj["model"].(map[string]any)["vocab"].(map[string]int)) + 10
	tj["added_tokens"] = append(tj["added_tokens"].([]any),
		map[string]any{"id": n, "content": "[L]", "lstrip": true, "special": true, "normalized": false},
		map[string]any{"id": n + 1, "content": "[R]", "rstrip": true, "special": true, "normalized": false},
		map[string]any{"id": n + 2, "content": "word", "single_word": true, "special": false, "normalized": false},
		map[string]any{"id": n + 3, "content": "<|im_start|>x", "special": true, "normalized": false},
	)
	tok := mustParse(t, tj, nil)
	toks := tok.Tokens(tok.Encode("a  [L]b", false))
	if !slices.Equal(toks, []string{"a", "[L]", "b"}) {
		t.Errorf("lstrip: %v", toks)
	}
	toks = tok.Tokens(tok.Encode("a[R]  b", false))
	if !slices.Equal(toks, []string{"a", "[R]", "b"}) {
		t.Errorf("rstrip: %v", toks)
	}
	if toks = tok.Tokens(tok.Encode("a word b", false)); !slices.Contains(toks, "word") {
		t.Errorf("single_word alone: %v", toks)
	}
	if toks = tok.Tokens(tok.Encode("swordfish", false)); slices.Contains(toks, "word") {
		t.Errorf("single_word inside a word matched: %v", toks)
	}
	// Longest match wins.
	if toks = tok.Tokens(tok.Encode("<|im_start|>xy", false)); toks[0] != "<|im_start|>x" {
		t.Errorf("longest match: %v", toks)
	}
}

func TestCleanUpTokenizationSpaces(t *testing.T) {
	tok := mustParse(t, smallByteLevel(false), map[string]any{"clean_up_tokenization_spaces": true})
	if s := tok.Decode(tok.Encode("a . b , c 's", false), false); s != "a. b, c's" {
		t.Errorf("Decode = %q", s)
	}
}

func TestConfig(t *testing.T) {
	cfg := map[string]any{
		"bos_token":     map[string]any{"__type": "AddedToken", "content": "<|begin_of_text|>"},
		"eos_token":     "<|im_end|>",
		"pad_token":     "<|im_start|>",
		"chat_template": []any{map[string]any{"name": "tool_use", "template": "x"}, map[string]any{"name": "default", "template": "{{ messages }}"}},
	}
	tok := mustParse(t, smallByteLevel(false), cfg)
	for name, f := range map[string]func() (int, bool){"BOS": tok.BOS, "EOS": tok.EOS, "PAD": tok.PAD} {
		if _, ok := f(); !ok {
			t.Errorf("%s not set", name)
		}
	}
	if tok.ChatTemplate() != "{{ messages }}" {
		t.Errorf("ChatTemplate = %q", tok.ChatTemplate())
	}
	if got, want := tok.VocabSize(), 256+8+4; got != want {
		t.Errorf("VocabSize = %d, want %d", got, want)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), mustJSON(t, smallByteLevel(true)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("T"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ChatTemplate() != "T" {
		t.Errorf("ChatTemplate from chat_template.jinja = %q", tok.ChatTemplate())
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("Load(empty dir) error = %v", err)
	}
}

func TestMalformed(t *testing.T) {
	base := func(edit func(m map[string]any)) []byte {
		m := smallByteLevel(false)
		edit(m)
		return mustJSON(t, m)
	}
	model := func(m map[string]any) map[string]any { return m["model"].(map[string]any) }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"syntax", []byte(`{"model": `), "tokenizer.json: invalid JSON"},
		{"not object", []byte(`[1,2]`), "tokenizer.json: expected a JSON object"},
		{"no model", []byte(`{}`), "tokenizer.json: model: missing"},
		{"merge string", base(func(m map[string]any) { model(m)["merges"] = []any{"Ġ t", "abc"} }),
			`tokenizer.json: model.merges[1]: expected "a b" or ["a","b"]`},
		{"merge pair", base(func(m map[string]any) { model(m)["merges"] = []any{[]string{"Ġ", "t"}, []string{"a"}} }),
			`tokenizer.json: model.merges[1]: expected "a b" or ["a","b"]`},
		{"merge number", base(func(m map[string]any) { model(m)["merges"] = []any{"Ġ t", 7} }),
			`tokenizer.json: model.merges[1]: expected "a b" or ["a","b"]`},
		{"merge oov", base(func(m map[string]any) { model(m)["merges"] = []any{"Ġ zz"} }),
			`tokenizer.json: model.merges[0]: merge "Ġ" "zz" uses a token not in model.vocab`},
		{"vocab type", base(func(m map[string]any) { model(m)["vocab"] = []int{1} }), "tokenizer.json: model.vocab: expected"},
		{"unigram", base(func(m map[string]any) { model(m)["type"] = "Unigram" }), `tokenizer.json: model.type: unsupported model type "Unigram"`},
		{"wordpiece", base(func(m map[string]any) { model(m)["type"] = "WordPiece" }), `tokenizer.json: model.type: unsupported model type "WordPiece"`},
		{"bad regex", base(func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(("}, "behavior": "Isolated"}
		}), "tokenizer.json: pre_tokenizer.pattern.Regex: cannot compile regex"},
		{"bad pretok", base(func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{map[string]any{"type": "Nope"}}}
		}), `tokenizer.json: pre_tokenizer.pretokenizers[0].type: unsupported pre-tokenizer "Nope"`},
		{"added id", base(func(m map[string]any) { m["added_tokens"] = []any{map[string]any{"id": "x", "content": "a"}} }),
			"tokenizer.json: added_tokens[0].id: expected an integer, got a string"},
		{"template", base(func(m map[string]any) {
			m["post_processor"] = map[string]any{"type": "TemplateProcessing", "single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<x>"}}}}
		}), `tokenizer.json: post_processor.single[0].SpecialToken.id: "<x>" is not in special_tokens`},
		{"strip", base(func(m map[string]any) { m["decoder"] = map[string]any{"type": "Strip", "content": "ab"} }),
			"tokenizer.json: decoder.content: expected a single character"},
	}
	for _, c := range cases {
		_, err := parseJSON(c.data, nil)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want prefix %q on one line", c.name, err, c.want)
		}
	}
	_, err := parseJSON(mustJSON(t, smallByteLevel(false)), []byte(`{"bos_token": 3}`))
	if err == nil || !strings.HasPrefix(err.Error(), "tokenizer_config.json: bos_token: expected a string or an AddedToken object") {
		t.Errorf("config error = %v", err)
	}
}

func TestSplitBehaviors(t *testing.T) {
	s := "a-b--c"
	m := literalMatcher("-").find(s)
	cases := map[splitBehavior][]string{
		splitRemoved:            {"a", "b", "c"},
		splitIsolated:           {"a", "-", "b", "-", "-", "c"},
		splitMergedWithPrevious: {"a-", "b-", "-", "c"},
		splitMergedWithNext:     {"a", "-b", "-", "-c"},
		splitContiguous:         {"a", "-", "b", "--", "c"},
	}
	for b, want := range cases {
		if got := splitWith(s, m, false, b); !slices.Equal(got, want) {
			t.Errorf("behavior %d: %q, want %q", b, got, want)
		}
	}
	if got := splitWith(s, m, true, splitRemoved); !slices.Equal(got, []string{"-", "-", "-"}) {
		t.Errorf("invert removed: %q", got)
	}
}

func TestUTF8Lossy(t *testing.T) {
	cases := map[string]string{
		"ok":               "ok",
		"\xe2\x82":         "\uFFFD",
		"\xe2\x82a":        "\uFFFDa",
		"\xff\xfe":         "\uFFFD\uFFFD",
		"\xf0\x9f\x98":     "\uFFFD",
		"\xed\xa0\x80":     "\uFFFD\uFFFD\uFFFD", // surrogate: E0-ED rule
		"a\xc3\xa9\xa9b":   "aé\uFFFDb",
		"\xf4\x90\x80\x80": "\uFFFD\uFFFD\uFFFD\uFFFD",
	}
	for in, want := range cases {
		if got := utf8Lossy([]byte(in)); got != want {
			t.Errorf("utf8Lossy(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestByteTable(t *testing.T) {
	seen := map[rune]bool{}
	for b := range 256 {
		r := byteRune[b]
		if seen[r] {
			t.Fatalf("rune %q used twice", r)
		}
		seen[r] = true
		if runeByte[r] != byte(b) {
			t.Fatalf("table not inverse at %d", b)
		}
	}
	if byteRune[' '] != 'Ġ' || byteRune['\n'] != 'Ċ' || byteRune['a'] != 'a' {
		t.Error("not GPT-2's byte table")
	}
}

// parseJSON builds a Tokenizer from the contents of tokenizer.json and
// tokenizer_config.json (config may be nil).
func parseJSON(tokenizerJSON, configJSON []byte) (*Tokenizer, error) {
	return parse(tokenizerJSON, configJSON, "tokenizer.json", "tokenizer_config.json")
}
