package tokenizer

import (
	"strings"
	"testing"

	"github.com/tune-dev/tune/tokenizer/internal/jinja"
)

// FuzzChatTemplate renders arbitrary templates over an arbitrary message:
// compiling and rendering return an error or an output within the limits,
// and never panic, overflow the stack or run on. Seeds (real chat templates
// and hostile ones) are in testdata/fuzz/FuzzChatTemplate.
func FuzzChatTemplate(f *testing.F) {
	lim := jinja.Limits{Steps: 20_000, Output: 64 << 10, Alloc: 1 << 20}
	specials := map[string]string{"bos_token": "<s>", "eos_token": "</s>"}
	f.Fuzz(func(t *testing.T, src, content string) {
		tmpl, err := jinja.Compile(src)
		if err != nil {
			return
		}
		msgs := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: content}, {Role: "assistant", Content: strings.ToUpper(content)}}
		out, err := renderChat(tmpl, msgs, true, specials, lim)
		if err == nil && len(out) > lim.Output {
			t.Fatalf("%d bytes of output past the limit of %d", len(out), lim.Output)
		}
	})
}
