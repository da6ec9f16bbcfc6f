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
  - the CLI output file and its one-line errors,
  - LoRA (PEFT): (a) B = 0 adapter == base model exactly; (b) adapter ==
    base with merged W + scale B A (also rank_pattern / alpha_pattern /
    layers_to_transform, BF16 and F16 adapters, packed rows); (c) lora-step
    gradients == central finite differences of the float64 naive forward;
    (d) one AdamW step == p (1 - lr wd) - lr g / (|g| + eps), and several
    steps == a hand-written AdamW; (e) rsLoRA scale alpha / sqrt(r);
    lora-step's safetensors layout; one-line errors for bad adapters.
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
    # One layer, so a token's output depends only on the tokens it attends to:
    # with window 4, the logits at t equal a run of tokens t-3..t alone (RoPE is
    # relative; positions kept), and the first 4 tokens match full attention.
    cfg = make_config("mistral", num_hidden_layers=1, sliding_window=4)
    w = make_weights(cfg, seed=12)
    m, full = build(cfg, w), build(dict(cfg, sliding_window=None), w)
    ids = [3, 1, 4, 1, 5, 9, 2]
    out = run(m, [ids])[0]
    d = max(maxdiff(out[t], run(m, [ids[t - 3:t + 1]], [list(range(t - 3, t + 1))])[0, -1])
            for t in range(3, len(ids)))
    check("sliding window: logits at t == run of tokens t-3..t alone", d < 1e-5, f"maxdiff {d}")
    ref_full = run(full, [ids])[0]
    check("sliding window: first 4 tokens == full attention, later differ",
          maxdiff(out[:4], ref_full[:4]) == 0.0 and maxdiff(out[4:], ref_full[4:]) > 1e-4)
    q = build(make_config("qwen2", sliding_window=2, use_sliding_window=False), seed=12)
    q_none = build(make_config("qwen2", sliding_window=None), seed=12)
    check("qwen2 sliding_window ignored unless use_sliding_window",
          maxdiff(run(q, [[1, 2, 3, 4, 5]]), run(q_none, [[1, 2, 3, 4, 5]])) == 0.0)


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


# --------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_modules(cfg, targets=ALL_LINEAR, lm_head=False):
    """{module prefix: (out, in)} of the targeted linears of a config dict,
    computed here independently of reference.model_linears."""
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    Hq = cfg["num_attention_heads"]
    Hk = cfg.get("num_key_value_heads") or Hq
    hd = cfg.get("head_dim") or D // Hq
    dims = {"q_proj": (Hq * hd, D), "k_proj": (Hk * hd, D), "v_proj": (Hk * hd, D),
            "o_proj": (D, Hq * hd), "gate_proj": (F, D), "up_proj": (F, D), "down_proj": (D, F)}
    out = {}
    for i in range(cfg["num_hidden_layers"]):
        for t in targets:
            sub = "mlp" if t in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            out[f"model.layers.{i}.{sub}.{t}"] = dims[t]
    if lm_head:
        out["lm_head"] = (V, D)
    return out


def make_lora(mods, ranks, seed=0, zero_b=False, s=0.3):
    """Random PEFT tensors {full key: (A (r, in) | B (out, r))} for
    mods {prefix: (out, in)} with ranks {prefix: r}."""
    rng = np.random.default_rng(seed)
    t = {}
    for p, (o, i) in mods.items():
        r = ranks[p]
        t[f"base_model.model.{p}.lora_A.weight"] = (rng.standard_normal((r, i)) * s).astype(np.float32)
        b = np.zeros((o, r), np.float32) if zero_b else (rng.standard_normal((o, r)) * s).astype(np.float32)
        t[f"base_model.model.{p}.lora_B.weight"] = b
    return t


def peft_config(r=2, alpha=8, targets=ALL_LINEAR, **over):
    """An adapter_config.json dict as PEFT 0.13 writes it."""
    cfg = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "tiny",
           "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
           "init_lora_weights": True, "layer_replication": None, "layers_pattern": None,
           "layers_to_transform": None, "loftq_config": {}, "lora_alpha": alpha,
           "lora_dropout": 0.05, "megatron_config": None, "megatron_core": "megatron.core",
           "modules_to_save": None, "peft_type": "LORA", "r": r, "rank_pattern": {},
           "revision": None, "target_modules": list(targets), "task_type": "CAUSAL_LM",
           "use_dora": False, "use_rslora": False}
    cfg.update(over)
    return cfg


def save_adapter(d, pcfg, tensors, dtype="F32"):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(pcfg, f)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors, dtype)
    return d


def merged_weights(w, tensors, scales):
    """Base weights with W += scale * B @ A (float64, then float32) for every
    module; scales {prefix: float}."""
    out = dict(w)
    for p, sc in scales.items():
        a = np.float64(tensors[f"base_model.model.{p}.lora_A.weight"])
        b = np.float64(tensors[f"base_model.model.{p}.lora_B.weight"])
        out[p + ".weight"] = (np.float64(w[p + ".weight"]) + sc * (b @ a)).astype(np.float32)
    return out


def run_lora(model, adapter, ids, pos=None, seg=None):
    t = lambda x: None if x is None else torch.tensor(x, dtype=torch.int64)  # noqa: E731
    with torch.no_grad():
        return ref.forward(model, t(ids), t(pos), t(seg), ref.lora_deltas(adapter))


def test_lora_zero_b(tmp):
    for arch in ARCHS:
        cfg = make_config(arch)
        w = make_weights(cfg, seed=20)
        mods = lora_modules(cfg, lm_head=True)
        d = save_adapter(os.path.join(tmp, f"zb_{arch}"), peft_config(target_modules=list(ALL_LINEAR) + ["lm_head"]),
                         make_lora(mods, {p: 2 for p in mods}, seed=21, zero_b=True))
        m = build(cfg, w)
        ad = ref.load_adapter(d, m)
        ids = [[3, 1, 4, 1, 5, 9, 2, 6]]
        check(f"{arch}: LoRA (a) B = 0 forward == base forward exactly",
              len(ad.modules) == len(mods) and maxdiff(run_lora(m, ad, ids), run(m, ids)) == 0.0)


def test_dora_merged(tmp):
    """DoRA (use_dora): the hook equals the model whose weights are PEFT's
    merge, m / ||W + s B A||_row * (W + s B A), in float64; with m the row
    norms and B = 0 it is the base model."""
    ids = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 7, 0, 12, 30, 2, 2, 8]]
    for arch in ARCHS:
        cfg = make_config(arch)
        w = make_weights(cfg, seed=25)
        mods = lora_modules(cfg, lm_head=False)
        t = make_lora(mods, {p: 3 for p in mods}, seed=26, s=0.1)
        rng = np.random.default_rng(27)
        merged = dict(w)
        for p in mods:
            v = np.float64(w[p + ".weight"]) + 2.0 * (np.float64(t[f"base_model.model.{p}.lora_B.weight"])
                                                     @ np.float64(t[f"base_model.model.{p}.lora_A.weight"]))
            norm = np.linalg.norm(v, axis=1)
            mag = (norm * (1 + 0.2 * rng.uniform(-1, 1, norm.shape))).astype(np.float32)
            t[f"base_model.model.{p}.lora_magnitude_vector"] = mag
            merged[p + ".weight"] = ((np.float64(mag) / norm)[:, None] * v).astype(np.float32)
        d = save_adapter(os.path.join(tmp, f"dora_{arch}"), peft_config(r=3, alpha=6, use_dora=True), t)
        m = build(cfg, w)
        with torch.no_grad():
            got = ref.forward(m, torch.tensor(ids), None, None, ref.lora_deltas(ref.load_adapter(d, m), model=m))
        exp = run(build(cfg, merged), ids)
        dd, big = maxdiff(got, exp), float(exp.abs().max())
        check(f"{arch}: DoRA adapter == PEFT's merge m/||W + s B A|| (W + s B A)", dd < 1e-5 * max(1.0, big)
              and maxdiff(got, run(m, ids)) > 0.3, f"maxdiff {dd} max|logit| {big}")
        zero = {k: (np.zeros_like(v) if ".lora_B." in k else v) for k, v in t.items()}
        for p in mods:
            zero[f"base_model.model.{p}.lora_magnitude_vector"] = np.linalg.norm(
                np.float64(w[p + ".weight"]), axis=1).astype(np.float32)
        d0 = save_adapter(os.path.join(tmp, f"dora0_{arch}"), peft_config(r=3, alpha=6, use_dora=True), zero)
        with torch.no_grad():
            got0 = ref.forward(m, torch.tensor(ids), None, None, ref.lora_deltas(ref.load_adapter(d0, m), model=m))
        dd0 = maxdiff(got0, run(m, ids))
        check(f"{arch}: DoRA with B = 0 and m = ||W|| == base", dd0 < 1e-5, f"maxdiff {dd0}")


def test_lora_merged(tmp):
    ids = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 7, 0, 12, 30, 2, 2, 8]]
    for arch in ARCHS:
        cfg = make_config(arch)
        w = make_weights(cfg, seed=22)
        mods = lora_modules(cfg, lm_head=True)
        t = make_lora(mods, {p: 3 for p in mods}, seed=23, s=0.1)
        d = save_adapter(os.path.join(tmp, f"mg_{arch}"),
                         peft_config(r=3, alpha=6, target_modules=list(ALL_LINEAR) + ["lm_head"]), t)
        m = build(cfg, w)
        got = run_lora(m, ref.load_adapter(d, m), ids)
        mw = merged_weights(w, t, {p: 6 / 3 for p in mods})
        exp = run(build(cfg, mw), ids)
        # 1e-5 relative to the largest logit: float32 noise here is ~3e-6
        # (the adapter moves logits by ~2).
        dd, big = maxdiff(got, exp), float(exp.abs().max())
        check(f"{arch}: LoRA (b) adapter == merged W + scale B A", dd < 1e-5 * max(1.0, big)
              and maxdiff(got, run(m, ids)) > 0.3, f"maxdiff {dd} max|logit| {big}")
        if arch in ("qwen2", "qwen3"):
            n64 = np.stack([naive_forward(cfg, mw, row, list(range(len(row)))) for row in ids])
            dd = maxdiff(got, n64)
            check(f"{arch}: LoRA adapter == naive float64 forward of merged weights", dd < 1e-4, f"maxdiff {dd}")

    # rank_pattern / alpha_pattern (PEFT: first pattern p with
    # re.match("(.*\.)?(p)$", module)), a subset of targets, layers_to_transform, BF16.
    cfg = make_config("llama", num_hidden_layers=3)
    w = make_weights(cfg, seed=24)
    mods = {p: v for p, v in lora_modules(cfg, ("q_proj", "v_proj", "down_proj")).items()
            if ".1." not in p}
    ranks = {p: 4 if p == "model.layers.0.self_attn.q_proj" else 3 if "down_proj" in p else 2
             for p in mods}
    alphas = {p: 12.0 if "q_proj" in p else 5 for p in mods}
    t = make_lora(mods, ranks, seed=25)
    tb = {k: bf16_round(v) for k, v in t.items()}
    pc = peft_config(r=2, alpha=5, targets=("q_proj", "v_proj", "down_proj"),
                     layers_to_transform=[0, 2],
                     rank_pattern={"model.layers.0.self_attn.q_proj": 4, "down_proj": 3},
                     alpha_pattern={"q_proj": 12.0})
    d = save_adapter(os.path.join(tmp, "pattern"), pc, t, dtype="BF16")
    m = build(cfg, w)
    ad = ref.load_adapter(d, m)
    ok = (set(ad.modules) == set(mods)
          and all(ad.modules[p].r == ranks[p] and ad.modules[p].scale == alphas[p] / ranks[p]
                  for p in mods))
    check("LoRA rank_pattern / alpha_pattern / layers_to_transform: ranks and scales", ok,
          str({p: (x.r, x.scale) for p, x in ad.modules.items()}))
    exp = run(build(cfg, merged_weights(w, tb, {p: alphas[p] / ranks[p] for p in mods})), ids)
    dd = maxdiff(run_lora(m, ad, ids), exp)
    check("LoRA patterns + BF16 adapter == merged", dd < 1e-5 * max(1.0, float(exp.abs().max())),
          f"maxdiff {dd}")


def test_rslora(tmp):
    cfg = make_config("qwen3")
    w = make_weights(cfg, seed=26)
    m = build(cfg, w)
    mods = lora_modules(cfg, ("q_proj", "o_proj", "up_proj"))
    t = make_lora(mods, {p: 4 for p in mods}, seed=27)
    rs = ref.load_adapter(save_adapter(os.path.join(tmp, "rs"), peft_config(
        r=4, alpha=8, targets=("q_proj", "o_proj", "up_proj"), use_rslora=True), t), m)
    check("LoRA (e) rsLoRA scale == alpha / sqrt(r)",
          all(x.scale == 8 / math.sqrt(4) == 4.0 for x in rs.modules.values()),
          str([x.scale for x in rs.modules.values()]))
    plain = ref.load_adapter(save_adapter(os.path.join(tmp, "rs_plain"), peft_config(
        r=4, alpha=16, targets=("q_proj", "o_proj", "up_proj")), t), m)
    half = ref.load_adapter(save_adapter(os.path.join(tmp, "rs_half"), peft_config(
        r=4, alpha=8, targets=("q_proj", "o_proj", "up_proj")), t), m)
    ids = [[5, 4, 3, 2, 1, 0]]
    check("LoRA (e) rsLoRA alpha 8 r 4 == plain alpha 16 r 4",
          maxdiff(run_lora(m, rs, ids), run_lora(m, plain, ids)) == 0.0)
    check("LoRA (e) plain alpha 8 r 4 differs (scale 2)",
          all(x.scale == 2.0 for x in half.modules.values())
          and maxdiff(run_lora(m, rs, ids), run_lora(m, half, ids)) > 1e-3)
    rs16 = peft_config(r=16, alpha=8, targets=("q_proj",), use_rslora=True)
    d = save_adapter(os.path.join(tmp, "rs16"), rs16,
                     make_lora(lora_modules(cfg, ("q_proj",)), {p: 16 for p in lora_modules(cfg, ("q_proj",))}))
    check("LoRA (e) rsLoRA r 16 alpha 8 scale 2",
          all(x.scale == 2.0 for x in ref.load_adapter(d, m).modules.values()))


def read_st_raw(path):
    """(header dict in file order, header length, raw header bytes)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
    return json.loads(raw), n, raw


def naive_loss(cfg, w, ids, labels):
    """float64 mean shifted CE over rows with naive_forward; plain causal."""
    total, count = 0.0, 0
    for row, lab in zip(ids, labels):
        logits = naive_forward(cfg, w, row, list(range(len(row))))
        for t in range(1, len(row)):
            if lab[t] == -100:
                continue
            z = logits[t - 1]
            mx = float(np.max(z))
            total += mx + math.log(float(np.sum(np.exp(z - mx)))) - float(z[lab[t]])
            count += 1
    return total / count


def test_lora_step(tmp):
    cfg = make_config("qwen2", num_hidden_layers=2)
    w = make_weights(cfg, seed=28)
    md = save_model(os.path.join(tmp, "step_model"), cfg, w)
    mods = lora_modules(cfg, lm_head=True)
    t = make_lora(mods, {p: 2 for p in mods}, seed=29)
    alpha, r = 6, 2
    ad_dir = save_adapter(os.path.join(tmp, "step_ad"), peft_config(
        r=r, alpha=alpha, target_modules=list(ALL_LINEAR) + ["lm_head"]), t)
    inp = {"input_ids": [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]],
           "labels": [[-100, 2, 3, -100, 5, 6], [7, 8, -100, 10, 11, -100]]}
    ip, op = os.path.join(tmp, "step_in.json"), os.path.join(tmp, "step_out.safetensors")
    with open(ip, "w") as f:
        json.dump(inp, f)
    lr, wd, eps = 1e-2, 0.1, 1e-8
    rc, out, err = cli("lora-step", "--model", md, "--input", ip, "--adapter", ad_dir, "--out", op,
                       "--lr", str(lr), "--weight-decay", str(wd))
    check("cli lora-step exit 0", rc == 0, err)
    if rc != 0:
        return
    summary = json.loads(out.strip().splitlines()[-1])
    res = ref.read_safetensors(op)

    # Output format: F32 only, sorted keys, padded header, contiguous data.
    header, hlen, raw = read_st_raw(op)
    names = list(header)
    offs = [header[k]["data_offsets"] for k in names]
    want_names = sorted(["loss"] + [k + s for k in t for s in (".grad", ".updated")])
    ok = (names == want_names and hlen % 8 == 0 and raw.rstrip(b" ") == json.dumps(header, separators=(",", ":")).encode()
          and all(header[k]["dtype"] == "F32" for k in names)
          and offs[0][0] == 0 and all(offs[i][1] == offs[i + 1][0] for i in range(len(offs) - 1))
          and header["loss"]["shape"] == [1]
          and all(header[k + ".grad"]["shape"] == list(v.shape) == header[k + ".updated"]["shape"]
                  for k, v in t.items()))
    check("lora-step output: F32, sorted compact header padded to 8, keys", ok, str(names[:4]))

    # Loss == forward --adapter's loss, and == the float64 naive loss.
    fo = os.path.join(tmp, "step_fwd.bin")
    rc2, out2, err2 = cli("forward", "--model", md, "--input", ip, "--out", fo, "--adapter", ad_dir)
    fl = float(np.fromfile(fo, dtype="<f4")[0]) if rc2 == 0 else float("nan")
    scales = {p: alpha / r for p in mods}
    nl = naive_loss(cfg, merged_weights(w, t, scales), inp["input_ids"], inp["labels"])
    check("lora-step loss == forward --adapter loss", rc2 == 0 and float(res["loss"][0]) == fl
          and abs(summary["loss"] - fl) < 1e-6 and summary["steps"] == 1, f"{res['loss']} {fl} {err2}")
    check("lora-step loss == naive float64 merged loss", abs(fl - nl) < 1e-5, f"{fl} {nl}")

    # (c) gradients vs central finite differences of the float64 naive loss.
    rng = np.random.default_rng(30)
    w64 = {k: np.float64(v) for k, v in w.items()}
    t64 = {k: np.float64(v) for k, v in t.items()}

    def loss_at(key, delta):
        tt = dict(t64)
        tt[key] = t64[key] + delta
        return naive_loss(cfg, merged_weights(w64, tt, scales), inp["input_ids"], inp["labels"])

    h, worst, worst_key = 1e-4, 0.0, ""
    for key in sorted(t):
        g = res[key + ".grad"].double().numpy()
        shape = t[key].shape
        dirs = []
        for _ in range(3):  # single elements
            e = np.zeros(shape)
            e[tuple(rng.integers(0, n) for n in shape)] = 1.0
            dirs.append(e)
        dirs.append(rng.standard_normal(shape))  # a random direction
        scale_g = max(float(np.abs(g).max()), 1e-12)
        for e in dirs:
            fd = (loss_at(key, h * e) - loss_at(key, -h * e)) / (2 * h)
            an = float(np.sum(g * e))
            rel = abs(an - fd) / max(abs(fd), scale_g * float(np.abs(e).max()))
            if rel > worst:
                worst, worst_key = rel, key
    check("LoRA (c) lora-step gradients == central finite differences (float64)", worst < 1e-3,
          f"worst rel {worst} at {worst_key}")
    check("LoRA (c) gradients are not trivially zero",
          all(float(res[k + ".grad"].abs().max()) > 1e-4 for k in t))

    # (d) one AdamW step: p (1 - lr wd) - lr g / (|g| + eps).
    worst = 0.0
    for key in t:
        p, g = torch.from_numpy(t[key]).double(), res[key + ".grad"].double()
        exp = p * (1 - lr * wd) - lr * g / (g.abs() + eps)
        worst = max(worst, maxdiff(res[key + ".updated"], exp))
    check("LoRA (d) one AdamW step == p(1 - lr wd) - lr g/(|g| + eps)", worst < 1e-6, f"maxdiff {worst}")

    # PEFT init (B = 0): grad A == 0 exactly, A only decays; B moves by ~lr.
    tz = make_lora(mods, {p: 2 for p in mods}, seed=31, zero_b=True)
    zd = save_adapter(os.path.join(tmp, "step_zero"), peft_config(
        r=r, alpha=alpha, target_modules=list(ALL_LINEAR) + ["lm_head"]), tz)
    rc, out, err = cli("lora-step", "--model", md, "--input", ip, "--adapter", zd, "--out", op)
    if rc == 0:
        rz = ref.read_safetensors(op)
        a_keys = [k for k in tz if "lora_A" in k]
        b_keys = [k for k in tz if "lora_B" in k]
        ok = (all(float(rz[k + ".grad"].abs().max()) == 0.0 for k in a_keys)
              and all(float(rz[k + ".grad"].abs().max()) > 0.0 for k in b_keys)
              and all(maxdiff(rz[k + ".updated"], torch.from_numpy(tz[k]) * (1 - 1e-3 * 0.01)) < 1e-7
                      for k in a_keys)
              and all(float(rz[k + ".updated"].abs().max()) <= 1e-3 + 1e-9 for k in b_keys)
              and abs(float(rz["loss"][0]) - float(ref.causal_lm_loss(
                  run(build(cfg, w), inp["input_ids"]), torch.tensor(inp["labels"])))) < 1e-6)
        check("LoRA B = 0 (PEFT init): grad A == 0, default-hyperparameter step", ok)
    else:
        check("LoRA B = 0 (PEFT init): grad A == 0, default-hyperparameter step", False, err)

    # Several steps vs a hand-written AdamW on gradients from reference.forward.
    steps, b1, b2 = 3, 0.8, 0.95
    rc, out, err = cli("lora-step", "--model", md, "--input", ip, "--adapter", ad_dir, "--out", op,
                       "--steps", str(steps), "--lr", "0.02", "--beta1", str(b1), "--beta2", str(b2),
                       "--eps", "1e-6", "--weight-decay", "0.05")
    if rc != 0:
        check("lora-step --steps 3 == hand-written AdamW", False, err)
        return
    r3 = ref.read_safetensors(op)
    m = ref.load_model(md)
    ad = ref.load_adapter(ad_dir, m)
    p = {k: v.clone() for k, v in ad.tensors.items()}
    mom = {k: torch.zeros_like(v) for k, v in p.items()}
    var = {k: torch.zeros_like(v) for k, v in p.items()}
    ids, labels = torch.tensor(inp["input_ids"]), torch.tensor(inp["labels"])
    losses = []
    for s in range(1, steps + 1):
        leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
        loss = ref.causal_lm_loss(ref.forward(m, ids, None, None, ref.lora_deltas(ad, leaves)), labels)
        loss.backward()
        losses.append(float(loss))
        for k in p:
            g = leaves[k].grad
            mom[k] = b1 * mom[k] + (1 - b1) * g
            var[k] = b2 * var[k] + (1 - b2) * g * g
            mh, vh = mom[k] / (1 - b1 ** s), var[k] / (1 - b2 ** s)
            p[k] = p[k] * (1 - 0.02 * 0.05) - 0.02 * mh / (vh.sqrt() + 1e-6)
    d_loss = max(abs(a - b) for a, b in zip(losses, r3["loss"].tolist()))
    d_par = max(maxdiff(r3[k + ".updated"], p[k]) for k in p)
    d_grad = max(maxdiff(r3[k + ".grad"], res[k + ".grad"]) for k in p)
    check("lora-step --steps 3 == hand-written AdamW (losses, params)",
          r3["loss"].shape == (steps,) and d_loss < 1e-5 and d_par < 1e-5 and d_grad == 0.0,
          f"loss {d_loss} params {d_par} grad {d_grad}")
    check("lora-step losses decrease", losses[2] < losses[1] < losses[0], str(losses))


def test_lora_packed(tmp):
    """Adapter forward on packed rows == separate runs; lora-step loss there
    == forward --adapter loss."""
    cfg = make_config("mistral")
    w = make_weights(cfg, seed=32)
    md = save_model(os.path.join(tmp, "pk_model"), cfg, w)
    mods = lora_modules(cfg, ("q_proj", "k_proj", "gate_proj"))
    ad_dir = save_adapter(os.path.join(tmp, "pk_ad"), peft_config(
        targets=("q_proj", "k_proj", "gate_proj")), make_lora(mods, {p: 2 for p in mods}, seed=33), "F16")
    m = ref.load_model(md)
    ad = ref.load_adapter(ad_dir, m)
    A, B = [4, 8, 15, 16, 23], [1, 2, 3]
    out = run_lora(m, ad, [A + B], [list(range(5)) + list(range(3))], [[1] * 5 + [2] * 3])
    d = max(maxdiff(out[0, :5], run_lora(m, ad, [A])[0]), maxdiff(out[0, 5:], run_lora(m, ad, [B])[0]))
    check("LoRA packed segments == separate runs", d < 1e-5, f"maxdiff {d}")
    inp = {"input_ids": [A + B + [0]], "labels": [[-100, 8, 15, 16, 23, -100, 2, 3, -100]],
           "position_ids": [list(range(5)) + list(range(3)) + [0]], "segment_ids": [[1] * 5 + [2] * 3 + [0]]}
    ip = os.path.join(tmp, "pk_in.json")
    with open(ip, "w") as f:
        json.dump(inp, f)
    o1, o2 = os.path.join(tmp, "pk.bin"), os.path.join(tmp, "pk.safetensors")
    rc1, _, e1 = cli("forward", "--model", md, "--input", ip, "--out", o1, "--adapter", ad_dir)
    rc2, _, e2 = cli("lora-step", "--model", md, "--input", ip, "--out", o2, "--adapter", ad_dir)
    ok = rc1 == 0 and rc2 == 0 and float(np.fromfile(o1, dtype="<f4")[0]) == float(ref.read_safetensors(o2)["loss"][0])
    check("lora-step loss == forward --adapter loss on packed input", ok, e1 + e2)


def test_lora_cli(tmp):
    cfg = make_config("llama")
    w = make_weights(cfg, seed=34)
    md = save_model(os.path.join(tmp, "lc_model"), cfg, w)
    mods = lora_modules(cfg, ("q_proj", "v_proj"))
    t = make_lora(mods, {p: 2 for p in mods}, seed=35, zero_b=True)
    good = peft_config(targets=("q_proj", "v_proj"))
    inp = {"input_ids": [[1, 2, 3, 4]]}
    ip, op = os.path.join(tmp, "lc_in.json"), os.path.join(tmp, "lc_out")
    with open(ip, "w") as f:
        json.dump(inp, f)
    d = save_adapter(os.path.join(tmp, "lc_good"), good, t)
    base = os.path.join(tmp, "lc_base.bin")
    rc0, _, e0 = cli("forward", "--model", md, "--input", ip, "--out", base)
    rc1, out1, e1 = cli("forward", "--model", md, "--input", ip, "--out", op, "--adapter", d)
    with open(base, "rb") as f0, open(op, "rb") as f1:
        same = rc0 == 0 and rc1 == 0 and f0.read() == f1.read()
    check("cli forward --adapter with B = 0 == plain forward, byte for byte", same, e0 + e1)

    def variant(name, pcfg=good, tensors=t):
        return save_adapter(os.path.join(tmp, "lc_" + name), pcfg, tensors)

    q0 = "base_model.model.model.layers.0.self_attn.q_proj"
    k0 = "base_model.model.model.layers.0.self_attn.k_proj"
    extra = make_lora({"model.layers.0.self_attn.k_proj": (8, 16)}, {"model.layers.0.self_attn.k_proj": 2})
    no_q0 = {k: v for k, v in t.items() if not k.startswith(q0 + ".")}
    cases = [
        ("unknown key", variant("unk", tensors=dict(t, **{q0 + ".lora_C.weight": np.zeros((2, 16), np.float32)})),
         "unknown key"),
        ("embedding LoRA key", variant("emb", tensors=dict(
            t, **{"base_model.model.model.embed_tokens.lora_embedding_A": np.zeros((2, 37), np.float32)})),
         "unknown key"),
        ("shape mismatch", variant("shape", tensors=dict(t, **{q0 + ".lora_A.weight": np.zeros((3, 16), np.float32)})),
         "shape"),
        ("module that does not exist", variant("nomod", tensors=dict(t, **{
            "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight": np.zeros((2, 16), np.float32),
            "base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight": np.zeros((16, 2), np.float32)})),
         "does not have"),
        ("module not in target_modules", variant("untargeted", tensors=dict(t, **extra)), "target_modules"),
        ("target module without weights", variant("missing", tensors=no_q0), "no lora_A"),
        ("only lora_A", variant("onlya", tensors={k: v for k, v in t.items() if k != q0 + ".lora_B.weight"}),
         "only one"),
        ("peft_type", variant("ia3", dict(good, peft_type="IA3")), "peft_type"),
        ("use_dora without magnitudes", variant("dora", dict(good, use_dora=True)), "lora_magnitude_vector"),
        ("fan_in_fan_out", variant("fifo", dict(good, fan_in_fan_out=True)), "fan_in_fan_out"),
        ("bias", variant("bias", dict(good, bias="all")), "bias"),
        ("modules_to_save", variant("mts", dict(good, modules_to_save=["lm_head"])), "modules_to_save"),
        ("non-linear target", variant("nl", dict(good, target_modules=["q_proj", "v_proj", "mlp"])),
         "not a linear"),
        ("bad r", variant("r0", dict(good, r=0)), "r must"),
        ("no adapter dir", os.path.join(tmp, "lc_nothing"), "not a directory"),
    ]
    m = ref.load_model(md)
    for label, adir, needle in cases:
        try:
            ref.load_adapter(adir, m)
            check(f"adapter error: {label}", False, "no error")
        except ref.ReferenceError as e:
            msg = str(e)
            check(f"adapter error: {label}", needle in msg and "\n" not in msg, msg)
    for label, adir, needle in [cases[0], cases[2], cases[3], cases[-1]]:  # the CLI: exit 2, one line
        for sub in ("forward", "lora-step"):
            rc, out, err = cli(sub, "--model", md, "--input", ip, "--out", op, "--adapter", adir)
            lines = err.strip().splitlines()
            check(f"cli {sub} adapter error: {label}", rc == 2 and len(lines) == 1 and needle in lines[0]
                  and lines[0].startswith("reference.py: error:"), f"rc={rc} err={err!r}")
    with open(ip, "w") as f:
        json.dump({"input_ids": [[1, 2, 3]], "labels": [[1, -100, -100]]}, f)
    rc, out, err = cli("lora-step", "--model", md, "--input", ip, "--out", op, "--adapter", d)
    check("cli lora-step with no counted label: one-line error", rc == 2 and len(err.strip().splitlines()) == 1
          and "no label" in err, err)

    # "all-linear" selects the 7 projections (not lm_head); regex target_modules.
    al = lora_modules(cfg)
    ta = make_lora(al, {p: 2 for p in al})
    ad = ref.load_adapter(variant("allx", dict(good, target_modules="all-linear"), ta), m)
    check("target_modules all-linear", set(ad.modules) == set(al))
    try:
        ref.load_adapter(variant("allh", dict(good, target_modules="all-linear"),
                                 dict(ta, **make_lora({"lm_head": (37, 16)}, {"lm_head": 2}))), m)
        check("target_modules all-linear excludes lm_head", False)
    except ref.ReferenceError as e:
        check("target_modules all-linear excludes lm_head", "target_modules" in str(e), str(e))
    rx = {p: v for p, v in al.items() if "layers.1" in p and "self_attn" in p}
    ad = ref.load_adapter(variant("regex", dict(good, target_modules=r".*\.1\.self_attn\.(q|k|v|o)_proj"),
                                  make_lora(rx, {p: 2 for p in rx})), m)
    check("target_modules regex (re.fullmatch)", set(ad.modules) == set(rx))


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
        test_lora_zero_b(tmp)
        test_lora_merged(tmp)
        test_dora_merged(tmp)
        test_rslora(tmp)
        test_lora_step(tmp)
        test_lora_packed(tmp)
        test_lora_cli(tmp)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
