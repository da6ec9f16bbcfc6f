package tokenizer

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer is one tokenizer.json "normalizer" component.
type normalizer interface {
	normalize(s string) string
}

type normSeq []normalizer

func (n normSeq) normalize(s string) string {
	for _, x := range n {
		s = x.normalize(s)
	}
	return s
}

type unicodeNorm struct{ form norm.Form }

func (n unicodeNorm) normalize(s string) string { return n.form.String(s) }

type lowercaseNorm struct{}

// normalize lowercases rune by rune like Rust's char::to_lowercase; U+0130
// is the one rune whose lowercase is two runes, which Go's ToLower flattens.
func (lowercaseNorm) normalize(s string) string {
	return strings.Map(unicode.ToLower, strings.ReplaceAll(s, "\u0130", "i\u0307"))
}

type stripNorm struct{ left, right bool }

func (n stripNorm) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

type stripAccentsNorm struct{}

func (stripAccentsNorm) normalize(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) {
			return -1
		}
		return r
	}, s)
}

type replaceNorm struct {
	pattern matcher
	content string
}

func (n replaceNorm) normalize(s string) string { return replaceAll(n.pattern, s, n.content) }

type prependNorm string

// normalize prepends only to non-empty text, as HF's Prepend does.
func (p prependNorm) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

type byteLevelNorm struct{}

func (byteLevelNorm) normalize(s string) string { return bytesToRunes(s) }

func parseNormalizer(o jsonObj) (normalizer, error) {
	t, err := o.typ()
	if err != nil {
		return nil, err
	}
	switch t {
	case "Sequence":
		seq, err := parseSeq(o, "normalizers", parseNormalizer)
		if err != nil {
			return nil, err
		}
		return normSeq(seq), nil
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNorm{}, nil
	case "Strip":
		l, err := o.boolean("strip_left", true)
		if err != nil {
			return nil, err
		}
		r, err := o.boolean("strip_right", true)
		if err != nil {
			return nil, err
		}
		return stripNorm{l, r}, nil
	case "StripAccents":
		return stripAccentsNorm{}, nil
	case "Replace":
		m, err := parsePattern(o, "pattern")
		if err != nil {
			return nil, err
		}
		c, err := o.str("content", "")
		if err != nil {
			return nil, err
		}
		return replaceNorm{m, c}, nil
	case "Prepend":
		p, err := o.str("prepend", "")
		if err != nil {
			return nil, err
		}
		return prependNorm(p), nil
	case "ByteLevel":
		return byteLevelNorm{}, nil
	default:
		return nil, errAt(joinPath(o.path, "type"), "unsupported normalizer %q", t)
	}
}
