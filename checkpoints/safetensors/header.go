package safetensors

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tune-dev/tune/checkpoints"
	"github.com/tune-dev/tune/internal/dtype"
)

// maxHeaderSize is the largest safetensors header accepted, the same limit as
// the Python library; it stops a corrupt length prefix from causing a huge
// allocation.
const maxHeaderSize = 100_000_000

// metadataKey is the header key that holds free-form string metadata.
const metadataKey = "__metadata__"

// parseHeader parses and validates the JSON header of a
// safetensors file whose data section is dataLen bytes long. It accepts
// exactly what the Python library accepts: every tensor must have a known
// dtype, a byte range matching its shape, and the ranges must tile the data
// section with no overlap, gap or trailing bytes. Tensors come back in data
// order. It never panics; errors are one line and name the tensor at fault.
func parseHeader(header []byte, dataLen int64) ([]TensorInfo, map[string]string, error) {
	if dataLen < 0 {
		return nil, nil, fmt.Errorf("negative data section length %d", dataLen)
	}
	if !utf8.Valid(header) {
		return nil, nil, errors.New("header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, fmt.Errorf("header must be a JSON object starting with '{', got %s",
			strconv.Quote(string(header[:min(len(header), 20)])))
	}
	// A syntax check first: it gives accurate byte offsets, which the token
	// decoder below does not, and allocates nothing.
	var skip struct{}
	if err := json.Unmarshal(header, &skip); err != nil {
		return nil, nil, fmt.Errorf("header is not valid JSON: %w", checkpoints.JSONError(err))
	}
	entries, err := checkpoints.ObjectEntries(header)
	if err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	var metadata map[string]string
	infos := make([]TensorInfo, 0, len(entries))
	for _, e := range entries {
		if e.Key == metadataKey {
			metadata, err = parseMetadata(e.Val)
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		info, err := parseTensorEntry(e.Key, e.Val, dataLen)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", e.Key, err)
		}
		infos = append(infos, info)
	}
	if err := checkCoverage(infos, dataLen); err != nil {
		return nil, nil, err
	}
	return infos, metadata, nil
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if string(raw) == "null" { // the Python library reads null as "no metadata"
		return nil, nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%s must be an object of strings, got %s", metadataKey, checkpoints.Snippet(raw))
	}
	entries, err := checkpoints.ObjectEntries(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", metadataKey, err)
	}
	md := make(map[string]string, len(entries))
	for _, e := range entries {
		var s string
		if len(e.Val) == 0 || e.Val[0] != '"' || json.Unmarshal(e.Val, &s) != nil {
			return nil, fmt.Errorf("%s %q: value must be a string, got %s", metadataKey, e.Key, checkpoints.Snippet(e.Val))
		}
		md[e.Key] = s
	}
	return md, nil
}

func parseTensorEntry(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	info := TensorInfo{Name: name}
	if len(raw) == 0 || raw[0] != '{' {
		return info, fmt.Errorf("entry must be an object with dtype, shape and data_offsets, got %s", checkpoints.Snippet(raw))
	}
	entries, err := checkpoints.ObjectEntries(raw)
	if err != nil {
		return info, err
	}
	fields := map[string]json.RawMessage{}
	for _, e := range entries {
		fields[e.Key] = e.Val // unknown fields are ignored, as in Python
	}
	for _, f := range []string{"dtype", "shape", "data_offsets"} {
		if _, ok := fields[f]; !ok {
			return info, fmt.Errorf("missing %q", f)
		}
	}

	d := fields["dtype"]
	var dt string
	if len(d) == 0 || d[0] != '"' || json.Unmarshal(d, &dt) != nil {
		return info, fmt.Errorf("dtype must be a string, got %s", checkpoints.Snippet(d))
	}
	info.DType = dtype.DType(dt)
	if !info.DType.Valid() {
		return info, fmt.Errorf("unknown dtype %q", dt)
	}

	dims, err := intArray(fields["shape"], "shape")
	if err != nil {
		return info, err
	}
	info.Shape = make([]int, len(dims))
	for i, v := range dims {
		if v > math.MaxInt {
			return info, fmt.Errorf("shape dimension %d is %d, too large", i, v)
		}
		info.Shape[i] = int(v)
	}

	offs, err := intArray(fields["data_offsets"], "data_offsets")
	if err != nil {
		return info, err
	}
	if len(offs) != 2 {
		return info, fmt.Errorf("data_offsets must be [begin,end], got %s", formatInts(offs))
	}
	info.Begin, info.End = offs[0], offs[1]
	if info.Begin > info.End {
		return info, fmt.Errorf("data_offsets %s: begin is after end", formatInts(offs))
	}
	if info.End > dataLen {
		return info, fmt.Errorf("data_offsets %s: end is beyond the data section (%d bytes)", formatInts(offs), dataLen)
	}
	need, problem := byteSize(info.DType, info.Shape)
	if problem != "" {
		return info, fmt.Errorf("shape %s %s", formatInts(info.Shape), problem)
	}
	if have := info.End - info.Begin; have != need {
		return info, fmt.Errorf("data_offsets %s hold %d bytes, but dtype %s shape %s needs %d",
			formatInts(offs), have, info.DType, formatInts(info.Shape), need)
	}
	return info, nil
}

// intArray decodes a JSON array of non-negative integers. Numbers are checked
// by their text so that 2.0, 1e3, -1 and values beyond int64 are all refused,
// as the Python library (serde's usize) refuses them.
func intArray(raw json.RawMessage, field string) ([]int64, error) {
	var elems []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, fmt.Errorf("%s must be an array of non-negative integers, got %s", field, checkpoints.Snippet(raw))
	}
	out := make([]int64, len(elems))
	for i, e := range elems {
		s := string(e)
		switch {
		case s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')):
			return nil, fmt.Errorf("%s[%d] is %s, must be a non-negative integer", field, i, checkpoints.Snippet(e))
		case s[0] == '-':
			return nil, fmt.Errorf("%s[%d] is %s, must not be negative", field, i, checkpoints.Snippet(e))
		case strings.ContainsAny(s, ".eE"):
			return nil, fmt.Errorf("%s[%d] is %s, must be an integer", field, i, checkpoints.Snippet(e))
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s[%d] is %s, too large", field, i, checkpoints.Snippet(e))
		}
		out[i] = v
	}
	return out, nil
}

// checkCoverage sorts infos by offset and requires them to tile [0, dataLen)
// exactly, like the Python library ("the data section must be fully covered").
func checkCoverage(infos []TensorInfo, dataLen int64) error {
	slices.SortFunc(infos, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Begin, b.Begin), cmp.Compare(a.End, b.End), strings.Compare(a.Name, b.Name))
	})
	var pos int64
	for i, t := range infos {
		switch {
		case t.Begin < pos:
			p := infos[i-1]
			return fmt.Errorf("tensors %q %s and %q %s overlap", p.Name, formatInts([]int64{p.Begin, p.End}),
				t.Name, formatInts([]int64{t.Begin, t.End}))
		case t.Begin > pos:
			where := "before the first tensor"
			if i > 0 {
				where = fmt.Sprintf("between tensors %q and %q", infos[i-1].Name, t.Name)
			}
			return fmt.Errorf("data section not fully covered: bytes [%d,%d) %s belong to no tensor", pos, t.Begin, where)
		}
		pos = t.End
	}
	if pos != dataLen {
		where := "in a header with no tensors"
		if len(infos) > 0 {
			where = fmt.Sprintf("after the last tensor %q", infos[len(infos)-1].Name)
		}
		return fmt.Errorf("data section not fully covered: bytes [%d,%d) %s belong to no tensor", pos, dataLen, where)
	}
	return nil
}
