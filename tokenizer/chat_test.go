package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type chatCase struct {
	Messages            []map[string]string `json:"messages"`
	AddGenerationPrompt bool                `json:"add_generation_prompt"`
}

// chatConversations are rendered with and without the generation prompt.
var chatConversations = [][]Message{
	{{"user", "hi"}},
	{{"system", "You are a helpful assistant."}, {"user", "What is 2+2?"}},
	{{"system", "Be brief."}, {"user", "Hello!"}, {"assistant", "Hi! How can I help?"}, {"user", "Tell me a joke."}},
	{{"user", "  padded content \n\n"}, {"assistant", "\n answer with spaces  "}, {"user", "next"}},
	{{"user", "Write Go:\n```go\nfunc main() {\n\tprintln(\"héllo 世界 😀\")\n}\n```"}, {"assistant", "Done."}},
	{{"user", "Think first."}, {"assistant", "<think>\nreasoning here\n</think>\n\nThe answer is 4."}, {"user", "Why?"}},
	{{"user", "quotes \" ' and {{ braces }} {% tags %}"}},
	{{"assistant", "assistant first"}, {"user", "then user"}},
}

// runChatOracle renders the conversations with @huggingface/jinja.
func runChatOracle(t *testing.T, dir string, cases []chatCase) []struct {
	Text  string `json:"text"`
	Error string `json:"error"`
} {
	t.Helper()
	var res []struct {
		Text  string `json:"text"`
		Error string `json:"error"`
	}
	runNode(t, "chat.mjs", dir, cases, &res)
	return res
}

func TestChatTemplateConformance(t *testing.T) {
	requireOracle(t)
	var cases []chatCase
	var convs [][]Message
	var gens []bool
	for _, conv := range chatConversations {
		for _, gen := range []bool{false, true} {
			var msgs []map[string]string
			for _, m := range conv {
				msgs = append(msgs, map[string]string{"role": m.Role, "content": m.Content})
			}
			cases = append(cases, chatCase{Messages: msgs, AddGenerationPrompt: gen})
			convs = append(convs, conv)
			gens = append(gens, gen)
		}
	}
	// A synthetic template for features the shipped ones do not use
	// (tojson spacing, namespace, slicing, string methods, loop vars).
	synth := t.TempDir()
	cfg := map[string]any{
		"bos_token": "<|begin_of_text|>",
		"eos_token": "<|im_end|>",
		"chat_template": "{%- set ns = namespace(n=0) -%}\n" +
			"{{ bos_token }}{{ messages | tojson }}\n" +
			"{%- for m in messages[::-1] %}\n  {% set ns.n = ns.n + 1 %}\n" +
			"{{ loop.index }}/{{ loop.length }} {{ m.role | upper }}: {{ m.content.strip().split('\\n')[0] }}" +
			"{% if m.content.startswith('W') %} (starts with W){% endif %}{{ eos_token if loop.last }}\n" +
			"{%- endfor %}\n{{ ns.n }} {{ {'a': 1, 'b': [1, 2.5, true, none], 'c': 'é\"'} | tojson }}" +
			"{% if add_generation_prompt %}<gen>{% endif %}",
	}
	if err := os.WriteFile(filepath.Join(synth, "tokenizer.json"), mustJSON(t, smallByteLevel(false)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(synth, "tokenizer_config.json"), mustJSON(t, cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"synthetic": synth}
	for _, name := range []string{"llama3", "llama3_1", "qwen3", "deepseek_v3"} {
		dirs[name] = tokenizerDir(name)
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tok.ChatTemplate() == "" {
				t.Fatal("no chat template")
			}
			want := runChatOracle(t, dir, cases)
			same := 0
			for i := range cases {
				got, err := tok.ApplyChatTemplate(convs[i], gens[i])
				if name == "synthetic" && want[i].Error != "" {
					t.Errorf("case %d: synthetic template raised %q", i, want[i].Error)
				}
				switch {
				case want[i].Error != "":
					if err == nil {
						t.Errorf("case %d (gen=%v): oracle raised %q, we rendered %q", i, gens[i], want[i].Error, got)
						continue
					}
				case err != nil:
					t.Errorf("case %d (gen=%v): %v; oracle rendered %q", i, gens[i], err, want[i].Text)
					continue
				case got != want[i].Text:
					t.Errorf("case %d (gen=%v):\n got  %q\n want %q", i, gens[i], got, want[i].Text)
					continue
				}
				same++
			}
			t.Logf("%s: chat template identical %d/%d", name, same, len(cases))
		})
	}
}

func TestChatTemplateMissing(t *testing.T) {
	tok := mustParse(t, smallByteLevel(false), nil)
	if _, err := tok.ApplyChatTemplate([]Message{{"user", "hi"}}, true); err == nil || !strings.Contains(err.Error(), "no chat_template") {
		t.Errorf("err = %v", err)
	}
	tok = mustParse(t, smallByteLevel(false), map[string]any{
		"bos_token":     "<|begin_of_text|>",
		"chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content | trim }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
	})
	got, err := tok.ApplyChatTemplate([]Message{{"user", " hi "}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|begin_of_text|>[user]hi\n[assistant]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	tok = mustParse(t, smallByteLevel(false), map[string]any{"chat_template": "{{ raise_exception('nope') }}"})
	if _, err := tok.ApplyChatTemplate(nil, false); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("raise_exception: err = %v", err)
	}
}
