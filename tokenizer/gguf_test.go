package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/gguf"
)

// TestGGUFRoundTrip writes the tokenizer.* metadata of real tokenizers
// (Llama 2's SentencePiece BPE; Llama 3's, Qwen3's and cl100k's byte-level
// BPE) into a GGUF file, as `tune export --format gguf` does, reads the
// tokenizer back from the GGUF, and requires it to encode the corpus (hard
// cases and generated text, with and without special tokens) exactly as the
// tokenizer.json it came from, decode the same, and keep its special tokens
// and chat template.
func TestGGUFRoundTrip(t *testing.T) {
	requireOracle(t)
	texts := corpus()
	// cl100k is named llama-bpe in GGUF, whose decoding cleans up spaces as
	// llama.cpp and Llama 3 do; its tokenizer_config.json does not.
	for _, name := range []string{"llama2", "llama3_1", "qwen3", "gpt35turbo"} {
		decode := name != "gpt35turbo"
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, err := Load(tokenizerDir(name))
			if err != nil {
				t.Fatal(err)
			}
			kv, err := want.GGUFMetadata(want.VocabSize(), nil)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "vocab.gguf")
			if err := gguf.Write(path, append([]gguf.KV{{Key: "general.architecture", Value: "llama"}}, kv...), nil); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.VocabSize() != want.VocabSize() {
				t.Errorf("vocabulary of %d, want %d", got.VocabSize(), want.VocabSize())
			}
			for _, f := range []func(*Tokenizer) (int, bool){(*Tokenizer).BOS, (*Tokenizer).EOS, (*Tokenizer).PAD} {
				g, gok := f(got)
				w, wok := f(want)
				if g != w || gok != wok {
					t.Errorf("special token %d %v, want %d %v", g, gok, w, wok)
				}
			}
			if got.ChatTemplate() != want.ChatTemplate() {
				t.Errorf("chat template differs")
			}
			bad := 0
			for _, text := range texts {
				for _, special := range []bool{false, true} {
					g, w := got.Encode(text, special), want.Encode(text, special)
					if !slices.Equal(g, w) {
						if bad++; bad <= 5 {
							t.Errorf("%q (special %v): GGUF tokenizer gives %v, tokenizer.json %v", text, special, g, w)
						}
					}
				}
				ids := want.Encode(text, true)
				if g, w := got.Decode(ids, false), want.Decode(ids, false); decode && g != w {
					if bad++; bad <= 5 {
						t.Errorf("decode of %q: %q, want %q", text, g, w)
					}
				}
				if g, w := got.Decode(ids, true), want.Decode(ids, true); decode && g != w {
					if bad++; bad <= 5 {
						t.Errorf("decode (skipping special tokens) of %q: %q, want %q", text, g, w)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d texts differ", bad, len(texts))
			}
			// The same tokenizer written as Hugging Face files (a merged
			// export of a GGUF base) and loaded back.
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			tj, tc, err := GGUFFiles(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644)
			os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), tc, 0o644)
			files, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if files.ChatTemplate() != got.ChatTemplate() {
				t.Error("chat template differs in the written files")
			}
			for _, text := range texts[:100] {
				if g, w := files.Encode(text, true), got.Encode(text, true); !slices.Equal(g, w) {
					t.Fatalf("%q: written files give %v, the GGUF %v", text, g, w)
				}
				if g, w := files.Decode(got.Encode(text, true), false), got.Decode(got.Encode(text, true), false); g != w {
					t.Fatalf("%q: written files decode to %q, the GGUF to %q", text, g, w)
				}
			}
		})
	}
}

// TestGGUFBadMetadata: metadata that names no tokenizer tune can build is a
// one-line error naming the key.
func TestGGUFBadMetadata(t *testing.T) {
	ok := []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "gpt2"}, {Key: "tokenizer.ggml.pre", Value: "qwen2"},
		{Key: "tokenizer.ggml.tokens", Value: []string{"a", "b", "ab"}}, {Key: "tokenizer.ggml.merges", Value: []string{"a b"}},
	}
	with := func(key string, v any) []gguf.KV {
		out := slices.Clone(ok)
		for i := range out {
			if out[i].Key == key {
				if v == nil {
					return slices.Delete(out, i, i+1)
				}
				out[i].Value = v
				return out
			}
		}
		return append(out, gguf.KV{Key: key, Value: v})
	}
	for _, c := range []struct {
		name string
		kv   []gguf.KV
		want string
	}{
		{"no tokenizer", with("tokenizer.ggml.model", nil), "tokenizer.ggml.model: missing"},
		{"bert", with("tokenizer.ggml.model", "bert"), `tokenizer.ggml.model: "bert" is not supported`},
		{"pre", with("tokenizer.ggml.pre", "falcon"), `tokenizer.ggml.pre: "falcon" is not a pre-tokenizer tune reproduces`},
		{"tokens type", with("tokenizer.ggml.tokens", []int32{1}), "tokenizer.ggml.tokens: expected []string, got []int32"},
		{"types length", with("tokenizer.ggml.token_type", []int32{1}), "tokenizer.ggml.token_type: 1 entries for 3 tokens"},
		{"bos", with("tokenizer.ggml.bos_token_id", uint32(3)), "tokenizer.ggml.bos_token_id: 3; expected a token id below 3"},
		{"merge", with("tokenizer.ggml.merges", []string{"b a"}), `merge result "ba" is not in model.vocab`},
		{"no merges", with("tokenizer.ggml.merges", nil), "tokenizer.ggml.merges: missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.gguf")
			if err := gguf.Write(path, c.kv, nil); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want one line naming %s and %q", err, path, c.want)
			}
		})
	}
}

// FuzzFromGGUF feeds arbitrary files to the GGUF tokenizer reader. It must
// never panic; an error is one line; a tokenizer it builds encodes and
// decodes a text. Seeds: small byte-level and SentencePiece vocabularies and
// testdata/fuzz/FuzzFromGGUF.
func FuzzFromGGUF(f *testing.F) {
	for _, kv := range [][]gguf.KV{
		{
			{Key: "tokenizer.ggml.model", Value: "gpt2"}, {Key: "tokenizer.ggml.pre", Value: "llama-bpe"},
			{Key: "tokenizer.ggml.tokens", Value: []string{"a", "b", "ab", "Ġ", "Ġab", "<s>"}}, {Key: "tokenizer.ggml.merges", Value: []string{"a b", "Ġ ab"}},
			{Key: "tokenizer.ggml.token_type", Value: []int32{1, 1, 1, 1, 1, 3}}, {Key: "tokenizer.ggml.bos_token_id", Value: uint32(5)},
			{Key: "tokenizer.chat_template", Value: "{{ messages[0]['content'] }}"},
		},
		{
			{Key: "tokenizer.ggml.model", Value: "llama"},
			{Key: "tokenizer.ggml.tokens", Value: []string{"<unk>", "<s>", "</s>", "<0x41>", "▁", "a", "b", "▁a", "ab", "▁ab"}},
			{Key: "tokenizer.ggml.scores", Value: []float32{0, 0, 0, 0, -1, -2, -3, -4, -5, -6}},
			{Key: "tokenizer.ggml.token_type", Value: []int32{2, 3, 3, 6, 1, 1, 1, 1, 1, 1}},
			{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(0)}, {Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
		},
	} {
		path := filepath.Join(f.TempDir(), "seed.gguf")
		if err := gguf.Write(path, kv, nil); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "f.gguf")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := Load(path)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		ids := tok.Encode("ab Ab\n a<s>", true)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("id %d outside the vocabulary of %d", id, tok.VocabSize())
			}
		}
		tok.Decode(ids, false)
	})
}
