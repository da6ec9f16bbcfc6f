package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// A source is one file (or set of text files) of records, indexed so that any
// record can be read on its own and all of them streamed in order, without
// holding the file in memory.
type source interface {
	// Len is the number of records.
	Len() int
	// Scan calls fn with every record from the first, in order, streaming.
	// The record's bytes are valid during the call only.
	Scan(fn func(i int, r record) error) error
	// At reads record i.
	At(i int) (record, error)
	// Where names record i for messages: "path:line" or "path: row N".
	Where(i int) string
	Close() error
}

// record is one raw record: a JSON object, a text document, or an example
// that needs no parsing (built-in data).
type record struct {
	json []byte   // a JSON object (JSONL, JSON, Parquet rows)
	doc  []byte   // a whole text document
	ex   *Example // built-in
}

// openSource indexes path: a JSONL, JSON or Parquet file, or another file as
// one text document. Directories and globs are expanded by expandPath first.
func openSource(path string) (source, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return openJSONL(path)
	case ".json":
		kind, err := sniffJSON(path)
		if err != nil {
			return nil, err
		}
		if kind == '[' {
			return openJSONArray(path)
		}
		return openJSONL(path)
	case ".parquet", ".pq":
		return openParquet(path)
	}
	return newDocs([]string{path}), nil
}

// CheckPath reports whether a source path names files: a file, a directory
// holding some, or a glob matching some ("**" crosses directories).
func CheckPath(path string) error {
	_, _, err := expandPath(path)
	return err
}

// expandPath lists the files of a source path: the file itself, every regular
// file under a directory (documents: dirDocs), or the matches of a glob.
func expandPath(path string) (files []string, dirDocs bool, err error) {
	if st, err := os.Stat(path); err == nil {
		if !st.IsDir() {
			return []string{path}, false, nil
		}
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir // .git and the like
			}
			if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, true, err
		}
		if len(files) == 0 {
			return nil, true, fmt.Errorf("%s: no files in the directory", path)
		}
		sort.Strings(files)
		return files, true, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if !strings.ContainsAny(path, "*?[{") {
		return nil, false, fmt.Errorf("%s: no such file or directory", path)
	}
	// doublestar: "**" crosses directories, as in shells with globstar.
	matches, err := doublestar.FilepathGlob(path)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %v", path, err)
	}
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
			files = append(files, m)
		}
	}
	if len(files) == 0 {
		return nil, false, fmt.Errorf("%s: no file matches", path)
	}
	sort.Strings(files)
	return files, false, nil
}

// sniffJSON returns the first non-space byte of a .json file: '[' for an array
// of records, '{' for JSON Lines under a .json name.
func sniffJSON(path string) (byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		b, err := r.ReadByte()
		if err == io.EOF {
			return 0, fmt.Errorf("%s: empty file", path)
		}
		if err != nil {
			return 0, err
		}
		if b == 0xEF { // UTF-8 byte order mark
			r.Discard(2)
			continue
		}
		if !isSpace(b) {
			return b, nil
		}
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\r' || b == '\t' }

// offsetIndex locates the records of a JSONL or JSON file: the byte offset of
// each (8 bytes a record), and the line number of every lineEvery-th record so
// that any record's line is found by counting newlines from the nearest one.
type offsetIndex struct {
	path  string
	f     *os.File
	size  int64
	start []int64 // record i is bytes [start[i], start[i+1]) trimmed; the last ends at end
	end   int64
	lines []int32 // line of record k*lineEvery
}

const lineEvery = 1024

func (x *offsetIndex) Len() int { return len(x.start) }

func (x *offsetIndex) Close() error { return x.f.Close() }

func (x *offsetIndex) span(i int) (int64, int64) {
	end := x.end
	if i+1 < len(x.start) {
		end = x.start[i+1]
	}
	return x.start[i], end
}

func (x *offsetIndex) At(i int) (record, error) {
	a, b := x.span(i)
	if b-a > maxLine {
		return record{}, fmt.Errorf("%s: record longer than %d MiB", x.Where(i), maxLine>>20)
	}
	buf := make([]byte, b-a)
	if _, err := x.f.ReadAt(buf, a); err != nil && !(errors.Is(err, io.EOF) && len(buf) > 0) {
		return record{}, fmt.Errorf("%s: %w", x.Where(i), err)
	}
	return record{json: trimRecord(buf)}, nil
}

// trimRecord removes the white space and the separating comma around a record.
func trimRecord(b []byte) []byte {
	b = bytes.TrimSpace(b)
	b = bytes.TrimSuffix(b, []byte(","))
	return bytes.TrimSpace(b)
}

func (x *offsetIndex) Scan(fn func(i int, r record) error) error {
	if len(x.start) == 0 {
		return nil
	}
	r := io.NewSectionReader(x.f, x.start[0], x.end-x.start[0])
	br := bufio.NewReaderSize(r, 1<<20)
	var buf []byte
	for i := range x.start {
		a, b := x.span(i)
		if b-a > maxLine {
			return fmt.Errorf("%s: record longer than %d MiB", x.Where(i), maxLine>>20)
		}
		if int64(cap(buf)) < b-a {
			buf = make([]byte, b-a)
		}
		buf = buf[:b-a]
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("%s: %w (did the file change?)", x.Where(i), err)
		}
		if err := fn(i, record{json: trimRecord(buf)}); err != nil {
			return err
		}
	}
	return nil
}

// Where is "path:line" of record i.
func (x *offsetIndex) Where(i int) string {
	return x.path + ":" + strconv.Itoa(x.line(i))
}

func (x *offsetIndex) line(i int) int {
	k := i / lineEvery
	line := int(x.lines[k])
	from, to := x.start[k*lineEvery], x.start[i]
	buf := make([]byte, 64<<10)
	for from < to {
		n := int(min(int64(len(buf)), to-from))
		m, err := x.f.ReadAt(buf[:n], from)
		line += bytes.Count(buf[:m], []byte{'\n'})
		from += int64(m)
		if err != nil {
			break
		}
	}
	return line
}

// openJSONL indexes the non-blank lines of a JSON Lines file.
func openJSONL(path string) (*offsetIndex, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	x := &offsetIndex{path: path, f: f, size: size, end: size}
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	line := 1
	for {
		chunk, err := r.ReadSlice('\n')
		// A line longer than the buffer arrives in several chunks.
		lineStart, blank := off, true
		for {
			if blank && len(bytes.TrimSpace(chunk)) > 0 {
				blank = false
			}
			off += int64(len(chunk))
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
			chunk, err = r.ReadSlice('\n')
		}
		if !blank {
			if len(x.start)%lineEvery == 0 {
				x.lines = append(x.lines, int32(line))
			}
			x.start = append(x.start, lineStart)
		}
		line++
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s:%d: %w", path, line-1, err)
		}
	}
	if len(x.start) > 0 && x.start[0] == 0 {
		// Skip a UTF-8 byte order mark at the start of the file.
		var bom [3]byte
		if n, _ := f.ReadAt(bom[:], 0); n == 3 && bom == [3]byte{0xEF, 0xBB, 0xBF} {
			x.start[0] = 3
		}
	}
	return x, nil
}

// openJSONArray indexes the elements of a JSON file holding one array of
// records, streaming it with encoding/json's decoder.
func openJSONArray(path string) (*offsetIndex, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	x := &offsetIndex{path: path, f: f, size: size}
	fail := func(off int64, format string, a ...any) (*offsetIndex, error) {
		line := 1 + countNewlines(f, off)
		f.Close()
		return nil, fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, a...))
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var skipped int64
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
		br.Discard(3)
		skipped = 3
	}
	dec := json.NewDecoder(br)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return fail(0, "expected a JSON array of records")
	}
	line, lineOff := 1, int64(0)
	var raw json.RawMessage
	for dec.More() {
		before := skipped + dec.InputOffset()
		if err := dec.Decode(&raw); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return fail(skipped+se.Offset, "invalid JSON: %v", se)
			}
			// Truncated: name the line where the record starts.
			var buf [256]byte
			n, _ := f.ReadAt(buf[:], before)
			for k := 0; k < n && (isSpace(buf[k]) || buf[k] == ','); k++ {
				before++
			}
			return fail(before, "invalid JSON: %v", err)
		}
		end := skipped + dec.InputOffset()
		start := end - int64(len(raw))
		if len(x.start)%lineEvery == 0 {
			line += countNewlinesBetween(f, lineOff, start)
			lineOff = start
			x.lines = append(x.lines, int32(line))
		}
		x.start = append(x.start, start)
		x.end = end
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return fail(skipped+dec.InputOffset(), "expected ] closing the array of records")
	}
	return x, nil
}

func countNewlines(f *os.File, to int64) int { return countNewlinesBetween(f, 0, to) }

func countNewlinesBetween(f *os.File, from, to int64) int {
	n := 0
	buf := make([]byte, 64<<10)
	for from < to {
		k := int(min(int64(len(buf)), to-from))
		m, err := f.ReadAt(buf[:k], from)
		n += bytes.Count(buf[:m], []byte{'\n'})
		from += int64(m)
		if err != nil {
			break
		}
	}
	return n
}

// docs is a list of text files, each one record (a document).
type docs struct {
	files []string
}

func newDocs(files []string) *docs { return &docs{files: files} }

func (d *docs) Len() int     { return len(d.files) }
func (d *docs) Close() error { return nil }

func (d *docs) Where(i int) string { return d.files[i] }

func (d *docs) At(i int) (record, error) {
	f, err := os.Open(d.files[i])
	if err != nil {
		return record{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLine+1))
	if err != nil {
		return record{}, fmt.Errorf("%s: %w", d.files[i], err)
	}
	if len(b) > maxLine {
		return record{}, fmt.Errorf("%s: document longer than %d MiB", d.files[i], maxLine>>20)
	}
	return record{doc: b}, nil
}

func (d *docs) Scan(fn func(i int, r record) error) error {
	for i := range d.files {
		r, err := d.At(i)
		if err != nil {
			return err
		}
		if err := fn(i, r); err != nil {
			return err
		}
	}
	return nil
}

// memSource holds generated examples (builtin:counting).
type memSource struct {
	name     string
	examples []Example
}

func (m *memSource) Len() int           { return len(m.examples) }
func (m *memSource) Close() error       { return nil }
func (m *memSource) Where(i int) string { return fmt.Sprintf("%s: example %d", m.name, i+1) }
func (m *memSource) At(i int) (record, error) {
	return record{ex: &m.examples[i]}, nil
}

func (m *memSource) Scan(fn func(i int, r record) error) error {
	for i := range m.examples {
		if err := fn(i, record{ex: &m.examples[i]}); err != nil {
			return err
		}
	}
	return nil
}

// openSized opens a file and tells its size.
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}
