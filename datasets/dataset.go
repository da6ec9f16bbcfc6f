package datasets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tune-dev/tune/tokenizer"
)

// Record formats (configs.Formats).
const (
	FormatPretokenized = "pretokenized"
	FormatText         = "text"
	FormatInstruction  = "instruction"
	FormatChat         = "chat"
)

// Truncation policies (configs.Truncations).
const (
	TruncRight = "right"
	TruncLeft  = "left"
	TruncDrop  = "drop"
	TruncSplit = "split"
)

// Source is one input of a dataset.
type Source struct {
	// Path is a JSONL, JSON (array of records, or JSON Lines) or Parquet file, a
	// text document, a directory (every text file under it is one document) or a
	// glob (each match read by its extension); or builtin:counting.
	Path   string
	Format string  // one of the Format constants
	Weight float64 // examples seen per epoch, per example; 0 means 1
	Fields Fields
}

// Spec is everything Open needs: the sources, the validation split, and how
// records become examples.
type Spec struct {
	Train []Source
	// Val are validation sources (by file); ValRatio instead holds out a seeded
	// fraction of the training examples.
	Val      []Source
	ValRatio float64

	// Tokenizer encodes text, instruction and chat records (nil is fine when
	// every source is pre-tokenized).
	Tokenizer *tokenizer.Tokenizer
	// Vocab is the model's vocabulary: every id must be below it (0: unchecked).
	Vocab int
	// MaxLen bounds an example's tokens; Truncation says what happens to a
	// longer one.
	MaxLen         int
	Truncation     string
	TrainOnInputs  bool
	PromptTemplate string // instruction records: TemplateAuto, TemplateChat or TemplateAlpaca
	SkipBadRecords bool
	Seed           uint64 // the split, the shuffles and the weights' subsets
	// BuiltinExamples is the size of builtin:counting.
	BuiltinExamples int
	// Workers encode records in parallel in the counting pass (0: GOMAXPROCS).
	Workers int
	// Context, when cancelled, stops Open between files and in the counting
	// pass, which then returns its error (nil: never).
	Context context.Context
}

// NeedsTokenizer reports whether some source is not pre-tokenized.
func (s Spec) NeedsTokenizer() bool {
	for _, src := range append(append([]Source{}, s.Train...), s.Val...) {
		if src.Format != FormatPretokenized && !strings.HasPrefix(src.Path, builtinPrefix) {
			return true
		}
	}
	return false
}

const builtinPrefix = "builtin:"

// Stats counts what the counting pass saw.
type Stats struct {
	Records     int   `json:"records"`     // records read
	Examples    int   `json:"examples"`    // examples kept (training and validation)
	Tokens      int64 `json:"tokens"`      // their tokens, after truncation
	Trained     int64 `json:"trained"`     // of which predicted in the loss (labels)
	Truncated   int   `json:"truncated"`   // examples cut to max_len
	Dropped     int   `json:"dropped"`     // longer than max_len with truncation drop
	Untrainable int   `json:"untrainable"` // dropped: no token left to train on
	Skipped     int   `json:"skipped"`     // bad records skipped (skip_bad_records)
	NotText     int   `json:"not_text"`    // binary files skipped in directories
	NotUTF8     int   `json:"not_utf8"`    // records with bytes that are not UTF-8 (read as U+FFFD)
	Fallbacks   int   `json:"fallbacks"`   // label boundaries inside a token (moved to include it)
	// FirstBad are the messages of the first skipped records (at most 3).
	FirstBad []string `json:"first_bad,omitempty"`

	TrainExamples int   `json:"train_examples"`
	TrainTokens   int64 `json:"train_tokens"`
	ValExamples   int   `json:"val_examples"`
	ValTokens     int64 `json:"val_tokens"`
}

// MaskedShare is the fraction of tokens not trained on.
func (s Stats) MaskedShare() float64 {
	if s.Tokens == 0 {
		return 0
	}
	return 1 - float64(s.Trained)/float64(s.Tokens)
}

// Data is an opened data set: its training and validation examples. Records
// stay on disk; the counting pass at Open kept 4 bytes a record (the example's
// length) besides the sources' indexes, and examples are read and tokenized
// again when a row needs them.
type Data struct {
	Train *Dataset
	Val   *Dataset // nil without validation data
	Stats Stats

	parts   []*part
	base    []uint32 // global id of each part's first record
	lengths []uint32 // by global id; 0: not an example
	enc     *encoder
	spec    Spec
}

// part is one opened source file.
type part struct {
	src    source
	format string
	fields Fields
	weight float64
	val    bool // a validation source
}

// Close closes the source files.
func (d *Data) Close() error {
	var first error
	for _, p := range d.parts {
		if err := p.src.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Open indexes every source, runs the counting pass (every record parsed,
// tokenized and measured, in parallel, with bounded memory), splits off the
// validation set and returns the data ready for loaders. A bad record stops it
// with "file:line: field ...: problem" unless SkipBadRecords.
func Open(spec Spec) (*Data, error) {
	if spec.MaxLen <= 0 {
		return nil, errors.New("datasets: MaxLen must be positive")
	}
	if spec.Truncation == "" {
		spec.Truncation = TruncRight
	}
	switch spec.Truncation {
	case TruncRight, TruncLeft, TruncDrop, TruncSplit:
	default:
		return nil, fmt.Errorf("data.truncation: unknown policy %q", spec.Truncation)
	}
	d := &Data{spec: spec}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	if len(spec.Train) == 0 {
		return nil, errors.New("data.train: no training source")
	}
	for _, group := range []struct {
		srcs []Source
		val  bool
	}{{spec.Train, false}, {spec.Val, true}} {
		for _, s := range group.srcs {
			if ctx := spec.Context; ctx != nil && ctx.Err() != nil {
				return nil, fmt.Errorf("data: stopped while reading: %w", ctx.Err())
			}
			if err := d.addSource(s, group.val); err != nil {
				return nil, err
			}
		}
	}
	if spec.Tokenizer != nil || spec.NeedsTokenizer() {
		if spec.Tokenizer == nil {
			return nil, errors.New("data: text, instruction and chat data need the model's tokenizer (tokenizer.json in the model directory)")
		}
		enc, err := newEncoder(spec.Tokenizer, spec.TrainOnInputs, spec.PromptTemplate)
		if err != nil {
			return nil, err
		}
		d.enc = enc
	} else {
		d.enc = &encoder{eos: -1, trainOnInputs: spec.TrainOnInputs}
	}
	var total uint64
	for _, p := range d.parts {
		d.base = append(d.base, uint32(total))
		total += uint64(p.src.Len())
	}
	if total >= math.MaxUint32 {
		return nil, fmt.Errorf("data: %d records; at most %d are supported", total, uint32(math.MaxUint32-1))
	}
	d.lengths = make([]uint32, total)
	if err := d.count(); err != nil {
		return nil, err
	}
	if err := d.split(); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// addSource opens the files of one source.
func (d *Data) addSource(s Source, val bool) error {
	weight := s.Weight
	if weight == 0 {
		weight = 1
	}
	if !(weight > 0) || math.IsInf(weight, 0) {
		return fmt.Errorf("%s: weight %g: must be a finite number > 0", s.Path, weight)
	}
	if name, ok := strings.CutPrefix(s.Path, builtinPrefix); ok {
		if name != "counting" {
			return fmt.Errorf("data.train: unknown built-in dataset %q (tune has builtin:counting)", s.Path)
		}
		vocab := d.spec.Vocab
		if vocab == 0 {
			vocab = 17
		}
		if vocab <= 16 {
			return fmt.Errorf("builtin:counting needs a vocabulary of more than 16 tokens, the model has %d", vocab)
		}
		src := &memSource{name: s.Path, examples: Counting(d.spec.BuiltinExamples, vocab, d.spec.Seed)}
		d.parts = append(d.parts, &part{src: src, format: FormatPretokenized, weight: weight, val: val})
		return nil
	}
	switch s.Format {
	case FormatPretokenized, FormatText, FormatInstruction, FormatChat:
	default:
		return fmt.Errorf("%s: unknown format %q", s.Path, s.Format)
	}
	files, dirDocs, err := expandPath(s.Path)
	if err != nil {
		return err
	}
	if dirDocs {
		if s.Format != FormatText {
			return fmt.Errorf("%s: a directory is read as text documents (format text), not as %s records; name the files (a glob such as %s) to read records", s.Path, s.Format, s.Path+"/*.jsonl")
		}
		d.parts = append(d.parts, &part{src: newDocs(files), format: FormatText, fields: s.Fields, weight: weight, val: val})
		return nil
	}
	for _, f := range files {
		src, err := openSource(f)
		if err != nil {
			return err
		}
		format := s.Format
		if _, isDoc := src.(*docs); isDoc {
			if format != FormatText {
				src.Close()
				return fmt.Errorf("%s: a text document (not .jsonl, .json or .parquet), which only format text reads", f)
			}
		}
		d.parts = append(d.parts, &part{src: src, format: format, fields: s.Fields, weight: weight, val: val})
	}
	return nil
}

// outcome is what became of one record in the counting pass.
type outcome struct {
	length    int
	trained   int
	truncated bool
	dropped   bool // too long
	untrained bool
	notText   bool
	notUTF8   bool // bytes that are not UTF-8, read as U+FFFD
	fallbacks int
	err       error
}

// build parses and encodes a record of part p into its example (before
// truncation), or an error naming the field.
func (d *Data) build(p *part, r record, st *encodeStats) (Example, error) {
	if r.ex != nil {
		return *r.ex, nil
	}
	if r.doc != nil {
		return d.enc.text(string(r.doc), st)
	}
	o, err := parseObject(r.json)
	if err != nil {
		return Example{}, err
	}
	switch p.format {
	case FormatPretokenized:
		return parsePretokenized(o, p.fields)
	case FormatText:
		s, err := parseText(o, p.fields)
		if err != nil {
			return Example{}, err
		}
		return d.enc.text(s, st)
	case FormatInstruction:
		r, err := parseInstruction(o, p.fields)
		if err != nil {
			return Example{}, err
		}
		return d.enc.instruction(r, st)
	case FormatChat:
		c, err := parseConversation(o, p.fields)
		if err != nil {
			return Example{}, err
		}
		return d.enc.chat(c, st)
	}
	return Example{}, fmt.Errorf("unknown format %q", p.format)
}

// isText reports whether a document is text: valid UTF-8 without NUL bytes.
func isText(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// prepare builds record r of part p into its final example: checked against
// the vocabulary, truncated, or dropped (outcome says why).
func (d *Data) prepare(p *part, r record) (Example, outcome) {
	var o outcome
	if r.doc != nil && !isText(r.doc) {
		o.notText = true
		return Example{}, o
	}
	o.notUTF8 = r.json != nil && !utf8.Valid(r.json)
	var st encodeStats
	ex, err := d.build(p, r, &st)
	o.fallbacks = st.fallbacks
	if err != nil {
		o.err = err
		return Example{}, o
	}
	if v := d.spec.Vocab; v > 0 {
		for i, id := range ex.IDs {
			if int(id) >= v {
				o.err = fmt.Errorf("token %d at position %d is outside the model's vocabulary of %d", id, i, v)
				return Example{}, o
			}
		}
		for i, l := range ex.Labels {
			if int(l) >= v {
				o.err = fmt.Errorf("label %d at position %d is outside the model's vocabulary of %d", l, i, v)
				return Example{}, o
			}
		}
	}
	max := d.spec.MaxLen
	if len(ex.IDs) > max {
		switch d.spec.Truncation {
		case TruncRight:
			ex = Example{IDs: ex.IDs[:max], Labels: cut(ex.Labels, 0, max)}
			o.truncated = true
		case TruncLeft:
			n := len(ex.IDs)
			ex = Example{IDs: ex.IDs[n-max:], Labels: cut(ex.Labels, n-max, n)}
			o.truncated = true
		case TruncDrop:
			o.dropped = true
			return Example{}, o
		case TruncSplit:
			o.truncated = true
		}
	}
	o.trained = trainedTokens(ex, max, d.spec.Truncation == TruncSplit)
	if o.trained == 0 {
		o.untrained = true
		return Example{}, o
	}
	o.length = len(ex.IDs)
	return ex, o
}

func cut(labels []int32, a, b int) []int32 {
	if labels == nil {
		return nil
	}
	return labels[a:b]
}

// trainedTokens counts the tokens of an example that are predicted: labelled,
// and not the first of their row window (nothing precedes it).
func trainedTokens(ex Example, maxLen int, split bool) int {
	n := 0
	for i := range ex.IDs {
		if i == 0 || (split && i%maxLen == 0) {
			continue
		}
		if ex.Labels == nil || ex.Labels[i] != ignore {
			n++
		}
	}
	return n
}

// count is the counting pass: every record of every part, in parallel.
func (d *Data) count() error {
	workers := d.spec.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type job struct {
		p     *part
		base  uint32
		first int
		recs  []record
	}
	type result struct {
		gid uint32
		o   outcome
	}
	jobs := make(chan job, workers)
	results := make(chan []result, workers)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				out := make([]result, len(j.recs))
				for k, r := range j.recs {
					_, o := d.prepare(j.p, r)
					if o.err != nil {
						o.err = fmt.Errorf("%s: %w", j.p.src.Where(j.first+k), o.err)
					}
					out[k] = result{gid: j.base + uint32(j.first+k), o: o}
				}
				results <- out
			}
		}()
	}
	var scanErr error
	go func() {
		defer close(jobs)
		const batchBytes, batchRecords = 4 << 20, 256
		for pi, p := range d.parts {
			var cur job
			size := 0
			flush := func() bool {
				if len(cur.recs) == 0 {
					return true
				}
				select {
				case jobs <- cur:
				case <-stop:
					return false
				}
				cur = job{}
				size = 0
				return true
			}
			err := p.src.Scan(func(i int, r record) error {
				if cur.recs == nil {
					cur = job{p: p, base: d.base[pi], first: i}
				}
				// The bytes are only valid during the call: copy them.
				r.json = bytes.Clone(r.json)
				r.doc = bytes.Clone(r.doc)
				cur.recs = append(cur.recs, r)
				size += len(r.json) + len(r.doc)
				if len(cur.recs) >= batchRecords || size >= batchBytes {
					if !flush() {
						return errStopped
					}
				}
				return nil
			})
			if err == nil && !flush() {
				err = errStopped
			}
			if err != nil {
				if !errors.Is(err, errStopped) {
					scanErr = err
				}
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	if ctx := d.spec.Context; ctx != nil {
		go func() {
			select {
			case <-ctx.Done():
				halt()
			case <-stop:
			}
		}()
		defer halt() // ends that goroutine
	}

	st := &d.Stats
	var firstErr error
	firstErrGID := uint32(math.MaxUint32)
	type bad struct {
		gid uint32
		msg string
	}
	var bads []bad
	for rs := range results {
		for _, r := range rs {
			o := r.o
			st.Records++
			st.Fallbacks += o.fallbacks
			if o.notUTF8 {
				st.NotUTF8++
			}
			switch {
			case o.err != nil:
				if !d.spec.SkipBadRecords {
					if r.gid < firstErrGID {
						firstErr, firstErrGID = o.err, r.gid
					}
					halt()
					continue
				}
				st.Skipped++
				bads = append(bads, bad{r.gid, o.err.Error()})
				if len(bads) > 16 {
					sort.Slice(bads, func(i, j int) bool { return bads[i].gid < bads[j].gid })
					bads = bads[:3]
				}
			case o.notText:
				st.NotText++
			case o.dropped:
				st.Dropped++
			case o.untrained:
				st.Untrainable++
			default:
				d.lengths[r.gid] = uint32(o.length)
				st.Examples++
				st.Tokens += int64(o.length)
				st.Trained += int64(o.trained)
				if o.truncated {
					st.Truncated++
				}
			}
		}
	}
	if ctx := d.spec.Context; ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("data: stopped while reading: %w", ctx.Err())
	}
	if firstErr != nil {
		return firstErr
	}
	if scanErr != nil {
		return scanErr
	}
	sort.Slice(bads, func(i, j int) bool { return bads[i].gid < bads[j].gid })
	for _, b := range bads[:min(3, len(bads))] {
		st.FirstBad = append(st.FirstBad, b.msg)
	}
	return nil
}

var errStopped = errors.New("stopped")

// split makes the training and validation sets: validation sources, or a
// seeded ValRatio of the training examples.
func (d *Data) split() error {
	train := &Dataset{d: d, members: make([][]uint32, len(d.parts))}
	val := &Dataset{d: d, members: make([][]uint32, len(d.parts))}
	var candidates []uint32 // training examples, by global id
	for pi, p := range d.parts {
		for i := range p.src.Len() {
			gid := d.base[pi] + uint32(i)
			if d.lengths[gid] == 0 {
				continue
			}
			if p.val {
				val.members[pi] = append(val.members[pi], uint32(i))
			} else {
				candidates = append(candidates, gid)
			}
		}
	}
	isVal := map[uint32]bool{}
	if n := int(d.spec.ValRatio * float64(len(candidates))); n > 0 && d.spec.ValRatio > 0 {
		// A partial Fisher-Yates shuffle picks n of them.
		sel := append([]uint32{}, candidates...)
		r := rand.New(rand.NewPCG(d.spec.Seed, 0x5a))
		for i := range n {
			j := i + r.IntN(len(sel)-i)
			sel[i], sel[j] = sel[j], sel[i]
			isVal[sel[i]] = true
		}
	}
	for _, gid := range candidates {
		pi := sort.Search(len(d.base), func(k int) bool { return d.base[k] > gid }) - 1
		if isVal[gid] {
			val.members[pi] = append(val.members[pi], gid-d.base[pi])
		} else {
			train.members[pi] = append(train.members[pi], gid-d.base[pi])
		}
	}
	for _, p := range d.parts {
		train.weights = append(train.weights, p.weight)
		val.weights = append(val.weights, 1)
	}
	train.finish()
	val.finish()
	d.Stats.TrainExamples, d.Stats.TrainTokens = train.examples, train.tokens
	d.Stats.ValExamples, d.Stats.ValTokens = val.examples, val.tokens
	if train.examples == 0 {
		return fmt.Errorf("data.train: no examples (%d records read, %d skipped as bad, %d dropped as too long, %d with nothing to train on)", d.Stats.Records, d.Stats.Skipped, d.Stats.Dropped, d.Stats.Untrainable)
	}
	d.Train = train
	if val.examples > 0 {
		d.Val = val
	}
	return nil
}

// Dataset is the training or the validation set of a Data: which records are
// its examples, and each source's weight.
type Dataset struct {
	d       *Data
	members [][]uint32 // per part, the records that are examples, ascending
	weights []float64

	examples    int
	tokens      int64
	fingerprint string
}

func (s *Dataset) finish() {
	h := fnv.New64a()
	var buf [8]byte
	put := func(v uint64) {
		for i := range buf {
			buf[i] = byte(v >> (8 * i))
		}
		h.Write(buf[:])
	}
	for pi, m := range s.members {
		put(uint64(len(m)))
		put(math.Float64bits(s.weights[pi]))
		for _, i := range m {
			n := s.d.lengths[s.d.base[pi]+i]
			s.examples++
			s.tokens += int64(n)
			put(uint64(i)<<32 | uint64(n))
		}
	}
	s.fingerprint = fmt.Sprintf("%016x", h.Sum64())
}

// Examples is the number of distinct examples; Tokens their tokens.
func (s *Dataset) Examples() int { return s.examples }
func (s *Dataset) Tokens() int64 { return s.tokens }

// gid is the global id of record i of part pi.
func (s *Dataset) gid(pi int, i uint32) uint32 { return s.d.base[pi] + i }

// Example reads the n-th example of the set in file order (n < Examples()),
// with the place it comes from ("file:line").
func (s *Dataset) Example(n int) (Example, string, error) {
	for pi, m := range s.members {
		if n < len(m) {
			ex, err := s.d.load(s.gid(pi, m[n]))
			return ex, s.d.parts[pi].src.Where(int(m[n])), err
		}
		n -= len(m)
	}
	return Example{}, "", fmt.Errorf("datasets: example %d of %d", n, s.examples)
}

// load reads and prepares the example with global id gid, checking that it
// still has the length the counting pass measured.
func (d *Data) load(gid uint32) (Example, error) {
	pi := sort.Search(len(d.base), func(k int) bool { return d.base[k] > gid }) - 1
	p := d.parts[pi]
	i := int(gid - d.base[pi])
	r, err := p.src.At(i)
	if err != nil {
		return Example{}, err
	}
	ex, o := d.prepare(p, r)
	if o.err != nil {
		return Example{}, fmt.Errorf("%s: %w", p.src.Where(i), o.err)
	}
	if uint32(o.length) != d.lengths[gid] {
		return Example{}, fmt.Errorf("%s: the record now gives %d tokens, %d when the data were opened; did the file change?", p.src.Where(i), o.length, d.lengths[gid])
	}
	return ex, nil
}

// Length is the token count of an example by global id.
func (d *Data) length(gid uint32) int { return int(d.lengths[gid]) }
