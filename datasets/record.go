package datasets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tune-dev/tune/tokenizer"
)

// Fields renames record fields: canonical name (configs.FieldNames) -> the
// name in the dataset. A missing entry means the canonical name (and, for
// chat records, the ShareGPT names conversations/from/value as well).
type Fields map[string]string

func (f Fields) name(canon string) (string, bool) {
	if n, ok := f[canon]; ok && n != "" {
		return n, true
	}
	return canon, false
}

// object is one JSON record, its fields still encoded.
type object map[string]json.RawMessage

func parseObject(b []byte) (object, error) {
	if len(b) == 0 || b[0] != '{' {
		if len(b) > 0 && json.Valid(b) {
			return nil, fmt.Errorf("expected a JSON object, got %s", jsonKind(b))
		}
	}
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
		}
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if o == nil {
		return nil, fmt.Errorf("expected a JSON object, got null")
	}
	return o, nil
}

// jsonKind names the JSON type of an encoded value for messages.
func jsonKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(b json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(b), []byte("null")) }

// fieldError is "field PATH: MSG", the form every record error takes.
func fieldError(path, format string, a ...any) error {
	return fmt.Errorf("field %s: %s", path, fmt.Sprintf(format, a...))
}

// str reads a string field; null or absent is ("", false) unless required.
func (o object) str(name string, required bool) (string, bool, error) {
	raw, ok := o[name]
	if !ok || isNull(raw) {
		if required {
			return "", false, fieldError(name, "missing%s", fieldHint(o, name))
		}
		return "", false, nil
	}
	s, err := decodeString(name, raw)
	return s, err == nil, err
}

func decodeString(path string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", fieldError(path, "expected a string, got %s", jsonKind(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldError(path, "invalid string: %v", err)
	}
	return s, nil
}

// ints reads a list of integers.
func decodeInts(path string, raw json.RawMessage) ([]int32, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fieldError(path, "expected a list of token ids, got %s", jsonKind(raw))
	}
	if v, ok := fastInts(raw); ok {
		return v, nil
	}
	var v []int32
	if err := json.Unmarshal(raw, &v); err == nil {
		return v, nil
	}
	// Find the element at fault for the message.
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fieldError(path, "invalid list: %v", err)
	}
	for i, it := range items {
		var n int32
		if err := json.Unmarshal(it, &n); err != nil {
			if jsonKind(it) == "a number" {
				return nil, fieldError(fmt.Sprintf("%s[%d]", path, i), "expected a 32-bit integer, got %s", bytes.TrimSpace(it))
			}
			return nil, fieldError(fmt.Sprintf("%s[%d]", path, i), "expected an integer, got %s", jsonKind(it))
		}
	}
	return nil, fieldError(path, "invalid list of integers")
}

// fastInts parses a JSON list of small decimal integers ([1, -100, 3]);
// false for anything else, which encoding/json then reads (or explains).
func fastInts(b []byte) ([]int32, bool) {
	i, n := 1, len(b)
	skip := func() {
		for i < n && isSpace(b[i]) {
			i++
		}
	}
	out := make([]int32, 0, len(b)/5)
	skip()
	if i < n && b[i] == ']' {
		return out, i == n-1
	}
	for i < n {
		neg := false
		if b[i] == '-' {
			neg = true
			i++
		}
		start := i
		var v int64
		for i < n && b[i] >= '0' && b[i] <= '9' && i-start < 10 {
			v = v*10 + int64(b[i]-'0')
			i++
		}
		if i == start || (b[start] == '0' && i-start > 1) || (i < n && b[i] >= '0' && b[i] <= '9') {
			return nil, false
		}
		if neg {
			v = -v
		}
		if v < -1<<31 || v > 1<<31-1 {
			return nil, false
		}
		out = append(out, int32(v))
		skip()
		if i >= n {
			return nil, false
		}
		switch b[i] {
		case ',':
			i++
			skip()
		case ']':
			return out, i == n-1
		default:
			return nil, false
		}
	}
	return nil, false
}

// parsedText is a text record.
func parseText(o object, f Fields) (string, error) {
	name, _ := f.name("text")
	s, _, err := o.str(name, true)
	return s, err
}

// instruction is an Alpaca-style record.
type instruction struct {
	instruction, input, output, system string
}

func parseInstruction(o object, f Fields) (instruction, error) {
	var r instruction
	for _, p := range []struct {
		canon    string
		dst      *string
		required bool
	}{{"instruction", &r.instruction, true}, {"input", &r.input, false}, {"output", &r.output, true}, {"system", &r.system, false}} {
		name, _ := f.name(p.canon)
		s, _, err := o.str(name, p.required)
		if err != nil {
			return r, err
		}
		*p.dst = s
	}
	return r, nil
}

// conversation is a chat record: its messages with canonical roles, and for
// each whether it is trained (assistant turns whose weight is not 0).
type conversation struct {
	msgs  []tokenizer.Message
	train []bool
}

// roleOf maps OpenAI and ShareGPT roles to the roles chat templates know.
func roleOf(r string) (string, bool) {
	switch strings.ToLower(r) {
	case "user", "human":
		return "user", true
	case "assistant", "gpt", "model", "chatgpt", "bing", "bard":
		return "assistant", true
	case "system":
		return "system", true
	case "tool", "function", "ipython", "observation":
		return strings.ToLower(r), true
	}
	return "", false
}

func parseConversation(o object, f Fields) (conversation, error) {
	var c conversation
	key, mapped := f.name("messages")
	if _, ok := o[key]; !ok && !mapped {
		if _, ok := o["conversations"]; ok {
			key = "conversations" // ShareGPT
		}
	}
	raw, ok := o[key]
	if !ok || isNull(raw) {
		return c, fieldError(key, "missing (a list of {role, content} or ShareGPT {from, value})%s", fieldHint(o, key))
	}
	if raw[0] != '[' {
		return c, fieldError(key, "expected a list of messages, got %s", jsonKind(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return c, fieldError(key, "invalid list: %v", err)
	}
	if len(items) == 0 {
		return c, fieldError(key, "no messages")
	}
	roleKey, roleMapped := f.name("role")
	contentKey, contentMapped := f.name("content")
	for i, it := range items {
		at := key + "[" + strconv.Itoa(i) + "]"
		if jsonKind(it) != "an object" {
			return c, fieldError(at, "expected an object with role and content, got %s", jsonKind(it))
		}
		var m object
		if err := json.Unmarshal(it, &m); err != nil {
			return c, fieldError(at, "invalid object: %v", err)
		}
		rk, ck := roleKey, contentKey
		if _, ok := m[rk]; !ok && !roleMapped {
			if _, ok := m["from"]; ok {
				rk = "from"
			}
		}
		if _, ok := m[ck]; !ok && !contentMapped {
			if _, ok := m["value"]; ok {
				ck = "value"
			}
		}
		rawRole, ok := m[rk]
		if !ok || isNull(rawRole) {
			return c, fieldError(at+"."+rk, "missing")
		}
		roleText, err := decodeString(at+"."+rk, rawRole)
		if err != nil {
			return c, err
		}
		role, ok := roleOf(roleText)
		if !ok {
			return c, fieldError(at+"."+rk, "unknown role %q (expected system, user or assistant; ShareGPT's system, human or gpt)", roleText)
		}
		content, err := messageContent(at+"."+ck, m[ck])
		if err != nil {
			return c, err
		}
		train := role == "assistant"
		if w, ok := m["weight"]; ok && !isNull(w) {
			var x float64
			if err := json.Unmarshal(w, &x); err != nil || (x != 0 && x != 1) {
				return c, fieldError(at+".weight", "expected 0 or 1, got %s", bytes.TrimSpace(w))
			}
			train = train && x == 1
		}
		c.msgs = append(c.msgs, tokenizer.Message{Role: role, Content: content})
		c.train = append(c.train, train)
	}
	return c, nil
}

// messageContent reads a message's content: a string, null (empty), or
// OpenAI's list of parts of which only text parts are supported.
func messageContent(path string, raw json.RawMessage) (string, error) {
	if raw == nil || isNull(raw) {
		return "", nil
	}
	switch raw[0] {
	case '"':
		return decodeString(path, raw)
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", fieldError(path, "invalid list: %v", err)
		}
		var b strings.Builder
		for i, p := range parts {
			at := path + "[" + strconv.Itoa(i) + "]"
			if p[0] == '"' {
				s, err := decodeString(at, p)
				if err != nil {
					return "", err
				}
				b.WriteString(s)
				continue
			}
			var part struct {
				Type string          `json:"type"`
				Text json.RawMessage `json:"text"`
			}
			if err := json.Unmarshal(p, &part); err != nil {
				return "", fieldError(at, "expected a content part {type, text}, got %s", jsonKind(p))
			}
			if part.Type != "text" {
				return "", fieldError(at+".type", "only text parts are supported, got %q", part.Type)
			}
			s, err := decodeString(at+".text", part.Text)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		}
		return b.String(), nil
	}
	return "", fieldError(path, "expected a string, got %s", jsonKind(raw))
}

// parsePretokenized reads {"input_ids": [...], "labels": [...]?} under
// possibly renamed fields.
func parsePretokenized(o object, f Fields) (Example, error) {
	idsKey, _ := f.name("input_ids")
	labelsKey, _ := f.name("labels")
	raw, ok := o[idsKey]
	if !ok || isNull(raw) {
		return Example{}, fieldError(idsKey, "missing")
	}
	ids, err := decodeInts(idsKey, raw)
	if err != nil {
		return Example{}, err
	}
	if len(ids) == 0 {
		return Example{}, fieldError(idsKey, "empty")
	}
	for i, id := range ids {
		if id < 0 {
			return Example{}, fieldError(fmt.Sprintf("%s[%d]", idsKey, i), "%d is negative", id)
		}
	}
	ex := Example{IDs: ids}
	if raw, ok := o[labelsKey]; ok && !isNull(raw) {
		labels, err := decodeInts(labelsKey, raw)
		if err != nil {
			return Example{}, err
		}
		if len(labels) != len(ids) {
			return Example{}, fieldError(labelsKey, "%d values for %d %s", len(labels), len(ids), idsKey)
		}
		for i, l := range labels {
			if l < 0 && l != ignore {
				return Example{}, fieldError(fmt.Sprintf("%s[%d]", labelsKey, i), "%d: expected a token id or -100", l)
			}
		}
		ex.Labels = labels
	}
	return ex, nil
}

// ignore is the label of a token that is not predicted.
const ignore = -100
