package tokenizer

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestSpaceSplitIsExact: a SentencePiece-style tokenizer (Llama 2) sees a
// whole text as one word; merging it a piece at a time, cut before each
// space, gives exactly the ids of merging it whole.
func TestSpaceSplitIsExact(t *testing.T) {
	requireOracle(t)
	tok, err := Load(tokenizerDir("llama2"))
	if err != nil {
		t.Fatal(err)
	}
	if !tok.model.spaceSplit {
		t.Fatal("the Llama 2 vocabulary has no token with ▁ after another character, so it should split")
	}
	r := rand.New(rand.NewPCG(1, 2))
	words := append(strings.Fields(strings.Join(corpus(), " ")), "  ", "\t", "é", "日本語", "▁", "a▁b")
	for n := range 50 {
		var b strings.Builder
		for range 20 + n*10 {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteString([]string{" ", "  ", "", "\n", "   "}[r.IntN(5)])
		}
		text := tok.normalizer.normalize(b.String())
		whole := tok.model.mergeWord(text)
		split, err := tok.model.tokenizeInto(nil, text, true)
		if err != nil || !slices.Equal(whole, split) {
			t.Fatalf("%q: merged whole %v, by pieces %v (%v)", text, whole, split, err)
		}
	}
}

// TestLongWordIsBounded: a word over MaxWordBytes is refused by
// EncodeChecked and merged in pieces by Encode; a long text of ordinary
// words costs memory in proportion to it, not 150 bytes a byte as merging
// it as one word did.
func TestLongWordIsBounded(t *testing.T) {
	requireOracle(t)
	for _, name := range []string{"llama2", "llama3"} {
		tok, err := Load(tokenizerDir(name))
		if err != nil {
			t.Fatal(err)
		}
		long := strings.Repeat("ab", 3*MaxWordBytes/2)
		_, err = tok.EncodeChecked(long, false)
		var we *WordTooLongError
		if !errors.As(err, &we) || we.Bytes < 3*MaxWordBytes || !strings.Contains(err.Error(), "no space in it") {
			t.Fatalf("%s: EncodeChecked of a %d-byte word: %v", name, len(long), err)
		}
		if ids := tok.Encode(long, false); len(ids) == 0 {
			t.Fatalf("%s: Encode of a long word gave nothing", name)
		}

		text := strings.Repeat("the quick brown fox jumps over the lazy dog ", 10<<20/44)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ids, err := tok.EncodeChecked(text, false)
		runtime.ReadMemStats(&after)
		if err != nil || len(ids) < len(text)/10 {
			t.Fatalf("%s: %d ids, %v", name, len(ids), err)
		}
		// Merged as one word (before), Llama 2 took some 150 bytes a byte
		// at once; by pieces, what it allocates in all stays below 48.
		if n := after.TotalAlloc - before.TotalAlloc; name == "llama2" && n > 48*uint64(len(text)) {
			t.Errorf("%s: a %d MiB text allocated %d MiB", name, len(text)>>20, n>>20)
		}
		t.Logf("%s: %d MiB of text, %d ids, %d MiB allocated", name, len(text)>>20, len(ids), (after.TotalAlloc-before.TotalAlloc)>>20)
	}
}
