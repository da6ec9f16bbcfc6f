package datasets

import (
	"fmt"
	"os"
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

// TestJSONArrayErrorLines: an element of a JSON array is named by the line
// it starts on, not line 1; non-UTF-8 bytes are counted; "**" globs cross
// directories.
func TestJSONArrayErrorLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.json")
	os.WriteFile(path, []byte("[\n  {\"input_ids\": [1, 2]},\n  {\"input_ids\": [3, 4]},\n\n  {\"input_ids\": \"x\"}\n]\n"), 0o644)
	_, err := Open(Spec{Train: []Source{{Path: path, Format: FormatPretokenized}}, MaxLen: 16})
	if err == nil || !strings.Contains(err.Error(), path+":5: field input_ids") {
		t.Fatalf("error %v, want line 5", err)
	}

	sub := filepath.Join(dir, "deep", "er")
	os.MkdirAll(sub, 0o755)
	writeJSONL(t, filepath.Join(sub, "x.jsonl"), map[string]any{"input_ids": []int{1, 2, 3}})
	os.WriteFile(filepath.Join(dir, "deep", "y.jsonl"), []byte("{\"input_ids\": [4, 5], \"note\": \"\xff\xfe\"}\n"), 0o644)
	d, err := Open(Spec{Train: []Source{{Path: filepath.Join(dir, "**", "*.jsonl"), Format: FormatPretokenized}}, MaxLen: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Stats.Examples != 2 || d.Stats.NotUTF8 != 1 {
		t.Fatalf("**/*.jsonl: %d examples, %d with bytes that are not UTF-8; want 2 and 1", d.Stats.Examples, d.Stats.NotUTF8)
	}
}
