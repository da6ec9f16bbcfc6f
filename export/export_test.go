package export

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/tokenizer"
)

// small is a generated model of an architecture, hidden 64 and 2 layers, with
// the vocabulary size of a real tokenizer.
func small(arch string, vocab int) builtin.Spec {
	return builtin.Spec{Arch: arch, Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2,
		Vocab: vocab, RopeTheta: 10000, DType: dtype.F32, Seed: 7}
}

// agreementCases are the architectures and options llama.cpp must run the
// same as tune, each with the tokenizer its real models use.
func agreementCases() []struct {
	name, tok string
	spec      builtin.Spec
	rslora    bool
} {
	llama := small("llama", 32000)
	llama3 := small("llama", 128256)
	llama3.RopeTheta, llama3.Tied = 500000, true
	llama3.RopeScaling = map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
	linear := small("llama", 32000)
	linear.RopeScaling = map[string]any{"type": "linear", "factor": 4.0}
	linear.HeadDim = 32 // head_dim unequal to hidden/heads: key_length, value_length
	linear.AttentionBias = true
	mistral := small("mistral", 32000)
	mistral.Heads, mistral.KVHeads, mistral.SlidingWindow = 8, 2, 4096
	qwen2 := small("qwen2", 151680) // 151669 tokens padded, as real Qwen checkpoints are
	qwen2.Tied = true
	qwen3 := small("qwen3", 151669)
	qwen3.HeadDim = 32
	return []struct {
		name, tok string
		spec      builtin.Spec
		rslora    bool
	}{
		{"llama", "llama2", llama, false},
		{"llama3_rope", "llama3_1", llama3, false},
		{"llama_linear_headdim_bias", "llama2", linear, true},
		{"mistral", "llama2", mistral, false},
		{"qwen2", "qwen3", qwen2, true},
		{"qwen3", "qwen3", qwen3, false},
	}
}

var tokenizationTexts = []string{
	"Hello world",
	"The quick brown fox jumps over the lazy dog. It's 2024, isn't it?",
	"  leading spaces,\ttabs\nand newlines\n\n",
	"numbers 1234567 and 3.14159",
	"ünïcödé, 日本語 and emoji 🙂",
}

// TestLlamaCppAgreement is the end-to-end check of the GGUF exports: for each
// architecture, llama.cpp running (a) the base GGUF, (b) the base GGUF with
// the GGUF adapter and (c) the merged GGUF gives the same next-token
// log-probabilities as tune's forward pass without and with the adapter.
// It also checks that llama.cpp tokenizes with the exported vocabulary as
// tune's tokenizer (Hugging Face's ids) does.
func TestLlamaCppAgreement(t *testing.T) {
	requireOracle(t)
	for _, c := range agreementCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			base := writeModel(t, c.spec, c.tok)
			cfg := loadConfig(t, base)
			adapter := randomAdapter(t, base, cfg, c.rslora, 11)
			out := t.TempDir()
			baseGGUF, adapterGGUF, mergedGGUF := filepath.Join(out, "base.gguf"), filepath.Join(out, "adapter.gguf"), filepath.Join(out, "merged.gguf")
			if _, err := GGUF(base, "", baseGGUF, "f32"); err != nil {
				t.Fatal(err)
			}
			if err := GGUFAdapter(adapter, base, adapterGGUF, "f32"); err != nil {
				t.Fatal(err)
			}
			if _, err := GGUF(base, adapter, mergedGGUF, "f32"); err != nil {
				t.Fatal(err)
			}

			tok, err := tokenizer.Load(base)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int32
			for _, id := range tok.Encode("The quick brown fox jumps over the lazy dog. Hello, world! 12345", true) {
				ids = append(ids, int32(id))
			}
			res := llamaCpp(t, []scoreRun{
				{Model: baseGGUF, IDs: ids, Texts: tokenizationTexts},
				{Model: baseGGUF, Adapters: []string{adapterGGUF}, IDs: ids},
				{Model: mergedGGUF, IDs: ids},
			})
			if res[0].NVocab != cfg.Vocab {
				t.Fatalf("llama.cpp has a vocabulary of %d, the model %d", res[0].NVocab, cfg.Vocab)
			}
			hfLogits := tuneLogits(t, base, "", ids)
			lpBase, topBase, gapBase := testmodels.NextTokenStats(hfLogits, cfg.Vocab, ids)
			// (d) tune on the f32 base GGUF: the same model bit for bit (the
			// configuration from metadata, names mapped back, q/k unpermuted),
			// hence the same as llama.cpp on that file.
			checkGGUFBase(t, base, baseGGUF, ids, hfLogits)
			lpLoRA, topLoRA, gapLoRA := testmodels.NextTokenStats(tuneLogits(t, base, adapter, ids), cfg.Vocab, ids)
			// The adapter must matter, or (b) and (c) would prove nothing.
			moved := 0.0
			for i := range lpBase {
				moved = max(moved, abs(lpBase[i]-lpLoRA[i]))
			}
			if moved < 0.05 {
				t.Fatalf("the random adapter changes log-probs by only %.3g", moved)
			}
			const tol = 1e-3
			dBase := compare(t, "base GGUF vs tune", res[0], lpBase, topBase, gapBase, tol)
			lpGGUF, topGGUF, gapGGUF := testmodels.NextTokenStats(tuneLogits(t, baseGGUF, "", ids), cfg.Vocab, ids)
			dGGUF := compare(t, "base GGUF in llama.cpp vs the same file in tune", res[0], lpGGUF, topGGUF, gapGGUF, tol)
			dLoRA := compare(t, "base GGUF + GGUF adapter vs tune + adapter", res[1], lpLoRA, topLoRA, gapLoRA, tol)
			// (c) is llama.cpp against itself: merged weights vs the adapter applied.
			dMerged := compare(t, "merged GGUF vs base GGUF + adapter", res[2], res[1].LogProbs, res[1].Top1, gapLoRA, tol)
			t.Logf("max |Δ log p|: base %.2e, GGUF base in tune %.2e, adapter %.2e, merged vs adapter %.2e (adapter moves log p by up to %.2f)", dBase, dGGUF, dLoRA, dMerged, moved)

			ggufTok, err := tokenizer.Load(baseGGUF)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range tokenizationTexts {
				want := tok.Encode(text, false)
				if !slices.Equal(res[0].Tokens[i], want) {
					t.Errorf("llama.cpp tokenizes %q as %v, tune (Hugging Face) as %v", text, res[0].Tokens[i], want)
				}
				if got := ggufTok.Encode(text, false); !slices.Equal(got, want) {
					t.Errorf("tune's tokenizer from the GGUF tokenizes %q as %v, from tokenizer.json as %v", text, got, want)
				}
			}
		})
	}
}

// checkGGUFBase opens the GGUF written from the HF model in dir with
// model.Open and requires tune's logits on it to equal hfLogits bit for bit,
// its configuration to equal config.json's (but the sliding window, which
// llama.cpp's llama architecture drops), and every tensor to be a view into
// the file but the unpermuted q/k.
func checkGGUFBase(t *testing.T, dir, path string, ids []int32, hfLogits []float32) {
	t.Helper()
	m, ck, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	want := loadConfig(t, dir)
	got := m.Config
	if want.ModelType == "mistral" {
		want.ModelType, want.SlidingWindow = "llama", 0
	}
	want.TorchDtype = got.TorchDtype
	if got != want {
		t.Errorf("configuration from GGUF metadata:\n got %+v\nwant %+v", got, want)
	}
	if g := tuneLogits(t, path, "", ids); !slices.Equal(g, hfLogits) {
		worst := 0.0
		for i := range g {
			worst = max(worst, abs(float64(g[i]-hfLogits[i])))
		}
		t.Errorf("logits on the GGUF differ from the HF checkpoint's by up to %.3g", worst)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
