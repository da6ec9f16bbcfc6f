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
// github.com/ardanlabs/jinja does the rendering; it is built for HF chat
// templates and checked byte for byte against @huggingface/jinja in tests.
func (t *Tokenizer) ApplyChatTemplate(messages []Message, addGenerationPrompt bool) (string, error) {
	if t.chatTemplate == "" {
		return "", errors.New("tokenizer: no chat_template in tokenizer_config.json")
	}
	t.chat.once.Do(func() {
		t.chat.tmpl, t.chat.err = jinja.Compile(t.chatTemplate)
	})
	if t.chat.err != nil {
		return "", fmt.Errorf("tokenizer: chat_template: %w", t.chat.err)
	}
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
	for k, v := range t.specialNames {
		ctx[k] = v
	}
	out, err := t.chat.tmpl.Render(ctx)
	if err != nil {
		return "", fmt.Errorf("tokenizer: chat_template: %w", err)
	}
	return out, nil
}
