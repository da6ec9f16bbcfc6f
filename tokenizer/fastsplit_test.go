package tokenizer

import (
	"slices"
	"testing"
	"unicode/utf8"
)

func fastAndSlow(t testing.TB) map[string][2]matcher {
	t.Helper()
	out := map[string][2]matcher{}
	for name, expr := range map[string]string{"cl100k": patternCL100K, "qwen": patternQwen, "gpt2": gpt2Pattern} {
		slow, err := compileRegexp2(name, expr)
		if err != nil {
			t.Fatal(err)
		}
		fast := knownPattern(expr)
		if fast == nil {
			t.Fatalf("%s: no fast matcher", name)
		}
		out[name] = [2]matcher{fast, slow}
	}
	return out
}

func TestFastSplitMatchesRegexp2(t *testing.T) {
	ms := fastAndSlow(t)
	extra := []string{"'", "'S", "'Re", "'x", "a'll", " 'd", "\r\n\r\n  \n x", " \t(", "  (", "\u00a0x", "12345678", "x\u0301y", "ſ 'ſ", "\u2028a"}
	for _, s := range append(corpus(), extra...) {
		for name, m := range ms {
			if got, want := m[0].find(s), m[1].find(s); !slices.Equal(got, want) {
				t.Errorf("%s on %q:\n fast %v\n re2  %v", name, clip(s), got, want)
			}
		}
	}
}

// FuzzFastSplit checks the hand-written splitters against regexp2.
func FuzzFastSplit(f *testing.F) {
	for _, s := range hardCases {
		f.Add(s)
	}
	ms := fastAndSlow(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for name, m := range ms {
			if got, want := m[0].find(s), m[1].find(s); !slices.Equal(got, want) {
				t.Fatalf("%s on %q:\n fast %v\n re2  %v", name, s, got, want)
			}
		}
	})
}
