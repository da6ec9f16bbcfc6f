package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSample(t *testing.T) {
	logits := []float32{1, 3, 2, 3, -1}
	if got := Sample(logits, 0, 1, nil); got != 1 {
		t.Errorf("greedy picked %d, want 1 (first of the tied maxima)", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	// top-p small enough keeps only the most probable token (1, on ties the first).
	for range 50 {
		if got := Sample(logits, 1, 0.1, r); got != 1 {
			t.Fatalf("top-p 0.1 picked %d", got)
		}
	}
	// At temperature 1 the draws follow softmax(logits).
	const n = 200000
	counts := make([]int, len(logits))
	for range n {
		counts[Sample(logits, 1, 1, r)]++
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v))
	}
	for i, v := range logits {
		p := math.Exp(float64(v)) / z
		got := float64(counts[i]) / n
		if math.Abs(got-p) > 5*math.Sqrt(p*(1-p)/n)+1e-4 {
			t.Errorf("token %d drawn %.4f of the time, softmax gives %.4f", i, got, p)
		}
	}
	a := rand.New(rand.NewPCG(7, 7))
	b := rand.New(rand.NewPCG(7, 7))
	for range 100 {
		if Sample(logits, 0.8, 0.9, a) != Sample(logits, 0.8, 0.9, b) {
			t.Fatal("the same seed must give the same draws")
		}
	}
}
