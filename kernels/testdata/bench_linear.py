#!/usr/bin/env python3
"""The peer of BenchmarkLinearVsPyTorch: torch.nn.functional.linear on the
shapes given, 2 threads, f32 and bf16 (activations and weights in that dtype,
as PyTorch runs a bf16 model). Prints {"f32": GFLOP/s, "bf16": GFLOP/s}."""
import json, sys, time
import torch

m, n, k = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(2)
out = {}
for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
    x, w = torch.randn(m, k).to(dt), torch.randn(n, k).to(dt)
    for _ in range(3):
        torch.nn.functional.linear(x, w)
    it, t = 20, time.perf_counter()
    for _ in range(it):
        torch.nn.functional.linear(x, w)
    out[name] = 2 * m * n * k * it / (time.perf_counter() - t) / 1e9
print(json.dumps(out))
