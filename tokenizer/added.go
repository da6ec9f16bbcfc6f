package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json "added_tokens".
type addedToken struct {
	content    string
	id         int
	special    bool
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
}

// trie is a byte trie over added-token contents for leftmost-longest search
// (HF builds an Aho-Corasick automaton with MatchKind::LeftmostLongest).
type trie struct {
	nodes []trieNode
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into Tokenizer.added, -1 if no token ends here
}

func newTrie() *trie {
	return &trie{nodes: []trieNode{{tok: -1}}}
}

func (t *trie) insert(key string, tok int) {
	n := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		nx, ok := t.nodes[n].next[c]
		if !ok {
			if t.nodes[n].next == nil {
				t.nodes[n].next = map[byte]int32{}
			}
			t.nodes = append(t.nodes, trieNode{tok: -1})
			nx = int32(len(t.nodes) - 1)
			t.nodes[n].next[c] = nx
		}
		n = int(nx)
	}
	t.nodes[n].tok = int32(tok)
}

// longestAt returns the token index and length of the longest key that is a
// prefix of s, or -1.
func (t *trie) longestAt(s string) (tok, n int) {
	tok, n = -1, 0
	node := 0
	for i := 0; i < len(s); i++ {
		nx, ok := t.nodes[node].next[s[i]]
		if !ok {
			break
		}
		node = int(nx)
		if k := t.nodes[node].tok; k >= 0 {
			tok, n = int(k), i+1
		}
	}
	return tok, n
}

func (t *trie) empty() bool { return len(t.nodes) == 1 }

// segment is a run of input text, or an added token (tok >= 0) that
// replaces the text.
type segment struct {
	text  string
	tok   int // index into Tokenizer.added, -1 for plain text
	start bool
}

// findAdded splits s around the added tokens of t, following tokenizers'
// AddedVocabulary::find_matches: leftmost-longest matches, single_word
// matches only between non-word characters, lstrip/rstrip swallow the
// whitespace beside the token.
func (tk *Tokenizer) findAdded(s string, t *trie, start bool) []segment {
	if t.empty() || s == "" {
		return []segment{{text: s, tok: -1, start: start}}
	}
	var out []segment
	emitted := 0 // end of the last emitted segment
	for i := 0; i < len(s); {
		k, n := t.longestAt(s[i:])
		if k < 0 {
			i++
			continue
		}
		at := tk.added[k]
		begin, end := i, i+n
		i = end // the search resumes after this match even if it is rejected
		if at.special && tk.splitSpecial {
			continue
		}
		if at.singleWord {
			if (begin > 0 && endsWithWord(s[:begin])) || (end < len(s) && startsWithWord(s[end:])) {
				continue
			}
		}
		if at.lstrip {
			begin = max(emitted, begin-trailingSpace(s[:begin]))
		}
		if at.rstrip {
			end += leadingSpace(s[end:])
			i = end
		}
		if emitted < begin {
			out = append(out, segment{text: s[emitted:begin], tok: -1, start: start && emitted == 0})
		}
		out = append(out, segment{text: s[begin:end], tok: k})
		emitted = end
	}
	if emitted < len(s) {
		out = append(out, segment{text: s[emitted:], tok: -1, start: start && emitted == 0})
	}
	return out
}

// isWordRune is Rust regex's Unicode \w.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.In(r, unicode.Nl, unicode.Nd, unicode.Pc, unicode.M, unicode.Other_Alphabetic, unicode.Join_Control)
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordRune(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordRune(r)
}

// trailingSpace is the byte length of the whitespace run ending s.
func trailingSpace(s string) int {
	n := 0
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if !unicode.IsSpace(r) {
			break
		}
		n += size
		s = s[:len(s)-size]
	}
	return n
}

// leadingSpace is the byte length of the whitespace run starting s.
func leadingSpace(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			break
		}
		n += utf8.RuneLen(r)
	}
	return n
}
