package datasets

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/tokenizer"
)

// TestOverlongRecordsAreBadRecords: a record holding a word too long to
// merge (a SentencePiece-style tokenizer sees a text without spaces as one
// word) is a bad record: an error naming file:line, or skipped and counted
// with SkipBadRecords.
func TestOverlongRecordsAreBadRecords(t *testing.T) {
	tok, _ := realTokenizer(t, "llama2")
	path := filepath.Join(t.TempDir(), "train.jsonl")
	long := strings.Repeat("ab", tokenizer.MaxWordBytes)
	writeJSONL(t, path,
		map[string]string{"text": "A good record."},
		map[string]string{"text": "Then " + long + " in the middle."},
		map[string]string{"text": "Another good one."},
	)
	spec := Spec{Train: []Source{{Path: path, Format: FormatText}}, Tokenizer: tok, MaxLen: 64}
	_, err := Open(spec)
	want := fmt.Sprintf("%s:2: a word of %d bytes with no space in it", path, len("▁")+len(long)) // the word runs from the space before it
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	spec.SkipBadRecords = true
	d, err := Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Stats.Skipped != 1 || d.Stats.Examples != 2 || len(d.Stats.FirstBad) != 1 || !strings.Contains(d.Stats.FirstBad[0], ":2: a word of") {
		t.Fatalf("stats %+v, want the long record skipped and counted", d.Stats)
	}
}

// TestRecordWorkIsBounded: masking a conversation renders and tokenizes it
// once per assistant turn; past the work bound the record is refused with
// a message that says why, not encoded for as long as it takes.
func TestRecordWorkIsBounded(t *testing.T) {
	tok, _ := realTokenizer(t, "qwen3")
	e, err := newEncoder(tok, false, TemplateAuto)
	if err != nil {
		t.Fatal(err)
	}
	var c conversation
	for i := range 40 {
		c.msgs = append(c.msgs, tokenizer.Message{Role: "user", Content: fmt.Sprintf("question %d", i)}, tokenizer.Message{Role: "assistant", Content: strings.Repeat("answer ", 20)})
		c.train = append(c.train, false, true)
	}
	st := encodeStats{maxWork: 64 << 10}
	_, err = e.chat(c, &st)
	if err == nil || !strings.Contains(err.Error(), "more than 64 KiB of rendering and tokenization") {
		t.Fatalf("error %v, want the work bound", err)
	}
	if st.work > 2*st.maxWork+len(strings.Repeat("answer ", 20))*200 {
		t.Errorf("went on to %d bytes of work after the bound", st.work)
	}
	st = encodeStats{}
	if _, err := e.chat(c, &st); err != nil {
		t.Fatalf("under the default bound: %v", err)
	}
}
