package export

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tune-dev/tune/checkpoints"
)

// ChatFormat is a chat prompt layout Ollama can be given a TEMPLATE for.
type ChatFormat struct {
	Name     string   // "chatml", "llama3", "llama2"; "" when unknown
	Template string   // Ollama (Go text/template) TEMPLATE
	Stop     []string // end-of-turn markers: PARAMETER stop
}

// Ollama's TEMPLATE is a Go text/template over .Messages (each with .Role
// and .Content; a Modelfile SYSTEM arrives as the first message, role
// "system"). These render the same text as the Hugging Face chat templates
// they stand for (without the leading BOS, which llama.cpp adds itself when
// tokenizer.ggml.add_bos_token is set), as TestOllamaTemplates checks.
const (
	chatMLTemplate = `{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
`
	llama3Template = `{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

`
	// Llama 2 chat: the system prompt goes inside the first [INST] block, and
	// every later user turn opens with a fresh <s>.
	llama2Template = `{{- $system := "" }}{{- $first := true }}
{{- range .Messages }}
{{- if eq .Role "system" }}{{ $system = .Content }}
{{- else if eq .Role "user" }}{{ if not $first }}<s>{{ end }}[INST] {{ if and $first $system }}<<SYS>>
{{ $system }}
<</SYS>>

{{ end }}{{ .Content }} [/INST]{{ $first = false }}
{{- else if eq .Role "assistant" }} {{ .Content }} </s>
{{- end }}
{{- end }}`
)

// DetectChatFormat recognises the common Hugging Face chat templates by the
// markers they emit: ChatML (<|im_start|>: Qwen, SmolLM2...), Llama 3
// headers (<|start_header_id|>) and Llama 2 / Mistral [INST]. Anything else
// gives a ChatFormat with an empty Name.
func DetectChatFormat(hfTemplate string) ChatFormat {
	switch {
	case strings.Contains(hfTemplate, "<|im_start|>"):
		return ChatFormat{Name: "chatml", Template: chatMLTemplate, Stop: []string{"<|im_start|>", "<|im_end|>"}}
	case strings.Contains(hfTemplate, "<|start_header_id|>"):
		return ChatFormat{Name: "llama3", Template: llama3Template, Stop: []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}}
	case strings.Contains(hfTemplate, "[INST]"):
		return ChatFormat{Name: "llama2", Template: llama2Template, Stop: []string{"[INST]", "[/INST]", "</s>"}}
	}
	return ChatFormat{}
}

// Ollama writes outDir/Modelfile for `ollama create NAME -f outDir/Modelfile`:
// FROM the base GGUF, ADAPTER the GGUF adapter (none when adapterGGUF is ""),
// TEMPLATE translated from the Hugging Face chat template, and PARAMETER stop
// for its end-of-turn markers. For a template it does not recognise it writes
// a comment saying TEMPLATE must be set by hand: a wrong template silently
// degrades a fine-tuned model, which is worse than none. Paths inside outDir
// are written relative to it (Ollama resolves them against the Modelfile),
// others absolute.
func Ollama(outDir, baseGGUF, adapterGGUF, chatTemplate string) error {
	if baseGGUF == "" {
		return fmt.Errorf("ollama: no base GGUF to put in FROM")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("ollama: %w", err)
	}
	var b strings.Builder
	b.WriteString("# Modelfile written by tune. Create the model with:\n#   ollama create NAME -f Modelfile\n")
	from, err := modelfilePath(outDir, baseGGUF)
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "FROM %s\n", from)
	if adapterGGUF != "" {
		p, err := modelfilePath(outDir, adapterGGUF)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "ADAPTER %s\n", p)
	}
	f := DetectChatFormat(chatTemplate)
	switch {
	case f.Name != "":
		fmt.Fprintf(&b, "\n# Chat format: %s (translated from the Hugging Face chat template)\n", f.Name)
		fmt.Fprintf(&b, "TEMPLATE \"\"\"%s\"\"\"\n", f.Template)
		for _, s := range f.Stop {
			fmt.Fprintf(&b, "PARAMETER stop %s\n", strconv.Quote(s))
		}
	case chatTemplate == "":
		b.WriteString("\n# The model has no chat template: set TEMPLATE (and PARAMETER stop) yourself\n# if it is to be used for chat; as it is, Ollama sends the prompt as plain text.\n")
	default:
		b.WriteString("\n# tune could not translate this model's chat template to Ollama's template\n# syntax: set TEMPLATE (and PARAMETER stop for its end-of-turn tokens) by hand.\n# The Hugging Face (Jinja) template was:\n")
		for _, line := range strings.Split(chatTemplate, "\n") {
			fmt.Fprintf(&b, "#   %s\n", line)
		}
	}
	path := filepath.Join(outDir, "Modelfile")
	return checkpoints.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := io.WriteString(w, b.String())
		return err
	})
}

// modelfilePath is p as the Modelfile in dir should name it.
func modelfilePath(dir, p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("ollama: %w", err)
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("ollama: %w", err)
	}
	if rel, err := filepath.Rel(absDir, abs); err == nil && filepath.IsLocal(rel) {
		return "./" + filepath.ToSlash(rel), nil
	}
	return abs, nil
}
