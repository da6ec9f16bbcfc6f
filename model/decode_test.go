package model_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/model"
)

// TestDecoderMatchesGraph: decoding with the KV cache, first a prompt chunk and
// then one token at a time, gives the logits of the full graph.
func TestDecoderMatchesGraph(t *testing.T) {
	for _, name := range []string{"llama3_rope", "qwen3", "mistral_sliding", "qwen2"} {
		t.Run(name, func(t *testing.T) {
			spec := testmodels.Variants()[name]
			_, m := open(t, spec)
			const seq = 11
			r := rand.New(rand.NewPCG(8, 9))
			ids := make([]int32, seq)
			for i := range ids {
				ids[i] = int32(r.IntN(spec.Vocab))
			}
			_, want := run(t, m, model.Batch{IDs: ids}, 1, seq)
			dec := m.NewDecoder(seq, nil)
			var got []float32
			for _, chunk := range [][]int32{ids[:4], ids[4:5], ids[5:6], ids[6:]} {
				l, err := dec.Forward(chunk)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, l...)
			}
			worst := 0.0
			for i := range want {
				worst = max(worst, math.Abs(float64(got[i]-want[i])))
			}
			if worst > 1e-4 {
				t.Fatalf("decoder logits differ from the graph's by %.3g", worst)
			}
			if _, err := dec.Forward([]int32{1}); err == nil {
				t.Error("a token beyond the decoder's length must be an error")
			}
		})
	}
}
