package tokenizer

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// oracleDir is the transformers.js oracle (see internal/oracle/js).
var oracleDir = filepath.Join("..", "internal", "oracle", "js")

// oracleTokenizers are the real tokenizer.json files shipped by the npm
// packages of the oracle.
var oracleTokenizers = []struct {
	name      string
	byteLevel bool // byte-level BPE: decode(encode(x)) == x must hold
}{
	{"llama2", false},
	{"llama3", true},
	{"llama3_1", true},
	{"qwen3", true},
	{"gpt35turbo", true},
	{"deepseek_v3", true},
}

type oracleResult struct {
	IDs          []int  `json:"ids"`
	IDsSpecial   []int  `json:"ids_special"`
	IDsSpecialJS []int  `json:"ids_special_js"`
	Decode       string `json:"decode"`
	DecodeSkip   string `json:"decode_skip"`
	DecodePlain  string `json:"decode_plain"`
}

// requireOracle fails (not skips) when the oracle is not installed: the
// conformance test is the one that matters.
func requireOracle(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(oracleDir, "node_modules", "@lenml", "tokenizers")); err != nil {
		t.Fatalf("transformers.js oracle missing (%v): run `make setup`", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (%v): the conformance oracle needs Node.js; run `make setup`", err)
	}
}

func tokenizerDir(name string) string {
	return filepath.Join(oracleDir, "node_modules", "@lenml", "tokenizer-"+name, "models")
}

// runOracle tokenizes all texts with transformers.js in one node process.
func runOracle(t *testing.T, dir string, texts []string) []oracleResult {
	t.Helper()
	var res struct {
		Results []oracleResult `json:"results"`
	}
	runNode(t, "tokenize.mjs", dir, texts, &res)
	if len(res.Results) != len(texts) {
		t.Fatalf("oracle returned %d results for %d texts", len(res.Results), len(texts))
	}
	return res.Results
}

// runNode runs an oracle script of internal/oracle/js over a tokenizer
// directory and a JSON input, and decodes its JSON output into out.
func runNode(t *testing.T, script, dir string, input, out any) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "input.json")
	b, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, absDir, in)
	cmd.Dir = oracleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("%s output: %v", script, err)
	}
}

func TestConformance(t *testing.T) {
	requireOracle(t)
	texts := corpus()
	if len(texts) < 300 {
		t.Fatalf("corpus has %d strings, want >= 300", len(texts))
	}
	for _, tc := range oracleTokenizers {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := tokenizerDir(tc.name)
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := runOracle(t, dir, texts)
			// Round trips use the decoder alone: clean_up_tokenization_spaces
			// (on for Llama 3) deliberately rewrites " ." to ".".

			var idsOK, decOK, trips, failures int
			for i, text := range texts {
				w := want[i]
				fail := func(what string, got, want any) {
					if failures++; failures <= 10 {
						t.Errorf("%s: text %d %q:\n got  %.300v\n want %.300v", what, i, clip(text), got, want)
					}
				}
				ok := true
				if got := tok.Encode(text, false); !slices.Equal(got, w.IDs) {
					fail("encode", got, w.IDs)
					ok = false
				}
				if got := tok.Encode(text, true); !slices.Equal(got, w.IDsSpecial) {
					fail("encode(addSpecial)", got, w.IDsSpecial)
					ok = false
				}
				if ok {
					idsOK++
				}
				dok := true
				if got := tok.Decode(w.IDsSpecial, false); got != w.Decode {
					fail("decode", got, w.Decode)
					dok = false
				}
				if got := tok.Decode(w.IDsSpecial, true); got != w.DecodeSkip {
					fail("decode(skipSpecial)", got, w.DecodeSkip)
					dok = false
				}
				if got := tok.Decode(w.IDs, false); got != w.DecodePlain {
					fail("decode(plain ids)", got, w.DecodePlain)
					dok = false
				}
				if dok {
					decOK++
				}
				if !tc.byteLevel && lossless(tok, text) {
					if got := tok.decode(tok.Encode(text, false), false, false); got != text {
						fail("round trip", got, text)
					} else {
						trips++
					}
				}
				if tc.byteLevel {
					// A normalizer (Qwen's NFC) may change the text itself.
					want := text
					if tok.normalizer != nil {
						want = tok.normalizer.normalize(text)
					}
					if got := tok.decode(tok.Encode(text, false), false, false); got != want {
						fail("round trip", got, want)
					} else {
						trips++
					}
				}
			}
			if failures > 10 {
				t.Errorf("... and %d more failures", failures-10)
			}
			t.Logf("%s: ids identical %d/%d, decodes identical %d/%d, round trips %d",
				tc.name, idsOK, len(texts), decOK, len(texts), trips)
		})
	}
}

// lossless reports whether a SentencePiece-style tokenizer must give text
// back unchanged. It cannot when text holds an added token (HF prepends "▁"
// to the text after it, and decode shows that as a space) or a literal "▁"
// (decoded as a space).
func lossless(tok *Tokenizer, text string) bool {
	if strings.Contains(text, "\u2581") {
		return false
	}
	segs := tok.findAdded(text, tok.rawTrie, true)
	return len(segs) == 1 && segs[0].tok < 0
}

func clip(s string) string {
	r := []rune(s)
	if len(r) > 80 {
		return string(r[:80]) + "…"
	}
	return s
}
