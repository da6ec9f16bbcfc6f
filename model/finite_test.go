package model

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tune-dev/tune/checkpoints/safetensors"
	"github.com/tune-dev/tune/internal/dtype"
)

// nonFiniteRef decodes every value and asks math: the index of the first
// NaN or infinity, or -1.
func nonFiniteRef(dt dtype.DType, b []byte) int {
	for i := 0; i+dtypeSize(dt) <= len(b); i += dtypeSize(dt) {
		var f float64
		switch dt {
		case dtype.F32:
			f = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
		case dtype.F16:
			f = float64(dtype.F16ToF32(binary.LittleEndian.Uint16(b[i:])))
		default:
			f = float64(dtype.BF16ToF32(binary.LittleEndian.Uint16(b[i:])))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return i
		}
	}
	return -1
}

// TestFirstNonFinite: the eight-bytes-at-a-time scan finds what decoding
// every value finds, for each dtype, at every position and for every kind of
// non-finite value, including the largest finite ones and subnormals that
// must not match.
func TestFirstNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 2))
	specials := map[dtype.DType][]uint32{
		dtype.F32:  {0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff},
		dtype.F16:  {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff},
		dtype.BF16: {0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff},
	}
	finite := map[dtype.DType][]uint32{
		dtype.F32:  {0x7f7fffff, 0xff7fffff, 0x00000001, 0x80000000},
		dtype.F16:  {0x7bff, 0xfbff, 0x0001, 0x8000},
		dtype.BF16: {0x7f7f, 0xff7f, 0x0001, 0x8000},
	}
	for dt, bad := range specials {
		size := dtypeSize(dt)
		for _, n := range []int{1, 3, 4, 7, 8, 9, 33} {
			for pos := range n {
				for _, v := range bad {
					b := make([]byte, n*size)
					for i := range n {
						x := finite[dt][r.IntN(len(finite[dt]))]
						if r.IntN(2) == 0 { // or an ordinary value
							x = uint32(r.Uint32()) & (uint32(1)<<(8*size) - 1)
							if nonFiniteRef(dt, encodeLane(size, x)) >= 0 {
								x = 0
							}
						}
						copy(b[i*size:], encodeLane(size, x))
					}
					if got := firstNonFinite(dt, b); got != -1 {
						t.Fatalf("%s: finite values flagged at byte %d", dt, got)
					}
					copy(b[pos*size:], encodeLane(size, v))
					if got, want := firstNonFinite(dt, b), nonFiniteRef(dt, b); got != want || want != pos*size {
						t.Fatalf("%s n=%d %#x at %d: got byte %d, want %d", dt, n, v, pos, got, want)
					}
				}
			}
		}
	}
}

func encodeLane(size int, x uint32) []byte {
	b := make([]byte, size)
	if size == 4 {
		binary.LittleEndian.PutUint32(b, x)
	} else {
		binary.LittleEndian.PutUint16(b, uint16(x))
	}
	return b
}

type fakeWeights map[string]safetensors.Tensor

func (f fakeWeights) Names() []string { return []string{"a.weight", "b.weight", "c.weight"} }
func (f fakeWeights) Tensor(name string) (safetensors.Tensor, error) {
	return f[name], nil
}

// TestCheckFiniteNamesTheTensor: the error names the tensor and the element.
func TestCheckFiniteNamesTheTensor(t *testing.T) {
	w := fakeWeights{
		"a.weight": {Name: "a.weight", DType: dtype.BF16, Shape: []int{4}, Data: make([]byte, 8)},
		"b.weight": {Name: "b.weight", DType: dtype.F32, Shape: []int{2, 3}, Data: make([]byte, 24)},
		"c.weight": {Name: "c.weight", DType: dtype.I64, Shape: []int{1}, Data: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	if err := CheckFinite(w); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(w["b.weight"].Data[16:], 0x7fc00000)
	err := CheckFinite(w)
	if err == nil || !strings.Contains(err.Error(), "tensor b.weight (F32 [2 3]) holds a NaN or infinity at element 4") {
		t.Fatalf("error %v", err)
	}
}
