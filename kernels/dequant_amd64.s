//go:build !purego

#include "textflag.h"

// AVX2 dequantizers of ggml's hottest block formats. Each computes what
// internal/quant's Go twin (ggml's dequantize_row_*) does, operation for
// operation (int -> float conversions are exact; one VMULPS, and for Q4_K one
// VSUBPS, rounded as the scalar float32 code rounds), so the results are the
// same bits. The Go wrappers in dequant_amd64.go check the bounds.

// F16SCALE broadcasts the f16 at (SI) as float32 into Y0.
#define F16SCALE \
	MOVWLZX      (SI), AX; \
	VMOVD        AX, X0; \
	VCVTPH2PS    X0, X0; \
	VBROADCASTSS X0, Y0

// Q8EIGHT widens the 8 signed bytes at off(SI), times Y0, to dst(DI).
#define Q8EIGHT(off, dst) \
	VPMOVSXBD off(SI), Y1; \
	VCVTDQ2PS Y1, Y1; \
	VMULPS    Y0, Y1, Y1; \
	VMOVUPS   Y1, dst(DI)

// func dequantQ8_0AVX2(dst *float32, src *byte, blocks int)
// dst[32b + j] = float32(int8(src[34b + 2 + j])) * f16(src[34b:]).
TEXT ·dequantQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ  dst+0(FP), DI
	MOVQ  src+8(FP), SI
	MOVQ  blocks+16(FP), CX
	TESTQ CX, CX
	JZ    q8done

q8loop:
	F16SCALE
	Q8EIGHT(2, 0)
	Q8EIGHT(10, 32)
	Q8EIGHT(18, 64)
	Q8EIGHT(26, 96)
	ADDQ $34, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  q8loop

q8done:
	VZEROUPPER
	RET

// Q4EIGHT widens the 8 bytes at off(SI): (low nibble - 8)·Y0 to lo(DI),
// (high nibble - 8)·Y0 to hi(DI). Y15 holds 0x0f and Y14 holds 8 per lane.
#define Q4EIGHT(off, lo, hi) \
	VPMOVZXBD off(SI), Y1; \
	VPAND     Y15, Y1, Y2; \
	VPSRLD    $4, Y1, Y3; \
	VPSUBD    Y14, Y2, Y2; \
	VPSUBD    Y14, Y3, Y3; \
	VCVTDQ2PS Y2, Y2; \
	VCVTDQ2PS Y3, Y3; \
	VMULPS    Y0, Y2, Y2; \
	VMULPS    Y0, Y3, Y3; \
	VMOVUPS   Y2, lo(DI); \
	VMOVUPS   Y3, hi(DI)

// func dequantQ4_0AVX2(dst *float32, src *byte, blocks int)
// dst[32b + j] = float32(int(q&15) - 8) * d and dst[32b + 16 + j] =
// float32(int(q>>4) - 8) * d, q = src[18b + 2 + j], d = f16(src[18b:]).
TEXT ·dequantQ4_0AVX2(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         blocks+16(FP), CX
	TESTQ        CX, CX
	JZ           q4done
	MOVL         $0x0f, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $8, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14

q4loop:
	F16SCALE
	Q4EIGHT(2, 0, 64)
	Q4EIGHT(10, 32, 96)
	ADDQ $18, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  q4loop

q4done:
	VZEROUPPER
	RET

// Q4KEIGHT widens the 8 bytes at off(SI): low nibble·Y0 - Y1 to lo(DI), high
// nibble·Y2 - Y3 to hi(DI). Y15 holds 0x0f per lane.
#define Q4KEIGHT(off, lo, hi) \
	VPMOVZXBD off(SI), Y4; \
	VPAND     Y15, Y4, Y5; \
	VPSRLD    $4, Y4, Y6; \
	VCVTDQ2PS Y5, Y5; \
	VCVTDQ2PS Y6, Y6; \
	VMULPS    Y0, Y5, Y5; \
	VSUBPS    Y1, Y5, Y5; \
	VMULPS    Y2, Y6, Y6; \
	VSUBPS    Y3, Y6, Y6; \
	VMOVUPS   Y5, lo(DI); \
	VMOVUPS   Y6, hi(DI)

// func dequantQ4_KAVX2(dst *float32, qs *byte, sm *[16]float32)
// For g < 4 and l < 32, with q = qs[32g + l] and (d1, m1, d2, m2) =
// sm[4g:4g+4]: dst[64g + l] = d1·(q&15) - m1, dst[64g + 32 + l] = d2·(q>>4) - m2.
TEXT ·dequantQ4_KAVX2(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         qs+8(FP), SI
	MOVQ         sm+16(FP), BX
	MOVL         $0x0f, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         $4, CX

q4kloop:
	VBROADCASTSS 0(BX), Y0
	VBROADCASTSS 4(BX), Y1
	VBROADCASTSS 8(BX), Y2
	VBROADCASTSS 12(BX), Y3
	Q4KEIGHT(0, 0, 128)
	Q4KEIGHT(8, 32, 160)
	Q4KEIGHT(16, 64, 192)
	Q4KEIGHT(24, 96, 224)
	ADDQ $32, SI
	ADDQ $256, DI
	ADDQ $16, BX
	DECQ CX
	JNZ  q4kloop
	VZEROUPPER
	RET
