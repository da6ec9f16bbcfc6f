package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// jsonObj is one JSON object of tokenizer.json together with its path
// ("model", "pre_tokenizer.pretokenizers[1]"), so that every error names the
// field that is wrong.
type jsonObj struct {
	path string
	m    map[string]json.RawMessage
}

// pathError is a malformed-field error; its text is "path: msg".
type pathError struct {
	path, msg string
}

func (e *pathError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func errAt(path, format string, args ...any) error {
	return &pathError{path: path, msg: fmt.Sprintf(format, args...)}
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func indexPath(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// kind names the JSON type of raw for error messages.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// parseObj decodes raw as an object; null or absent is reported as ok=false.
func parseObj(path string, raw json.RawMessage) (jsonObj, bool, error) {
	if isNull(raw) {
		return jsonObj{}, false, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return jsonObj{}, false, errAt(path, "expected an object, got %s", kind(raw))
	}
	return jsonObj{path: path, m: m}, true, nil
}

func parseArr(path string, raw json.RawMessage) ([]json.RawMessage, error) {
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, errAt(path, "expected an array, got %s", kind(raw))
	}
	return a, nil
}

func parseString(path string, raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errAt(path, "expected a string, got %s", kind(raw))
	}
	return s, nil
}

func (o jsonObj) has(key string) bool {
	raw, ok := o.m[key]
	return ok && !isNull(raw)
}

func (o jsonObj) str(key, def string) (string, error) {
	raw, ok := o.m[key]
	if !ok || isNull(raw) {
		return def, nil
	}
	return parseString(joinPath(o.path, key), raw)
}

// optStr is str for fields where absent/null and "" differ.
func (o jsonObj) optStr(key string) (*string, error) {
	raw, ok := o.m[key]
	if !ok || isNull(raw) {
		return nil, nil
	}
	s, err := parseString(joinPath(o.path, key), raw)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

func (o jsonObj) boolean(key string, def bool) (bool, error) {
	raw, ok := o.m[key]
	if !ok || isNull(raw) {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, errAt(joinPath(o.path, key), "expected a boolean, got %s", kind(raw))
	}
	return b, nil
}

func (o jsonObj) integer(key string, def int) (int, error) {
	raw, ok := o.m[key]
	if !ok || isNull(raw) {
		return def, nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, errAt(joinPath(o.path, key), "expected an integer, got %s", kind(raw))
	}
	return n, nil
}

func (o jsonObj) obj(key string) (jsonObj, bool, error) {
	return parseObj(joinPath(o.path, key), o.m[key])
}

// arr returns the elements of an array field; absent or null is an empty list.
func (o jsonObj) arr(key string) ([]json.RawMessage, error) {
	raw, ok := o.m[key]
	if !ok || isNull(raw) {
		return nil, nil
	}
	return parseArr(joinPath(o.path, key), raw)
}

// requireType checks the "type" field of a component and returns it.
func (o jsonObj) typ() (string, error) {
	if !o.has("type") {
		return "", errAt(joinPath(o.path, "type"), "missing")
	}
	return o.str("type", "")
}

// fileError prefixes err with the file name, keeping one line.
func fileError(file string, err error) error {
	var pe *pathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", file, err)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: invalid JSON at byte %d: %w", file, se.Offset, err)
	}
	return fmt.Errorf("%s: %w", file, err)
}

func parseInt(path string, raw json.RawMessage) (int, error) {
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, errAt(path, "expected an integer, got %s", kind(raw))
	}
	return n, nil
}

// parseSeq parses the array of objects o[key] with parse: the "Sequence" of
// normalizers, pre-tokenizers, post-processors and decoders.
func parseSeq[T any](o jsonObj, key string, parse func(jsonObj) (T, error)) ([]T, error) {
	items, err := o.arr(key)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(items))
	for i, raw := range items {
		p := indexPath(joinPath(o.path, key), i)
		sub, ok, err := parseObj(p, raw)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errAt(p, "expected an object, got null")
		}
		v, err := parse(sub)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
