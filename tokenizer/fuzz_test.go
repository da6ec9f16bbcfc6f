package tokenizer

import (
	"testing"
	"unicode/utf8"
)

// FuzzLoad feeds arbitrary bytes to the tokenizer.json parser: it must
// return an error or a tokenizer that encodes and decodes without panicking.
// Seeds are in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add(mustJSON(f, smallByteLevel(false)))
	f.Add(mustJSON(f, smallSentencePiece()))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseJSON(data, nil)
		if err != nil {
			if tok != nil {
				t.Fatal("tokenizer and error both returned")
			}
			return
		}
		for _, s := range []string{"", "hello world", " <s>x</s> \n\t12345 é😀"} {
			ids := tok.Encode(s, true)
			tok.Decode(ids, false)
			tok.Decode(ids, true)
			tok.Tokens(ids)
		}
		tok.Decode([]int{-1, 0, 1, 1 << 30}, false)
	})
}

// FuzzRoundTrip checks decode(encode(x)) == x for a byte-level tokenizer
// with the Llama 3 split, merges and special tokens.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range hardCases {
		f.Add(s)
	}
	tok := mustParse(f, smallByteLevel(true), nil)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // Encode replaces invalid UTF-8 with U+FFFD first
		}
		ids := tok.Encode(s, false)
		if got := tok.Decode(ids, false); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q (ids %v)", s, got, ids)
		}
		withBOS := tok.Encode(s, true)
		if len(withBOS) != len(ids)+1 {
			t.Fatalf("Encode(addSpecial) added %d ids", len(withBOS)-len(ids))
		}
	})
}
