#!/usr/bin/env python3
"""The PyTorch peer of BenchmarkProducts (matmul_bench_test.go).

Reads one request a line on stdin, "PRODUCT M N K THREADS" with PRODUCT fwd
(y = x·Wᵀ, torch.nn.functional.linear) or dx (dx = dy·W, torch.matmul), times
the product in f32 and in bf16 (activations and weights in that dtype, as
PyTorch runs a model of that dtype) on THREADS threads, and answers one JSON
line: {"f32": GFLOP/s, "bf16": GFLOP/s, "n": rows of W used}, each the best of
several runs. A product of more than --max-gflop is timed on the first rows of
W only (n < N), which leaves the GFLOP/s of Debian's reference-BLAS and oneDNN
paths unchanged but keeps a 152k-row vocabulary from taking minutes a run.
"""
import argparse
import json
import sys
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--max-gflop", type=float, default=1.0)
ap.add_argument("--min-seconds", type=float, default=0.5)
args = ap.parse_args()
torch.manual_seed(0)

for line in sys.stdin:
    prod, m, n, k, threads = line.split()
    m, n, k, threads = int(m), int(n), int(k), int(threads)
    torch.set_num_threads(threads)
    used = min(n, max(16, int(args.max_gflop * 1e9 / (2 * m * k))))
    flop = 2 * m * used * k
    out = {"n": used}
    for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        w = torch.randn(used, k).to(dt)
        if prod == "fwd":
            x = torch.randn(m, k).to(dt)
            f = lambda: torch.nn.functional.linear(x, w)
        else:
            dy = torch.randn(m, used).to(dt)
            f = lambda: torch.matmul(dy, w)
        f()  # warm-up: oneDNN builds its kernels on the first call
        best, total, runs = float("inf"), 0.0, 0
        while runs < 3 or total < args.min_seconds:
            t = time.perf_counter()
            f()
            dt_s = time.perf_counter() - t
            best, total, runs = min(best, dt_s), total + dt_s, runs + 1
        out[name] = flop / best / 1e9
    print(json.dumps(out), flush=True)
