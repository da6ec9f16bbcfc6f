#!/usr/bin/env python3
"""Independent numpy oracle for ggml's block formats, written from
ggml-quants.c's published formulas (dequantize_row_*, quantize_row_*_ref),
not from tune's Go code.

    python3 ggml_quants.py dequant TYPE IN OUT   # blocks -> float32 LE
    python3 ggml_quants.py quant   TYPE IN OUT   # float32 LE -> blocks

TYPE is q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k or q6_k. All arithmetic is
float32 with every operation rounded (no fused multiply-add), sums taken in
order one term at a time as the C loops do, and f16 scales rounded to nearest
even (numpy's float32 -> float16, as GGML_FP32_TO_FP16 with F16C).
"""
import sys

import numpy as np

F = np.float32
FLT_MAX = F(np.finfo(np.float32).max)
GROUP_MAX_EPS = F(1e-15)

BLOCK = {  # values, bytes (ggml-common.h)
    "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24),
    "q8_0": (32, 34), "q4_k": (256, 144), "q5_k": (256, 176), "q6_k": (256, 210),
}


def h2f(b):
    """f16 little-endian bytes (..., 2) -> float32."""
    return np.ascontiguousarray(b).view("<f2").astype(F)[..., 0]


def f2h(x):
    return np.array([F(x)], dtype=F).astype("<f2").view(np.uint8)


# ---------------------------------------------------------------- dequantize
def dq_q4_0(b):
    d = h2f(b[:, 0:2])[:, None]
    qs = b[:, 2:18].astype(np.int32)
    q = np.concatenate([(qs & 0xF) - 8, (qs >> 4) - 8], axis=1)
    return q.astype(F) * d


def dq_q4_1(b):
    d, m = h2f(b[:, 0:2])[:, None], h2f(b[:, 2:4])[:, None]
    qs = b[:, 4:20].astype(np.int32)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    return q.astype(F) * d + m


def qh_bits(qh):
    """qh (n, 4) bytes -> the 32 fifth bits as 0/16, value j at column j."""
    u = qh.astype(np.uint32)
    word = u[:, 0] | (u[:, 1] << 8) | (u[:, 2] << 16) | (u[:, 3] << 24)
    j = np.arange(32, dtype=np.uint32)
    return (((word[:, None] >> j) & 1) << 4).astype(np.int32)


def dq_q5_0(b):
    d = h2f(b[:, 0:2])[:, None]
    h = qh_bits(b[:, 2:6])
    qs = b[:, 6:22].astype(np.int32)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1) | h
    return (q - 16).astype(F) * d


def dq_q5_1(b):
    d, m = h2f(b[:, 0:2])[:, None], h2f(b[:, 2:4])[:, None]
    h = qh_bits(b[:, 4:8])
    qs = b[:, 8:24].astype(np.int32)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1) | h
    return q.astype(F) * d + m


def dq_q8_0(b):
    d = h2f(b[:, 0:2])[:, None]
    return b[:, 2:34].view(np.int8).astype(F) * d


def scale_min_k4(s):
    """The 12 scale bytes (n, 12) -> 6-bit scales and mins (n, 8)."""
    s = s.astype(np.int32)
    sc = np.zeros((s.shape[0], 8), np.int32)
    mn = np.zeros((s.shape[0], 8), np.int32)
    for j in range(8):
        if j < 4:
            sc[:, j] = s[:, j] & 63
            mn[:, j] = s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
            mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, mn


def k_subblocks(b, qs, qh):
    """Q4_K / Q5_K: levels (n, 256) in output order from qs (n, 128) and the
    optional fifth bits qh (n, 32)."""
    qs = qs.astype(np.int32)
    out = []
    for g in range(4):
        q = qs[:, 32 * g:32 * g + 32]
        lo, hi = q & 0xF, q >> 4
        if qh is not None:
            h = qh.astype(np.int32)
            lo = lo + np.where(h & (1 << (2 * g)), 16, 0)
            hi = hi + np.where(h & (2 << (2 * g)), 16, 0)
        out += [lo, hi]
    return out


def dq_k(b, qs, qh):
    d, dmin = h2f(b[:, 0:2])[:, None], h2f(b[:, 2:4])[:, None]
    sc, mn = scale_min_k4(b[:, 4:16])
    parts = k_subblocks(b, qs, qh)
    y = []
    for j in range(8):
        dj = d * sc[:, j:j + 1].astype(F)
        mj = dmin * mn[:, j:j + 1].astype(F)
        y.append(dj * parts[j].astype(F) - mj)
    return np.concatenate(y, axis=1)


def dq_q4_k(b):
    return dq_k(b, b[:, 16:144], None)


def dq_q5_k(b):
    return dq_k(b, b[:, 48:176], b[:, 16:48])


def dq_q6_k(b):
    ql = b[:, 0:128].astype(np.int32)
    qh = b[:, 128:192].astype(np.int32)
    sc = b[:, 192:208].view(np.int8).astype(F)
    d = h2f(b[:, 208:210])[:, None]
    y = np.zeros((b.shape[0], 256), F)
    for n in range(2):
        l4, h2, s = ql[:, 64 * n:64 * n + 64], qh[:, 32 * n:32 * n + 32], sc[:, 8 * n:8 * n + 8]
        for l in range(32):
            i = l // 16
            q1 = (l4[:, l] & 0xF) | (((h2[:, l] >> 0) & 3) << 4)
            q2 = (l4[:, l + 32] & 0xF) | (((h2[:, l] >> 2) & 3) << 4)
            q3 = (l4[:, l] >> 4) | (((h2[:, l] >> 4) & 3) << 4)
            q4 = (l4[:, l + 32] >> 4) | (((h2[:, l] >> 6) & 3) << 4)
            base = 128 * n + l
            y[:, base + 0] = d[:, 0] * s[:, i + 0] * (q1 - 32).astype(F)
            y[:, base + 32] = d[:, 0] * s[:, i + 2] * (q2 - 32).astype(F)
            y[:, base + 64] = d[:, 0] * s[:, i + 4] * (q3 - 32).astype(F)
            y[:, base + 96] = d[:, 0] * s[:, i + 6] * (q4 - 32).astype(F)
    return y


# ------------------------------------------------------------------ quantize
def nearest_int(f):
    """ggml's nearest_int: add 1.5*2^23 in float32, read the mantissa."""
    v = np.array([F(f) + F(12582912.0)], dtype=F)
    return int((v.view(np.int32)[0] & 0x007FFFFF) - 0x00400000)


def q_q4_0(x):
    amax, mx = F(0), F(0)
    for v in x:
        if amax < abs(v):
            amax, mx = abs(v), v
    d = mx / F(-8)
    idv = F(1) / d if d != 0 else F(0)
    out = bytearray(f2h(d).tobytes())
    for j in range(16):
        x0, x1 = x[j] * idv, x[16 + j] * idv
        a = min(15, int(np.int8(np.trunc(x0 + F(8.5)))))
        c = min(15, int(np.int8(np.trunc(x1 + F(8.5)))))
        out.append((a | (c << 4)) & 0xFF)
    return out


def minmax(x):
    lo, hi = FLT_MAX, -FLT_MAX
    for v in x:
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return lo, hi


def q_q4_1(x):
    lo, hi = minmax(x)
    d = (hi - lo) / F(15)
    idv = F(1) / d if d != 0 else F(0)
    out = bytearray(f2h(d).tobytes() + f2h(lo).tobytes())
    for j in range(16):
        x0, x1 = (x[j] - lo) * idv, (x[16 + j] - lo) * idv
        a = min(15, int(np.trunc(x0 + F(0.5))))
        c = min(15, int(np.trunc(x1 + F(0.5))))
        out.append(a | (c << 4))
    return out


def q_q5_0(x):
    amax, mx = F(0), F(0)
    for v in x:
        if amax < abs(v):
            amax, mx = abs(v), v
    d = mx / F(-16)
    idv = F(1) / d if d != 0 else F(0)
    qh, qs = 0, bytearray()
    for j in range(16):
        x0, x1 = x[j] * idv, x[16 + j] * idv
        a = min(31, int(np.trunc(x0 + F(16.5))))
        c = min(31, int(np.trunc(x1 + F(16.5))))
        qs.append((a & 0xF) | ((c & 0xF) << 4))
        qh |= ((a & 0x10) >> 4) << j
        qh |= ((c & 0x10) >> 4) << (j + 16)
    return bytearray(f2h(d).tobytes()) + qh.to_bytes(4, "little") + qs


def q_q5_1(x):
    lo, hi = minmax(x)
    d = (hi - lo) / F(31)
    idv = F(1) / d if d != 0 else F(0)
    qh, qs = 0, bytearray()
    for j in range(16):
        x0, x1 = (x[j] - lo) * idv, (x[16 + j] - lo) * idv
        a = int(np.trunc(x0 + F(0.5))) & 0xFF
        c = int(np.trunc(x1 + F(0.5))) & 0xFF
        qs.append((a & 0xF) | ((c & 0xF) << 4))
        qh |= ((a & 0x10) >> 4) << j
        qh |= ((c & 0x10) >> 4) << (j + 16)
    return bytearray(f2h(d).tobytes() + f2h(lo).tobytes()) + qh.to_bytes(4, "little") + qs


def q_q8_0(x):
    amax = F(0)
    for v in x:
        amax = max(amax, abs(v))
    d = amax / F(127)
    idv = F(1) / d if d != 0 else F(0)
    out = bytearray(f2h(d).tobytes())
    for v in x:
        p = v * idv
        r = int(np.floor(np.float64(abs(p)) + 0.5))  # roundf: half away from zero
        r = r if p >= 0 else -r
        out.append(r & 0xFF)
    return out


def make_qkx2_quants(n, nmax, x, weights, rmin, rdelta, nstep):
    mn, mx = x[0], x[0]
    sum_w = weights[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        w = weights[i]
        sum_w = sum_w + w
        sum_x = sum_x + w * x[i]
    if mn > 0:
        mn = F(0)
    L = [0] * n
    if mx == mn:
        return F(0), -mn, L
    iscale = F(nmax) / (mx - mn)
    scale = F(1) / iscale
    best_error = F(0)
    for i in range(n):
        l = nearest_int(iscale * (x[i] - mn))
        L[i] = max(0, min(nmax, l))
        diff = scale * F(L[i]) + mn - x[i]
        diff = diff * diff
        best_error = best_error + weights[i] * diff
    if nstep < 1:
        return scale, -mn, L
    for is_ in range(nstep + 1):
        iscale = (F(rmin) + F(rdelta) * F(is_) + F(nmax)) / (mx - mn)
        sum_l, sum_l2, sum_xl = F(0), F(0), F(0)
        laux = [0] * n
        for i in range(n):
            l = nearest_int(iscale * (x[i] - mn))
            l = max(0, min(nmax, l))
            laux[i] = l
            w = weights[i]
            sum_l = sum_l + w * F(l)
            sum_l2 = sum_l2 + w * F(l) * F(l)
            sum_xl = sum_xl + w * F(l) * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min = F(0)
                this_scale = sum_xl / sum_l2
            cur_error = F(0)
            for i in range(n):
                diff = this_scale * F(laux[i]) + this_min - x[i]
                diff = diff * diff
                cur_error = cur_error + weights[i] * diff
            if cur_error < best_error:
                L = list(laux)
                best_error, scale, mn = cur_error, this_scale, this_min
    return scale, -mn, L


def q_k(x, nmax, rmin, rdelta, nstep):
    """The shared part of quantize_row_q4_K_ref / q5_K_ref: header bytes
    (d, dmin, scales[12]) and the levels L[256]."""
    L = [0] * 256
    scales, mins = [F(0)] * 8, [F(0)] * 8
    max_scale, max_min = F(0), F(0)
    for j in range(8):
        xs = x[32 * j:32 * j + 32]
        sum_x2 = F(0)
        for v in xs:
            sum_x2 = sum_x2 + v * v
        av_x = np.sqrt(sum_x2 / F(32))
        weights = [av_x + abs(v) for v in xs]
        scales[j], mins[j], Lj = make_qkx2_quants(32, nmax, xs, weights, rmin, rdelta, nstep)
        L[32 * j:32 * j + 32] = Lj
        if scales[j] > max_scale:
            max_scale = scales[j]
        if mins[j] > max_min:
            max_min = mins[j]
    inv_scale = F(63) / max_scale if max_scale > 0 else F(0)
    inv_min = F(63) / max_min if max_min > 0 else F(0)
    sc = [0] * 12
    for j in range(8):
        ls = min(63, nearest_int(inv_scale * scales[j]) & 0xFF)
        lm = min(63, nearest_int(inv_min * mins[j]) & 0xFF)
        if j < 4:
            sc[j] = ls
            sc[j + 4] = lm
        else:
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
            sc[j - 4] |= (ls >> 4) << 6
            sc[j] |= (lm >> 4) << 6
    hd, hm = f2h(max_scale / F(63)), f2h(max_min / F(63))
    d, dmin = h2f(hd[None, :])[0], h2f(hm[None, :])[0]
    scs, mns = scale_min_k4(np.array([sc], np.uint8))
    for j in range(8):
        dj = d * F(scs[0, j])
        if dj == 0:
            continue
        dm = dmin * F(mns[0, j])
        for i in range(32):
            l = nearest_int((x[32 * j + i] + dm) / dj)
            L[32 * j + i] = max(0, min(nmax, l))
    return bytearray(hd.tobytes() + hm.tobytes() + bytes(sc)), L


def q_q4_k(x):
    head, L = q_k(x, 15, -1.0, 0.1, 20)
    qs = bytearray()
    for j in range(0, 256, 64):
        for l in range(32):
            qs.append(L[j + l] | (L[j + l + 32] << 4))
    return head + qs


def q_q5_k(x):
    head, L = q_k(x, 31, -0.5, 0.1, 15)
    qh, ql = [0] * 32, bytearray()
    m1, m2 = 1, 2
    for n in range(0, 256, 64):
        for j in range(32):
            l1, l2 = L[n + j], L[n + j + 32]
            if l1 > 15:
                l1 -= 16
                qh[j] |= m1
            if l2 > 15:
                l2 -= 16
                qh[j] |= m2
            ql.append(l1 | (l2 << 4))
        m1 <<= 2
        m2 <<= 2
    return head + bytes(qh) + ql


def make_qx_quants(n, nmax, x):
    """rmse_type 1, no quant weights: w = x*x."""
    amax, mx = F(0), F(0)
    for v in x:
        if abs(v) > amax:
            amax, mx = abs(v), v
    if amax < GROUP_MAX_EPS:
        return F(0), [0] * n
    iscale = F(-nmax) / mx
    L = [0] * n
    sumlx, suml2 = F(0), F(0)
    for i in range(n):
        l = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
        L[i] = l + nmax
        w = x[i] * x[i]
        sumlx = sumlx + w * x[i] * F(l)
        suml2 = suml2 + w * F(l) * F(l)
    scale = sumlx / suml2 if suml2 != 0 else F(0)
    best = scale * sumlx
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        iscale = -(F(nmax) + F(0.1) * F(is_)) / mx
        sumlx, suml2 = F(0), F(0)
        for i in range(n):
            l = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
            w = x[i] * x[i]
            sumlx = sumlx + w * x[i] * F(l)
            suml2 = suml2 + w * F(l) * F(l)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = nmax + max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale, L


def q_q6_k(x):
    L = [0] * 256
    scales = [F(0)] * 16
    max_scale, max_abs = F(0), F(0)
    for ib in range(16):
        s, Lb = make_qx_quants(16, 32, x[16 * ib:16 * ib + 16])
        scales[ib] = s
        L[16 * ib:16 * ib + 16] = Lb
        if abs(s) > max_abs:
            max_abs, max_scale = abs(s), s
    if max_abs < GROUP_MAX_EPS:
        return bytearray(210)
    iscale = F(-128) / max_scale
    hd = f2h(F(1) / iscale)
    sc = [min(127, nearest_int(iscale * scales[ib])) for ib in range(16)]
    d = h2f(hd[None, :])[0]
    for j in range(16):
        dj = d * F(sc[j])
        if dj == 0:
            continue
        for i in range(16):
            l = max(-32, min(31, nearest_int(x[16 * j + i] / dj)))
            L[16 * j + i] = l + 32
    ql, qh = [0] * 128, [0] * 64
    for j in range(0, 256, 128):
        o, h = j // 2, j // 4
        for l in range(32):
            q1, q2, q3, q4 = (L[j + l + k] & 0xF for k in (0, 32, 64, 96))
            ql[o + l] = q1 | (q3 << 4)
            ql[o + l + 32] = q2 | (q4 << 4)
            qh[h + l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6)
    return bytearray(bytes(ql) + bytes(qh) + bytes(s & 0xFF for s in sc)) + bytearray(hd.tobytes())


def main():
    op, typ, src, dst = sys.argv[1:5]
    values, size = BLOCK[typ]
    raw = np.fromfile(src, dtype=np.uint8)
    if op == "dequant":
        blocks = raw.reshape(-1, size)
        y = globals()["dq_" + typ](blocks).astype("<f4")
        y.tofile(dst)
    elif op == "quant":
        x = raw.view("<f4").astype(F)
        fn = globals()["q_" + typ]
        out = bytearray()
        for i in range(0, len(x), values):
            blk = fn([F(v) for v in x[i:i + values]])
            assert len(blk) == size, (typ, len(blk))
            out += blk
        with open(dst, "wb") as f:
            f.write(out)
    else:
        sys.exit("unknown op " + op)


if __name__ == "__main__":
    main()
