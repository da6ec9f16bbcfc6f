#!/usr/bin/python3
"""The PyTorch peer of `tune bench`: LoRA training steps of a Llama-family
model, as a user who picked PyTorch instead of tune would run them on a CPU.

The model (llama.py) is built from a Hugging Face config.json (model_type
llama, mistral or qwen2) with random frozen weights. LoRA on the --targets
projections, input dropout --dropout as PEFT's: A kaiming-uniform, B small
random (PEFT starts B at zero; here A's gradient must be real work too).
torch.optim.AdamW (weight decay 0.01) steps the LoRA parameters only. Inputs and targets are random token ids.

--dtype f32: everything f32; the products go to the BLAS library (--blas).
--dtype bf16, --bf16-mode:
  pure      (default) frozen weights AND LoRA params bf16, AdamW state bf16.
            What torchtune does on a CPU: its recipes set the default dtype
            to bf16 before building the model, so the adapters are bf16 too.
  mixed     frozen weights bf16, LoRA params and AdamW state f32, the LoRA
            branch computed in f32 and cast back (PEFT's default,
            autocast_adapter_dtype=True).
  autocast  frozen weights f32 under torch.autocast("cpu", torch.bfloat16):
            products in bf16, the weights cast at every use.
  PyTorch's bf16 matmul goes to oneDNN only where the CPU has AVX-512
  (avx512bw/vl/dq); elsewhere it runs ATen's portable loops.

--blas chooses the libblas.so.3 that torch's f32 products use: system (what
update-alternatives points to), openblas (Debian's libopenblas0-pthread) or
reference (Debian's libblas3), or a path. It is loaded before torch, which
then binds to it by its soname; OPENBLAS_NUM_THREADS is set to --threads.

Timing: --warmup untimed steps, then --steps timed ones. tokens_per_s is
batch*seq over the median step (as tune bench reports it), step_s the median,
peak_rss_bytes this process's ru_maxrss (the whole run's high-water mark,
model construction included), blas the libblas file torch got.

  /usr/bin/python3 train.py --config smollm2-135m.json --dtype bf16 \\
      --batch 2 --seq 256 --r 16 --alpha 32 --targets q_proj,k_proj,v_proj,o_proj \\
      --threads 2 --steps 3 --json

Bad flags or config: one line on stderr, exit status 2.
"""

import argparse
import ctypes
import json
import math
import os
import resource
import statistics
import sys
import time

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LIB = "/usr/lib/x86_64-linux-gnu"
BLAS = {
    "openblas": f"{LIB}/openblas-pthread/libblas.so.3",
    "reference": f"{LIB}/blas/libblas.so.3",
}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a Hugging Face config.json")
    p.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    p.add_argument("--bf16-mode", choices=("pure", "mixed", "autocast"), default="pure")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout")
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj",
                   help="comma-separated projection names, or all-linear")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blas", default="system", help="system, openblas, reference or a libblas.so.3 path")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    for k in ("batch", "seq", "r", "threads", "steps"):
        if getattr(a, k) <= 0:
            p.error(f"--{k}: expected a positive number, got {getattr(a, k)}")
    if not 0 <= a.dropout < 1:
        p.error(f"--dropout: expected a number in [0, 1), got {a.dropout}")
    if a.warmup < 0:
        p.error(f"--warmup: expected 0 or more, got {a.warmup}")
    if a.targets == "all-linear":
        a.targets = set(PROJECTIONS)
    else:
        a.targets = set(s.strip() for s in a.targets.split(",") if s.strip())
        bad = a.targets - set(PROJECTIONS)
        if bad or not a.targets:
            p.error(f"--targets: unknown projection(s) {sorted(bad)}; expected names from "
                    f"{', '.join(PROJECTIONS)}, or all-linear")
    if a.blas != "system":
        path = BLAS.get(a.blas, a.blas)
        if not os.path.exists(path):
            hint = " (apt-get install libopenblas0-pthread)" if a.blas == "openblas" else ""
            p.error(f"--blas: {path} does not exist{hint}")
        a.blas = path
    return a


def load_blas(choice, threads):
    """Load the chosen BLAS before torch so torch binds to it by soname."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    if choice != "system":
        ctypes.CDLL(choice, mode=ctypes.RTLD_GLOBAL)


def mapped_blas():
    """The libblas file this process has mapped (after importing torch)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "libblas" in path or "openblas" in path:
                return os.path.realpath(path)
    return None


def run(a):
    import torch

    import llama

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = llama.Config(a.config)
    mode = a.bf16_mode if a.dtype == "bf16" else "f32"
    wdtype = torch.bfloat16 if mode in ("pure", "mixed") else torch.float32
    ldtype = torch.bfloat16 if mode == "pure" else torch.float32
    model = llama.Model(cfg, wdtype, (a.r, a.alpha, a.dropout, ldtype), a.targets)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)

    def step():
        ids = torch.randint(0, cfg.vocab, (a.batch, a.seq))
        tgt = torch.randint(0, cfg.vocab, (a.batch, a.seq))
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            loss = model(ids, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"loss is {loss.item()}")
        return dt

    for _ in range(a.warmup):
        step()
    times = [step() for _ in range(a.steps)]
    median = statistics.median(times)
    return {
        "tokens_per_s": a.batch * a.seq / median,
        "best_tokens_per_s": a.batch * a.seq / min(times),
        "step_s": median,
        "steps_s": times,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "dtype": a.dtype,
        "bf16_mode": mode if a.dtype == "bf16" else None,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": a.batch,
        "seq": a.seq,
        "blas": mapped_blas(),
        "lora_params": sum(p.numel() for p in params),
    }


def main(argv):
    a = parse(argv)
    load_blas(a.blas, a.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import llama

    try:
        out = run(a)
    except llama.ConfigError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['tokens_per_s']:.1f} tokens/s, {out['step_s']:.3f} s/step, "
              f"peak RSS {out['peak_rss_bytes'] / 2**20:.0f} MiB ({out['bf16_mode'] or 'f32'}, "
              f"torch {out['torch_version']}, {out['threads']} threads, BLAS {out['blas']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
