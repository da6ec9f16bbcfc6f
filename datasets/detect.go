package datasets

import (
	"fmt"
	"sort"
	"strings"
)

// DetectFormat names the format of a data path from its first record, for
// commands given a file without a config (tune eval --data): input_ids is
// pretokenized, messages or conversations chat, instruction (with output)
// instruction, text text; documents (files that are not JSONL, JSON or
// Parquet, or a directory of them) are text. A record with none of these
// keys is an error that lists the keys it has.
func DetectFormat(path string) (string, error) {
	files, dirDocs, err := expandPath(path)
	if err != nil {
		return "", err
	}
	if dirDocs {
		return FormatText, nil
	}
	src, err := openSource(files[0])
	if err != nil {
		return "", err
	}
	defer src.Close()
	if _, ok := src.(*docs); ok {
		return FormatText, nil
	}
	if src.Len() == 0 {
		return "", fmt.Errorf("%s: no records", files[0])
	}
	r, err := src.At(0)
	if err != nil {
		return "", err
	}
	o, err := parseObject(r.json)
	if err != nil {
		return "", fmt.Errorf("%s: %w", src.Where(0), err)
	}
	for _, f := range []struct{ key, format string }{
		{"input_ids", FormatPretokenized}, {"messages", FormatChat}, {"conversations", FormatChat},
		{"instruction", FormatInstruction}, {"text", FormatText},
	} {
		if _, ok := o[f.key]; ok {
			return f.format, nil
		}
	}
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "", fmt.Errorf("%s: cannot tell the format from the keys %s (input_ids, messages, conversations, instruction or text); name it with --format, and map the fields in a config's data.fields", src.Where(0), strings.Join(keys, ", "))
}

// fieldHint suggests data.fields for a missing field when the record holds
// a key that other datasets use for it: "question" for instruction.
func fieldHint(o object, canon string) string {
	alts := map[string][]string{
		"instruction": {"question", "prompt", "query", "input_text", "problem"},
		"output":      {"answer", "response", "completion", "solution", "target"},
		"input":       {"context"},
		"text":        {"content", "body", "document", "story"},
		"messages":    {"conversation", "dialog", "dialogue", "turns", "chat"},
	}[canon]
	var have []string
	for _, a := range alts {
		if _, ok := o[a]; ok {
			have = append(have, a)
		}
	}
	if len(have) == 0 {
		return ""
	}
	return fmt.Sprintf(" (the record has %q: set data.fields: {%s: %s})", have[0], canon, have[0])
}
