package export

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/tune-dev/tune/checkpoints/gguf"
	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/fixture"
	"github.com/tune-dev/tune/lora"
	"github.com/tune-dev/tune/model/builtin"
	"github.com/tune-dev/tune/tokenizer"
)

// TestAdapterRoundTrip: PEFT -> GGUF adapter -> ReadGGUF -> inverse
// permutation gives A and B back bit for bit in f32, and f16/bf16 adapters
// hold exactly dtype.F32ToF16/F32ToBF16 of them.
func TestAdapterRoundTrip(t *testing.T) {
	for _, c := range []struct {
		arch   string
		heads  int
		rslora bool
	}{{"llama", 4, false}, {"mistral", 8, true}, {"qwen2", 4, false}, {"qwen3", 4, true}} {
		t.Run(c.arch, func(t *testing.T) {
			spec := small(c.arch, 96)
			spec.Heads = c.heads
			base := filepath.Join(t.TempDir(), "base")
			if err := builtin.Write(base, spec); err != nil {
				t.Fatal(err)
			}
			cfg := loadConfig(t, base)
			adapterDir := randomAdapter(t, base, cfg, c.rslora, 3)
			a, err := lora.FromPEFT(adapterDir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, typName := range []string{"f32", "f16", "bf16"} {
				path := filepath.Join(t.TempDir(), typName+".gguf")
				if err := GGUFAdapter(adapterDir, base, path, typName); err != nil {
					t.Fatal(err)
				}
				g, err := gguf.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer g.Close()
				wantArch := map[string]string{"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}[c.arch]
				alpha := float32(8)
				if c.rslora {
					alpha = float32(8 * math.Sqrt(4))
				}
				for k, want := range map[string]any{"general.architecture": wantArch, "general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": alpha} {
					if v, ok := g.Lookup(k); !ok || v != want {
						t.Fatalf("%s: %s = %v, want %v", typName, k, v, want)
					}
				}
				if len(g.Tensors) != 2*len(a.Modules) {
					t.Fatalf("%d tensors for %d modules", len(g.Tensors), len(a.Modules))
				}
				typ, _ := ParseType(typName)
				for _, m := range a.Modules {
					name := "blk." + strconv.Itoa(m.Layer) + "." + gguf.ModuleName(m.Name) + ".weight"
					wantB := m.B
					for _, suffix := range []string{".lora_a", ".lora_b"} {
						info, ok := g.Info(name + suffix)
						dims := []uint64{uint64(m.In), 4}
						if suffix == ".lora_b" {
							dims = []uint64{4, uint64(m.Out)}
						}
						if !ok || info.Type != typ || !slices.Equal(info.Dims, dims) {
							t.Fatalf("%s%s: %+v, want type %s dims %v", name, suffix, info, typ, dims)
						}
					}
					data, _ := g.TensorData(name + ".lora_b")
					gotB, _ := g.Float32(name + ".lora_b")
					gotA, _ := g.Float32(name + ".lora_a")
					dataA, _ := g.TensorData(name + ".lora_a")
					if h := qkHeads(cfg, m.Name); h > 0 && wantArch == "llama" {
						gotB = gguf.UnpermuteRows(gotB, m.Out, h)
						// the file holds the permuted rows
						permuted := gguf.PermuteRows(m.B, m.Out, h)
						if typName == "f32" && slices.Equal(permuted, m.B) {
							t.Fatalf("%s: permutation is the identity, the test proves nothing", name)
						}
						wantB = permuted
					}
					switch typName {
					case "f32":
						if !slices.Equal(gotA, m.A) || !slices.Equal(gotB, m.B) {
							t.Fatalf("%s: A/B differ after the round trip", name)
						}
					default:
						conv := dtype.F32ToF16
						if typName == "bf16" {
							conv = dtype.F32ToBF16
						}
						for i, f := range m.A {
							if h := binary.LittleEndian.Uint16(dataA[2*i:]); h != conv(f) {
								t.Fatalf("%s lora_a[%d]: %#04x, want %#04x", name, i, h, conv(f))
							}
						}
						for i, f := range wantB {
							if h := binary.LittleEndian.Uint16(data[2*i:]); h != conv(f) {
								t.Fatalf("%s lora_b[%d]: %#04x, want %#04x", name, i, h, conv(f))
							}
						}
					}
				}
			}
		})
	}
	t.Run("q8_0 refused", func(t *testing.T) {
		err := GGUFAdapter(t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "x.gguf"), "q8_0")
		if err == nil || !strings.Contains(err.Error(), "expected f32, f16 or bf16") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestGGUFTypes checks the merged export's tensor types and values for f16,
// bf16 and q8_0 against the float32 weights (permuted like the export), and
// that llama.cpp runs each file close to the f32 one.
func TestGGUFTypes(t *testing.T) {
	requireOracle(t)
	spec := small("llama", 32000)
	spec.Intermediate = 48 // ffn_down rows of 48 values: no whole Q8_0 blocks, so F16
	c := newMergeCase(t, spec, 5)
	base, adapter, want := c.base, c.adapter, c.want
	out := t.TempDir()
	runs := []scoreRun{}
	ids := []int32{1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203, 29889}
	for _, typ := range []string{"f32", "f16", "bf16", "q8_0"} {
		path := filepath.Join(out, typ+".gguf")
		if _, err := GGUF(base, adapter, path, typ); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, scoreRun{Model: path, IDs: ids})
		g, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		mt, _ := ParseType(typ)
		if v, _ := g.Lookup("general.file_type"); v != fileType(mt) {
			t.Errorf("%s: general.file_type %v", typ, v)
		}
		worstQ := 0.0
		for _, ti := range g.Tensors {
			w, ok := want[ti.Name]
			if !ok {
				t.Fatalf("%s: unexpected tensor %q", typ, ti.Name)
			}
			wantType := mt
			switch {
			case len(ti.Dims) == 1:
				wantType = gguf.F32
			case mt == gguf.Q8_0 && ti.Dims[0]%32 != 0:
				wantType = gguf.F16
			}
			if ti.Type != wantType {
				t.Errorf("%s: %s is %s, want %s", typ, ti.Name, ti.Type, wantType)
			}
			data, _ := g.TensorData(ti.Name)
			switch ti.Type {
			case gguf.F32:
				got, _ := g.Float32(ti.Name)
				if !slices.Equal(got, w) {
					t.Errorf("%s: %s differs from the merged float32 weights", typ, ti.Name)
				}
			case gguf.F16, gguf.BF16:
				conv := dtype.F32ToF16
				if ti.Type == gguf.BF16 {
					conv = dtype.F32ToBF16
				}
				for i, f := range w {
					if h := binary.LittleEndian.Uint16(data[2*i:]); h != conv(f) {
						t.Fatalf("%s: %s[%d] = %#04x, want %#04x", typ, ti.Name, i, h, conv(f))
					}
				}
			case gguf.Q8_0:
				got, _ := g.Float32(ti.Name)
				for blk := range len(w) / 32 {
					d16, bound := fixture.Q8_0Quantum(w[blk*32 : blk*32+32])
					for i := blk * 32; i < blk*32+32; i++ {
						e := math.Abs(float64(got[i] - w[i]))
						worstQ = max(worstQ, e/d16)
						if e > bound {
							t.Fatalf("%s[%d]: %g -> %g, beyond half a quantum %g", ti.Name, i, w[i], got[i], d16/2)
						}
					}
				}
			}
		}
		if mt == gguf.Q8_0 {
			t.Logf("q8_0: worst error %.3f quanta", worstQ)
		}
	}
	res := llamaCpp(t, runs)
	for i, typ := range []string{"f16", "bf16", "q8_0"} {
		worst := 0.0
		for j := range res[0].LogProbs {
			worst = max(worst, math.Abs(res[i+1].LogProbs[j]-res[0].LogProbs[j]))
		}
		t.Logf("llama.cpp %s vs f32: max |Δ log p| %.3g", typ, worst)
		if worst > 0.1 {
			t.Errorf("llama.cpp %s differs from f32 by %.3g in log p", typ, worst)
		}
	}
}

// TestVocabMetadata checks the tokenizer metadata against what
// convert_hf_to_gguf writes for the real tokenizers.
func TestVocabMetadata(t *testing.T) {
	requireOracle(t)
	kvOf := func(t *testing.T, tok string, vocab int) map[string]any {
		dir := writeModel(t, small("llama", vocab), tok)
		kv, err := vocabKV(dir, vocab)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		for _, e := range kv {
			m[e.Key] = e.Value
		}
		return m
	}
	t.Run("llama2", func(t *testing.T) {
		m := kvOf(t, "llama2", 32000)
		types := m["tokenizer.ggml.token_type"].([]int32)
		tokens := m["tokenizer.ggml.tokens"].([]string)
		scores := m["tokenizer.ggml.scores"].([]float32)
		if m["tokenizer.ggml.model"] != "llama" || len(tokens) != 32000 || len(scores) != 32000 {
			t.Fatalf("model %v, %d tokens, %d scores", m["tokenizer.ggml.model"], len(tokens), len(scores))
		}
		if types[0] != tokenizer.TokenUnknown || types[1] != tokenizer.TokenControl || types[2] != tokenizer.TokenControl || types[13] != tokenizer.TokenByte || tokens[13] != "<0x0A>" || types[29871] != tokenizer.TokenNormal {
			t.Fatalf("token types %v %v %v %v %q %v", types[0], types[1], types[2], types[13], tokens[13], types[29871])
		}
		if m["tokenizer.ggml.bos_token_id"] != uint32(1) || m["tokenizer.ggml.eos_token_id"] != uint32(2) || m["tokenizer.ggml.unknown_token_id"] != uint32(0) || m["tokenizer.ggml.add_bos_token"] != true || m["tokenizer.ggml.add_eos_token"] != false {
			t.Fatalf("special tokens: %v", m)
		}
		// "▁t" is the first merge: the best score.
		if id := slices.Index(tokens, "▁t"); id < 0 || scores[id] != -1 {
			t.Fatalf("score of ▁t (id %d) = %v", id, scores[max(id, 0)])
		}
	})
	t.Run("llama3", func(t *testing.T) {
		m := kvOf(t, "llama3_1", 128256)
		if m["tokenizer.ggml.model"] != "gpt2" || m["tokenizer.ggml.pre"] != "llama-bpe" || m["tokenizer.ggml.add_bos_token"] != true || m["tokenizer.ggml.bos_token_id"] != uint32(128000) {
			t.Fatalf("model %v pre %v add_bos %v bos %v", m["tokenizer.ggml.model"], m["tokenizer.ggml.pre"], m["tokenizer.ggml.add_bos_token"], m["tokenizer.ggml.bos_token_id"])
		}
		if n := len(m["tokenizer.ggml.merges"].([]string)); n != 280147 {
			t.Fatalf("%d merges", n)
		}
		if _, ok := m["tokenizer.chat_template"]; !ok {
			t.Fatal("no chat template")
		}
	})
	t.Run("qwen3 padded", func(t *testing.T) {
		m := kvOf(t, "qwen3", 151680)
		tokens := m["tokenizer.ggml.tokens"].([]string)
		types := m["tokenizer.ggml.token_type"].([]int32)
		if m["tokenizer.ggml.pre"] != "qwen2" || m["tokenizer.ggml.add_bos_token"] != false || m["tokenizer.ggml.eos_token_id"] != uint32(151645) || m["tokenizer.ggml.padding_token_id"] != uint32(151643) {
			t.Fatalf("pre %v add_bos %v eos %v pad %v", m["tokenizer.ggml.pre"], m["tokenizer.ggml.add_bos_token"], m["tokenizer.ggml.eos_token_id"], m["tokenizer.ggml.padding_token_id"])
		}
		if tokens[151679] != "[PAD151679]" || types[151679] != tokenizer.TokenUnused || tokens[151645] != "<|im_end|>" || types[151645] != tokenizer.TokenControl {
			t.Fatalf("tokens %q %v %q %v", tokens[151679], types[151679], tokens[151645], types[151645])
		}
		if tokens[151657] != "<tool_call>" || types[151657] != tokenizer.TokenUserDefined {
			t.Fatalf("non-special added token: %q %v", tokens[151657], types[151657])
		}
	})
	t.Run("errors", func(t *testing.T) {
		dir := writeModel(t, small("llama", 32000), "llama2")
		if _, err := vocabKV(dir, 31999); err == nil || !strings.Contains(err.Error(), "beyond vocab_size 31999") {
			t.Fatalf("err = %v", err)
		}
		dir = writeModel(t, small("llama", 100277), "gpt35turbo")
		if _, err := vocabKV(dir, 100277); err != nil {
			t.Fatalf("cl100k (llama-bpe regex, Removed/invert split): %v", err)
		}
		dir = writeModel(t, small("llama", 129280), "deepseek_v3")
		if _, err := vocabKV(dir, 129280); err == nil || !strings.Contains(err.Error(), "not one tune can name") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestOllamaTemplates renders each Ollama TEMPLATE with text/template the way
// Ollama does and compares it with the Hugging Face template rendered by
// tune's tokenizer (the Jinja checked against @huggingface/jinja), minus the
// BOS that llama.cpp adds.
func TestOllamaTemplates(t *testing.T) {
	requireOracle(t)
	llama2HF := "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
	conversations := [][]tokenizer.Message{
		{{Role: "user", Content: "Hi there"}},
		{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "What is 2+2?"}, {Role: "assistant", Content: "4"}, {Role: "user", Content: "And 3+3?"}},
		{{Role: "user", Content: "one"}, {Role: "assistant", Content: "two"}, {Role: "user", Content: "three"}},
	}
	for _, c := range []struct{ tok, format, template string }{
		{"qwen3", "chatml", ""}, {"llama3", "llama3", ""}, {"llama2", "llama2", llama2HF},
	} {
		t.Run(c.format, func(t *testing.T) {
			dir := writeModel(t, small("llama", 10), c.tok)
			if c.template != "" {
				cfgPath := filepath.Join(dir, "tokenizer_config.json")
				var cfg map[string]any
				b, _ := os.ReadFile(cfgPath)
				if err := json.Unmarshal(b, &cfg); err != nil {
					t.Fatal(err)
				}
				cfg["chat_template"] = c.template
				b, _ = json.Marshal(cfg)
				os.WriteFile(cfgPath, b, 0o644)
			}
			tok, err := tokenizer.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			f := DetectChatFormat(tok.ChatTemplate())
			if f.Name != c.format {
				t.Fatalf("detected %q, want %q", f.Name, c.format)
			}
			tmpl, err := template.New("ollama").Parse(f.Template)
			if err != nil {
				t.Fatal(err)
			}
			bos := tok.Tokens([]int{bosOf(tok)})[0]
			for _, conv := range conversations {
				want, err := tok.ApplyChatTemplate(conv, true)
				if err != nil {
					t.Fatal(err)
				}
				if bos != "" {
					want = strings.TrimPrefix(want, bos)
				}
				var msgs []map[string]string
				for _, m := range conv {
					msgs = append(msgs, map[string]string{"Role": m.Role, "Content": m.Content})
				}
				var got strings.Builder
				if err := tmpl.Execute(&got, map[string]any{"Messages": msgs}); err != nil {
					t.Fatal(err)
				}
				if got.String() != want {
					t.Errorf("conversation %v:\nOllama:      %q\nHugging Face: %q", conv, got.String(), want)
				}
			}
		})
	}
}

func bosOf(tok *tokenizer.Tokenizer) int {
	if id, ok := tok.BOS(); ok {
		return id
	}
	return -1
}

func TestOllamaModelfile(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "model.gguf")
	outside := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := Ollama(dir, base, outside, "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "Modelfile"))
	if err != nil {
		t.Fatal(err)
	}
	mf := string(b)
	for _, want := range []string{"FROM ./model.gguf\n", "ADAPTER " + outside + "\n", "TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>", "PARAMETER stop \"<|im_end|>\"\n"} {
		if !strings.Contains(mf, want) {
			t.Errorf("Modelfile lacks %q:\n%s", want, mf)
		}
	}
	if err := Ollama(dir, base, "", "{{ custom }}"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "Modelfile"))
	mf = string(b)
	if strings.Contains(mf, "TEMPLATE") && !strings.Contains(mf, "set TEMPLATE") || strings.Contains(mf, "ADAPTER") || !strings.Contains(mf, "#   {{ custom }}") {
		t.Errorf("unknown template:\n%s", mf)
	}
	// Every form ends with a newline, as text files do.
	for _, tmpl := range []string{"", "{{ custom }}", "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}\n"} {
		if err := Ollama(dir, base, "", tmpl); err != nil {
			t.Fatal(err)
		}
		b, _ = os.ReadFile(filepath.Join(dir, "Modelfile"))
		if !strings.HasSuffix(string(b), "\n") || strings.HasSuffix(string(b), "\n\n\n") {
			t.Errorf("template %q: the Modelfile ends %q", tmpl, b[max(0, len(b)-20):])
		}
	}
}
