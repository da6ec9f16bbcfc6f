package checkpoints

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// JSONError adds the byte offset to syntax errors, which encoding/json leaves out
// of the message.
func JSONError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w (at byte %d)", err, se.Offset)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("unexpected end of JSON input")
	}
	return err
}

// Entry is one key and its raw value in a JSON object.
type Entry struct {
	Key string
	Val json.RawMessage
}

// ObjectEntries splits a JSON object into its entries, in order, rejecting
// duplicate keys (encoding/json would silently keep the last one, hiding a
// corrupt header). raw must hold one syntactically valid JSON value.
func ObjectEntries(raw []byte) ([]Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, JSONError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []Entry
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, JSONError(err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, JSONError(err)
		}
		out = append(out, Entry{key, bytes.TrimLeft(val, " \t\r\n")})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, JSONError(err)
	}
	return out, nil
}

// Snippet renders raw JSON for an error message: one line, at most 40 bytes.
func Snippet(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	var b bytes.Buffer
	s := ""
	if len(raw) <= 4096 && json.Compact(&b, raw) == nil {
		s = b.String() // compact JSON has no raw newlines
	} else {
		s = strconv.Quote(string(raw[:min(len(raw), 64)]))
	}
	if len(s) > 40 {
		s = s[:40]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return s
}
