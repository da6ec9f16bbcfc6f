package datasets

import "math/rand/v2"

// Counting makes n examples of counting modulo 16 in tokens 1..16 (random
// start, stride 1 or 2, 16 to 48 tokens) after a BOS token 0: a task that
// low-rank adapters on a small random model learn in a minute, so the demo's
// loss visibly falls. vocab must exceed 16.
func Counting(n, vocab int, seed uint64) []Example {
	const alphabet = 16
	r := rand.New(rand.NewPCG(seed, 0xc0))
	out := make([]Example, n)
	for i := range out {
		length := 16 + r.IntN(33)
		s, k := r.IntN(alphabet), 1+r.IntN(2)
		ids := make([]int32, length)
		for j := 1; j < length; j++ {
			ids[j] = int32(1 + (s+(j-1)*k)%alphabet)
		}
		out[i] = Example{IDs: ids}
	}
	return out
}
