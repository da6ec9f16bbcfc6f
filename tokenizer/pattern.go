package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// matcher finds the non-empty, non-overlapping matches of a tokenizer.json
// pattern ({"String": ...} or {"Regex": ...}) as byte offsets.
type matcher interface {
	find(s string) [][2]int
}

// literalMatcher is a {"String": ...} pattern: the text itself, not a regex.
type literalMatcher string

func (l literalMatcher) find(s string) [][2]int {
	if l == "" {
		return nil
	}
	var out [][2]int
	for off := 0; ; {
		i := strings.Index(s[off:], string(l))
		if i < 0 {
			return out
		}
		out = append(out, [2]int{off + i, off + i + len(l)})
		off += i + len(l)
	}
}

// regexMatcher is a {"Regex": ...} pattern. HF compiles these with Oniguruma,
// a backtracking engine; the Llama 3 / Qwen / GPT-4 patterns need lookahead
// (\s+(?!\S)) which Go's RE2 lacks, so we use regexp2 (.NET semantics, same
// \s = Unicode White_Space and \p{L}/\p{N} classes as Oniguruma).
type regexMatcher struct {
	re *regexp2.Regexp
}

func compileRegex(path, expr string) (matcher, error) {
	if m := knownPattern(expr); m != nil {
		return m, nil
	}
	return compileRegexp2(path, expr)
}

func compileRegexp2(path, expr string) (*regexMatcher, error) {
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return nil, errAt(path, "cannot compile regex %q: %v", expr, err)
	}
	return &regexMatcher{re: re}, nil
}

func (r *regexMatcher) find(s string) [][2]int {
	if s == "" {
		return nil
	}
	runes := []rune(s)
	// regexp2 reports rune positions; map them back to byte offsets.
	byteAt := make([]int, len(runes)+1)
	b := 0
	for i, c := range runes {
		byteAt[i] = b
		b += utf8.RuneLen(c)
	}
	byteAt[len(runes)] = b
	var out [][2]int
	m, err := r.re.FindRunesMatch(runes)
	for err == nil && m != nil {
		if m.Length > 0 {
			out = append(out, [2]int{byteAt[m.Index], byteAt[m.Index+m.Length]})
		}
		m, err = r.re.FindNextMatch(m)
	}
	// err is only a match timeout, which we never set.
	return out
}

// parsePattern reads {"String": s} or {"Regex": r}.
func parsePattern(o jsonObj, key string) (matcher, error) {
	p, ok, err := o.obj(key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errAt(joinPath(o.path, key), "missing")
	}
	switch {
	case p.has("String"):
		s, err := p.str("String", "")
		if err != nil {
			return nil, err
		}
		return literalMatcher(s), nil
	case p.has("Regex"):
		s, err := p.str("Regex", "")
		if err != nil {
			return nil, err
		}
		return compileRegex(joinPath(p.path, "Regex"), s)
	default:
		return nil, errAt(p.path, `expected {"String": ...} or {"Regex": ...}`)
	}
}

// replaceAll replaces every match of m in s by content.
func replaceAll(m matcher, s, content string) string {
	ms := m.find(s)
	if len(ms) == 0 {
		return s
	}
	var sb strings.Builder
	prev := 0
	for _, x := range ms {
		sb.WriteString(s[prev:x[0]])
		sb.WriteString(content)
		prev = x[1]
	}
	sb.WriteString(s[prev:])
	return sb.String()
}

// splitBehavior is HF's SplitDelimiterBehavior.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

func parseBehavior(path, s string) (splitBehavior, error) {
	switch strings.ToLower(s) {
	case "removed":
		return splitRemoved, nil
	case "isolated":
		return splitIsolated, nil
	case "mergedwithprevious", "merged_with_previous":
		return splitMergedWithPrevious, nil
	case "mergedwithnext", "merged_with_next":
		return splitMergedWithNext, nil
	case "contiguous":
		return splitContiguous, nil
	}
	return 0, errAt(path, "unknown split behavior %q", s)
}

type span struct {
	start, end int
	match      bool
}

// splitWith cuts s at the given matches following HF's
// NormalizedString::split: the pieces cover s, then the behavior decides
// what happens to the matched ones. Empty pieces are dropped.
func splitWith(s string, matches [][2]int, invert bool, b splitBehavior) []string {
	spans := make([]span, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if prev < m[0] {
			spans = append(spans, span{prev, m[0], invert})
		}
		spans = append(spans, span{m[0], m[1], !invert})
		prev = m[1]
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), invert})
	}

	var kept []span
	switch b {
	case splitRemoved:
		for _, sp := range spans {
			if !sp.match {
				kept = append(kept, sp)
			}
		}
	case splitIsolated:
		kept = spans
	case splitMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(kept) > 0 {
				kept[len(kept)-1].end = sp.end
			} else {
				kept = append(kept, sp)
			}
			prevMatch = sp.match
		}
	case splitMergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(kept) > 0 {
				kept[len(kept)-1].start = sp.start
			} else {
				kept = append(kept, sp)
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
			kept[i], kept[j] = kept[j], kept[i]
		}
	case splitContiguous:
		prevMatch := false
		for i, sp := range spans {
			if i > 0 && sp.match == prevMatch {
				kept[len(kept)-1].end = sp.end
			} else {
				kept = append(kept, sp)
			}
			prevMatch = sp.match
		}
	default:
		panic(fmt.Sprintf("tokenizer: unknown split behavior %d", b))
	}
	out := make([]string, 0, len(kept))
	for _, sp := range kept {
		if sp.start < sp.end {
			out = append(out, s[sp.start:sp.end])
		}
	}
	return out
}

// runeMatches returns one match per maximal run of runes satisfying pred
// (or per rune when single is set).
func runeMatches(s string, pred func(rune) bool, single bool) [][2]int {
	var out [][2]int
	start := -1
	for i, r := range s {
		if pred(r) {
			if single {
				out = append(out, [2]int{i, i + utf8.RuneLen(r)})
				continue
			}
			if start < 0 {
				start = i
			}
		} else if start >= 0 {
			out = append(out, [2]int{start, i})
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, [2]int{start, len(s)})
	}
	return out
}
