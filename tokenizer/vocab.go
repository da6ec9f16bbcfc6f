package tokenizer

import (
	"cmp"
	"slices"
)

// Vocabulary is what tokenizer.json says of the vocabulary, as Load parsed
// it, for writers of other formats (export's GGUF vocabulary), so that no
// one parses tokenizer.json a second time.
type Vocabulary struct {
	Tokens map[string]int // model.vocab; shared with the tokenizer, not to be changed
	// Merges are "a b" in rank order. A merge listed twice keeps its last
	// rank, the one Hugging Face's tokenizers (and this one) use.
	Merges       []string
	ByteFallback bool
	Unknown      int // model.unk_token's id, -1 for none
	Added        []AddedToken
	ByteLevel    bool               // a ByteLevel pre-tokenizer or decoder: byte-level BPE
	PreTokenizer []PreTokenizerStep // pre_tokenizer's components in order, Sequences flattened
}

// AddedToken is one entry of tokenizer.json's added_tokens.
type AddedToken struct {
	ID      int
	Content string
	Special bool
}

// PreTokenizerStep is one component of tokenizer.json's pre_tokenizer.
type PreTokenizerStep struct {
	Type             string // Split, ByteLevel, Digits, Metaspace, Punctuation, WhitespaceSplit, Whitespace
	Pattern          string // Split: its pattern's Regex or String
	IndividualDigits bool   // Digits
	UseRegex         bool   // ByteLevel
}

// Vocabulary describes the tokenizer's vocabulary (see Vocabulary).
func (t *Tokenizer) Vocabulary() Vocabulary {
	v := Vocabulary{Tokens: t.model.vocab, ByteFallback: t.model.byteFallback, Unknown: t.model.unkID}
	type merge struct {
		rank int32
		s    string
	}
	ms := make([]merge, 0, len(t.model.merges))
	for key, m := range t.model.merges {
		ms = append(ms, merge{m.rank, t.model.idToTok[key>>32] + " " + t.model.idToTok[uint32(key)]})
	}
	slices.SortFunc(ms, func(a, b merge) int { return cmp.Compare(a.rank, b.rank) })
	v.Merges = make([]string, len(ms))
	for i, m := range ms {
		v.Merges[i] = m.s
	}
	for _, a := range t.added {
		v.Added = append(v.Added, AddedToken{ID: a.id, Content: a.content, Special: a.special})
	}
	v.PreTokenizer = preTokenizerSteps(t.preTok, nil)
	for _, s := range v.PreTokenizer {
		v.ByteLevel = v.ByteLevel || s.Type == "ByteLevel"
	}
	v.ByteLevel = v.ByteLevel || hasByteLevelDecoder(t.dec)
	return v
}

func preTokenizerSteps(p preTokenizer, out []PreTokenizerStep) []PreTokenizerStep {
	switch p := p.(type) {
	case nil:
	case preTokSeq:
		for _, q := range p {
			out = preTokenizerSteps(q, out)
		}
	case splitPreTok:
		out = append(out, PreTokenizerStep{Type: "Split", Pattern: p.source})
	case byteLevelPreTok:
		out = append(out, PreTokenizerStep{Type: "ByteLevel", UseRegex: p.re != nil})
	case runeSplitPreTok:
		out = append(out, PreTokenizerStep{Type: p.typ, IndividualDigits: p.typ == "Digits" && p.behavior == splitIsolated})
	case metaspacePreTok:
		out = append(out, PreTokenizerStep{Type: "Metaspace"})
	case whitespacePreTok:
		out = append(out, PreTokenizerStep{Type: "Whitespace"})
	}
	return out
}

func hasByteLevelDecoder(d decoder) bool {
	switch d := d.(type) {
	case byteLevelDecoder:
		return true
	case decoderSeq:
		return slices.ContainsFunc(d, hasByteLevelDecoder)
	}
	return false
}
