package tokenizer

import (
	"strings"
	"unicode"
)

// piece is one pre-token. start is true when it begins at offset 0 of the
// original input, which Metaspace's prepend_scheme "first" looks at.
type piece struct {
	s     string
	start bool
}

// preTokenizer is one tokenizer.json "pre_tokenizer" component: it cuts each
// piece into smaller ones (and may rewrite them).
type preTokenizer interface {
	preTokenize(in []piece) []piece
}

// splitPieces applies f to every piece; only the first output of a piece
// that started the input still starts it.
func splitPieces(in []piece, f func(p piece) []string) []piece {
	out := make([]piece, 0, len(in))
	for _, p := range in {
		for i, s := range f(p) {
			out = append(out, piece{s: s, start: p.start && i == 0})
		}
	}
	return out
}

type preTokSeq []preTokenizer

func (seq preTokSeq) preTokenize(in []piece) []piece {
	for _, p := range seq {
		in = p.preTokenize(in)
	}
	return in
}

type splitPreTok struct {
	pattern  matcher
	source   string // the pattern as written (its Regex or String), for Vocabulary
	behavior splitBehavior
	invert   bool
}

func (sp splitPreTok) preTokenize(in []piece) []piece {
	return splitPieces(in, func(p piece) []string {
		return splitWith(p.s, sp.pattern.find(p.s), sp.invert, sp.behavior)
	})
}

// gpt2Pattern is the split ByteLevel applies when use_regex is true.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

type byteLevelPreTok struct {
	addPrefixSpace bool
	re             matcher // nil when use_regex is false
}

func (b byteLevelPreTok) preTokenize(in []piece) []piece {
	return splitPieces(in, func(p piece) []string {
		s := p.s
		if b.addPrefixSpace && !strings.HasPrefix(s, " ") {
			s = " " + s
		}
		parts := []string{s}
		if b.re != nil {
			parts = splitWith(s, b.re.find(s), false, splitIsolated)
		}
		for i, x := range parts {
			parts[i] = bytesToRunes(x)
		}
		return parts
	})
}

type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

type metaspacePreTok struct {
	replacement string
	scheme      prependScheme
	split       bool
}

func (m metaspacePreTok) preTokenize(in []piece) []piece {
	return splitPieces(in, func(p piece) []string {
		s := strings.ReplaceAll(p.s, " ", m.replacement)
		if !strings.HasPrefix(s, m.replacement) &&
			(m.scheme == prependAlways || (m.scheme == prependFirst && p.start)) {
			s = m.replacement + s
		}
		if !m.split {
			return []string{s}
		}
		return splitWith(s, literalMatcher(m.replacement).find(s), false, splitMergedWithNext)
	})
}

// runeSplitPreTok covers the character-class pre-tokenizers (Digits,
// Punctuation, WhitespaceSplit, BertPreTokenizer's parts).
type runeSplitPreTok struct {
	pred     func(rune) bool
	behavior splitBehavior
	typ      string // tokenizer.json's type, for Vocabulary
}

func (r runeSplitPreTok) preTokenize(in []piece) []piece {
	return splitPieces(in, func(p piece) []string {
		return splitWith(p.s, runeMatches(p.s, r.pred, true), false, r.behavior)
	})
}

// whitespacePreTok is HF's Whitespace: keep the matches of \w+|[^\w\s]+.
type whitespacePreTok struct{ re matcher }

func (w whitespacePreTok) preTokenize(in []piece) []piece {
	return splitPieces(in, func(p piece) []string {
		return splitWith(p.s, w.re.find(p.s), true, splitRemoved)
	})
}

func isNumeric(r rune) bool { return unicode.In(r, unicode.Nd, unicode.Nl, unicode.No) }

func isPunct(r rune) bool {
	return (r < 0x80 && unicode.IsPunct(r)) || (r < 0x80 && unicode.IsSymbol(r)) || unicode.IsPunct(r)
}

func parsePreTokenizer(o jsonObj) (preTokenizer, error) {
	t, err := o.typ()
	if err != nil {
		return nil, err
	}
	switch t {
	case "Sequence":
		seq, err := parseSeq(o, "pretokenizers", parsePreTokenizer)
		if err != nil {
			return nil, err
		}
		return preTokSeq(seq), nil
	case "Split":
		m, err := parsePattern(o, "pattern")
		if err != nil {
			return nil, err
		}
		b, err := o.behavior()
		if err != nil {
			return nil, err
		}
		inv, err := o.boolean("invert", false)
		if err != nil {
			return nil, err
		}
		p, _, _ := o.obj("pattern") // parsePattern read it already
		rx, _ := p.str("Regex", "")
		str, _ := p.str("String", "")
		return splitPreTok{pattern: m, source: rx + str, behavior: b, invert: inv}, nil
	case "ByteLevel":
		aps, err := o.boolean("add_prefix_space", true)
		if err != nil {
			return nil, err
		}
		useRegex, err := o.boolean("use_regex", true)
		if err != nil {
			return nil, err
		}
		b := byteLevelPreTok{addPrefixSpace: aps}
		if useRegex {
			re, err := compileRegex(o.path, gpt2Pattern)
			if err != nil {
				return nil, err
			}
			b.re = re
		}
		return b, nil
	case "Metaspace":
		return parseMetaspace(o)
	case "Digits":
		ind, err := o.boolean("individual_digits", false)
		if err != nil {
			return nil, err
		}
		if ind {
			return runeSplitPreTok{isNumeric, splitIsolated, "Digits"}, nil
		}
		return runeSplitPreTok{isNumeric, splitContiguous, "Digits"}, nil
	case "Punctuation":
		b, err := o.behavior()
		if err != nil {
			return nil, err
		}
		return runeSplitPreTok{isPunct, b, "Punctuation"}, nil
	case "WhitespaceSplit":
		return runeSplitPreTok{unicode.IsSpace, splitRemoved, "WhitespaceSplit"}, nil
	case "Whitespace":
		re, err := compileRegex(o.path, `\w+|[^\w\s]+`)
		if err != nil {
			return nil, err
		}
		return whitespacePreTok{re}, nil
	case "BertPreTokenizer":
		return preTokSeq{
			runeSplitPreTok{unicode.IsSpace, splitRemoved, "WhitespaceSplit"},
			runeSplitPreTok{isPunct, splitIsolated, "Punctuation"},
		}, nil
	default:
		return nil, errAt(joinPath(o.path, "type"), "unsupported pre-tokenizer %q", t)
	}
}

// parseMetaspace reads both the current (prepend_scheme, split) and the
// behavior reads a Split or Punctuation component's "behavior" (default
// Isolated).
func (o jsonObj) behavior() (splitBehavior, error) {
	bs, err := o.str("behavior", "Isolated")
	if err != nil {
		return 0, err
	}
	return parseBehavior(joinPath(o.path, "behavior"), bs)
}

// older (add_prefix_space) spellings.
func parseMetaspace(o jsonObj) (metaspacePreTok, error) {
	rep, err := o.str("replacement", "\u2581")
	if err != nil {
		return metaspacePreTok{}, err
	}
	if rep == "" {
		return metaspacePreTok{}, errAt(joinPath(o.path, "replacement"), "must not be empty")
	}
	m := metaspacePreTok{replacement: rep, scheme: prependAlways, split: true}
	if o.has("prepend_scheme") {
		s, err := o.str("prepend_scheme", "always")
		if err != nil {
			return m, err
		}
		switch s {
		case "always":
			m.scheme = prependAlways
		case "first":
			m.scheme = prependFirst
		case "never":
			m.scheme = prependNever
		default:
			return m, errAt(joinPath(o.path, "prepend_scheme"), "unknown prepend scheme %q", s)
		}
	} else if o.has("add_prefix_space") {
		aps, err := o.boolean("add_prefix_space", true)
		if err != nil {
			return m, err
		}
		if !aps {
			m.scheme = prependNever
		}
	}
	if m.split, err = o.boolean("split", true); err != nil {
		return m, err
	}
	return m, nil
}
