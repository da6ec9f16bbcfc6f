package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// SampleOptions choose how Generate picks tokens.
type SampleOptions struct {
	MaxTokens   int
	Temperature float64 // 0: greedy (argmax)
	TopP        float64 // nucleus sampling; 0 or 1: off
	Seed        uint64
	Stop        []int32 // tokens that end generation (not emitted)
}

// Generate feeds prompt to the decoder, then samples up to MaxTokens tokens,
// calling emit with each. It stops at a Stop token, at the decoder's length,
// or when emit returns false.
func Generate(d *Decoder, prompt []int32, o SampleOptions, emit func(id int32) bool) error {
	if len(prompt) == 0 {
		prompt = []int32{0}
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6e))
	logits, err := d.Forward(prompt)
	if err != nil {
		return err
	}
	vocab := d.m.Config.Vocab
	last := logits[len(logits)-vocab:]
	for range o.MaxTokens {
		id := Sample(last, o.Temperature, o.TopP, rng)
		if slices.Contains(o.Stop, id) || !emit(id) || d.Len() >= d.maxLen {
			return nil
		}
		if last, err = d.Forward([]int32{id}); err != nil {
			return err
		}
	}
	return nil
}

// Sample picks a token from logits: the argmax at temperature 0 (the lowest
// id on ties), else a draw from softmax(logits/temperature) restricted to the
// smallest set of top tokens whose probability reaches topP.
func Sample(logits []float32, temperature, topP float64, rng *rand.Rand) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	if temperature <= 0 {
		return int32(best)
	}
	probs := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		probs[i] = math.Exp((float64(v) - float64(logits[best])) / temperature)
		sum += probs[i]
	}
	order := make([]int, len(logits))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return probs[order[a]] > probs[order[b]] })
	keep := len(order)
	if topP > 0 && topP < 1 {
		var cum float64
		for i, id := range order {
			cum += probs[id] / sum
			if cum >= topP {
				keep = i + 1
				break
			}
		}
	}
	var kept float64
	for _, id := range order[:keep] {
		kept += probs[id]
	}
	u := rng.Float64() * kept
	for _, id := range order[:keep] {
		if u -= probs[id]; u <= 0 {
			return int32(id)
		}
	}
	return int32(order[keep-1])
}
