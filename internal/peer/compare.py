#!/usr/bin/python3
"""`make bench`: tune against its PyTorch peer on the same training shapes.

For each shape, K rounds, interleaved (tune then the peer, the order swapped
every round so a change in machine load falls on both):
  bin/tune bench configs/SHAPE-cpu.yaml model.path=builtin:SHAPE ... --steps N --json
  /usr/bin/python3 train.py --config SHAPE.json ... --steps N --json
then one table per shape: best and median (over the rounds) of each run's
tokens/s (batch x seq over its median step, as tune bench reports it), the
peak RSS of each (the largest of the rounds), and tune/peer.

tune runs the shape's shipped config with model.path=builtin:SHAPE (random
bf16 weights of that architecture, made once in the user's cache) and the
shape's batch, seq_len, LoRA and threads as key=value overrides, grad_accum 1;
--tune-set key=value adds more (e.g. train.compute_dtype=f32). The peer builds
the same architecture from SHAPE.json in this folder. LoRA dropout is on in
both, as in the shipped configs.

Peak RSS is the kernel's ru_maxrss of each process as wait4 returns it: one
measurement for both. On Linux a child's ru_maxrss starts at its parent's
high-water mark (exec keeps it), so the parent of a measured process must stay
small, as this script does (no numpy, no torch here).

The peer (--peer-dtype auto): PyTorch bf16 where the CPU has AVX-512
(avx512bw: PyTorch 1.13 sends bf16 matmuls to oneDNN only there; elsewhere
its bf16 products are portable loops, ~1 GFLOP/s), else f32, whose products
go to the BLAS library: --blas auto takes Debian's OpenBLAS
(libopenblas0-pthread) when it is installed, as a user who cares about speed
has, else the system's libblas.so.3 (Debian's default is the reference
BLAS, about 2.5 GFLOP/s).

--peer-only prints the peer's figures alone (no tune binary needed).
Exit status 2 on a bad command line, 1 when a run fails.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]

# The shapes of issue 8: tune's shipped config and built-in model, the
# peer's config.json (the same architecture), batch x seq, LoRA.
SHAPES = {
    "smollm2-135m": {"title": "SmolLM2-135M", "tune": "configs/smollm2-135m-cpu.yaml",
                     "config": "smollm2-135m.json", "batch": 2, "seq": 256,
                     "r": 16, "alpha": 32, "dropout": 0.05, "targets": QKVO},
    "qwen2.5-0.5b": {"title": "Qwen2.5-0.5B", "tune": "configs/qwen2.5-0.5b-cpu.yaml",
                     "config": "qwen2.5-0.5b.json", "batch": 1, "seq": 512,
                     "r": 16, "alpha": 32, "dropout": 0.05, "targets": QKVO},
}


class RunError(Exception):
    """A benchmark process failed or printed no result."""


def run_json(args):
    """Runs args; returns (its result: the last JSON object on stdout with
    tokens_per_s, its peak RSS in bytes from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            p = subprocess.Popen(args, stdout=out, stderr=err)
        except OSError as e:
            raise RunError(f"{args[0]}: {e.strerror}")
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    name = " ".join(os.path.basename(x) for x in args[:3])
    if p.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RunError(f"{name} ... exited with {p.returncode}: {last[0]}")
    # The last object that starts a line: tune bench --json indents it over
    # several lines, train.py prints one line; either may follow log lines.
    dec = json.JSONDecoder()
    starts = [i for i in range(len(stdout)) if stdout[i] == "{" and (i == 0 or stdout[i - 1] == "\n")]
    for i in reversed(starts):
        try:
            obj, _ = dec.raw_decode(stdout, i)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("tokens_per_s"), (int, float)):
            return obj, ru.ru_maxrss * 1024
    raise RunError(f"{name} ... printed no JSON object with tokens_per_s")


def tune_args(shape, a):
    s = SHAPES[shape]
    return [a.tune, "bench", os.path.join(ROOT, s["tune"]), f"model.path=builtin:{shape}",
            f"train.batch_size={s['batch']}", f"data.seq_len={s['seq']}", "train.grad_accum=1",
            f"lora.r={s['r']}", f"lora.alpha={s['alpha']}", f"lora.dropout={s['dropout']}",
            f"lora.target_modules=[{','.join(s['targets'])}]", f"train.threads={a.threads}",
            *a.tune_set, "--steps", str(a.steps), "--json"]


def peer_args(shape, a):
    s = SHAPES[shape]
    return ["/usr/bin/python3", os.path.join(HERE, "train.py"),
            "--config", os.path.join(HERE, s["config"]), "--dtype", a.peer_dtype,
            "--batch", str(s["batch"]), "--seq", str(s["seq"]), "--r", str(s["r"]),
            "--alpha", str(s["alpha"]), "--dropout", str(s["dropout"]),
            "--targets", ",".join(s["targets"]), "--threads", str(a.threads),
            "--steps", str(a.steps), "--warmup", "1", "--blas", a.blas, "--json"]


def cpuinfo(key):
    """The first value of key in /proc/cpuinfo, or ""."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k.strip() == key:
                    return v.strip()
    except OSError:
        pass
    return ""


def blas_name(path):
    if "openblas" in path:
        return "OpenBLAS"
    if "/blas/libblas" in path:
        return "reference BLAS"
    return os.path.basename(path)


def summary(runs):
    tps = [r["tokens_per_s"] for r, _ in runs]
    return {"best": max(tps), "median": statistics.median(tps),
            "peak_rss_bytes": max(rss for _, rss in runs), "tokens_per_s": tps}


def table(shape, a, results):
    s = SHAPES[shape]
    print(f"\n{s['title']}: batch {s['batch']} x seq {s['seq']}, LoRA r{s['r']} alpha {s['alpha']} "
          f"on {','.join(t.removesuffix('_proj') for t in s['targets'])}, {a.threads} threads, "
          f"{a.rounds} rounds of {a.steps} steps")
    print(f"  {'':40} {'best tok/s':>10} {'median':>10} {'peak RSS':>10}")
    for name, r in results.items():
        print(f"  {name:40} {r['best']:10.1f} {r['median']:10.1f} {r['peak_rss_bytes'] / 1e9:7.2f} GB")
    if len(results) == 2:
        t, p = results.values()
        print(f"  {'tune / PyTorch':40} {t['best'] / p['best']:9.2f}x {t['median'] / p['median']:9.2f}x "
              f"{t['peak_rss_bytes'] / p['peak_rss_bytes']:9.2f}x")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", action="append", choices=sorted(SHAPES),
                   help="a shape to run (repeatable; default all)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peer-dtype", choices=("auto", "bf16", "f32"), default="auto")
    p.add_argument("--blas", default="auto", help="auto, system, openblas, reference or a path")
    p.add_argument("--tune", default=os.path.join(ROOT, "bin", "tune"))
    p.add_argument("--tune-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a tune config override (repeatable)")
    p.add_argument("--peer-only", action="store_true", help="run the PyTorch peer alone")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object too")
    a = p.parse_args(argv)
    for k in ("rounds", "steps", "threads"):
        if getattr(a, k) <= 0:
            p.error(f"--{k}: expected a positive number, got {getattr(a, k)}")
    for kv in a.tune_set:
        if "=" not in kv:
            p.error(f"--tune-set: expected KEY=VALUE, got {kv!r}")
    if a.peer_dtype == "auto":
        a.peer_dtype = "bf16" if "avx512bw" in cpuinfo("flags").split() else "f32"
    if a.blas == "auto":
        a.blas = "openblas" if os.path.exists(OPENBLAS) else "system"
    if not a.peer_only and not os.access(a.tune, os.X_OK):
        p.error(f"--tune: {a.tune} is not an executable (run make build, or pass --peer-only)")
    a.shape = a.shape or list(SHAPES)
    return a


def measure(shape, a):
    """a.rounds interleaved rounds of tune and the peer: {label: summary}."""
    tune_cmd = None if a.peer_only else tune_args(shape, a)
    labels = {"tune": "tune", "peer": "PyTorch"}
    runs = {"tune": [], "peer": []}
    for k in range(a.rounds):
        for who in ("tune", "peer") if k % 2 == 0 else ("peer", "tune"):
            if who == "tune" and tune_cmd is None:
                continue
            out, rss = run_json(tune_cmd if who == "tune" else peer_args(shape, a))
            if who == "tune":
                labels["tune"] = f"tune ({out.get('kernels', '?')} kernels)"
            else:
                blas = "" if out["dtype"] == "bf16" else " " + blas_name(out.get("blas") or "?")
                labels["peer"] = f"PyTorch {out['torch_version']} {out['dtype']}{blas}"
            runs[who].append((out, rss))
    return {labels[w]: summary(runs[w]) for w in ("tune", "peer") if runs[w]}


def main(argv):
    a = parse(argv)
    print(f"CPU: {cpuinfo('model name') or 'unknown'}; load average {os.getloadavg()[0]:.1f}")
    if a.peer_dtype == "f32" and a.blas == "system":
        print("note: the f32 peer uses the system libblas.so.3; Debian's default is the reference "
              "BLAS. apt-get install libopenblas0-pthread for the peer a user would run.")
    everything = {}
    for shape in a.shape:
        try:
            everything[shape] = measure(shape, a)
        except RunError as e:
            print(f"compare.py: {shape}: {e}", file=sys.stderr)
            return 1
        table(shape, a, everything[shape])
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if a.json:
        print(json.dumps(everything))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
