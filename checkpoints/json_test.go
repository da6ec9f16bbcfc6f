package checkpoints

import (
	"strings"
	"testing"
)

func TestSnippetIsShortAndOneLine(t *testing.T) {
	long := `[` + strings.Repeat(`1, `, 100) + `1]`
	if s := Snippet([]byte(long)); len(s) > 43 || strings.Contains(s, " ") {
		t.Errorf("snippet = %q", s)
	}
	if s := Snippet([]byte("a\nb")); strings.Contains(s, "\n") {
		t.Errorf("snippet = %q", s)
	}
}
