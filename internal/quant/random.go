package quant

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/tune-dev/tune/internal/dtype"
)

// RandomBlocks is n blocks of t of random bytes whose f16 scales are finite:
// any block a file may hold, for tests that hold a dequantizer to another.
func RandomBlocks(r *rand.Rand, t dtype.DType, n int) []byte {
	_, size := t.Block()
	b := make([]byte, n*size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	for blk := range n {
		for _, off := range halfOffsets(t) {
			h := uint16(r.Uint32())
			for h&0x7c00 == 0x7c00 { // inf or NaN
				h = uint16(r.Uint32())
			}
			binary.LittleEndian.PutUint16(b[blk*size+off:], h)
		}
	}
	return b
}

// halfOffsets are the byte offsets of the f16 scales in a block of t.
func halfOffsets(t dtype.DType) []int {
	switch t {
	case dtype.Q4_1, dtype.Q5_1, dtype.Q4_K, dtype.Q5_K:
		return []int{0, 2}
	case dtype.Q6_K:
		return []int{208}
	}
	return []int{0}
}
