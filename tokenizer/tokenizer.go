package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Tokenizer encodes text to ids and back exactly like the Hugging Face
// tokenizer described by a tokenizer.json (+ tokenizer_config.json).
// It is safe for concurrent use.
type Tokenizer struct {
	model      *bpe
	normalizer normalizer    // nil: none
	preTok     preTokenizer  // nil: none
	post       postProcessor // nil: none
	dec        decoder       // nil: join tokens with spaces

	added          []addedToken
	addedByID      map[int]int // id -> index into added
	addedByContent map[string]int
	rawTrie        *trie // added tokens matched on the raw text
	normTrie       *trie // added tokens matched on the normalized text
	splitSpecial   bool  // split_special_tokens: special tokens are plain text

	bos, eos, pad int // -1: none
	cleanup       bool
	vocabSize     int

	chatTemplate string
	specialNames map[string]string // bos_token etc. from the config, for templates
	chat         chatCache
}

// Load reads dir/tokenizer.json and, when present, dir/tokenizer_config.json
// (and dir/chat_template.jinja if the config has no chat_template). When dir
// is a file, it is a GGUF model and its tokenizer.ggml.* metadata is read
// (see FromGGUF).
func Load(dir string) (*Tokenizer, error) {
	if st, err := os.Stat(dir); err == nil && st.Mode().IsRegular() || strings.EqualFold(filepath.Ext(dir), ".gguf") {
		return loadGGUF(dir)
	}
	cfg := filepath.Join(dir, "tokenizer_config.json")
	if _, err := os.Stat(cfg); errors.Is(err, fs.ErrNotExist) {
		cfg = ""
	}
	t, err := LoadFiles(filepath.Join(dir, "tokenizer.json"), cfg)
	if err != nil {
		return nil, err
	}
	if t.chatTemplate == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err == nil {
			t.chatTemplate = string(b)
		}
	}
	return t, nil
}

// LoadFiles reads a tokenizer.json and an optional tokenizer_config.json
// (configJSON == "" for none).
func LoadFiles(tokenizerJSON, configJSON string) (*Tokenizer, error) {
	data, err := os.ReadFile(tokenizerJSON)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var cfg []byte
	if configJSON != "" {
		if cfg, err = os.ReadFile(configJSON); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
	}
	return parse(data, cfg, tokenizerJSON, configJSON)
}

func parse(data, cfg []byte, name, cfgName string) (*Tokenizer, error) {
	t, err := parseTokenizer(data)
	if err != nil {
		return nil, fileError(name, err)
	}
	if err := t.applyConfig(cfg); err != nil {
		return nil, fileError(cfgName, err)
	}
	return t, nil
}

func parseTokenizer(data []byte) (*Tokenizer, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, errAt("", "expected a JSON object at the top level")
	}
	root := jsonObj{m: m}
	t := &Tokenizer{bos: -1, eos: -1, pad: -1}

	mo, ok, err := root.obj("model")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errAt("model", "missing")
	}
	mt, err := mo.str("type", "")
	if err != nil {
		return nil, err
	}
	if mt == "" && mo.has("merges") {
		mt = "BPE" // old files omit the type
	}
	if mt != "BPE" {
		return nil, errAt("model.type", "unsupported model type %q: only BPE tokenizers (byte-level or SentencePiece-style) are supported", mt)
	}
	if t.model, err = parseBPE(mo); err != nil {
		return nil, err
	}

	if o, ok, err := root.obj("normalizer"); err != nil {
		return nil, err
	} else if ok {
		if t.normalizer, err = parseNormalizer(o); err != nil {
			return nil, err
		}
	}
	if o, ok, err := root.obj("pre_tokenizer"); err != nil {
		return nil, err
	} else if ok {
		if t.preTok, err = parsePreTokenizer(o); err != nil {
			return nil, err
		}
	}
	if o, ok, err := root.obj("post_processor"); err != nil {
		return nil, err
	} else if ok {
		if t.post, err = parsePostProcessor(o); err != nil {
			return nil, err
		}
	}
	if o, ok, err := root.obj("decoder"); err != nil {
		return nil, err
	} else if ok {
		if t.dec, err = parseDecoder(o); err != nil {
			return nil, err
		}
	}
	if err := t.parseAdded(root); err != nil {
		return nil, err
	}

	t.vocabSize = len(t.model.idToTok)
	for _, a := range t.added {
		t.vocabSize = max(t.vocabSize, a.id+1)
	}
	if id, ok := firstSpecial(t.post); ok {
		t.bos = id
	}
	return t, nil
}

func (t *Tokenizer) parseAdded(root jsonObj) error {
	items, err := root.arr("added_tokens")
	if err != nil {
		return err
	}
	t.addedByID = map[int]int{}
	t.addedByContent = map[string]int{}
	t.rawTrie, t.normTrie = newTrie(), newTrie()
	for i, raw := range items {
		p := indexPath("added_tokens", i)
		o, ok, err := parseObj(p, raw)
		if err != nil {
			return err
		}
		if !ok {
			return errAt(p, "expected an object, got null")
		}
		var a addedToken
		if !o.has("id") {
			return errAt(joinPath(p, "id"), "missing")
		}
		if a.id, err = o.integer("id", 0); err != nil {
			return err
		}
		if a.id < 0 {
			return errAt(joinPath(p, "id"), "negative id %d", a.id)
		}
		if a.content, err = o.str("content", ""); err != nil {
			return err
		}
		if a.content == "" {
			return errAt(joinPath(p, "content"), "missing or empty")
		}
		if a.special, err = o.boolean("special", false); err != nil {
			return err
		}
		if a.singleWord, err = o.boolean("single_word", false); err != nil {
			return err
		}
		if a.lstrip, err = o.boolean("lstrip", false); err != nil {
			return err
		}
		if a.rstrip, err = o.boolean("rstrip", false); err != nil {
			return err
		}
		if a.normalized, err = o.boolean("normalized", !a.special); err != nil {
			return err
		}
		if k, dup := t.addedByContent[a.content]; dup {
			// Later entries win, as when HF re-adds a token.
			delete(t.addedByID, t.added[k].id)
		}
		k := len(t.added)
		t.added = append(t.added, a)
		t.addedByID[a.id] = k
		t.addedByContent[a.content] = k
	}
	for k, a := range t.added {
		if t.addedByContent[a.content] != k {
			continue
		}
		if a.normalized && t.normalizer != nil {
			if c := t.normalizer.normalize(a.content); c != "" {
				t.normTrie.insert(c, k)
			}
		} else if a.normalized {
			t.normTrie.insert(a.content, k)
		} else {
			t.rawTrie.insert(a.content, k)
		}
	}
	return nil
}

// applyConfig reads what we use of tokenizer_config.json.
func (t *Tokenizer) applyConfig(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return err
		}
		return errAt("", "expected a JSON object at the top level")
	}
	c := jsonObj{m: m}
	var err error
	t.specialNames = map[string]string{}
	for _, key := range []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"} {
		s, ok, err := configToken(c, key)
		if err != nil {
			return err
		}
		if ok {
			t.specialNames[key] = s
		}
	}
	lookup := func(key string) (int, error) {
		s, ok, err := configToken(c, key)
		if err != nil || !ok {
			return -1, err
		}
		id, ok := t.TokenID(s)
		if !ok {
			return -1, errAt(key, "%q is not in the vocabulary", s)
		}
		return id, nil
	}
	if c.has("bos_token") {
		if t.bos, err = lookup("bos_token"); err != nil {
			return err
		}
	}
	if t.eos, err = lookup("eos_token"); err != nil {
		return err
	}
	if t.pad, err = lookup("pad_token"); err != nil {
		return err
	}
	if t.cleanup, err = c.boolean("clean_up_tokenization_spaces", false); err != nil {
		return err
	}
	if t.splitSpecial, err = c.boolean("split_special_tokens", false); err != nil {
		return err
	}
	if err := t.applyBOSEOSFlags(c); err != nil {
		return err
	}
	return t.readChatTemplate(c)
}

// applyBOSEOSFlags follows transformers' LlamaTokenizerFast.update_post_processor:
// when the config sets add_bos_token/add_eos_token, they decide the special
// tokens around the sequence, whatever tokenizer.json's post_processor says.
func (t *Tokenizer) applyBOSEOSFlags(c jsonObj) error {
	if !c.has("add_bos_token") && !c.has("add_eos_token") {
		return nil
	}
	_, hadBOS := firstSpecial(t.post)
	addBOS, err := c.boolean("add_bos_token", hadBOS)
	if err != nil {
		return err
	}
	addEOS, err := c.boolean("add_eos_token", false)
	if err != nil {
		return err
	}
	var w wrapProcessor
	if addBOS && t.bos >= 0 {
		w.before = []int{t.bos}
	}
	if addEOS && t.eos >= 0 {
		w.after = []int{t.eos}
	}
	t.post = w
	return nil
}

// configToken reads a token field that is either "text" or an AddedToken
// object {"content": "text", ...}.
func configToken(c jsonObj, key string) (string, bool, error) {
	raw, ok := c.m[key]
	if !ok || isNull(raw) {
		return "", false, nil
	}
	if s, err := parseString(key, raw); err == nil {
		return s, s != "", nil
	}
	o, _, err := parseObj(key, raw)
	if err != nil {
		return "", false, errAt(key, "expected a string or an AddedToken object, got %s", kind(raw))
	}
	s, err := o.str("content", "")
	return s, s != "", err
}

func (t *Tokenizer) readChatTemplate(c jsonObj) error {
	raw, ok := c.m["chat_template"]
	if !ok || isNull(raw) {
		return nil
	}
	if s, err := parseString("chat_template", raw); err == nil {
		t.chatTemplate = s
		return nil
	}
	items, err := parseArr("chat_template", raw)
	if err != nil {
		return errAt("chat_template", "expected a string or a list of {name, template}, got %s", kind(raw))
	}
	for i, it := range items {
		o, ok, err := parseObj(indexPath("chat_template", i), it)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		name, err := o.str("name", "")
		if err != nil {
			return err
		}
		if name == "default" {
			t.chatTemplate, err = o.str("template", "")
			return err
		}
	}
	return nil
}

// Encode returns the ids of text. With addSpecial the post-processor's
// special tokens (BOS/EOS) are added, as HF's add_special_tokens=True.
// Added tokens written inside text ("<|im_start|>") are always recognised.
// Invalid UTF-8 is replaced by U+FFFD first (HF only takes valid strings).
// A word longer than MaxWordBytes is merged in pieces, so that the cost
// stays bounded (HF would merge it whole, taking memory without bound).
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	ids, _ := t.encode(text, addSpecial, false)
	return ids
}

// EncodeChecked is Encode for text from a dataset: a word longer than
// MaxWordBytes is a *WordTooLongError, not merged in pieces.
func (t *Tokenizer) EncodeChecked(text string, addSpecial bool) ([]int, error) {
	return t.encode(text, addSpecial, true)
}

func (t *Tokenizer) encode(text string, addSpecial, strict bool) ([]int, error) {
	if !utf8.ValidString(text) {
		text = utf8Lossy([]byte(text))
	}
	ids := make([]int, 0, min(len(text)/4, 1<<16)) // about a token per 4 bytes of text
	for _, seg := range t.findAdded(text, t.rawTrie, true) {
		if seg.tok >= 0 {
			ids = append(ids, t.added[seg.tok].id)
			continue
		}
		s := seg.text
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		for _, sub := range t.findAdded(s, t.normTrie, seg.start) {
			if sub.tok >= 0 {
				ids = append(ids, t.added[sub.tok].id)
				continue
			}
			var err error
			if ids, err = t.encodeText(sub, ids, strict); err != nil {
				return nil, err
			}
		}
	}
	if t.post != nil {
		ids = t.post.process(ids, addSpecial)
	}
	return ids, nil
}

// encodeText pre-tokenizes one normalized run of text and appends the
// model's ids.
func (t *Tokenizer) encodeText(seg segment, ids []int, strict bool) ([]int, error) {
	if seg.text == "" {
		return ids, nil
	}
	pieces := []piece{{s: seg.text, start: seg.start}}
	if t.preTok != nil {
		pieces = t.preTok.preTokenize(pieces)
	}
	for _, p := range pieces {
		var err error
		if ids, err = t.model.tokenizeInto(ids, p.s, strict); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// token returns the string of id ("" and false if unknown).
func (t *Tokenizer) token(id int) (string, bool) {
	if k, ok := t.addedByID[id]; ok {
		return t.added[k].content, true
	}
	if id >= 0 && id < len(t.model.idToTok) {
		s := t.model.idToTok[id]
		if s != "" || t.model.vocab[""] == id {
			return s, true
		}
	}
	return "", false
}

// Tokens returns the vocabulary strings of ids ("Ġhello", "<0x0A>"); an
// unknown id gives "".
func (t *Tokenizer) Tokens(ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i], _ = t.token(id)
	}
	return out
}

// Decode turns ids back into text like HF's decode: unknown ids are
// dropped, special tokens too when skipSpecial, then the decoder runs and,
// if tokenizer_config.json asks for it, clean_up_tokenization_spaces.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	return t.decode(ids, skipSpecial, t.cleanup)
}

func (t *Tokenizer) decode(ids []int, skipSpecial, cleanup bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		s, ok := t.token(id)
		if !ok {
			continue
		}
		if skipSpecial {
			if k, ok := t.addedByContent[s]; ok && t.added[k].special {
				continue
			}
		}
		toks = append(toks, s)
	}
	var s string
	if t.dec != nil {
		s = strings.Join(t.dec.decodeChain(toks), "")
	} else {
		s = strings.Join(toks, " ")
	}
	if cleanup {
		s = cleanUpTokenization(s)
	}
	return s
}

// cleanUpTokenization is transformers' clean_up_tokenization.
// The replacements run one after another, as in Python.
func cleanUpTokenization(s string) string {
	for _, r := range [][2]string{
		{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
		{" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
	} {
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	return s
}

// VocabSize is the number of ids the tokenizer can produce: the largest id
// of the model vocabulary or the added tokens, plus one.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenID returns the id of a vocabulary string (added tokens first).
func (t *Tokenizer) TokenID(tok string) (int, bool) {
	if k, ok := t.addedByContent[tok]; ok {
		return t.added[k].id, true
	}
	id, ok := t.model.vocab[tok]
	return id, ok
}

// BOS is the beginning-of-sequence id: tokenizer_config.json's bos_token,
// else the first special token of the post-processor.
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS is tokenizer_config.json's eos_token.
func (t *Tokenizer) EOS() (int, bool) { return t.eos, t.eos >= 0 }

// PAD is tokenizer_config.json's pad_token.
func (t *Tokenizer) PAD() (int, bool) { return t.pad, t.pad >= 0 }

// ChatTemplate is tokenizer_config.json's chat_template ("" if none).
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }
