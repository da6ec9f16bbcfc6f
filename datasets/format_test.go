package datasets

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openOne opens a single source and returns its training examples in file order.
func openOne(t *testing.T, spec Spec) []Example {
	t.Helper()
	if spec.MaxLen == 0 {
		spec.MaxLen = 4096
	}
	d, err := Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var out []Example
	for i := range d.Train.Examples() {
		ex, _, err := d.Train.Example(i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ex)
	}
	return out
}

func ints(v []int32) []int {
	o := make([]int, len(v))
	for i, x := range v {
		o[i] = int(x)
	}
	return o
}

type msg = map[string]any

// chatCases are conversations and the text their assistant turns train:
// each reply and the template's end-of-turn token, joined by "|".
var chatCases = []struct {
	name    string
	record  map[string]any
	replies []string // trained, in order
}{
	{"single turn", msg{"messages": []msg{{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "2 + 2 = 4."}}},
		[]string{"2 + 2 = 4."}},
	{"system and three turns", msg{"messages": []msg{
		{"role": "system", "content": "You answer in one word."},
		{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"},
		{"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome"},
		{"role": "user", "content": "Spain?"}, {"role": "assistant", "content": "Madrid, of course.\nNext?"}}},
		[]string{"Paris", "Rome", "Madrid, of course.\nNext?"}},
	{"sharegpt", msg{"conversations": []msg{{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi! 👋 How can I help?"}}},
		[]string{"Hi! 👋 How can I help?"}},
	{"content parts and an untrained turn", msg{"messages": []msg{
		{"role": "user", "content": []msg{{"type": "text", "text": "Say "}, {"type": "text", "text": "x"}}},
		{"role": "assistant", "content": "x", "weight": 0},
		{"role": "user", "content": "Again, louder"}, {"role": "assistant", "content": "X!"}}},
		[]string{"X!"}},
	{"reply repeating the prompt", msg{"messages": []msg{{"role": "user", "content": "assistant"}, {"role": "assistant", "content": "assistant"}}},
		[]string{"assistant"}},
}

// TestChatMaskingRealTemplates renders conversations with the chat templates
// of Llama 3, Llama 3.1 and Qwen 3 (their real tokenizer files) and checks
// that the trained tokens decode to exactly the assistant replies, each with
// the end-of-turn token, that the ids are those of the rendered conversation
// (BOS once), and that train_on_inputs trains everything.
func TestChatMaskingRealTemplates(t *testing.T) {
	for _, tc := range []struct{ tok, eot string }{{"llama3", "<|eot_id|>"}, {"llama3_1", "<|eot_id|>"}, {"qwen3", "<|im_end|>"}} {
		tok, _ := realTokenizer(t, tc.tok)
		dir := t.TempDir()
		var recs []any
		for _, c := range chatCases {
			recs = append(recs, c.record)
		}
		path := writeJSONL(t, filepath.Join(dir, "chat.jsonl"), recs...)
		examples := openOne(t, Spec{Train: []Source{{Path: path, Format: FormatChat}}, Tokenizer: tok})
		all := openOne(t, Spec{Train: []Source{{Path: path, Format: FormatChat}}, Tokenizer: tok, TrainOnInputs: true})
		for i, c := range chatCases {
			t.Run(tc.tok+"/"+c.name, func(t *testing.T) {
				ex := examples[i]
				var want []string
				for _, r := range c.replies {
					want = append(want, r+tc.eot)
				}
				if got := trainedText(tok, ex); got != strings.Join(want, "|") {
					t.Errorf("trained %q\nwant    %q\nwhole   %q", got, strings.Join(want, "|"), tok.Decode(ints(ex.IDs), false))
				}
				// The ids are the rendered conversation's, up to the last end of turn.
				conv, err := parseConversation(mustObject(t, c.record), nil)
				if err != nil {
					t.Fatal(err)
				}
				text, err := tok.ApplyChatTemplate(conv.msgs, false)
				if err != nil {
					t.Fatal(err)
				}
				ref := tok.Encode(text, false)
				if bos, ok := tok.BOS(); ok && tc.tok != "qwen3" {
					if ex.IDs[0] != int32(bos) || ex.IDs[1] == int32(bos) {
						t.Errorf("BOS: ids start %v", ex.IDs[:2])
					}
				}
				if !slices.Equal(ints(ex.IDs), ref[:len(ex.IDs)]) {
					t.Errorf("ids are not the rendered conversation's:\n%v\n%v", ex.IDs, ref)
				}
				if last := tok.Decode(ints(ex.IDs[len(ex.IDs)-1:]), false); last != tc.eot {
					t.Errorf("the example ends with %q, want the end of turn", last)
				}
				if a := all[i]; a.Labels != nil || !slices.Equal(a.IDs, ex.IDs) {
					t.Errorf("train_on_inputs: labels %v", a.Labels)
				}
			})
		}
	}
}

func mustObject(t *testing.T, v any) object {
	t.Helper()
	path := writeJSONL(t, filepath.Join(t.TempDir(), "x.jsonl"), v)
	src, err := openJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r, err := src.At(0)
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseObject(r.json)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestInstruction: Alpaca records, with the Alpaca prompt when the tokenizer
// has no chat template (Llama 2: BOS, prompt, response, EOS; only the
// response and EOS trained), through the chat template when it has one, and
// with renamed fields.
func TestInstruction(t *testing.T) {
	dir := t.TempDir()
	path := writeJSONL(t, filepath.Join(dir, "alpaca.jsonl"),
		msg{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
		msg{"instruction": "Name a colour.", "input": "", "output": "Blue, like the sky."},
		msg{"instruction": "Translate to French.", "input": nil, "output": "Bonjour", "system": "You translate."})
	renamed := writeJSONL(t, filepath.Join(dir, "qa.jsonl"), msg{"question": "Add the numbers.", "context": "2 and 3", "answer": "5"})

	llama2, _ := realTokenizer(t, "llama2")
	examples := openOne(t, Spec{Train: []Source{{Path: path, Format: FormatInstruction}}, Tokenizer: llama2})
	wantPrompt := []string{
		"<s> Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n",
		"<s> Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n",
		"<s> You translate.\n\nBelow is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate to French.\n\n### Response:\n",
	}
	for i, want := range []string{"5</s>", "Blue, like the sky.</s>", "Bonjour</s>"} {
		ex := examples[i]
		if got := trainedText(llama2, ex); got != want {
			t.Errorf("llama2 record %d: trained %q, want %q", i+1, got, want)
		}
		if whole := llama2.Decode(ints(ex.IDs), false); whole != wantPrompt[i]+strings.TrimSuffix(want, "</s>")+"</s>" {
			t.Errorf("llama2 record %d: %q", i+1, whole)
		}
		if ex.IDs[0] != 1 || ex.IDs[1] == 1 {
			t.Errorf("llama2 record %d: BOS: %v", i+1, ex.IDs[:2])
		}
	}

	qwen, _ := realTokenizer(t, "qwen3")
	ex := openOne(t, Spec{Train: []Source{{Path: path, Format: FormatInstruction}}, Tokenizer: qwen})[0]
	if got := trainedText(qwen, ex); got != "5<|im_end|>" {
		t.Errorf("qwen3 through its chat template: trained %q", got)
	}
	if whole := qwen.Decode(ints(ex.IDs), false); !strings.HasPrefix(whole, "<|im_start|>user\nAdd the numbers.\n\n2 and 3<|im_end|>\n<|im_start|>assistant\n") {
		t.Errorf("qwen3 prompt: %q", whole)
	}
	ex = openOne(t, Spec{Train: []Source{{Path: path, Format: FormatInstruction}}, Tokenizer: qwen, PromptTemplate: TemplateAlpaca})[0]
	if got := trainedText(qwen, ex); got != "5<|im_end|>" || !strings.Contains(qwen.Decode(ints(ex.IDs), false), "### Response:\n5") {
		t.Errorf("qwen3 with prompt_template alpaca: trained %q in %q", got, qwen.Decode(ints(ex.IDs), false))
	}
	fields := Fields{"instruction": "question", "input": "context", "output": "answer"}
	ex = openOne(t, Spec{Train: []Source{{Path: renamed, Format: FormatInstruction, Fields: fields}}, Tokenizer: qwen})[0]
	if got := trainedText(qwen, ex); got != "5<|im_end|>" {
		t.Errorf("renamed fields: trained %q", got)
	}
}

// TestText: plain text trains every token; BOS and EOS follow the tokenizer
// (its post-processor adds BOS or not; its eos_token ends the text).
func TestText(t *testing.T) {
	dir := t.TempDir()
	path := writeJSONL(t, filepath.Join(dir, "t.jsonl"), msg{"text": "The quick brown fox."}, msg{"content": "jumps"})
	for _, tc := range []struct {
		tok, want string
		bos       bool
	}{
		{"llama2", "<s> The quick brown fox.</s>", true},
		{"llama3", "The quick brown fox.<|end_of_text|>", false}, // this tokenizer.json adds no BOS
		{"llama3_1", "<|begin_of_text|>The quick brown fox.<|eot_id|>", true},
		{"qwen3", "The quick brown fox.<|im_end|>", false},
	} {
		tok, _ := realTokenizer(t, tc.tok)
		d, err := Open(Spec{Train: []Source{{Path: path, Format: FormatText}}, Tokenizer: tok, MaxLen: 64})
		if err == nil || !strings.Contains(err.Error(), "t.jsonl:2: field text: missing") {
			t.Fatalf("%s: error %v, want t.jsonl:2: field text: missing", tc.tok, err)
		}
		_ = d
		ex := openOne(t, Spec{Train: []Source{{Path: path, Format: FormatText}}, Tokenizer: tok, SkipBadRecords: true})[0]
		if got := tok.Decode(ints(ex.IDs), false); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.tok, got, tc.want)
		}
		if ex.Labels != nil {
			t.Errorf("%s: text examples train every token", tc.tok)
		}
		if bos, ok := tok.BOS(); (ok && ex.IDs[0] == int32(bos)) != tc.bos {
			t.Errorf("%s: BOS at the start: %t, want %t", tc.tok, !tc.bos, tc.bos)
		}
		ex = openOne(t, Spec{Train: []Source{{Path: path, Format: FormatText, Fields: Fields{"text": "content"}}}, Tokenizer: tok, SkipBadRecords: true})[0]
		if got := tok.Decode(ints(ex.IDs), true); strings.TrimSpace(got) != "jumps" {
			t.Errorf("%s: renamed text field: %q", tc.tok, got)
		}
	}
}

// TestPretokenized reads input_ids and labels, renamed or not, and checks ids
// against the vocabulary.
func TestPretokenized(t *testing.T) {
	dir := t.TempDir()
	path := writeJSONL(t, filepath.Join(dir, "p.jsonl"),
		msg{"input_ids": []int{1, 2, 3, 4}, "labels": []int{-100, -100, 3, 4}},
		msg{"input_ids": []int{5, 6}})
	ex := openOne(t, Spec{Train: []Source{{Path: path, Format: FormatPretokenized}}, Vocab: 10})
	if !slices.Equal(ex[0].Labels, []int32{-100, -100, 3, 4}) || ex[1].Labels != nil || !slices.Equal(ex[1].IDs, []int32{5, 6}) {
		t.Errorf("examples %+v", ex)
	}
	_, err := Open(Spec{Train: []Source{{Path: path, Format: FormatPretokenized}}, Vocab: 5, MaxLen: 16})
	if err == nil || err.Error() != path+":2: token 5 at position 0 is outside the model's vocabulary of 5" {
		t.Errorf("vocabulary check: %v", err)
	}
	renamed := writeJSONL(t, filepath.Join(dir, "r.jsonl"), msg{"tokens": []int{7, 8, 9}, "mask": []int{-100, 8, 9}})
	ex = openOne(t, Spec{Train: []Source{{Path: renamed, Format: FormatPretokenized, Fields: Fields{"input_ids": "tokens", "labels": "mask"}}}})
	if !slices.Equal(ex[0].Labels, []int32{-100, 8, 9}) {
		t.Errorf("renamed: %+v", ex)
	}
}

// TestNoChatTemplate: chat records need a chat template.
func TestNoChatTemplate(t *testing.T) {
	tok, _ := realTokenizer(t, "llama2")
	path := writeJSONL(t, filepath.Join(t.TempDir(), "c.jsonl"), chatCases[0].record)
	_, err := Open(Spec{Train: []Source{{Path: path, Format: FormatChat}}, Tokenizer: tok, MaxLen: 64})
	if err == nil || !strings.Contains(err.Error(), "c.jsonl:1: the tokenizer has no chat_template") {
		t.Errorf("error %v", err)
	}
}
