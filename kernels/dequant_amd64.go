//go:build !purego

package kernels

import (
	"fmt"

	"github.com/tune-dev/tune/internal/dtype"
	"github.com/tune-dev/tune/internal/quant"
)

// The AVX2 dequantizers (dequant_amd64.s) of the formats Ollama ships most
// (Q4_0, Q4_K) and Q8_0; the others take internal/quant's Go code, which
// they must equal bit for bit.

// dequantQ8_0AVX2 is quant.Dequantize(dtype.Q8_0) of blocks whole blocks.
//
//go:noescape
func dequantQ8_0AVX2(dst *float32, src *byte, blocks int)

// dequantQ4_0AVX2 is quant.Dequantize(dtype.Q4_0) of blocks whole blocks.
//
//go:noescape
func dequantQ4_0AVX2(dst *float32, src *byte, blocks int)

// dequantQ4_KAVX2 widens the 128 nibble bytes of one Q4_K block given its
// eight sub-blocks' scales and mins as (d1, m1, d2, m2) per pair.
//
//go:noescape
func dequantQ4_KAVX2(dst *float32, qs *byte, sm *[16]float32)

// dequantAVX2 is kernelSet.dequant: the assembly for Q8_0, Q4_0 and Q4_K,
// internal/quant for the rest.
func dequantAVX2(t dtype.DType, dst []float32, src []byte) {
	values, size := t.Block()
	blocks := len(src) / max(size, 1)
	if values == 0 || len(dst) != blocks*values || len(src) != blocks*size {
		panic(fmt.Sprintf("kernels: dequantize %s: %d bytes into %d values", t, len(src), len(dst)))
	}
	if blocks == 0 {
		return
	}
	switch t {
	case dtype.Q8_0:
		dequantQ8_0AVX2(&dst[0], &src[0], blocks)
	case dtype.Q4_0:
		dequantQ4_0AVX2(&dst[0], &src[0], blocks)
	case dtype.Q4_K:
		var sm [16]float32
		for b := range blocks {
			quant.ScalesK(&sm, src[b*size:(b+1)*size])
			dequantQ4_KAVX2(&dst[b*values], &src[b*size+16], &sm)
		}
	default:
		quant.Dequantize(t, dst, src)
	}
}
