package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The split regexes of GPT-2, cl100k/Llama 3 and Qwen 2/3 are used by most
// byte-level tokenizers, and regexp2 spends most of Encode's time on them.
// These hand-written matchers implement exactly the same leftmost-first,
// backtracking semantics with the same Unicode classes (Go's tables, as
// regexp2 uses); FuzzFastSplit checks them against regexp2.
const (
	patternCL100K = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternQwen   = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// fastMatcher matches one of the known patterns; step returns the end of
// the match starting at rune i (always > i: these patterns match any rune).
type fastMatcher struct {
	step func(r []rune, i int) int
}

// knownPattern returns a hand-written matcher for expr, or nil.
func knownPattern(expr string) matcher {
	switch expr {
	case patternCL100K:
		return fastMatcher{func(r []rune, i int) int { return stepCL100K(r, i, 3) }}
	case patternQwen:
		return fastMatcher{func(r []rune, i int) int { return stepCL100K(r, i, 1) }}
	case gpt2Pattern:
		return fastMatcher{stepGPT2}
	}
	return nil
}

func (f fastMatcher) find(s string) [][2]int {
	if s == "" {
		return nil
	}
	r := []rune(s)
	out := make([][2]int, 0, len(r)/3+1)
	b := 0 // byte offset of rune i
	for i := 0; i < len(r); {
		j := f.step(r, i)
		e := b
		for k := i; k < j; k++ {
			e += utf8.RuneLen(r[k])
		}
		out = append(out, [2]int{b, e})
		i, b = j, e
	}
	return out
}

func isL(c rune) bool     { return unicode.IsLetter(c) }
func isN(c rune) bool     { return unicode.Is(unicode.N, c) }
func isS(c rune) bool     { return unicode.IsSpace(c) }
func isCRLF(c rune) bool  { return c == '\r' || c == '\n' }
func isOther(c rune) bool { return !isS(c) && !isL(c) && !isN(c) }

// contraction matches 's 't 're 've 'm 'll 'd at i (ASCII case folding if
// fold) and returns its end, or i.
func contraction(r []rune, i int, fold bool) int {
	if r[i] != '\'' || i+1 >= len(r) {
		return i
	}
	lower := func(c rune) rune {
		if fold && c >= 'A' && c <= 'Z' {
			return c + ('a' - 'A')
		}
		return c
	}
	c1 := lower(r[i+1])
	switch c1 {
	case 's', 't', 'm', 'd':
		return i + 2
	}
	if i+2 < len(r) {
		c2 := lower(r[i+2])
		if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
			return i + 3
		}
	}
	return i
}

func run(r []rune, i int, pred func(rune) bool) int {
	for i < len(r) && pred(r[i]) {
		i++
	}
	return i
}

// spaceTail handles \s+(?!\S)|\s+ at a whitespace rune i: a run followed
// by a non-space gives back its last rune unless that would leave nothing.
func spaceTail(r []rune, i int) int {
	j := run(r, i, isS)
	if j < len(r) && j-1 > i {
		return j - 1
	}
	return j
}

func stepCL100K(r []rune, i, maxDigits int) int {
	if j := contraction(r, i, true); j > i {
		return j
	}
	c := r[i]
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isL(c) {
		return run(r, i, isL)
	}
	if !isCRLF(c) && !isN(c) && i+1 < len(r) && isL(r[i+1]) {
		return run(r, i+1, isL)
	}
	// \p{N}{1,maxDigits}
	if isN(c) {
		j := i
		for j < len(r) && j-i < maxDigits && isN(r[j]) {
			j++
		}
		return j
	}
	// ' '?[^\s\p{L}\p{N}]+[\r\n]*
	if k := i + btoi(c == ' '); k < len(r) && isOther(r[k]) {
		return run(r, run(r, k, isOther), isCRLF)
	}
	// \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run
	j := run(r, i, isS)
	for k := j - 1; k >= i; k-- {
		if isCRLF(r[k]) {
			return k + 1
		}
	}
	return spaceTail(r, i)
}

func stepGPT2(r []rune, i int) int {
	if j := contraction(r, i, false); j > i {
		return j
	}
	k := i + btoi(r[i] == ' ')
	if k < len(r) {
		switch {
		case isL(r[k]):
			return run(r, k, isL)
		case isN(r[k]):
			return run(r, k, isN)
		case isOther(r[k]):
			return run(r, k, isOther)
		}
	}
	return spaceTail(r, i)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
