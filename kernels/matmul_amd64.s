//go:build !purego

#include "textflag.h"

// AVX2 + FMA kernels of the packed matrix product (matmul.go). Each computes
// what its Go twin in matmul_ref.go does; the Go wrappers in matmul_amd64.go
// check the bounds.

// ZERO12 clears the twelve accumulators Y0..Y11.
#define ZERO12 \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y6, Y6, Y6; \
	VXORPS Y7, Y7, Y7; \
	VXORPS Y8, Y8, Y8; \
	VXORPS Y9, Y9, Y9; \
	VXORPS Y10, Y10, Y10; \
	VXORPS Y11, Y11, Y11

// PREFETCHROW fetches the 16 floats at R8 (two lines when unaligned) and
// moves R8 on by R9, to the next row of C.
#define PREFETCHROW \
	PREFETCHT0 (R8); \
	PREFETCHT0 60(R8); \
	ADDQ       R9, R8

// One step of the reduction for the 6×16 tile: two vectors of the B panel,
// six broadcasts of A (rows at AX, AX+BX, AX+2BX, DX, DX+BX, DX+2BX), twelve
// FMAs into Y0..Y11.
#define STEP6x16 \
	VMOVUPS      (DI), Y12; \
	VMOVUPS      32(DI), Y13; \
	VBROADCASTSS (AX), Y14; \
	VFMADD231PS  Y12, Y14, Y0; \
	VFMADD231PS  Y13, Y14, Y1; \
	VBROADCASTSS (AX)(BX*1), Y15; \
	VFMADD231PS  Y12, Y15, Y2; \
	VFMADD231PS  Y13, Y15, Y3; \
	VBROADCASTSS (AX)(BX*2), Y14; \
	VFMADD231PS  Y12, Y14, Y4; \
	VFMADD231PS  Y13, Y14, Y5; \
	VBROADCASTSS (DX), Y15; \
	VFMADD231PS  Y12, Y15, Y6; \
	VFMADD231PS  Y13, Y15, Y7; \
	VBROADCASTSS (DX)(BX*1), Y14; \
	VFMADD231PS  Y12, Y14, Y8; \
	VFMADD231PS  Y13, Y14, Y9; \
	VBROADCASTSS (DX)(BX*2), Y15; \
	VFMADD231PS  Y12, Y15, Y10; \
	VFMADD231PS  Y13, Y15, Y11; \
	ADDQ         SI, AX; \
	ADDQ         SI, DX; \
	ADDQ         $64, DI

// Row r of C (R8) = alpha (Y14) · r, or alpha · r + C.
#define SETROW(r0, r1) \
	VMULPS  Y14, r0, r0; \
	VMULPS  Y14, r1, r1; \
	VMOVUPS r0, (R8); \
	VMOVUPS r1, 32(R8); \
	ADDQ    R9, R8

#define ACCROW(r0, r1) \
	VFMADD213PS (R8), Y14, r0; \
	VFMADD213PS 32(R8), Y14, r1; \
	VMOVUPS     r0, (R8); \
	VMOVUPS     r1, 32(R8); \
	ADDQ        R9, R8

// func mul6x16AVX2(kc int, a []float32, rsA, ksA int, b []float32, c []float32, ldc int, alpha float32, acc bool)
TEXT ·mul6x16AVX2(SB), NOSPLIT, $0-109
	MOVQ kc+0(FP), CX
	MOVQ a_base+8(FP), AX
	MOVQ rsA+32(FP), BX
	SHLQ $2, BX
	MOVQ ksA+40(FP), SI
	SHLQ $2, SI
	MOVQ b_base+48(FP), DI
	LEAQ (AX)(BX*2), DX
	ADDQ BX, DX

	// Fetch C's tile while the reduction runs: its rows are far apart and
	// often out of cache, and waiting for them at the end would stall.
	MOVQ       c_base+72(FP), R8
	MOVQ       ldc+96(FP), R9
	SHLQ       $2, R9
	PREFETCHROW
	PREFETCHROW
	PREFETCHROW
	PREFETCHROW
	PREFETCHROW
	PREFETCHROW

	ZERO12

	MOVQ CX, R10
	SHRQ $2, R10
	JZ   tail

loop4:
	STEP6x16
	STEP6x16
	STEP6x16
	STEP6x16
	DECQ R10
	JNZ  loop4

tail:
	ANDQ $3, CX
	JZ   store

loop1:
	STEP6x16
	DECQ CX
	JNZ  loop1

store:
	VBROADCASTSS alpha+104(FP), Y14
	MOVQ         c_base+72(FP), R8
	MOVQ         ldc+96(FP), R9
	SHLQ         $2, R9
	MOVBLZX      acc+108(FP), R10
	TESTQ        R10, R10
	JNZ          accumulate
	SETROW(Y0, Y1)
	SETROW(Y2, Y3)
	SETROW(Y4, Y5)
	SETROW(Y6, Y7)
	SETROW(Y8, Y9)
	SETROW(Y10, Y11)
	VZEROUPPER
	RET

accumulate:
	ACCROW(Y0, Y1)
	ACCROW(Y2, Y3)
	ACCROW(Y4, Y5)
	ACCROW(Y6, Y7)
	ACCROW(Y8, Y9)
	ACCROW(Y10, Y11)
	VZEROUPPER
	RET

// TRANSPOSE8 transposes the 8×8 block in Y0..Y7 (row i in Yi) and stores
// column l at off + 64·l (DI): the eight rows' values for one step l of the
// reduction, in a panel whose steps are 16 values (64 bytes) apart.
#define TRANSPOSE8(off) \
	VUNPCKLPS  Y1, Y0, Y8; \
	VUNPCKHPS  Y1, Y0, Y9; \
	VUNPCKLPS  Y3, Y2, Y10; \
	VUNPCKHPS  Y3, Y2, Y11; \
	VUNPCKLPS  Y5, Y4, Y12; \
	VUNPCKHPS  Y5, Y4, Y13; \
	VUNPCKLPS  Y7, Y6, Y14; \
	VUNPCKHPS  Y7, Y6, Y15; \
	VSHUFPS    $0x44, Y10, Y8, Y0; \
	VSHUFPS    $0xEE, Y10, Y8, Y1; \
	VSHUFPS    $0x44, Y11, Y9, Y2; \
	VSHUFPS    $0xEE, Y11, Y9, Y3; \
	VSHUFPS    $0x44, Y14, Y12, Y4; \
	VSHUFPS    $0xEE, Y14, Y12, Y5; \
	VSHUFPS    $0x44, Y15, Y13, Y6; \
	VSHUFPS    $0xEE, Y15, Y13, Y7; \
	VPERM2F128 $0x20, Y4, Y0, Y8; \
	VPERM2F128 $0x20, Y5, Y1, Y9; \
	VPERM2F128 $0x20, Y6, Y2, Y10; \
	VPERM2F128 $0x20, Y7, Y3, Y11; \
	VPERM2F128 $0x31, Y4, Y0, Y12; \
	VPERM2F128 $0x31, Y5, Y1, Y13; \
	VPERM2F128 $0x31, Y6, Y2, Y14; \
	VPERM2F128 $0x31, Y7, Y3, Y15; \
	VMOVUPS    Y8, (off+0)(DI); \
	VMOVUPS    Y9, (off+64)(DI); \
	VMOVUPS    Y10, (off+128)(DI); \
	VMOVUPS    Y11, (off+192)(DI); \
	VMOVUPS    Y12, (off+256)(DI); \
	VMOVUPS    Y13, (off+320)(DI); \
	VMOVUPS    Y14, (off+384)(DI); \
	VMOVUPS    Y15, (off+448)(DI)

// Loads of eight values of one row, widened to float32: f32 as is, bf16 by a
// 16-bit shift into the high half, f16 by VCVTPH2PS.
#define LDF32(addr, y) VMOVUPS addr, y
#define LDBF16(addr, y) VPMOVZXWD addr, y; VPSLLD $16, y, y
#define LDF16(addr, y) VCVTPH2PS addr, y

// LOAD8ROWS loads eight rows starting at R10 (stride R8, R9 = 3·R8) into
// Y0..Y7 and moves R10 to the row after them.
#define LOAD8ROWS(LD) \
	LD((R10), Y0); \
	LD((R10)(R8*1), Y1); \
	LD((R10)(R8*2), Y2); \
	LD((R10)(R9*1), Y3); \
	LEAQ (R10)(R8*4), R10; \
	LD((R10), Y4); \
	LD((R10)(R8*1), Y5); \
	LD((R10)(R8*2), Y6); \
	LD((R10)(R9*1), Y7); \
	LEAQ (R10)(R8*4), R10

// PACKT is packT16AVX2 for one element type once DI = dst, SI = src, R8 =
// ld and CX = kc8 are loaded; size is the element size in bytes; loop and
// done name its labels.
#define PACKT(LD, size, loop, done) \
	SHLQ $(size/2), R8; \
	LEAQ (R8)(R8*2), R9; \
	SHRQ $3, CX; \
	JZ   done; \
loop: \
	MOVQ SI, R10; \
	LOAD8ROWS(LD); \
	TRANSPOSE8(0); \
	LOAD8ROWS(LD); \
	TRANSPOSE8(32); \
	ADDQ $(8*size), SI; \
	ADDQ $512, DI; \
	DECQ CX; \
	JNZ  loop; \
done: \
	VZEROUPPER; \
	RET

// The element kinds of the weights (elemF32… in matmul_amd64.go) select the
// load that widens them: BYKIND runs BODY for the kind in R11.
#define ELEMBF16 1
#define ELEMF16 2

#define BYKIND(BODY) \
	CMPQ R11, $ELEMBF16; \
	JEQ  bf16; \
	CMPQ R11, $ELEMF16; \
	JEQ  f16; \
	BODY(LDF32, 4, loopf32, endf32); \
bf16: \
	BODY(LDBF16, 2, loopbf16, endbf16); \
f16: \
	BODY(LDF16, 2, loopf16, endf16)

// func packT16AVX2(kind int, dst []float32, src unsafe.Pointer, ld, kc8 int)
TEXT ·packT16AVX2(SB), NOSPLIT, $0-56
	MOVQ kind+0(FP), R11
	MOVQ dst_base+8(FP), DI
	MOVQ src+32(FP), SI
	MOVQ ld+40(FP), R8
	MOVQ kc8+48(FP), CX
	BYKIND(PACKT)

// PACKN is packN16AVX2 for one element type: sixteen consecutive values of
// each of kc rows, widened, one after another; registers as for PACKT.
#define PACKN(LD, size, loop, done) \
	SHLQ $(size/2), R8; \
	TESTQ CX, CX; \
	JZ   done; \
loop: \
	LD((SI), Y0); \
	LD((8*size)(SI), Y1); \
	VMOVUPS Y0, (DI); \
	VMOVUPS Y1, 32(DI); \
	ADDQ R8, SI; \
	ADDQ $64, DI; \
	DECQ CX; \
	JNZ  loop; \
done: \
	VZEROUPPER; \
	RET

// func packN16AVX2(kind int, dst []float32, src unsafe.Pointer, ld, kc int)
TEXT ·packN16AVX2(SB), NOSPLIT, $0-56
	MOVQ kind+0(FP), R11
	MOVQ dst_base+8(FP), DI
	MOVQ src+32(FP), SI
	MOVQ ld+40(FP), R8
	MOVQ kc+48(FP), CX
	BYKIND(PACKN)

// DOTSTEP is one step of eight values of the 3×4 dot-product tile: the
// three rows of x at AX, BX, CX; four rows of W at DI, DI+R8, DI+2R8, DI+R9,
// widened by LD; Y(4i+j) accumulates x row i times W row j.
#define DOTSTEP(LD, size) \
	VMOVUPS     (AX), Y12; \
	VMOVUPS     (BX), Y13; \
	VMOVUPS     (CX), Y14; \
	LD((DI), Y15); \
	VFMADD231PS Y15, Y12, Y0; \
	VFMADD231PS Y15, Y13, Y4; \
	VFMADD231PS Y15, Y14, Y8; \
	LD((DI)(R8*1), Y15); \
	VFMADD231PS Y15, Y12, Y1; \
	VFMADD231PS Y15, Y13, Y5; \
	VFMADD231PS Y15, Y14, Y9; \
	LD((DI)(R8*2), Y15); \
	VFMADD231PS Y15, Y12, Y2; \
	VFMADD231PS Y15, Y13, Y6; \
	VFMADD231PS Y15, Y14, Y10; \
	LD((DI)(R9*1), Y15); \
	VFMADD231PS Y15, Y12, Y3; \
	VFMADD231PS Y15, Y13, Y7; \
	VFMADD231PS Y15, Y14, Y11; \
	ADDQ        $32, AX; \
	ADDQ        $32, BX; \
	ADDQ        $32, CX; \
	ADDQ        $(8*size), DI

// HSUM4 stores the sums of the lanes of a, b, c, d as four floats at off(R10);
// ax is a as an XMM register.
#define HSUM4(a, b, c, d, ax, off) \
	VHADDPS      b, a, a; \
	VHADDPS      d, c, c; \
	VHADDPS      c, a, a; \
	VEXTRACTF128 $1, a, X15; \
	VADDPS       X15, ax, ax; \
	VMOVUPS      ax, off(R10)

// DOT3x4 is dot3x4AVX2 for one element type: registers loaded, SI the count
// of steps; loop and sums name its labels.
#define DOT3x4(LD, size, loop, sums) \
	SHLQ   $(size/2), R8; \
	LEAQ   (R8)(R8*2), R9; \
	ZERO12; \
	SHRQ   $3, SI; \
	JZ     sums; \
loop: \
	DOTSTEP(LD, size); \
	DECQ   SI; \
	JNZ    loop; \
sums: \
	HSUM4(Y0, Y1, Y2, Y3, X0, 0); \
	HSUM4(Y4, Y5, Y6, Y7, X4, 16); \
	HSUM4(Y8, Y9, Y10, Y11, X8, 32); \
	VZEROUPPER; \
	RET

// func dot3x4AVX2(kind, k8 int, x0, x1, x2 []float32, w unsafe.Pointer, ldw int, out *[12]float32)
TEXT ·dot3x4AVX2(SB), NOSPLIT, $0-112
	MOVQ kind+0(FP), R11
	MOVQ k8+8(FP), SI
	MOVQ x0_base+16(FP), AX
	MOVQ x1_base+40(FP), BX
	MOVQ x2_base+64(FP), CX
	MOVQ w+88(FP), DI
	MOVQ ldw+96(FP), R8
	MOVQ out+104(FP), R10
	BYKIND(DOT3x4)
