package tokenizer

import (
	"strings"
	"unicode/utf8"

	"github.com/sugarme/tokenizer/pretokenizer"
)

// byteRune / runeByte are GPT-2's byte <-> printable-rune bijection used by
// the ByteLevel pre-tokenizer, normalizer and decoder. The table comes from
// sugarme, which has it right; we copy it into arrays once.
var byteRune, runeByte = buildByteTables()

func buildByteTables() ([256]rune, map[rune]byte) {
	var br [256]rune
	rb := make(map[rune]byte, 256)
	for b, s := range pretokenizer.GenerateBytesChar() {
		r, _ := utf8.DecodeRuneInString(s)
		br[b] = r
		rb[r] = b
	}
	return br, rb
}

// bytesToRunes maps every byte of s to its ByteLevel rune ("Ġ" for ' ').
func bytesToRunes(s string) string {
	var sb strings.Builder
	sb.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		sb.WriteRune(byteRune[s[i]])
	}
	return sb.String()
}

// utf8Lossy decodes b like Rust's String::from_utf8_lossy and the WHATWG
// TextDecoder: each maximal invalid subsequence becomes one U+FFFD.
// (strings.ToValidUTF8 would merge adjacent invalid runs into one.)
func utf8Lossy(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			sb.WriteRune(r)
			i += n
			continue
		}
		// Invalid: skip the longest prefix of a valid sequence (maximal subpart).
		i += maximalSubpart(b[i:])
		sb.WriteRune(utf8.RuneError)
	}
	return sb.String()
}

// maximalSubpart returns how many bytes at the start of b form the longest
// prefix of some well-formed UTF-8 sequence (at least 1), per Unicode §3.9.
func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if k == 0 {
			if x < lo || x > hi {
				return n
			}
		} else if x < 0x80 || x > 0xBF {
			return n
		}
		n++
	}
	return n
}
