package tokenizer

import (
	"errors"
	"fmt"
	"sync"

	"github.com/tune-dev/tune/tokenizer/internal/jinja"
)

// Message is one turn of a conversation for ApplyChatTemplate.
type Message struct {
	Role    string
	Content string
}

// chatCache holds the compiled chat template (compiled on first use).
type chatCache struct {
	once sync.Once
	tmpl *jinja.Template
	err  error
}

// ApplyChatTemplate renders tokenizer_config.json's chat_template like
// transformers' apply_chat_template(tokenize=False): Jinja with
// trim_blocks/lstrip_blocks, raise_exception, strftime_now and tojson, and
// the config's special tokens (bos_token, eos_token, ...) in the context.
// The engine is github.com/ardanlabs/jinja (built for HF chat templates and
// checked byte for byte against @huggingface/jinja in tests), kept in
// internal/jinja with limits added: a template comes with any downloaded
// model, and one that loops, recurses or builds without end fails here with
// an error (see chatLimits) instead of taking the machine's memory.
func (t *Tokenizer) ApplyChatTemplate(messages []Message, addGenerationPrompt bool) (string, error) {
	if t.chatTemplate == "" {
		return "", errors.New("tokenizer: no chat_template (in tokenizer_config.json, or tokenizer.chat_template in a GGUF)")
	}
	t.chat.once.Do(func() {
		t.chat.tmpl, t.chat.err = jinja.Compile(t.chatTemplate)
	})
	if t.chat.err != nil {
		return "", fmt.Errorf("tokenizer: chat_template: %w", t.chat.err)
	}
	out, err := renderChat(t.chat.tmpl, messages, addGenerationPrompt, t.specialNames, chatLimits(messages))
	if err != nil {
		return "", fmt.Errorf("tokenizer: chat_template: %w", err)
	}
	return out, nil
}

// renderChat renders a compiled chat template over messages within lim.
func renderChat(tmpl *jinja.Template, messages []Message, addGenerationPrompt bool, specials map[string]string, lim jinja.Limits) (string, error) {
	msgs := make([]any, len(messages))
	for i, m := range messages {
		msgs[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	ctx := map[string]any{
		"messages":              msgs,
		"add_generation_prompt": addGenerationPrompt,
		"tools":                 nil,
		"documents":             nil,
	}
	for k, v := range specials {
		ctx[k] = v
	}
	return tmpl.RenderLimited(ctx, lim)
}

// chatLimits bounds one render by what goes in. Real templates write each
// message once with some markup around it, in some hundreds of steps (the
// tool-calling ones in a few thousand); these bounds are ten times that
// and more, and keep memory within a small multiple of the conversation.
func chatLimits(messages []Message) jinja.Limits {
	in := 0
	for _, m := range messages {
		in += len(m.Role) + len(m.Content) + 256
	}
	return jinja.Limits{
		Steps:  10_000_000 + 10_000*int64(len(messages)),
		Output: 2*in + 1<<20,
		Alloc:  16*int64(in) + 64<<20,
	}
}
