#!/usr/bin/env python3
"""Self-test for reference.py (run by hand, not by CI):

    /usr/bin/python3 internal/testmodels/reference/selftest.py

Builds tiny random models of every supported architecture in Python (own
safetensors writer), and checks properties that a wrong implementation
would break:
  - safetensors reader: F32 / F16 / BF16 round trip, sharded index == single file
  - an independent naive float64 numpy forward (per-head loops, explicit
    pairwise RoPE rotation) agrees with reference.forward
  - (a) causality, (b) segment packing == separate runs,
  - (c) GQA == MHA with repeated k/v weights,
  - (d) llama3 rope scaling with factor=low=high=1 is the identity; linear
    factor 2 at positions 2p == unscaled at p; RoPE is shift-invariant,
  - (e) hand-computed RMSNorm, RoPE and llama3 frequencies with plain math,
  - loss vs a manual computation, tie_word_embeddings, bf16 checkpoints,
  - the CLI output file and its one-line errors.
Prints "N passed, 0 failed" and exits 0 when all pass.
"""

import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference as ref  # noqa: E402

ARCHS = ("llama", "mistral", "qwen2", "qwen3")
RESULTS = {"passed": 0, "failed": 0}


# --------------------------------------------------------------------------
# writer and tiny models
# --------------------------------------------------------------------------

def f32_to_bf16_bits(a):
    """float32 array -> uint16 bf16 bit patterns, round-to-nearest-even."""
    a = np.asarray(a, dtype=np.float32)
    bits = np.ascontiguousarray(a).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).reshape(a.shape)


def bf16_round(a):
    """float32 array rounded to the nearest bf16 value, as float32."""
    bits = f32_to_bf16_bits(a)
    return (np.ascontiguousarray(bits).astype(np.uint32) << 16).view(np.float32).reshape(bits.shape)


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: {name: array-like}; all stored with `dtype` (F32, F16, BF16)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name], dtype=np.float32)
        if dtype == "F32":
            b = a.astype("<f4").tobytes()
        elif dtype == "F16":
            b = a.astype("<f2").tobytes()
        elif dtype == "BF16":
            b = f32_to_bf16_bits(a).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_config(model_type, **over):
    """A tiny config dict for `model_type`."""
    cfg = {
        "model_type": model_type, "vocab_size": 37, "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False,
    }
    if model_type == "qwen3":
        cfg["head_dim"] = 6  # explicit, != hidden/heads
    if model_type == "llama":
        cfg["attention_bias"] = True
        cfg["mlp_bias"] = True
    if model_type == "mistral":
        cfg["sliding_window"] = 4096
    cfg.update(over)
    return cfg


def expected_biases(cfg):
    """(qkv_bias, o_bias, mlp_bias, qk_norm) per transformers' modeling files,
    stated here independently of reference.Config."""
    mt, ab = cfg["model_type"], bool(cfg.get("attention_bias", False))
    return {"llama": (ab, ab, bool(cfg.get("mlp_bias", False)), False),
            "mistral": (False, False, False, False),
            "qwen2": (True, False, False, False),
            "qwen3": (ab, ab, False, True)}[mt]


def make_weights(cfg, seed=0):
    """Random float32 numpy weights for the config dict `cfg`."""
    rng = np.random.default_rng(seed)
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    Hq = cfg["num_attention_heads"]
    Hk = cfg.get("num_key_value_heads") or Hq
    hd = cfg.get("head_dim") or D // Hq
    qkv_bias, o_bias, mlp_bias, qk_norm = expected_biases(cfg)
    tie = cfg.get("tie_word_embeddings", False)

    def r(*shape, s=0.4):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    def n(*shape):
        return (1.0 + rng.standard_normal(shape) * 0.2).astype(np.float32)

    w = {"model.embed_tokens.weight": r(V, D, s=1.0), "model.norm.weight": n(D)}
    if not tie:
        w["lm_head.weight"] = r(V, D)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = n(D)
        w[p + "post_attention_layernorm.weight"] = n(D)
        for nm, o in (("q", Hq * hd), ("k", Hk * hd), ("v", Hk * hd)):
            w[p + f"self_attn.{nm}_proj.weight"] = r(o, D)
            if qkv_bias:
                w[p + f"self_attn.{nm}_proj.bias"] = r(o)
        w[p + "self_attn.o_proj.weight"] = r(D, Hq * hd)
        if o_bias:
            w[p + "self_attn.o_proj.bias"] = r(D)
        if qk_norm:
            w[p + "self_attn.q_norm.weight"] = n(hd)
            w[p + "self_attn.k_norm.weight"] = n(hd)
        w[p + "mlp.gate_proj.weight"] = r(F, D)
        w[p + "mlp.up_proj.weight"] = r(F, D)
        w[p + "mlp.down_proj.weight"] = r(D, F)
        if mlp_bias:
            w[p + "mlp.gate_proj.bias"] = r(F)
            w[p + "mlp.up_proj.bias"] = r(F)
            w[p + "mlp.down_proj.bias"] = r(D)
    return w


def save_model(d, cfg, weights, dtype="F32", shards=1):
    """Write config.json + model.safetensors (or `shards` shards + index)."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), weights, dtype)
        return d
    names = sorted(weights)
    wm = {}
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        write_safetensors(os.path.join(d, fn), {k: weights[k] for k in part}, dtype)
        wm.update({k: fn for k in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)
    return d


def build(cfg, weights=None, seed=0):
    """In-memory ref.Model from a config dict (weights random if None)."""
    w = make_weights(cfg, seed) if weights is None else weights
    return ref.Model(ref.Config(cfg), {k: torch.from_numpy(np.array(v)) for k, v in w.items()})


def run(model, ids, pos=None, seg=None):
    """forward with python lists -> logits tensor."""
    t = lambda x: None if x is None else torch.tensor(x, dtype=torch.int64)  # noqa: E731
    with torch.no_grad():
        return ref.forward(model, t(ids), t(pos), t(seg))


# --------------------------------------------------------------------------
# independent naive numpy forward (float64)
# --------------------------------------------------------------------------

def naive_forward(cfg, w, ids, pos):
    """Per-token, per-head float64 implementation. ids, pos: lists (T,).
    Returns logits (T, V). Single sequence, plain causal attention."""
    W = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    Hq = cfg["num_attention_heads"]
    Hk = cfg.get("num_key_value_heads") or Hq
    T, hd = len(ids), cfg.get("head_dim") or cfg["hidden_size"] // Hq
    eps = cfg["rms_norm_eps"]
    theta = cfg["rope_theta"]
    scaling = cfg.get("rope_scaling")
    qkv_bias, o_bias, mlp_bias, qk_norm = expected_biases(cfg)

    def norm(x, g):
        return g * x / math.sqrt(float(np.mean(x * x)) + eps)

    def lin(x, name, bias):
        y = W[name + ".weight"] @ x
        return y + W[name + ".bias"] if bias else y

    half = hd // 2
    inv = [1.0 / theta ** (2 * j / hd) for j in range(half)]
    if scaling:
        assert scaling["type"] == "linear"
        inv = [f / scaling["factor"] for f in inv]

    def rope(x, p):  # rotate pairs (j, j + half) by angle p * inv[j]
        y = x.copy()
        for j in range(half):
            a = p * inv[j]
            y[j] = x[j] * math.cos(a) - x[j + half] * math.sin(a)
            y[j + half] = x[j + half] * math.cos(a) + x[j] * math.sin(a)
        return y

    h = [W["model.embed_tokens.weight"][t].copy() for t in ids]
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        a = [norm(x, W[p + "input_layernorm.weight"]) for x in h]
        qs, ks, vs = [], [], []
        for t in range(T):
            q = lin(a[t], p + "self_attn.q_proj", qkv_bias).reshape(Hq, hd)
            k = lin(a[t], p + "self_attn.k_proj", qkv_bias).reshape(Hk, hd)
            v = lin(a[t], p + "self_attn.v_proj", qkv_bias).reshape(Hk, hd)
            if qk_norm:
                q = np.stack([norm(x, W[p + "self_attn.q_norm.weight"]) for x in q])
                k = np.stack([norm(x, W[p + "self_attn.k_norm.weight"]) for x in k])
            qs.append(np.stack([rope(x, pos[t]) for x in q]))
            ks.append(np.stack([rope(x, pos[t]) for x in k]))
            vs.append(v)
        for t in range(T):
            heads = []
            for hq in range(Hq):
                kv = hq // (Hq // Hk)
                s = [float(qs[t][hq] @ ks[j][kv]) / math.sqrt(hd) for j in range(t + 1)]
                m = max(s)
                e = [math.exp(x - m) for x in s]
                z = sum(e)
                heads.append(sum(e[j] / z * vs[j][kv] for j in range(t + 1)))
            h[t] = h[t] + lin(np.concatenate(heads), p + "self_attn.o_proj", o_bias)
        for t in range(T):
            m = norm(h[t], W[p + "post_attention_layernorm.weight"])
            g = lin(m, p + "mlp.gate_proj", mlp_bias)
            u = lin(m, p + "mlp.up_proj", mlp_bias)
            act = g / (1.0 + np.exp(-g)) * u
            h[t] = h[t] + lin(act, p + "mlp.down_proj", mlp_bias)
    head = W["model.embed_tokens.weight" if cfg.get("tie_word_embeddings", False) else "lm_head.weight"]
    return np.stack([head @ norm(x, W["model.norm.weight"]) for x in h])


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

def check(name, cond, detail=""):
    if cond:
        RESULTS["passed"] += 1
        print(f"ok   {name}")
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name} {detail}")


def maxdiff(a, b):
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())


def test_reader(tmp):
    rng = np.random.default_rng(1)
    t = {"a": rng.standard_normal((3, 5)).astype(np.float32), "b": np.float32([1.5, -2.25]),
         "s": np.float32(3.0)}
    for dt, exp in (("F32", lambda x: x), ("F16", lambda x: x.astype(np.float16).astype(np.float32)),
                    ("BF16", bf16_round)):
        p = os.path.join(tmp, f"t_{dt}.safetensors")
        write_safetensors(p, t, dt)
        got = ref.read_safetensors(p)
        ok = all(np.array_equal(got[k].numpy(), exp(np.asarray(v))) and got[k].dtype == torch.float32
                 for k, v in t.items())
        check(f"reader {dt} round trip", ok)
    check("bf16 rounding is not truncation-only",
          bf16_round(np.float32([1.0 + 2 ** -8 + 2 ** -10]))[0] == np.float32(1.0 + 2 ** -7))
    cfg = make_config("qwen2")
    w = make_weights(cfg)
    a = ref.load_model(save_model(os.path.join(tmp, "single"), cfg, w))
    b = ref.load_model(save_model(os.path.join(tmp, "sharded"), cfg, w, shards=3))
    ids = [[1, 5, 9, 2]]
    check("sharded index == single file", maxdiff(run(a, ids), run(b, ids)) == 0.0)


def test_naive(arch):
    cfg = make_config(arch)
    w = make_weights(cfg, seed=3)
    ids, pos = [3, 17, 0, 36, 8, 8, 21], [0, 1, 2, 3, 4, 5, 6]
    got = run(build(cfg, w), [ids])[0]
    exp = naive_forward(cfg, w, ids, pos)
    d = maxdiff(got, exp)
    check(f"{arch}: matches naive float64 forward", d < 1e-4, f"maxdiff {d}")
    if arch == "qwen3":
        cfg3 = make_config(arch, attention_bias=True)
        w3 = make_weights(cfg3, seed=4)
        d = maxdiff(run(build(cfg3, w3), [ids])[0], naive_forward(cfg3, w3, ids, pos))
        check("qwen3 attention_bias: matches naive", d < 1e-4, f"maxdiff {d}")
    if arch == "llama":
        cfg2 = make_config(arch, rope_scaling={"type": "linear", "factor": 3.0}, head_dim=8,
                           num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
        w2 = make_weights(cfg2, seed=4)
        got = run(build(cfg2, w2), [ids], [[5, 6, 7, 8, 9, 10, 11]])[0]
        exp = naive_forward(cfg2, w2, ids, [5, 6, 7, 8, 9, 10, 11])
        d = maxdiff(got, exp)
        check("llama linear rope + explicit head_dim + tied: matches naive", d < 1e-4, f"maxdiff {d}")


def test_causal(arch):
    m = build(make_config(arch), seed=5)
    a = run(m, [[1, 2, 3, 4, 5, 6]])
    b = run(m, [[1, 2, 3, 4, 5, 30]])
    check(f"{arch}: (a) causal", maxdiff(a[:, :5], b[:, :5]) == 0.0 and maxdiff(a[:, 5], b[:, 5]) > 1e-3)


def test_packing(arch):
    m = build(make_config(arch), seed=6)
    A, B, C = [4, 8, 15, 16, 23], [1, 2, 3, 9], [30, 31, 32]
    la, lb, lc = run(m, [A])[0], run(m, [B])[0], run(m, [C])[0]
    ids = [A + B + [0, 0], C + A + [7, 7, 7]]
    pos = [list(range(5)) + list(range(4)) + [0, 0], list(range(3)) + list(range(5)) + [0, 1, 2]]
    seg = [[1] * 5 + [2] * 4 + [0] * 2, [5] * 3 + [9] * 5 + [0] * 3]
    out = run(m, ids, pos, seg)
    d = max(maxdiff(out[0, :5], la), maxdiff(out[0, 5:9], lb), maxdiff(out[1, :3], lc),
            maxdiff(out[1, 3:8], la))
    check(f"{arch}: (b) packed segments == separate runs", d < 1e-5, f"maxdiff {d}")
    check(f"{arch}: (b) padding logits finite", bool(torch.isfinite(out).all()))


def test_gqa(arch):
    cfg = make_config(arch, num_attention_heads=4, num_key_value_heads=2)
    w = make_weights(cfg, seed=7)
    c = ref.Config(cfg)
    hd, g = c.head_dim, 2
    w2 = dict(w)
    for i in range(c.num_hidden_layers):
        for nm in ("k", "v"):
            for kind in ("weight", "bias"):
                key = f"model.layers.{i}.self_attn.{nm}_proj.{kind}"
                if key in w:
                    x = w[key].reshape(2, hd, -1)  # (Hk, hd, D or 1)
                    w2[key] = np.repeat(x, g, axis=0).reshape((4 * hd,) + w[key].shape[1:])
    cfg2 = dict(cfg, num_key_value_heads=4)
    ids = [[3, 1, 4, 1, 5, 9, 2, 6]]
    d = maxdiff(run(build(cfg, w), ids), run(build(cfg2, w2), ids))
    check(f"{arch}: (c) GQA == MHA with repeated k/v", d < 1e-5, f"maxdiff {d}")


def test_rope_scaling():
    ids = [[3, 1, 4, 1, 5, 9, 2, 6]]
    cfg = make_config("llama", rope_theta=500000.0)
    w = make_weights(cfg, seed=8)
    base = run(build(cfg, w), ids)
    ident = dict(cfg, rope_scaling={"rope_type": "llama3", "factor": 1.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 1.0, "original_max_position_embeddings": 8192})
    inv0 = ref.rope_inv_freq(ref.Config(cfg))
    inv1 = ref.rope_inv_freq(ref.Config(ident))
    check("(d) llama3 factor=low=high=1 inv_freq is identity", torch.equal(inv0, inv1))
    check("(d) llama3 factor=low=high=1 logits identical", maxdiff(base, run(build(ident, w), ids)) == 0.0)
    lin = dict(cfg, rope_scaling={"rope_type": "linear", "factor": 2.0})
    d = maxdiff(base, run(build(lin, w), ids, [[2 * p for p in range(8)]]))
    check("(d) linear factor 2 at positions 2p == unscaled at p", d < 1e-5, f"maxdiff {d}")
    d = maxdiff(base, run(build(cfg, w), ids, [[p + 11 for p in range(8)]]))
    check("(d) RoPE is invariant to a shift of all positions", d < 1e-4, f"maxdiff {d}")
    # rope_parameters (newer transformers) == rope_theta + rope_scaling
    rp = dict(cfg)
    rp.pop("rope_theta")
    rp["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0}
    check("rope_parameters form == rope_scaling form",
          torch.equal(ref.rope_inv_freq(ref.Config(rp)), ref.rope_inv_freq(ref.Config(lin))))


def test_hand():
    # RMSNorm of [1, 2, 3, 4]: mean square 7.5
    x = [1.0, 2.0, 3.0, 4.0]
    g = [0.5, 1.0, 1.5, 2.0]
    eps = 1e-6
    exp = [g[i] * x[i] / math.sqrt(7.5 + eps) for i in range(4)]
    got = ref.rms_norm(torch.tensor([x]), torch.tensor(g), eps)[0].tolist()
    check("(e) RMSNorm by hand", max(abs(a - b) for a, b in zip(got, exp)) < 1e-6, f"{got} {exp}")

    # RoPE, head_dim 4, theta 100: inv_freq = [1, 100^-0.5 = 0.1]; pairs (0,2), (1,3).
    cfg = ref.Config(make_config("llama", rope_theta=100.0, head_dim=4))
    inv = ref.rope_inv_freq(cfg).tolist()
    check("(e) inv_freq by hand", abs(inv[0] - 1.0) < 1e-7 and abs(inv[1] - 0.1) < 1e-7, f"{inv}")
    v = [0.3, -1.2, 2.0, 0.7]
    p = 3
    a0, a1 = p * 1.0, p * 0.1
    exp = [v[0] * math.cos(a0) - v[2] * math.sin(a0), v[1] * math.cos(a1) - v[3] * math.sin(a1),
           v[2] * math.cos(a0) + v[0] * math.sin(a0), v[3] * math.cos(a1) + v[1] * math.sin(a1)]
    cos, sin = ref.rope_cos_sin(ref.rope_inv_freq(cfg), torch.tensor([[p]]))
    got = ref.apply_rope(torch.tensor(v).view(1, 1, 1, 4), cos, sin).view(4).tolist()
    check("(e) RoPE by hand", max(abs(a - b) for a, b in zip(got, exp)) < 1e-6, f"{got} {exp}")

    # llama3 scaling vs Meta's reference apply_scaling (plain python loop).
    def apply_scaling(freqs, sf=8.0, lo=1.0, hi=4.0, old=8192):
        out = []
        for f in freqs:
            wl = 2 * math.pi / f
            if wl < old / hi:
                out.append(f)
            elif wl > old / lo:
                out.append(f / sf)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * f / sf + s * f)
        return out
    hd, theta = 128, 500000.0
    cfg = ref.Config(make_config("llama", hidden_size=512, num_attention_heads=4, head_dim=hd,
                                 rope_theta=theta,
                                 rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                               "original_max_position_embeddings": 8192}))
    got = ref.rope_inv_freq(cfg).tolist()
    exp = apply_scaling([1.0 / theta ** (i / hd) for i in range(0, hd, 2)])
    rel = max(abs(a - b) / b for a, b in zip(got, exp))
    check("(e) llama3 inv_freq == Meta apply_scaling", rel < 1e-5, f"rel {rel}")


def test_loss():
    m = build(make_config("mistral"), seed=9)
    ids = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    labels = [[-100, 2, 3, -100, 5], [6, -100, -100, -100, 10]]
    logits = run(m, ids)
    got = float(ref.causal_lm_loss(logits, torch.tensor(labels)))
    lp = torch.log_softmax(logits.double(), -1)
    terms = [-float(lp[b, t - 1, labels[b][t]]) for b in range(2) for t in range(1, 5)
             if labels[b][t] != -100]
    exp = sum(terms) / len(terms)
    check("loss == manual shifted mean CE", abs(got - exp) < 1e-5 and len(terms) == 4, f"{got} {exp}")
    nan = float(ref.causal_lm_loss(logits, torch.tensor([[1] + [-100] * 4] * 2)))
    check("loss NaN when nothing counted", math.isnan(nan))


def test_tie_and_bf16(tmp):
    cfg = make_config("qwen3", tie_word_embeddings=True)
    w = make_weights(cfg, seed=10)
    check("tied model has no lm_head.weight", "lm_head.weight" not in w)
    m = ref.load_model(save_model(os.path.join(tmp, "tied"), cfg, w))
    ids = [[2, 4, 6, 8]]
    d = maxdiff(run(m, ids)[0], naive_forward(cfg, w, ids[0], list(range(4))))
    check("tied qwen3 loads and matches naive", d < 1e-4, f"maxdiff {d}")
    untied = dict(cfg, tie_word_embeddings=False)
    save_model(os.path.join(tmp, "untied_missing"), untied, w)
    try:
        ref.load_model(os.path.join(tmp, "untied_missing"))
        check("untied without lm_head fails", False)
    except ref.ReferenceError as e:
        check("untied without lm_head fails", "lm_head.weight" in str(e))
    cfg = make_config("llama")
    w = make_weights(cfg, seed=11)
    mb = ref.load_model(save_model(os.path.join(tmp, "bf16"), cfg, w, dtype="BF16"))
    wr = {k: bf16_round(v) for k, v in w.items()}
    d = maxdiff(run(mb, ids), run(build(cfg, wr), ids))
    check("bf16 checkpoint == f32 model on bf16-rounded weights", d == 0.0, f"maxdiff {d}")


def test_sliding_window():
    m = build(make_config("mistral", sliding_window=4), seed=12)
    run(m, [[1, 2, 3, 4]])  # within window: fine
    run(m, [[1, 2, 3, 4, 5, 6]], seg=[[1, 1, 1, 2, 2, 2]])  # segments within window
    try:
        run(m, [[1, 2, 3, 4, 5]])
        check("sliding window beyond sequence refused", False)
    except ref.ReferenceError:
        check("sliding window beyond sequence refused", True)
    q = build(make_config("qwen2", sliding_window=2, use_sliding_window=False), seed=12)
    run(q, [[1, 2, 3, 4, 5]])
    check("qwen2 sliding_window ignored unless use_sliding_window", True)


def cli(*args):
    p = subprocess.run([sys.executable, os.path.join(HERE, "reference.py")] + list(args),
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_cli(tmp):
    cfg = make_config("qwen2")
    w = make_weights(cfg, seed=13)
    d = save_model(os.path.join(tmp, "cli"), cfg, w)
    inp = {"input_ids": [[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 10]],
           "labels": [[-100, 2, 3, 4, -100, -100], [-100, 6, 7, -100, 9, 10]],
           "position_ids": [[0, 1, 2, 3, 0, 0], [0, 1, 2, 0, 1, 2]],
           "segment_ids": [[1, 1, 1, 1, 0, 0], [1, 1, 1, 2, 2, 2]]}
    ip, op = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.bin")
    with open(ip, "w") as f:
        json.dump(inp, f)
    rc, out, err = cli("forward", "--model", d, "--input", ip, "--out", op)
    check("cli forward exit 0", rc == 0, err)
    summary = json.loads(out.strip().splitlines()[-1]) if rc == 0 else {}
    data = np.fromfile(op, dtype="<f4") if rc == 0 else np.zeros(1)
    m = build(cfg, w)
    t = {k: torch.tensor(v) for k, v in inp.items()}
    with torch.no_grad():
        logits = ref.forward(m, t["input_ids"], t["position_ids"], t["segment_ids"])
        loss = float(ref.causal_lm_loss(logits, t["labels"]))
    ok = (summary.get("shape") == [2, 6, 37] and data.size == 1 + 2 * 6 * 37
          and abs(data[0] - loss) < 1e-6 and abs(summary["loss"] - loss) < 1e-6
          and np.array_equal(data[1:].reshape(2, 6, 37), logits.numpy()))
    check("cli output file and summary", ok)

    with open(ip, "w") as f:
        json.dump({"input_ids": [[1, 2]], "labels": [[-100, -100]]}, f)
    rc, out, err = cli("forward", "--model", d, "--input", ip, "--out", op)
    check("cli NaN loss -> null in summary", rc == 0 and json.loads(out)["loss"] is None
          and math.isnan(np.fromfile(op, dtype="<f4")[0]), out + err)

    bad = save_model(os.path.join(tmp, "bad_type"), dict(cfg, model_type="gpt2"), w)
    nodir = os.path.join(tmp, "nope")
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    with open(os.path.join(empty, "config.json"), "w") as f:
        json.dump(cfg, f)
    trunc = save_model(os.path.join(tmp, "trunc"), cfg, w)
    with open(os.path.join(trunc, "model.safetensors"), "r+b") as f:
        f.truncate(1000)
    for label, mdir, needle in (("unknown model_type", bad, "model_type"),
                                ("missing dir", nodir, "not a directory"),
                                ("no weights", empty, "model.safetensors"),
                                ("truncated safetensors", trunc, "safetensors")):
        rc, out, err = cli("forward", "--model", mdir, "--input", ip, "--out", op)
        lines = err.strip().splitlines()
        check(f"cli error: {label}", rc != 0 and len(lines) == 1 and needle in lines[0]
              and lines[0].startswith("reference.py: error:"), f"rc={rc} err={err!r}")


def main():
    ref.setup_torch()
    with tempfile.TemporaryDirectory() as tmp:
        test_reader(tmp)
        for arch in ARCHS:
            test_naive(arch)
            test_causal(arch)
            test_packing(arch)
            test_gqa(arch)
        test_rope_scaling()
        test_hand()
        test_loss()
        test_tie_and_bf16(tmp)
        test_sliding_window()
        test_cli(tmp)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
