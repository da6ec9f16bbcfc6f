package safetensors

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tune-dev/tune/checkpoints"
)

// Write writes tensors to path as a safetensors file, atomically
// (see checkpoints.WriteFileAtomic), so a crash mid-save never leaves a torn checkpoint.
//
// Tensors are stored in the given order and the header lists them in that
// order, after "__metadata__" (omitted when empty; its keys sorted). This is
// how the Python library lays out its header; it additionally sorts tensors
// by dtype alignment then name (the tests sort that way, sortLikePython, to
// compare bytes with its files). The header is padded with spaces to a
// multiple of 8 bytes so the data section starts aligned.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	for _, t := range tensors {
		if need, problem := byteSize(t.DType, t.Shape); problem == "" && int64(len(t.Data)) != need {
			return fmt.Errorf("%s: tensor %q: has %d bytes of data, but dtype %s shape %s needs %d",
				path, t.Name, len(t.Data), t.DType, formatInts(t.Shape), need)
		}
	}
	return WriteFunc(path, tensors, metadata, func(i int) ([]byte, error) { return tensors[i].Data, nil })
}

// WriteFunc is Write for files larger than memory: the
// header comes from the tensors' names, dtypes and shapes (their Data is
// ignored), and data(i) is asked for tensor i's bytes only when they are
// written, so a merged 7B model is produced one tensor at a time.
func WriteFunc(path string, tensors []Tensor, metadata map[string]string, data func(i int) ([]byte, error)) error {
	header, err := encodeHeader(tensors, metadata)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return checkpoints.WriteFileAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var prefix [8]byte
		binary.LittleEndian.PutUint64(prefix[:], uint64(len(header)))
		if _, err := bw.Write(prefix[:]); err != nil {
			return err
		}
		if _, err := bw.Write(header); err != nil {
			return err
		}
		for i, t := range tensors {
			b, err := data(i)
			if err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
			if need, _ := byteSize(t.DType, t.Shape); int64(len(b)) != need {
				return fmt.Errorf("tensor %q: has %d bytes of data, but dtype %s shape %s needs %d",
					t.Name, len(b), t.DType, formatInts(t.Shape), need)
			}
			if _, err := bw.Write(b); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
}

// encodeHeader validates tensors and renders the padded JSON header exactly
// as serde_json renders it for the Python library: no spaces, entries
// {"dtype","shape","data_offsets"} in that field order.
func encodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("metadata %q: key and value must be valid UTF-8", k)
			}
		}
		b.WriteString(`"` + metadataKey + `":{`)
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
		first = false
	}
	seen := make(map[string]bool, len(tensors))
	var offset int64
	for _, t := range tensors {
		switch {
		case t.Name == "":
			return nil, errors.New("tensor with an empty name")
		case t.Name == metadataKey:
			return nil, fmt.Errorf("tensor name %q is reserved", t.Name)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("tensor %q: name is not valid UTF-8", t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("tensor %q given twice", t.Name)
		case !t.DType.Valid():
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		seen[t.Name] = true
		for i, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: shape %s: dimension %d is negative", t.Name, formatInts(t.Shape), i)
			}
		}
		need, problem := byteSize(t.DType, t.Shape)
		if problem != "" {
			return nil, fmt.Errorf("tensor %q: shape %s %s", t.Name, formatInts(t.Shape), problem)
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, string(t.DType))
		b.WriteString(`,"shape":`)
		b.WriteString(formatInts(t.Shape))
		b.WriteString(`,"data_offsets":[`)
		b.WriteString(strconv.FormatInt(offset, 10))
		b.WriteByte(',')
		offset += need
		b.WriteString(strconv.FormatInt(offset, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > maxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit readers accept", b.Len(), maxHeaderSize)
	}
	return []byte(b.String()), nil
}

// writeJSONString escapes like serde_json: only '"', '\\' and control
// characters, with lowercase hex. encoding/json would also escape <, >, &
// and U+2028/9, giving bytes that differ from Python's output.
func writeJSONString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}
