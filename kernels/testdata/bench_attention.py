#!/usr/bin/env python3
"""The peer of BenchmarkFlashAttentionVsPyTorch: causal grouped-query attention
as a PyTorch 1.13 model runs it (no fused kernel before 2.0): k and v repeated
to every query head, q·kᵀ·scale plus a causal mask, softmax, ·v; forward, and
backward through autograd. 2 threads, bf16 and f32.

Arguments: B T H KV d. Prints {"f32": {"fwd": GFLOP/s, "bwd": GFLOP/s},
"bf16": {...}}, counting the useful work of a causal mask as the Go benchmark
does: 4·d per visible (query, key) pair forward, 10·d backward."""
import json, sys, time
import torch

B, T, H, KV, d = (int(a) for a in sys.argv[1:6])
torch.set_num_threads(2)
pairs = B * H * T * (T + 1) // 2
mask = torch.full((T, T), float("-inf")).triu(1)


def attention(q, k, v):
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    s = q @ k.transpose(-1, -2) * d ** -0.5 + mask.to(q.dtype)
    return torch.softmax(s, dim=-1) @ v


def timed(f, it):
    f()
    t = time.perf_counter()
    for _ in range(it):
        f()
    return (time.perf_counter() - t) / it


out = {}
for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
    q = torch.randn(B, H, T, d).to(dt).requires_grad_()
    k = torch.randn(B, KV, T, d).to(dt).requires_grad_()
    v = torch.randn(B, KV, T, d).to(dt).requires_grad_()
    dout = torch.randn(B, H, T, d).to(dt)
    with torch.no_grad():
        fwd = timed(lambda: attention(q, k, v), 3)

    def step():
        attention(q, k, v).backward(dout)

    both = timed(step, 3)
    out[name] = {"fwd": 4 * d * pairs / fwd / 1e9, "bwd": 10 * d * pairs / max(both - fwd, 1e-9) / 1e9}
print(json.dumps(out))
