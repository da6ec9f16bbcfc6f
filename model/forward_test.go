package model_test

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model"
	"github.com/tune-dev/tune/model/builtin"
)

// open writes spec to a temp dir and loads it the way tune does.
func open(t *testing.T, spec builtin.Spec) (string, *model.Model) {
	t.Helper()
	dir := t.TempDir()
	if err := builtin.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	m, md, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	return dir, m
}

// packedBatch is two rows of seq tokens: row 0 one example, row 1 two packed
// examples followed by padding.
func packedBatch(r *rand.Rand, vocab, seq int) (model.Batch, testmodels.RefInput) {
	var b model.Batch
	var in testmodels.RefInput
	segs := [][]int32{make([]int32, seq), make([]int32, seq)}
	for i := range seq {
		segs[0][i] = 1
		switch {
		case i < 4:
			segs[1][i] = 1
		case i < seq-2:
			segs[1][i] = 2
		}
	}
	for _, seg := range segs {
		ids, labels, pos := make([]int32, seq), make([]int32, seq), make([]int32, seq)
		for i := range seq {
			ids[i] = int32(r.IntN(vocab))
			labels[i] = ids[i]
			if i > 0 && seg[i] == seg[i-1] {
				pos[i] = pos[i-1] + 1
			}
			if seg[i] == 0 || i == 0 || seg[i] != seg[i-1] {
				labels[i] = -100 // HF's literal shift: no label across a boundary
			}
		}
		b.IDs, b.Labels, b.Positions, b.Segments = append(b.IDs, ids...), append(b.Labels, labels...), append(b.Positions, pos...), append(b.Segments, seg...)
		in.InputIDs, in.Labels, in.PositionIDs, in.SegmentIDs = append(in.InputIDs, ids), append(in.Labels, labels), append(in.PositionIDs, pos), append(in.SegmentIDs, seg)
	}
	return b, in
}

func run(t *testing.T, m *model.Model, b model.Batch, batch, seq int) (float32, []float32) {
	t.Helper()
	f, err := testmodels.RunGraph(m, b, batch, seq, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.Loss, f.Logits
}

// TestForwardMatchesPyTorch compares logits and loss with reference.py, an
// independent PyTorch implementation, for every architecture variant.
func TestForwardMatchesPyTorch(t *testing.T) {
	variants := testmodels.Variants()
	names := make([]string, 0, len(variants))
	for n := range variants {
		names = append(names, n)
	}
	sort.Strings(names)
	const batch, seq = 2, 9
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			spec := variants[name]
			dir, m := open(t, spec)
			b, in := packedBatch(rand.New(rand.NewPCG(3, uint64(len(name)))), spec.Vocab, seq)
			loss, logits := run(t, m, b, batch, seq)
			refLoss, refLogits, err := testmodels.Reference(dir, in)
			if err != nil {
				t.Fatal(err)
			}
			if len(refLogits) != len(logits) {
				t.Fatalf("reference has %d logits, tune %d", len(refLogits), len(logits))
			}
			worst := 0.0
			for i := range logits {
				if b.Segments[i/spec.Vocab] == 0 {
					continue // padding: meaningless in both
				}
				worst = max(worst, math.Abs(float64(logits[i]-refLogits[i])))
			}
			t.Logf("max |logit diff| %.2e, loss tune %.6f torch %.6f", worst, loss, refLoss)
			if worst > 1e-4 {
				t.Errorf("logits differ from PyTorch by up to %.3g (bound 1e-4)", worst)
			}
			if d := math.Abs(float64(loss-refLoss)) / math.Abs(float64(refLoss)); !(d <= 1e-5) {
				t.Errorf("loss %.7f, PyTorch %.7f", loss, refLoss)
			}
		})
	}
}
