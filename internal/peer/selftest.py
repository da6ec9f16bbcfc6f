#!/usr/bin/python3
"""Holds the peer's hand-written model (llama.py) to the project's independent
PyTorch reference (internal/testmodels/reference/reference.py), so the peer
times the same computation tune runs.

For a tiny Llama (GQA, head_dim != hidden/heads, untied head) and a tiny
Qwen2 (q/k/v biases, tied head), with LoRA on every linear projection and
random norms, biases and B: the peer's f32 logits must equal the reference's
within 1e-5 relative (Frobenius norm of the difference over the reference's),
and the gradients of sum(logits * G) with respect to every A and B within
1e-4. The bf16 peer (all bf16, as train.py's default; the reference runs on
the same bf16-rounded weights in f32) within 2e-2 for the logits and 1e-1 for
the gradients: bf16 rounding of every activation accounts for about 1e-2 and
5e-2 here (the small gradients of q_proj's A through the softmax are the
noisiest), while a model difference (a bias, RoPE, a norm, the LoRA scale)
shows as O(1).

compare.py's runner returns the JSON object a command prints (after other
lines) with its peak RSS, and a failing command's last stderr line; its
driver, on a tiny shape with a stand-in for tune that prints tune bench's
indented JSON, prints both rows and tune/peer from the runs' figures.

Prints one line per check; exit status 1 on a mismatch.
"""

import contextlib
import io
import json
import os
import re
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "testmodels", "reference"))

import compare  # noqa: E402
import llama  # noqa: E402
import reference  # noqa: E402

CONFIGS = {
    "llama": {
        "model_type": "llama", "hidden_size": 48, "intermediate_size": 80,
        "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
        "head_dim": 12, "vocab_size": 97, "tie_word_embeddings": False,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
    },
    "qwen2": {
        "model_type": "qwen2", "hidden_size": 56, "intermediate_size": 72,
        "num_hidden_layers": 2, "num_attention_heads": 7, "num_key_value_heads": 1,
        "vocab_size": 101, "tie_word_embeddings": True,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    },
}
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
R, ALPHA = 4, 8.0


def build(raw, dtype, seed):
    """The peer model of raw (config.json fields), LoRA r 4 alpha 8 on every
    projection, every frozen tensor random (norms too, so a misplaced norm
    weight shows)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(raw, f)
    try:
        cfg = llama.Config(f.name)
    finally:
        os.unlink(f.name)
    torch.manual_seed(seed)
    m = llama.Model(cfg, dtype, (R, ALPHA, 0.0, dtype), set(llama_projections()))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0.0, 0.2)
            elif "layernorm" in name or name == "norm.weight":
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.5)
            elif not p.requires_grad:
                p.normal_(0.0, 0.1)
    return cfg, m


def llama_projections():
    return ATTN + ("gate_proj", "up_proj", "down_proj")


def hf_name(layer, proj):
    part = "self_attn" if proj in ATTN else "mlp"
    return f"model.layers.{layer}.{part}.{proj}"


def reference_model(raw, m):
    """The reference's model on the peer's frozen weights, as f32."""
    w = {"model.embed_tokens.weight": m.embed, "model.norm.weight": m.norm.weight}
    if not raw["tie_word_embeddings"]:
        w["lm_head.weight"] = m.lm_head
    for i, layer in enumerate(m.layers):
        w[f"model.layers.{i}.input_layernorm.weight"] = layer.input_layernorm.weight
        w[f"model.layers.{i}.post_attention_layernorm.weight"] = layer.post_attention_layernorm.weight
        for p in llama_projections():
            lin = getattr(layer, p)
            w[hf_name(i, p) + ".weight"] = lin.weight
            if lin.bias is not None:
                w[hf_name(i, p) + ".bias"] = lin.bias
    w = {k: v.detach().to(torch.float32).clone() for k, v in w.items()}
    return reference.Model(reference.Config(raw), w)


def run_peer(m, ids, g):
    logits = m.logits(ids)
    (logits.float() * g).sum().backward()
    grads = {}
    for i, layer in enumerate(m.layers):
        for p in llama_projections():
            lin = getattr(layer, p)
            grads[hf_name(i, p) + ".A"] = lin.lora_a.grad.float()
            grads[hf_name(i, p) + ".B"] = lin.lora_b.grad.float()
    return logits.detach().float(), grads


def run_reference(ref, m, ids, g):
    leaves, deltas = {}, {}
    for i, layer in enumerate(m.layers):
        for p in llama_projections():
            lin = getattr(layer, p)
            a = lin.lora_a.detach().float().clone().requires_grad_(True)
            b = lin.lora_b.detach().float().clone().requires_grad_(True)
            leaves[hf_name(i, p) + ".A"], leaves[hf_name(i, p) + ".B"] = a, b
            deltas[hf_name(i, p)] = reference.lora_delta(a, b, reference.lora_scale(R, ALPHA, False))
    logits = reference.forward(ref, ids, deltas=deltas)
    (logits * g).sum().backward()
    return logits.detach(), {k: v.grad for k, v in leaves.items()}


def rel(got, want):
    return float((got - want).norm() / want.norm())


def check(name, got, want, tol):
    err = rel(got, want)
    ok = err <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: relative error {err:.2e} (tolerance {tol:g})")
    return ok


def check_runner():
    # 600 MiB written: above this process's own high-water mark, which the
    # child's ru_maxrss starts from.
    code = ("import json; b = b'x' * (600 << 20); print('log line'); "
            "print(json.dumps({'tokens_per_s': 5.0}))")
    out, rss = compare.run_json([sys.executable, "-c", code])
    ok = out == {"tokens_per_s": 5.0} and 600 << 20 <= rss < 700 << 20
    print(f"{'ok  ' if ok else 'FAIL'} runner: {out}, peak RSS {rss >> 20} MiB (600-700)")
    try:
        compare.run_json([sys.executable, "-c", "import sys; sys.exit('boom')"])
        print("FAIL runner: a failing command raised nothing")
        return False
    except compare.RunError as e:
        ok &= "boom" in str(e)
        print(f"{'ok  ' if 'boom' in str(e) else 'FAIL'} runner failure: {e}")
    return ok


def check_driver():
    fake_tune = ("import json; print('built-in model ready');"
                 "print(json.dumps({'tokens_per_s': 1000.0, 'step_s': 0.032, 'kernels': 'fake'}, indent=2))")
    with tempfile.TemporaryDirectory() as d:
        tune = os.path.join(d, "tune")
        with open(tune, "w") as f:
            f.write(f"#!{sys.executable}\n{fake_tune}\n")
        os.chmod(tune, 0o755)
        cfg = os.path.join(d, "config.json")
        with open(cfg, "w") as f:
            json.dump(CONFIGS["qwen2"], f)
        compare.SHAPES["tiny"] = {"title": "Tiny", "tune": "configs/demo.yaml", "config": cfg,
                                  "batch": 2, "seq": 16, "r": 4, "alpha": 8, "dropout": 0.05,
                                  "targets": ["q_proj", "v_proj"]}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = compare.main(["--shape", "tiny", "--rounds", "2", "--steps", "1", "--tune", tune,
                                 "--peer-dtype", "f32", "--blas", "system", "--json"])
        del compare.SHAPES["tiny"]
    text = out.getvalue()
    lines = text.splitlines()
    try:
        res = json.loads(lines[-1])["tiny"]
        tune_row = next(v for k, v in res.items() if k == "tune (fake kernels)")
        peer_row = next(v for k, v in res.items() if k.startswith("PyTorch 1.13") and " f32 " in k)
        ratio = re.search(r"tune / PyTorch +([0-9.]+)x +([0-9.]+)x", text)
        ok = (code == 0 and tune_row["tokens_per_s"] == [1000.0, 1000.0] and len(peer_row["tokens_per_s"]) == 2
              and abs(float(ratio.group(1)) - 1000.0 / peer_row["best"]) < 0.01 * float(ratio.group(1))
              and peer_row["peak_rss_bytes"] > tune_row["peak_rss_bytes"] > 0)
    except (ValueError, KeyError, StopIteration, AttributeError) as e:
        ok = False
        text += f"\n{e!r}"
    print(f"{'ok  ' if ok else 'FAIL'} driver: tune/peer table" + ("" if ok else ":\n" + text))
    return ok


def main():
    reference.setup_torch()
    ok = check_runner() & check_driver()
    for arch, raw in CONFIGS.items():
        for dtype, tol_logits, tol_grads in ((torch.float32, 1e-5, 1e-4), (torch.bfloat16, 2e-2, 1e-1)):
            _, m = build(raw, dtype, seed=1)
            gen = torch.Generator().manual_seed(2)
            ids = torch.randint(0, raw["vocab_size"], (2, 9), generator=gen)
            g = torch.randn(2, 9, raw["vocab_size"], generator=gen)
            ref = reference_model(raw, m)
            got, got_grads = run_peer(m, ids, g)
            want, want_grads = run_reference(ref, m, ids, g)
            tag = f"{arch} {str(dtype).removeprefix('torch.')}"
            ok &= check(f"{tag} logits", got, want, tol_logits)
            worst = max(want_grads, key=lambda k: rel(got_grads[k], want_grads[k]))
            ok &= check(f"{tag} LoRA grads (worst: {worst})", got_grads[worst], want_grads[worst], tol_grads)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
