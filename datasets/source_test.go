package datasets

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestBadRecords: each malformed record is an error naming file:line and the
// field; with SkipBadRecords they are skipped, counted and the first ones
// kept for the report.
func TestBadRecords(t *testing.T) {
	tok, _ := realTokenizer(t, "qwen3")
	good := `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}`
	cases := []struct {
		format, line, want string
	}{
		{FormatChat, `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": 3, "content": "x"}]}`, "field messages[2].role: expected a string, got a number"},
		{FormatChat, `{"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "x"}]}`, `field messages[1].role: unknown role "robot"`},
		{FormatChat, `{"messages": [{"role": "user", "content": "Hi"}]}`, "field messages: no assistant message to train on"},
		{FormatChat, `{"messages": "hello"}`, "field messages: expected a list of messages, got a string"},
		{FormatChat, `{"chat": []}`, "field messages: missing"},
		{FormatChat, `{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": {"text": "x"}}]}`, "field conversations[1].value: expected a string, got an object"},
		{FormatChat, `{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}`, `field messages[0].content[0].type: only text parts are supported, got "image_url"`},
		{FormatChat, `{"messages": [}`, "invalid JSON"},
		{FormatChat, `[1, 2]`, "expected a JSON object, got a list"},
		{FormatInstruction, `{"instruction": "a"}`, "field output: missing"},
		{FormatInstruction, `{"instruction": "a", "output": 7}`, "field output: expected a string, got a number"},
		{FormatText, `{"text": null}`, "field text: missing"},
		{FormatPretokenized, `{"input_ids": [1, "2"]}`, "field input_ids[1]: expected an integer, got a string"},
		{FormatPretokenized, `{"input_ids": [1, 2.5]}`, "field input_ids[1]: expected a 32-bit integer, got 2.5"},
		{FormatPretokenized, `{"input_ids": [1, 2], "labels": [1]}`, "field labels: 1 values for 2 input_ids"},
		{FormatPretokenized, `{"input_ids": [1, -2]}`, "field input_ids[1]: -2 is negative"},
		{FormatPretokenized, `{"input_ids": []}`, "field input_ids: empty"},
	}
	dir := t.TempDir()
	for i, c := range cases {
		goodLine := good
		switch c.format {
		case FormatInstruction:
			goodLine = `{"instruction": "a", "output": "b"}`
		case FormatText:
			goodLine = `{"text": "abc"}`
		case FormatPretokenized:
			goodLine = `{"input_ids": [1, 2, 3]}`
		}
		// Line 17 is bad; blank lines count.
		lines := slices.Repeat([]string{goodLine}, 12)
		lines = append(lines, "", "   ", goodLine, goodLine, c.line, goodLine)
		path := filepath.Join(dir, fmt.Sprintf("train%d.jsonl", i))
		os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		spec := Spec{Train: []Source{{Path: path, Format: c.format}}, Tokenizer: tok, MaxLen: 64}
		_, err := Open(spec)
		want := path + ":17: " + c.want
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v\nwant %s...", c.line, err, want)
			continue
		}
		spec.SkipBadRecords = true
		d, err := Open(spec)
		if err != nil {
			t.Errorf("%s: skipping: %v", c.line, err)
			continue
		}
		if d.Stats.Skipped != 1 || d.Stats.TrainExamples != 15 || len(d.Stats.FirstBad) != 1 || !strings.HasPrefix(d.Stats.FirstBad[0], want) {
			t.Errorf("%s: skipping: %+v", c.line, d.Stats)
		}
		d.Close()
	}
}

// TestSkipBadRecordsCounts: many bad records among good ones, read by two
// workers: all counted, the first three reported in file order.
func TestSkipBadRecordsCounts(t *testing.T) {
	var b strings.Builder
	bad := 0
	for i := range 3000 {
		if i%7 == 3 {
			fmt.Fprintf(&b, "{\"input_ids\": \"bad %d\"}\n", i)
			bad++
			continue
		}
		fmt.Fprintf(&b, "{\"input_ids\": [%d, %d]}\n", i%50, i%51)
	}
	path := filepath.Join(t.TempDir(), "mixed.jsonl")
	os.WriteFile(path, []byte(b.String()), 0o644)
	d, err := Open(Spec{Train: []Source{{Path: path, Format: FormatPretokenized}}, MaxLen: 8, SkipBadRecords: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := []string{path + ":4: field input_ids: expected a list of token ids, got a string", path + ":11: ", path + ":18: "}
	if d.Stats.Skipped != bad || d.Stats.TrainExamples != 3000-bad || len(d.Stats.FirstBad) != 3 {
		t.Fatalf("stats %+v, want %d skipped", d.Stats, bad)
	}
	for i, w := range want {
		if !strings.HasPrefix(d.Stats.FirstBad[i], w) {
			t.Errorf("first bad %d: %q, want %q...", i, d.Stats.FirstBad[i], w)
		}
	}
	// Without skipping: the first bad record, whichever worker saw it.
	_, err = Open(Spec{Train: []Source{{Path: path, Format: FormatPretokenized}}, MaxLen: 8, Workers: 2})
	if err == nil || !strings.HasPrefix(err.Error(), want[0]) {
		t.Errorf("error %v", err)
	}
}

// TestJSONArrayAndJSONL: a .json array of records and a .json file holding
// JSON Lines read like a .jsonl file; errors name the line of the record.
func TestJSONArrayAndJSONL(t *testing.T) {
	dir := t.TempDir()
	arr := filepath.Join(dir, "a.json")
	os.WriteFile(arr, []byte("\xEF\xBB\xBF[\n  {\"input_ids\": [1, 2]},\n  {\"input_ids\": [3, 4, 5]}\n  ,{\"input_ids\":\n [6]},\n  {\"input_ids\": [7, \"x\"]}\n]\n"), 0o644)
	lines := filepath.Join(dir, "l.json")
	os.WriteFile(lines, []byte("{\"input_ids\": [1, 2]}\n{\"input_ids\": [3, 4, 5]}\n{\"input_ids\": [6]}\n"), 0o644)
	_, err := Open(Spec{Train: []Source{{Path: arr, Format: FormatPretokenized}}, MaxLen: 8})
	if err == nil || err.Error() != arr+":6: field input_ids[1]: expected an integer, got a string" {
		t.Errorf("array error: %v", err)
	}
	d, err := Open(Spec{Train: []Source{{Path: arr, Format: FormatPretokenized}}, MaxLen: 8, SkipBadRecords: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d2, err := Open(Spec{Train: []Source{{Path: lines, Format: FormatPretokenized}}, MaxLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	// [6] has one token: nothing to train on.
	if d.Stats.TrainExamples != 2 || d.Stats.Untrainable != 1 || d.Stats.Skipped != 1 || d2.Stats.TrainExamples != 2 {
		t.Errorf("stats %+v / %+v", d.Stats, d2.Stats)
	}
	for i := range 2 {
		a, wa, _ := d.Train.Example(i)
		b, wb, _ := d2.Train.Example(i)
		if !slices.Equal(a.IDs, b.IDs) {
			t.Errorf("example %d: %v (%s) vs %v (%s)", i, a.IDs, wa, b.IDs, wb)
		}
	}
	if _, w, _ := d.Train.Example(1); w != arr+":3" {
		t.Errorf("where %q", w)
	}
	broken := filepath.Join(dir, "b.json")
	os.WriteFile(broken, []byte("[\n{\"input_ids\": [1, 2]},\n{\"input_ids\": [3, \n"), 0o644)
	if _, err := Open(Spec{Train: []Source{{Path: broken, Format: FormatPretokenized}}, MaxLen: 8}); err == nil || !strings.HasPrefix(err.Error(), broken+":3: invalid JSON") {
		t.Errorf("truncated array: %v", err)
	}
}

type pqMessage struct {
	Role    string `parquet:"role"`
	Content string `parquet:"content"`
}

type pqChat struct {
	ID       int64       `parquet:"id"`
	Messages []pqMessage `parquet:"messages,list"`
	Source   *string     `parquet:"source,optional"`
}

// TestParquet: a Parquet file of chat records (list of structs, several row
// groups) gives the examples the same records in JSONL give, read in order,
// at random and through the counting pass.
func TestParquet(t *testing.T) {
	tok, _ := realTokenizer(t, "qwen3")
	dir := t.TempDir()
	var rows []pqChat
	var jsonl []any
	for i := range 150 {
		src := "web"
		r := pqChat{ID: int64(i), Messages: []pqMessage{{"user", fmt.Sprintf("What is %d squared?", i)}, {"assistant", fmt.Sprintf("%d squared is %d.", i, i*i)}}}
		if i%3 == 0 {
			r.Source = &src
		}
		rows = append(rows, r)
		jsonl = append(jsonl, msg{"messages": []msg{{"role": "user", "content": r.Messages[0].Content}, {"role": "assistant", "content": r.Messages[1].Content}}})
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[pqChat](&buf, parquet.MaxRowsPerRowGroup(40), parquet.PageBufferSize(512))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pq := filepath.Join(dir, "train-00000-of-00001.parquet")
	os.WriteFile(pq, buf.Bytes(), 0o644)
	jl := writeJSONL(t, filepath.Join(dir, "train.jsonl"), jsonl...)

	a := openOne(t, Spec{Train: []Source{{Path: pq, Format: FormatChat}}, Tokenizer: tok})
	b := openOne(t, Spec{Train: []Source{{Path: jl, Format: FormatChat}}, Tokenizer: tok})
	if len(a) != 150 || len(b) != 150 {
		t.Fatalf("%d and %d examples", len(a), len(b))
	}
	for i := range a {
		if !slices.Equal(a[i].IDs, b[i].IDs) || !slices.Equal(a[i].Labels, b[i].Labels) {
			t.Fatalf("example %d differs: %q vs %q", i, tok.Decode(ints(a[i].IDs), false), tok.Decode(ints(b[i].IDs), false))
		}
	}
	src, err := openParquet(pq)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, i := range []int{149, 0, 77, 39, 40, 41, 120} {
		r, err := src.At(i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(r.json, []byte(fmt.Sprintf(`"id":%d,`, i))) {
			t.Errorf("row %d: %s", i, r.json)
		}
	}
	if w := src.Where(17); w != pq+": row 17" {
		t.Errorf("where %q", w)
	}
	// A bad row is named by its index.
	_, err = Open(Spec{Train: []Source{{Path: pq, Format: FormatInstruction}}, Tokenizer: tok, MaxLen: 64})
	if err == nil || err.Error() != pq+": row 0: field instruction: missing" {
		t.Errorf("error %v", err)
	}
	if _, err := openParquet(jl); err == nil || !strings.Contains(err.Error(), "not a Parquet file") {
		t.Errorf("not parquet: %v", err)
	}
}

// TestTextFiles: a directory of text files is one document a file (hidden
// directories and binary files skipped); a glob reads each match by its
// extension.
func TestTextFiles(t *testing.T) {
	tok, _ := realTokenizer(t, "qwen3")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src", "pkg"), 0o755)
	os.MkdirAll(filepath.Join(dir, "src", ".git"), 0o755)
	os.WriteFile(filepath.Join(dir, "src", "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "src", "pkg", "util.py"), []byte("def f():\n    return 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "src", "pkg", "data.json"), []byte("{\"not\": \"records\"}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "src", "logo.png"), []byte("\x89PNG\r\n\x1a\n\x00\x00"), 0o644)
	os.WriteFile(filepath.Join(dir, "src", ".git", "HEAD"), []byte("ref: refs/heads/main\n"), 0o644)
	d, err := Open(Spec{Train: []Source{{Path: filepath.Join(dir, "src"), Format: FormatText}}, Tokenizer: tok, MaxLen: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Stats.Records != 4 || d.Stats.NotText != 1 || d.Train.Examples() != 3 {
		t.Errorf("stats %+v", d.Stats)
	}
	var texts []string
	for i := range d.Train.Examples() {
		ex, _, _ := d.Train.Example(i)
		texts = append(texts, tok.Decode(ints(ex.IDs), false))
	}
	want := []string{"package main\n\nfunc main() {}\n<|im_end|>", "{\"not\": \"records\"}\n<|im_end|>", "def f():\n    return 1\n<|im_end|>"}
	if !slices.Equal(texts, want) {
		t.Errorf("documents %q", texts)
	}
	if _, err := Open(Spec{Train: []Source{{Path: filepath.Join(dir, "src"), Format: FormatChat}}, Tokenizer: tok, MaxLen: 256}); err == nil || !strings.Contains(err.Error(), "a directory is read as text documents") {
		t.Errorf("directory as chat: %v", err)
	}
	g := filepath.Join(dir, "src", "*", "*.py")
	d2, err := Open(Spec{Train: []Source{{Path: g, Format: FormatText}}, Tokenizer: tok, MaxLen: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Train.Examples() != 1 {
		t.Errorf("glob: %d examples", d2.Train.Examples())
	}
	if _, err := Open(Spec{Train: []Source{{Path: filepath.Join(dir, "none", "*.jsonl"), Format: FormatText}}, Tokenizer: tok, MaxLen: 8}); err == nil || !strings.Contains(err.Error(), "no file matches") {
		t.Errorf("empty glob: %v", err)
	}
}
