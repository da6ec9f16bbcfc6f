// Package datasets turns dataset files into token sequences with label masks,
// and those into batches. Files are read as streams, one record at a time, so a
// file larger than memory is no problem.
package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxLine bounds one JSONL record; a longer line is an error, not an allocation.
const maxLine = 64 << 20

// ScanJSONL calls fn for every non-blank line of a JSONL file with its 1-based
// line number. Errors from fn are returned as "path:line: err".
func ScanJSONL(path string, fn func(line int, raw []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		raw, err := readLine(r)
		if len(bytes.TrimSpace(raw)) > 0 {
			if ferr := fn(line, raw); ferr != nil {
				return fmt.Errorf("%s:%d: %w", path, line, ferr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
	}
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		part, isPrefix, err := r.ReadLine()
		buf = append(buf, part...)
		if len(buf) > maxLine {
			return nil, fmt.Errorf("line longer than %d MiB", maxLine>>20)
		}
		if err != nil || !isPrefix {
			return buf, err
		}
	}
}

// Example is one tokenized training or evaluation example. Labels has the
// length of IDs; -100 marks a token that is not predicted. nil Labels means
// every token is predicted.
type Example struct {
	IDs    []int32
	Labels []int32
}

// ParsePretokenized reads a record {"input_ids": [...], "labels": [...]?}.
func ParsePretokenized(raw []byte) (Example, error) {
	var rec struct {
		InputIDs *[]int32 `json:"input_ids"`
		Labels   *[]int32 `json:"labels"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Example{}, fmt.Errorf("field %s: got a JSON %s, expected %s", te.Field, te.Value, te.Type)
		}
		return Example{}, fmt.Errorf("not a JSON object: %v", err)
	}
	if rec.InputIDs == nil {
		return Example{}, fmt.Errorf("field input_ids: missing")
	}
	ex := Example{IDs: *rec.InputIDs}
	if len(ex.IDs) == 0 {
		return Example{}, fmt.Errorf("field input_ids: empty")
	}
	for i, id := range ex.IDs {
		if id < 0 {
			return Example{}, fmt.Errorf("field input_ids[%d]: %d is negative", i, id)
		}
	}
	if rec.Labels != nil {
		ex.Labels = *rec.Labels
		if len(ex.Labels) != len(ex.IDs) {
			return Example{}, fmt.Errorf("field labels: %d values for %d input_ids", len(ex.Labels), len(ex.IDs))
		}
	}
	return ex, nil
}

// ReadPretokenized reads every record of a pre-tokenized JSONL file.
func ReadPretokenized(path string) ([]Example, error) {
	var out []Example
	err := ScanJSONL(path, func(_ int, raw []byte) error {
		ex, err := ParsePretokenized(raw)
		out = append(out, ex)
		return err
	})
	return out, err
}
