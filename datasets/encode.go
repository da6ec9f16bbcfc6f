package datasets

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/tune-dev/tune/tokenizer"
)

// Prompt templates for instruction records (configs.PromptTemplates).
const (
	TemplateAuto   = "auto"
	TemplateChat   = "chat_template"
	TemplateAlpaca = "alpaca"
)

// The Alpaca prompts (tatsu-lab/stanford_alpaca), as axolotl and torchtune
// write them.
const (
	alpacaWithInput = "Below is an instruction that describes a task, paired with an input that provides further context. " +
		"Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n"
	alpacaNoInput = "Below is an instruction that describes a task. " +
		"Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Response:\n"
)

// encoder turns parsed records into token ids and labels with a tokenizer,
// following its rules for BOS and EOS.
type encoder struct {
	tok           *tokenizer.Tokenizer
	pre, post     []int // what the tokenizer adds around a sequence (BOS, EOS)
	eos           int   // -1: none
	trainOnInputs bool
	useChat       bool     // instruction records go through the chat template
	specials      sync.Map // id -> its text if it is a special token, else ""
}

// encodeStats are the counters one encoding adds to.
type encodeStats struct {
	fallbacks int   // turn boundaries that fell inside a token
	work      int   // bytes rendered and tokenized for the record
	maxWork   int   // 0: maxRecordWork
	err       error // the first error, which ends the record's encoding
}

// maxRecordWork bounds what one record costs to encode. Masking a
// conversation renders and tokenizes it once per assistant turn, which
// grows as turns × length; the bound lets 500 turns of 1 KiB through.
const maxRecordWork = 256 << 20

// spend counts n bytes of work; past maxRecordWork the record is a bad one.
func (st *encodeStats) spend(n int) bool {
	limit := st.maxWork
	if limit == 0 {
		limit = maxRecordWork
	}
	st.work += n
	if st.work > limit && st.err == nil {
		st.err = fmt.Errorf("the record takes more than %d KiB of rendering and tokenization (masking renders it once per assistant turn): split it into shorter conversations", limit>>10)
	}
	return st.err == nil
}

// encode tokenizes dataset text: a word too long to merge (a
// tokenizer.WordTooLongError) or work past maxRecordWork sets st.err.
func (e *encoder) encode(s string, st *encodeStats) []int {
	if !st.spend(len(s)) {
		return nil
	}
	ids, err := e.tok.EncodeChecked(s, false)
	if err != nil && st.err == nil {
		st.err = err
	}
	return ids
}

// render applies the chat template, counting the output as work.
func (e *encoder) render(msgs []tokenizer.Message, addGenerationPrompt bool, st *encodeStats) (string, error) {
	out, err := e.tok.ApplyChatTemplate(msgs, addGenerationPrompt)
	if err != nil {
		return "", oneLineErr(err)
	}
	if !st.spend(len(out)) {
		return "", st.err
	}
	return out, nil
}

func newEncoder(tok *tokenizer.Tokenizer, trainOnInputs bool, promptTemplate string) (*encoder, error) {
	e := &encoder{tok: tok, eos: -1, trainOnInputs: trainOnInputs}
	if tok == nil {
		return e, nil
	}
	if id, ok := tok.EOS(); ok {
		e.eos = id
	}
	// The special tokens Encode(text, true) adds around any text.
	plain, wrapped := tok.Encode("a", false), tok.Encode("a", true)
	for i := 0; i+len(plain) <= len(wrapped); i++ {
		if equalInts(wrapped[i:i+len(plain)], plain) {
			e.pre, e.post = wrapped[:i], wrapped[i+len(plain):]
			break
		}
	}
	switch promptTemplate {
	case TemplateAuto, "":
		e.useChat = tok.ChatTemplate() != ""
	case TemplateChat:
		if tok.ChatTemplate() == "" {
			return nil, errors.New("data.prompt_template: the tokenizer has no chat_template; use auto or alpaca")
		}
		e.useChat = true
	case TemplateAlpaca:
	default:
		return nil, fmt.Errorf("data.prompt_template: unknown template %q", promptTemplate)
	}
	return e, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hasPrefix reports whether ids starts with p.
func hasPrefix(ids, p []int) bool { return len(ids) >= len(p) && equalInts(ids[:len(p)], p) }

// wrap adds the tokenizer's BOS (unless the text already starts with it) and
// its end tokens; labels of the added tokens follow trainEnd for the end ones.
func (e *encoder) wrap(ids []int, train []bool, trainEnd bool) ([]int, []bool) {
	if len(e.pre) > 0 && !hasPrefix(ids, e.pre) {
		ids = append(append([]int{}, e.pre...), ids...)
		train = append(make([]bool, len(e.pre)), train...)
	}
	if len(e.post) > 0 && !(len(ids) >= len(e.post) && equalInts(ids[len(ids)-len(e.post):], e.post)) {
		ids = append(ids, e.post...)
		for range e.post {
			train = append(train, trainEnd)
		}
	}
	return ids, train
}

// appendEOS ends a sequence with EOS when the tokenizer has one and the
// sequence does not already end with it.
func (e *encoder) appendEOS(ids []int, train []bool, trained bool) ([]int, []bool) {
	if e.eos >= 0 && (len(ids) == 0 || ids[len(ids)-1] != e.eos) {
		ids = append(ids, e.eos)
		train = append(train, trained)
	}
	return ids, train
}

// text is a plain completion: every token trained, EOS appended.
func (e *encoder) text(s string, st *encodeStats) (Example, error) {
	ids := e.encode(s, st)
	if st.err != nil {
		return Example{}, st.err
	}
	train := make([]bool, len(ids))
	for i := range train {
		train[i] = true
	}
	ids, train = e.wrap(ids, train, true)
	ids, train = e.appendEOS(ids, train, true)
	return example(ids, train, true), nil
}

// example makes an Example; all means every token is trained (nil Labels).
func example(ids []int, train []bool, all bool) Example {
	ex := Example{IDs: make([]int32, len(ids))}
	for i, id := range ids {
		ex.IDs[i] = int32(id)
	}
	if all {
		return ex
	}
	ex.Labels = make([]int32, len(ids))
	for i, id := range ids {
		ex.Labels[i] = ignore
		if train[i] {
			ex.Labels[i] = int32(id)
		}
	}
	return ex
}

// instruction renders an Alpaca-style record: through the chat template as a
// user turn and an assistant turn when the model has one, else with the
// Alpaca prompt, the response followed by EOS.
func (e *encoder) instruction(r instruction, st *encodeStats) (Example, error) {
	user := r.instruction
	if r.input != "" {
		user += "\n\n" + r.input
	}
	if e.useChat {
		var c conversation
		if r.system != "" {
			c.msgs = append(c.msgs, tokenizer.Message{Role: "system", Content: r.system})
			c.train = append(c.train, false)
		}
		c.msgs = append(c.msgs, tokenizer.Message{Role: "user", Content: user}, tokenizer.Message{Role: "assistant", Content: r.output})
		c.train = append(c.train, false, true)
		return e.chat(c, st)
	}
	prompt := fmt.Sprintf(alpacaNoInput, r.instruction)
	if r.input != "" {
		prompt = fmt.Sprintf(alpacaWithInput, r.instruction, r.input)
	}
	if r.system != "" {
		prompt = r.system + "\n\n" + prompt
	}
	full := prompt + r.output
	ids := e.encode(full, st)
	b := e.boundary(full, ids, len(prompt), true, st)
	if st.err != nil {
		return Example{}, st.err
	}
	train := make([]bool, len(ids))
	for i := range train {
		train[i] = e.trainOnInputs || i >= b
	}
	ids, train = e.wrap(ids, train, true)
	ids, train = e.appendEOS(ids, train, true)
	return example(ids, train, e.trainOnInputs), nil
}

// boundary is the token index where text offset off falls in ids, the
// tokenization of full: the length of the tokenization of full[:off], which
// must be a prefix of ids. When it is not (a token spans the offset), the
// boundary is put before that token if start (it is then trained with the
// response it begins) and after it otherwise, and counted.
func (e *encoder) boundary(full string, ids []int, off int, start bool, st *encodeStats) int {
	if off <= 0 {
		return 0
	}
	if off >= len(full) {
		return len(ids)
	}
	p := e.encode(full[:off], st)
	if st.err != nil {
		return 0
	}
	if hasPrefix(ids, p) {
		return len(p)
	}
	st.fallbacks++
	n := 0
	for n < len(p) && n < len(ids) && p[n] == ids[n] {
		n++
	}
	if start {
		return n
	}
	return min(n+1, len(ids))
}

// chat renders a conversation with the tokenizer's chat template and trains
// the assistant turns: each one's content and the end-of-turn token after it.
//
// The template renders the whole conversation once. For assistant turn i the
// prompt is the rendering of the messages before it with the generation
// prompt, which must be a prefix of the whole; the reply is then found after
// it, followed by white space and a special token (the end of turn). Token
// boundaries come from tokenizing the rendered prefixes (see boundary). What
// the template adds after the last assistant turn is cut.
func (e *encoder) chat(c conversation, st *encodeStats) (Example, error) {
	if e.tok.ChatTemplate() == "" {
		return Example{}, errors.New("the tokenizer has no chat_template (tokenizer_config.json); chat records need one")
	}
	full, err := e.render(c.msgs, false, st)
	if err != nil {
		return Example{}, err
	}
	ids := e.encode(full, st)
	if st.err != nil {
		return Example{}, st.err
	}
	specials := e.specialTexts(ids)
	memo := map[int]int{}
	boundary := func(off int, start bool) int {
		if t, ok := memo[off]; ok {
			return t
		}
		t := e.boundary(full, ids, off, start, st)
		memo[off] = t
		return t
	}

	var spans [][2]int // text offsets of the trained parts
	from, lastEnd := 0, -1
	anyAssistant := false
	for i, m := range c.msgs {
		if st.err != nil {
			return Example{}, st.err
		}
		if m.Role != "assistant" {
			continue
		}
		anyAssistant = true
		s := 0
		if i > 0 {
			prompt, err := e.render(c.msgs[:i], true, st)
			if err != nil {
				return Example{}, err
			}
			if !strings.HasPrefix(full, prompt) {
				return Example{}, fmt.Errorf("chat template: the prompt before message %d is not a prefix of the whole conversation; this template cannot be masked by turns (set data.train_on_inputs)", i)
			}
			s = len(prompt)
		}
		a, b, sp, ok := findReply(full, max(s, from), strings.TrimSpace(m.Content), specials)
		if ok {
			// b ends a special token: its index is found by counting.
			st.spend(len(ids)) // afterSpecial scans the ids
			if t, ok := afterSpecial(full, ids, b, sp); ok {
				memo[b] = t
			}
		} else {
			// No end-of-turn token after the reply: the turn ends where the
			// conversation up to it, rendered alone, ends.
			upto, err := e.render(c.msgs[:i+1], false, st)
			if err != nil {
				return Example{}, err
			}
			if !strings.HasPrefix(full, upto) || len(upto) <= s {
				return Example{}, fmt.Errorf("chat template: cannot find the reply of message %d in the rendered conversation", i)
			}
			a, b = s, s+len(strings.TrimRightFunc(upto[s:], unicode.IsSpace))
		}
		if c.train[i] {
			spans = append(spans, [2]int{a, b})
		}
		from, lastEnd = b, b
	}
	if !anyAssistant && !e.trainOnInputs {
		return Example{}, errors.New("field messages: no assistant message to train on")
	}
	end := len(ids)
	if c.msgs[len(c.msgs)-1].Role == "assistant" {
		// The conversation ends with an assistant turn: drop what the template
		// adds after it (a newline, or a header for a next turn).
		end = boundary(lastEnd, false)
	}
	train := make([]bool, end)
	for _, sp := range spans {
		for t := boundary(sp[0], true); t < boundary(sp[1], false) && t < end; t++ {
			train[t] = true
		}
	}
	if st.err != nil {
		return Example{}, st.err
	}
	if e.trainOnInputs {
		for i := range train {
			train[i] = true
		}
	}
	out, train := e.wrap(ids[:end], train, false)
	return example(out, train, e.trainOnInputs), nil
}

// special is a special token of a rendered conversation.
type special struct {
	text string
	id   int
}

// afterSpecial is the token index just after the special token that ends at
// text offset b, found by counting its occurrences in the text and in ids;
// false when the counts do not line up.
func afterSpecial(full string, ids []int, b int, sp special) (int, bool) {
	total := 0
	for _, id := range ids {
		if id == sp.id {
			total++
		}
	}
	if total != strings.Count(full, sp.text) {
		return 0, false
	}
	n := strings.Count(full[:b], sp.text)
	for t, id := range ids {
		if id == sp.id {
			n--
			if n == 0 {
				return t + 1, true
			}
		}
	}
	return 0, false
}

// specialTexts lists the special tokens (those decoding to nothing when
// special tokens are skipped) that occur in ids.
func (e *encoder) specialTexts(ids []int) []special {
	seen := map[int]bool{}
	var out []special
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		text, ok := e.specials.Load(id)
		if !ok {
			text = ""
			if e.tok.Decode([]int{id}, true) == "" {
				text = e.tok.Decode([]int{id}, false)
			}
			e.specials.Store(id, text)
		}
		if s := text.(string); s != "" {
			out = append(out, special{s, id})
		}
	}
	return out
}

// findReply finds reply in full at or after from, followed by white space and
// one of the special tokens: it returns the reply's start, the end of that
// token and the token. An empty reply is found at the first such token.
func findReply(full string, from int, reply string, specials []special) (int, int, special, bool) {
	for p := from; p <= len(full); {
		k := strings.Index(full[p:], reply)
		if k < 0 {
			break
		}
		a := p + k
		r := a + len(reply)
		for r < len(full) && (full[r] == ' ' || full[r] == '\n' || full[r] == '\t' || full[r] == '\r') {
			r++
		}
		for _, sp := range specials {
			if strings.HasPrefix(full[r:], sp.text) {
				if reply == "" {
					a = r
				}
				return a, r + len(sp.text), sp, true
			}
		}
		p = a + 1
		if reply == "" {
			p = r + 1
		}
	}
	return 0, 0, special{}, false
}

// oneLineErr keeps a template error on one line.
func oneLineErr(err error) error {
	s := err.Error()
	if !strings.ContainsAny(s, "\r\n") {
		return err
	}
	return errors.New(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s))
}
