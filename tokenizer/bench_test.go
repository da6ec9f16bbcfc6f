package tokenizer

import (
	"os"
	"strings"
	"testing"
)

// Benchmarks use the oracle's real tokenizers and skip when they are absent.
func benchTokenizer(b *testing.B, name string) *Tokenizer {
	b.Helper()
	dir := tokenizerDir(name)
	if _, err := os.Stat(dir); err != nil {
		b.Skipf("no %s tokenizer (run make setup): %v", name, err)
	}
	tok, err := Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

func BenchmarkLoadLlama3(b *testing.B) {
	benchTokenizer(b, "llama3")
	for b.Loop() {
		if _, err := Load(tokenizerDir("llama3")); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, name string) {
	tok := benchTokenizer(b, name)
	text := strings.Join(corpus(), "\n")
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text, false)
	}
}

func BenchmarkEncodeLlama3(b *testing.B) { benchEncode(b, "llama3") }
func BenchmarkEncodeQwen3(b *testing.B)  { benchEncode(b, "qwen3") }
func BenchmarkEncodeLlama2(b *testing.B) { benchEncode(b, "llama2") }
