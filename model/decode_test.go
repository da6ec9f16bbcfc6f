package model_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tune-dev/tune/internal/testmodels"
	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/lora"
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
			dec := m.NewDecoder(seq, nil, kernels.NewPool(0))
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

// TestDecoderWithAdapter: the decoder's on-the-fly LoRA (and DoRA) gives the
// logits of the graph with the adapter attached, over a prompt and then one
// token (a second stack, which reuses the base's row norms).
func TestDecoderWithAdapter(t *testing.T) {
	for _, dora := range []bool{false, true} {
		spec := testmodels.Variants()["qwen2"]
		_, m := open(t, spec)
		r := rand.New(rand.NewPCG(5, 5))
		a, err := lora.New(lora.Spec{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}, RSLoRA: true, DoRA: dora}, m.Config, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, mod := range a.Modules {
			for i := range mod.B {
				mod.B[i] = r.Float32() - 0.5
			}
		}
		a.InitMagnitudes(m)
		for _, mod := range a.Modules {
			for i := range mod.M {
				mod.M[i] *= 0.8 + 0.4*r.Float32()
			}
		}
		const seq = 7
		ids := make([]int32, seq)
		for i := range ids {
			ids[i] = int32(r.IntN(spec.Vocab))
		}
		f, err := testmodels.RunGraph(m, model.Batch{IDs: ids}, 1, seq, a.Attach(false))
		if err != nil {
			t.Fatal(err)
		}
		want := f.Logits
		_, base := run(t, m, model.Batch{IDs: ids}, 1, seq)
		dec := m.NewDecoder(seq, a, nil)
		got, err := dec.Forward(ids[:seq-1])
		if err != nil {
			t.Fatal(err)
		}
		last, err := dec.Forward(ids[seq-1:])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, last...)
		worst, moved := 0.0, 0.0
		for i := range want {
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
			moved = max(moved, math.Abs(float64(base[i]-want[i])))
		}
		if worst > 1e-4 || moved < 1e-2 {
			t.Fatalf("DoRA %v: decoder with adapter differs by %.3g from the graph (the adapter moves logits by %.3g)", dora, worst, moved)
		}
	}
}
