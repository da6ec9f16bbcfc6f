// Package datasets turns dataset files into token sequences with label masks,
// and those into rows of batches.
//
// Sources are JSONL, JSON (an array of records) and Parquet files, and text
// documents (a directory or glob of files); several are mixed with weights.
// Records are pre-tokenized ({input_ids, labels}), text ({text}), instruction
// (Alpaca: {instruction, input, output}) or chat (OpenAI {messages: [{role,
// content}]} or ShareGPT {conversations: [{from, value}]}), field names
// mappable. Text is tokenized with the model's tokenizer and its rules for BOS
// and EOS; instruction and chat records are rendered with its chat template,
// and only the responses are trained by default.
//
// Files are never held in memory: Open indexes them (8 bytes per JSONL or JSON
// record, row groups for Parquet) and runs one counting pass that tokenizes
// every record in parallel and keeps its length (4 bytes); a Loader then
// reads and tokenizes the examples a row needs, in an order drawn from the
// seed and the epoch, and its Cursor resumes mid-epoch exactly.
package datasets

import (
	"bufio"
	"bytes"
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
	o, err := parseObject(raw)
	if err != nil {
		return Example{}, err
	}
	return parsePretokenized(o, nil)
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
