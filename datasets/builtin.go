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

// Shuffled returns the examples' order for one epoch: a permutation drawn from
// (seed, epoch), so that a resumed run sees the order the first one saw.
func Shuffled(n int, seed uint64, epoch int) []int {
	r := rand.New(rand.NewPCG(seed, uint64(epoch)+1))
	return r.Perm(n)
}

// Split moves a ratio of the examples, chosen by seed, into a validation set.
func Split(examples []Example, ratio float64, seed uint64) (train, val []Example) {
	nVal := int(ratio * float64(len(examples)))
	if nVal == 0 {
		return examples, nil
	}
	perm := rand.New(rand.NewPCG(seed, 0x5a)).Perm(len(examples))
	isVal := make([]bool, len(examples))
	for _, i := range perm[:nVal] {
		isVal[i] = true
	}
	for i, ex := range examples {
		if isVal[i] {
			val = append(val, ex)
		} else {
			train = append(train, ex)
		}
	}
	return train, val
}

// Rows lays examples into rows of seq tokens: packed several to a row, or one
// example per row with padding.
func Rows(examples []Example, seq int, packing bool) []Row {
	if packing {
		return Pack(examples, seq)
	}
	var rows []Row
	for _, ex := range examples {
		rows = append(rows, Pack([]Example{ex}, seq)...)
	}
	return rows
}
