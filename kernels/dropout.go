package kernels

import "hash/fnv"

// DropoutSalt is the identity of a dropout site, a hash of its name, so that
// two sites with the same seed draw different masks.
func DropoutSalt(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// Dropout writes x into y with each value zeroed with probability prob and the
// rest scaled by 1/(1−prob); y may be x. Whether value i is dropped is a hash of
// (salt, seed, i), so a run repeats exactly, a resumed run draws the masks the
// uninterrupted one would, and the backward pass applies the same mask to the
// gradient by calling Dropout again with the same arguments.
func Dropout(p *Pool, y, x []float32, prob float64, salt uint64, seed int32) {
	threshold := uint64(prob * (1 << 53))
	keep := float32(1 / (1 - prob))
	base := splitmix(salt ^ uint64(uint32(seed))<<32)
	p.For(len(x), 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if splitmix(base+uint64(i))>>11 < threshold {
				y[i] = 0
			} else {
				y[i] = x[i] * keep
			}
		}
	})
}

// splitmix is SplitMix64's finaliser: a cheap, well-mixed hash of a counter.
func splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
