package datasets

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// forward runs a batch of one row through the graph: its logits, and the
// loss summed over the scored tokens with their count.
func forward(t *testing.T, m *model.Model, b model.Batch, seq int) ([]float32, float64, int) {
	t.Helper()
	f, err := testmodels.RunGraph(m, b, 1, seq, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.Logits, float64(f.Loss) * float64(f.Counted), f.Counted
}

// TestPackingIsolation: chat examples of Qwen 3's real tokenizer packed into
// one row give, token for token, the logits they give run alone through a
// generated model of that vocabulary, and the same summed loss: no token
// attends to, or is scored against, another example.
func TestPackingIsolation(t *testing.T) {
	tok, _ := realTokenizer(t, "qwen3")
	dir := t.TempDir()
	var recs []any
	for i := range 3 {
		recs = append(recs, msg{"messages": []msg{
			{"role": "user", "content": fmt.Sprintf("Question %d: what follows %d?", i, i*11)},
			{"role": "assistant", "content": fmt.Sprintf("%d follows.", i*11+1)}}})
	}
	path := writeJSONL(t, filepath.Join(dir, "chat.jsonl"), recs...)
	const seq = 96
	d, err := Open(Spec{Train: []Source{{Path: path, Format: FormatChat}}, Tokenizer: tok, MaxLen: seq})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := d.Train.Loader(LoaderOptions{Seq: seq, Packing: true})
	if err != nil {
		t.Fatal(err)
	}
	row, ok, err := l.Next()
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if row.Segments[seq-1] != 0 || row.Segments[0] != 1 {
		t.Fatalf("row segments %v", row.Segments)
	}

	spec := testmodels.Tiny("qwen3")
	spec.HeadDim, spec.Vocab = 16, tok.VocabSize()
	mdir := t.TempDir()
	if err := builtin.Write(mdir, spec); err != nil {
		t.Fatal(err)
	}
	m, md, err := model.Open(mdir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	V := m.Config.Vocab

	packed, packedLoss, packedN := forward(t, m, model.Batch{IDs: row.IDs, Labels: row.Labels, Positions: row.Positions, Segments: row.Segments}, seq)
	// Nothing predicts across a boundary: the last token of a segment has no target.
	targets := model.ShiftTargets(row.Labels, row.Segments, seq)
	segments := 0
	var aloneLoss float64
	aloneN := 0
	for start := 0; start < seq && row.Segments[start] != 0; {
		end := start
		for end < seq && row.Segments[end] == row.Segments[start] {
			end++
		}
		segments++
		if targets[end-1] != kernels.IgnoreIndex {
			t.Errorf("segment %d: its last token is scored against %d", segments, targets[end-1])
		}
		n := end - start
		ex, _, err := d.Train.Example(segments - 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(ex.IDs) != n {
			t.Fatalf("segment %d: %d tokens, example %d", segments, n, len(ex.IDs))
		}
		alone, loss, cnt := forward(t, m, model.Batch{IDs: ex.IDs, Labels: ex.Labels}, n)
		aloneLoss += loss
		aloneN += cnt
		worst := 0.0
		for i := range n {
			for v := range V {
				worst = max(worst, math.Abs(float64(packed[(start+i)*V+v]-alone[i*V+v])))
			}
		}
		if worst > 1e-4 {
			t.Errorf("segment %d: logits differ from the example alone by %g", segments, worst)
		}
		start = end
	}
	if segments < 2 {
		t.Fatalf("the row packs %d examples", segments)
	}
	if packedN != aloneN || math.Abs(packedLoss-aloneLoss) > 1e-3*math.Max(1, aloneLoss) {
		t.Errorf("summed loss %.6f over %d tokens packed, %.6f over %d alone", packedLoss, packedN, aloneLoss, aloneN)
	}
}
