package datasets

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pretokFile writes n pre-tokenized records whose ids encode (tag, record):
// input_ids [tag, i%97+1, ... ] of length lengths(i).
func pretokFile(t *testing.T, dir, name string, tag, n int, length func(i int) int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		ids := []string{fmt.Sprint(tag)}
		for j := 1; j < length(i); j++ {
			ids = append(ids, fmt.Sprint(100+i%800))
		}
		fmt.Fprintf(&b, "{\"input_ids\": [%s]}\n", strings.Join(ids, ", "))
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTruncation: right keeps the start, left the end, drop removes the
// example, split cuts it into windows of max_len tokens, each its own segment
// with positions from 0; all counted.
func TestTruncation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.jsonl")
	os.WriteFile(path, []byte("{\"input_ids\": [1,2,3,4,5,6,7,8,9,10,11]}\n{\"input_ids\": [21,22,23], \"labels\": [-100,22,23]}\n{\"input_ids\": [31,32,33,34,35,36], \"labels\": [-100,-100,-100,-100,-100,36]}\n"), 0o644)
	open := func(policy string) (*Data, []Example) {
		d, err := Open(Spec{Train: []Source{{Path: path, Format: FormatPretokenized}}, MaxLen: 4, Truncation: policy})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		var out []Example
		for i := range d.Train.Examples() {
			ex, _, _ := d.Train.Example(i)
			out = append(out, ex)
		}
		return d, out
	}
	d, ex := open(TruncRight)
	// The third loses its only trained token: nothing to train on.
	if len(ex) != 2 || !slices.Equal(ex[0].IDs, []int32{1, 2, 3, 4}) || d.Stats.Truncated != 1 || d.Stats.Untrainable != 1 {
		t.Errorf("right: %v %+v", ex, d.Stats)
	}
	d, ex = open(TruncLeft)
	if len(ex) != 3 || !slices.Equal(ex[0].IDs, []int32{8, 9, 10, 11}) || !slices.Equal(ex[2].Labels, []int32{-100, -100, -100, 36}) || d.Stats.Truncated != 2 {
		t.Errorf("left: %v %+v", ex, d.Stats)
	}
	d, ex = open(TruncDrop)
	if len(ex) != 1 || d.Stats.Dropped != 2 || d.Stats.TrainTokens != 3 {
		t.Errorf("drop: %v %+v", ex, d.Stats)
	}
	d, _ = open(TruncSplit)
	l, err := d.Train.Loader(LoaderOptions{Seq: 8, Packing: true})
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row
	for {
		r, ok, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		rows = append(rows, r)
	}
	want := []Row{
		{IDs: []int32{1, 2, 3, 4, 5, 6, 7, 8}, Positions: []int32{0, 1, 2, 3, 0, 1, 2, 3}, Segments: []int32{1, 1, 1, 1, 2, 2, 2, 2}},
		{IDs: []int32{9, 10, 11, 21, 22, 23, 0, 0}, Positions: []int32{0, 1, 2, 0, 1, 2, 0, 0}, Segments: []int32{1, 1, 1, 2, 2, 2, 0, 0}},
		{IDs: []int32{31, 32, 33, 34, 35, 36, 0, 0}, Positions: []int32{0, 1, 2, 3, 0, 1, 0, 0}, Segments: []int32{1, 1, 1, 1, 2, 2, 0, 0}},
	}
	if len(rows) != 3 || d.Stats.Truncated != 2 || l.RowsInEpoch(0) != 3 {
		t.Fatalf("split: %d rows %+v", len(rows), d.Stats)
	}
	for i, w := range want {
		if !slices.Equal(rows[i].IDs, w.IDs) || !slices.Equal(rows[i].Segments, w.Segments) || !slices.Equal(rows[i].Positions, w.Positions) {
			t.Errorf("split row %d: %+v, want %+v", i, rows[i], w)
		}
	}
	if !slices.Equal(rows[1].Labels[3:6], []int32{-100, 22, 23}) {
		t.Errorf("labels kept: %v", rows[1].Labels)
	}
}

// TestMixingWeights: sources of 200 and 600 examples with weights 2.5 and 0.5
// give epochs of 500 + 300 examples: each whole copy, and fractional subsets
// that differ between epochs; proportions as weights times sizes.
func TestMixingWeights(t *testing.T) {
	dir := t.TempDir()
	a := pretokFile(t, dir, "a.jsonl", 1, 200, func(int) int { return 3 })
	b := pretokFile(t, dir, "b.jsonl", 2, 600, func(int) int { return 3 })
	d, err := Open(Spec{Train: []Source{{Path: a, Format: FormatPretokenized, Weight: 2.5}, {Path: b, Format: FormatPretokenized, Weight: 0.5}}, MaxLen: 8, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	opt := LoaderOptions{Seq: 8, Packing: false, Shuffle: true, Seed: 7}
	var subsets [2][]uint32
	for epoch := range 2 {
		order := d.Train.order(epoch, opt)
		count := map[int]int{}
		perRecord := map[uint32]int{}
		for _, gid := range order {
			count[int(gid)/200]++ // a: gids 0..199; b: 200..799
			perRecord[gid]++
		}
		if len(order) != 800 || count[0] != 500 || count[1]+count[2]+count[3] != 300 {
			t.Fatalf("epoch %d: %d examples, %v", epoch, len(order), count)
		}
		for gid, n := range perRecord {
			switch {
			case gid < 200 && n != 2 && n != 3, gid >= 200 && n != 1:
				t.Fatalf("epoch %d: record %d seen %d times", epoch, gid, n)
			}
			if gid >= 200 {
				subsets[epoch] = append(subsets[epoch], gid)
			}
		}
		slices.Sort(subsets[epoch])
		// Shuffled: not in file order, and mixed (source b within the first 100).
		if slices.IsSorted(order) || !slices.ContainsFunc(order[:100], func(g uint32) bool { return g >= 200 }) {
			t.Errorf("epoch %d is not shuffled", epoch)
		}
		l, _ := d.Train.Loader(opt)
		if n := l.RowsInEpoch(epoch); n != 800 {
			t.Errorf("epoch %d: %d rows of one example", epoch, n)
		}
	}
	if slices.Equal(subsets[0], subsets[1]) {
		t.Error("the fractional subset is the same in both epochs")
	}
	// The same seed gives the same order; another seed another.
	if !slices.Equal(d.Train.order(1, opt), d.Train.order(1, opt)) {
		t.Error("order not deterministic")
	}
	other := opt
	other.Seed = 8
	if slices.Equal(d.Train.order(1, opt), d.Train.order(1, other)) {
		t.Error("order does not depend on the seed")
	}
	// Observed through rows: the share of source a over 3 epochs.
	l, _ := d.Train.Loader(opt)
	fromA, total := 0, 0
	for range 3 {
		for {
			r, ok, err := l.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			total++
			if r.IDs[0] == 1 {
				fromA++
			}
		}
		l.NextEpoch()
	}
	if share := float64(fromA) / float64(total); math.Abs(share-500.0/800) > 1e-9 {
		t.Errorf("share of source a %.4f, want %.4f", share, 500.0/800)
	}
}

// TestCursorResume: a loader stopped anywhere (mid-epoch, between windows of
// a split example, at an epoch's end) and a new one opened on the same files
// and moved to its cursor yield the rows the first would have, across epochs.
func TestCursorResume(t *testing.T) {
	dir := t.TempDir()
	a := pretokFile(t, dir, "a.jsonl", 1, 37, func(i int) int { return 2 + (i*7)%23 })
	b := pretokFile(t, dir, "b.jsonl", 2, 11, func(i int) int { return 5 + (i*13)%40 })
	for _, packing := range []bool{true, false} {
		spec := Spec{Train: []Source{{Path: a, Format: FormatPretokenized, Weight: 1.5}, {Path: b, Format: FormatPretokenized}}, MaxLen: 16, Truncation: TruncSplit, Seed: 3, ValRatio: 0.1}
		opt := LoaderOptions{Seq: 32, Packing: packing, Shuffle: true, Seed: 3}
		d, err := Open(spec)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := d.Train.Loader(opt)
		type step struct {
			row    Row
			cursor Cursor
		}
		var whole []step
		for range 3 * l.RowsInEpoch(0) {
			r, ok, err := l.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				l.NextEpoch()
				continue
			}
			whole = append(whole, step{r, l.Cursor()})
		}
		d.Close()
		for _, cut := range []int{0, 1, 5, 17, len(whole) / 2, len(whole) - 2} {
			d2, err := Open(spec)
			if err != nil {
				t.Fatal(err)
			}
			l2, _ := d2.Train.Loader(opt)
			if err := l2.Seek(whole[cut].cursor); err != nil {
				t.Fatal(err)
			}
			for i := cut + 1; i < len(whole); i++ {
				if l2.Done() {
					l2.NextEpoch()
				}
				r, ok, err := l2.Next()
				if err != nil || !ok {
					t.Fatalf("packing %t, cut %d: row %d: %v %v", packing, cut, i, ok, err)
				}
				w := whole[i].row
				if !slices.Equal(r.IDs, w.IDs) || !slices.Equal(r.Labels, w.Labels) || !slices.Equal(r.Positions, w.Positions) || !slices.Equal(r.Segments, w.Segments) {
					t.Fatalf("packing %t, resumed after row %d: row %d differs", packing, cut, i)
				}
			}
			d2.Close()
		}
		// Other data: refused.
		spec.Seed = 4
		d3, _ := Open(spec)
		l3, _ := d3.Train.Loader(opt)
		if err := l3.Seek(whole[3].cursor); err == nil || !strings.Contains(err.Error(), "differ from the checkpoint's") {
			t.Errorf("seek with other data: %v", err)
		}
		d3.Close()
	}
}

// TestValidationSplit: a seeded ratio of the examples, disjoint from the
// training set, the same every time; or a file.
func TestValidationSplit(t *testing.T) {
	dir := t.TempDir()
	a := pretokFile(t, dir, "a.jsonl", 1, 300, func(i int) int { return 2 + i%5 })
	v := pretokFile(t, dir, "v.jsonl", 3, 17, func(int) int { return 4 })
	ids := func(s *Dataset) []string {
		var out []string
		for i := range s.Examples() {
			_, where, _ := s.Example(i)
			out = append(out, where)
		}
		return out
	}
	open := func(spec Spec) *Data {
		d, err := Open(spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	spec := Spec{Train: []Source{{Path: a, Format: FormatPretokenized}}, MaxLen: 8, ValRatio: 0.1, Seed: 5}
	d1, d2 := open(spec), open(spec)
	spec.Seed = 6
	d3 := open(spec)
	if d1.Val.Examples() != 30 || d1.Train.Examples() != 270 || d1.Stats.ValExamples != 30 {
		t.Fatalf("split %d/%d", d1.Train.Examples(), d1.Val.Examples())
	}
	if !slices.Equal(ids(d1.Val), ids(d2.Val)) || slices.Equal(ids(d1.Val), ids(d3.Val)) {
		t.Error("the split does not follow the seed")
	}
	for _, w := range ids(d1.Val) {
		if slices.Contains(ids(d1.Train), w) {
			t.Fatalf("%s in both sets", w)
		}
	}
	d4 := open(Spec{Train: []Source{{Path: a, Format: FormatPretokenized}}, Val: []Source{{Path: v, Format: FormatPretokenized}}, MaxLen: 8})
	if d4.Val.Examples() != 17 || d4.Train.Examples() != 300 {
		t.Errorf("val file: %d/%d", d4.Train.Examples(), d4.Val.Examples())
	}
	if d5 := open(Spec{Train: []Source{{Path: a, Format: FormatPretokenized}}, MaxLen: 8}); d5.Val != nil {
		t.Error("a validation set without asking")
	}
}

// TestBuiltinCounting: builtin:counting is a source like the others.
func TestBuiltinCounting(t *testing.T) {
	d, err := Open(Spec{Train: []Source{{Path: "builtin:counting", Format: FormatPretokenized}}, BuiltinExamples: 40, Vocab: 128, MaxLen: 64, Seed: 42, ValRatio: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := Counting(40, 128, 42)
	if d.Train.Examples()+d.Val.Examples() != 40 {
		t.Fatalf("%d + %d examples", d.Train.Examples(), d.Val.Examples())
	}
	for i := range d.Train.Examples() {
		ex, where, err := d.Train.Example(i)
		var n int
		if _, serr := fmt.Sscanf(where, "builtin:counting: example %d", &n); err != nil || serr != nil || !slices.Equal(ex.IDs, want[n-1].IDs) {
			t.Fatalf("example %d (%s): %v %v", i, where, err, serr)
		}
	}
}
