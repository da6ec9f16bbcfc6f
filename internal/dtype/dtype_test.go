package dtype

import (
	"math"
	"testing"
)

func TestHalfConversions(t *testing.T) {
	cases := []struct {
		f    float32
		bf16 uint16
		f16  uint16
	}{
		{1, 0x3f80, 0x3c00},
		{-2, 0xc000, 0xc000},
		{65504, 0x4780, 0x7bff}, // bf16 rounds 0x477fe000 up
		{1e-8, 0x322c, 0x0000},
		{float32(math.Inf(1)), 0x7f80, 0x7c00},
		{5.9604645e-08, 0x3380, 0x0001}, // smallest f16 subnormal
		{1.00390625, 0x3f80, 0x3c04},    // bf16 ties to even (down)
		{1.01171875, 0x3f82, 0x3c0c},    // bf16 ties to even (up)
		{65520, 0x4780, 0x7c00},         // f16 overflows to inf
	}
	for _, c := range cases {
		if got := F32ToBF16(c.f); got != c.bf16 {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", c.f, got, c.bf16)
		}
		if got := F32ToF16(c.f); got != c.f16 {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.f, got, c.f16)
		}
	}
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		if f != f { // NaN
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("f16 %#04x -> %g -> %#04x", h, f, back)
		}
	}
}

func TestDTypeSizes(t *testing.T) {
	tests := []struct {
		d          DType
		size, bits int
	}{
		{F32, 4, 32}, {F16, 2, 16}, {BF16, 2, 16}, {F64, 8, 64}, {I64, 8, 64}, {I32, 4, 32},
		{I16, 2, 16}, {I8, 1, 8}, {U8, 1, 8}, {BOOL, 1, 8}, {U16, 2, 16}, {U32, 4, 32}, {U64, 8, 64},
		{F8_E4M3, 1, 8}, {F8_E5M2, 1, 8}, {F8_E8M0, 1, 8}, {C64, 8, 64},
		{F4, 0, 4}, {F6_E2M3, 0, 6}, {"F33", 0, 0}, {"", 0, 0},
	}
	for _, tt := range tests {
		if got := tt.d.Size(); got != tt.size {
			t.Errorf("%s.Size() = %d, want %d", tt.d, got, tt.size)
		}
		if got := tt.d.Bits(); got != tt.bits {
			t.Errorf("%s.Bits() = %d, want %d", tt.d, got, tt.bits)
		}
	}
}
