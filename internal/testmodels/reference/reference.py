#!/usr/bin/env python3
"""Independent PyTorch reference ("oracle") for Hugging Face Llama-family
decoder-only models: model_type in {llama, mistral, qwen2, qwen3}.

It reads a Hugging Face model directory (config.json + model.safetensors or
model.safetensors.index.json with shards), converts every weight to float32
and runs a forward pass written to match transformers' modeling_llama /
modeling_mistral / modeling_qwen2 / modeling_qwen3 (eager attention path).
A bf16 checkpoint is therefore evaluated on its bf16-rounded values, in f32.

Only stdlib + numpy + torch are used (no transformers, no safetensors pkg).

CLI:
    python3 reference.py forward --model DIR --input IN.json --out OUT.bin [--adapter ADIR]
    python3 reference.py lora-step --model DIR --input IN.json --adapter ADIR
        --out OUT.safetensors [--lr 1e-3] [--beta1 0.9] [--beta2 0.999]
        [--eps 1e-8] [--weight-decay 0.01] [--steps 1]

IN.json:
    {"input_ids":    [[int, ...], ...],        # (B, T), required
     "labels":       [[int, ...], ...],        # (B, T), optional, default input_ids;
                                               #   -100 = ignore
     "position_ids": [[int, ...], ...],        # (B, T), optional, default 0..T-1
     "segment_ids":  [[int, ...], ...]}        # (B, T), optional, default all 1;
                                               #   0 = padding

OUT.bin (little-endian float32):
    loss (1 value; NaN when no label is counted), then logits (B, T, V) row-major.
stdout: one JSON line {"loss": x or null (NaN), "shape": [B, T, V]}.

Errors: one line "reference.py: error: ..." on stderr, exit status 2.

Packing semantics: token i of a row attends to token j of the same row iff
j <= i (index order) and segment_ids[i] == segment_ids[j] != 0. A padding
token (segment id 0) attends only to itself, which keeps its softmax finite;
its logits are meaningless. Labels are taken literally with HF's shift
(logits[:, t] predicts labels[:, t+1]); the caller must put -100 on labels
that would cross a segment boundary (first token of each segment) and on
padding.

ADIR (a Hugging Face PEFT LoRA adapter directory):
    adapter_config.json: peft_type "LORA", r, lora_alpha, use_rslora,
      target_modules (list of names / suffixes, a regex string, or
      "all-linear"), optional layers_to_transform / layers_pattern /
      exclude_modules / rank_pattern / alpha_pattern, all with PEFT's
      matching rules. fan_in_fan_out, bias != "none", lora_bias,
      modules_to_save, ... are refused. lora_dropout is ignored (inactive).
      use_dora: true makes it DoRA (below).
    adapter_model.safetensors (F32/F16/BF16), for every selected module M
      (e.g. "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
      "lm_head"): base_model.model.M.lora_A.weight (r, in) and
      base_model.model.M.lora_B.weight (out, r), r = rank_pattern or r.
    M's output becomes y + lora_B(lora_A(x)) * scale, i.e.
      y + ((x A^T) B^T) * scale, with scale = alpha / r, or alpha / sqrt(r)
      when use_rslora (alpha = alpha_pattern or lora_alpha), as PEFT's
      lora.Linear.forward. Unknown keys, keys of missing or unselected
      modules, selected modules without weights and bad shapes are errors.
    DoRA (use_dora): every module also has base_model.model.M.lora_magnitude_vector
      (out,), m, and its output is, as PEFT's DoraLinearLayer.forward in eval
      mode: y + (c - 1) * (x W^T) + c * ((x A^T) B^T) * scale with
      c = m / ||W + scale * B A|| (the L2 norm of each output row, detached).

lora-step: the adapter's A and B (and DoRA magnitudes) become float32 leaves (base frozen); the
loss is forward's. It records the gradients at the initial parameters,
then runs --steps steps of torch.optim.AdamW(lr, (beta1, beta2), eps,
weight_decay), recomputing loss and gradients on the same batch each step.
OUT.safetensors (all F32, written like safetensors.torch.save_file):
    "loss" [steps]      the loss before each step
    "<K>.grad"          gradient at the initial parameters, shape of K
    "<K>.updated"       value after the last step, shape of K
  for every adapter key K (full PEFT key, ...lora_A.weight / ...lora_B.weight).
stdout: one JSON line {"loss": loss before the first step, "steps": n}.

LoRA hook: every linear layer goes through `proj(x, prefix, ...)`; `forward`
takes `deltas`, a dict mapping a projection prefix such as
"model.layers.0.self_attn.q_proj" to either a delta-weight tensor dW (out, in)
(y += x dW^T) or a callable f(x) -> (..., out) added to the output.
"""

import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
IGNORE_INDEX = -100


class ReferenceError(Exception):
    """A user-facing error; the CLI prints its message on one line."""


# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------

_ST_DTYPES = {
    # name: (numpy dtype used to read raw bytes, item size)
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
}


def _bf16_bits_to_f32(raw):
    """raw: numpy uint16 array of bf16 bit patterns -> float32 array (exact)."""
    return (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)


def read_safetensors(path, names=None):
    """Read a .safetensors file.

    Format: 8-byte little-endian u64 header length N, N bytes of JSON header
    {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"?},
    then the data section (offsets are relative to its start).

    names: optional iterable of tensor names to load (default all).
    Returns {name: float32 torch.Tensor (contiguous, owned)}.
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ReferenceError(f"cannot open {path}: {e.strerror}")
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ReferenceError(f"{path}: too short to be a safetensors file")
        (hlen,) = struct.unpack("<Q", f.read(8))
        if hlen > size - 8:
            raise ReferenceError(f"{path}: header length {hlen} exceeds file size {size}")
        try:
            header = json.loads(f.read(hlen).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReferenceError(f"{path}: bad safetensors JSON header: {e}")
        if not isinstance(header, dict):
            raise ReferenceError(f"{path}: safetensors header is not a JSON object")
        header.pop("__metadata__", None)
        data_start = 8 + hlen
        data_len = size - data_start
        wanted = set(header) if names is None else set(names)
        missing = wanted - set(header)
        if missing:
            raise ReferenceError(f"{path}: missing tensor(s) {sorted(missing)[:5]}")
        out = {}
        for name in sorted(wanted):
            info = header[name]
            try:
                dtype = info["dtype"]
                shape = [int(d) for d in info["shape"]]
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise ReferenceError(f"{path}: malformed header entry for {name}")
            if dtype not in _ST_DTYPES:
                raise ReferenceError(f"{path}: tensor {name} has unsupported dtype {dtype}")
            npdt, isz = _ST_DTYPES[dtype]
            count = int(np.prod(shape)) if shape else 1
            if end - begin != count * isz or begin < 0 or end > data_len:
                raise ReferenceError(
                    f"{path}: tensor {name} offsets [{begin},{end}) do not match "
                    f"{dtype}{shape} within data of {data_len} bytes")
            f.seek(data_start + begin)
            raw = np.frombuffer(f.read(end - begin), dtype=npdt, count=count)
            if dtype == "BF16":
                arr = _bf16_bits_to_f32(raw)
            else:
                arr = raw.astype(np.float32)  # native-order, writable copy
            out[name] = torch.from_numpy(np.ascontiguousarray(arr).reshape(shape))
        return out


def write_safetensors(path, tensors):
    """Write {name: tensor} as a F32 .safetensors file, byte for byte as
    safetensors.torch.save_file(tensors) (no metadata) writes it: the header
    is compact JSON {name: {"dtype": "F32", "shape", "data_offsets"}} with
    names sorted and data in the same order, padded with spaces to a
    multiple of 8 bytes."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name].detach().to(torch.float32).contiguous().numpy().astype("<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_weights(model_dir):
    """Load all weights of a HF model directory as {name: float32 tensor}.

    Uses model.safetensors.index.json (weight_map: name -> shard file) when
    present, else model.safetensors.
    """
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    single_path = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index_path):
        try:
            with open(index_path) as f:
                index = json.load(f)
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            raise ReferenceError(f"{index_path}: not a valid index (needs a weight_map object)")
        by_file = {}
        for name, shard in weight_map.items():
            by_file.setdefault(shard, []).append(name)
        weights = {}
        for shard, names in sorted(by_file.items()):
            shard_path = os.path.join(model_dir, shard)
            if not os.path.exists(shard_path):
                raise ReferenceError(f"{index_path}: shard {shard} does not exist")
            weights.update(read_safetensors(shard_path, names))
        return weights
    if os.path.exists(single_path):
        return read_safetensors(single_path)
    raise ReferenceError(
        f"{model_dir}: neither model.safetensors nor model.safetensors.index.json found")


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------

class Config:
    """The subset of a HF config.json that the forward pass needs."""

    def __init__(self, raw):
        """raw: the parsed config.json dict. Raises ReferenceError if invalid."""
        if not isinstance(raw, dict):
            raise ReferenceError("config.json is not a JSON object")
        mt = raw.get("model_type")
        if mt not in SUPPORTED_MODEL_TYPES:
            raise ReferenceError(
                f"unknown model_type {mt!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
        self.model_type = mt

        def req(key):
            v = raw.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ReferenceError(f"config.json: {key} must be a positive integer, got {v!r}")
            return v

        self.vocab_size = req("vocab_size")
        self.hidden_size = req("hidden_size")
        self.intermediate_size = req("intermediate_size")
        self.num_hidden_layers = req("num_hidden_layers")
        self.num_attention_heads = req("num_attention_heads")
        self.num_key_value_heads = raw.get("num_key_value_heads") or self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ReferenceError("config.json: num_attention_heads must be a multiple of "
                                 "num_key_value_heads")
        # Qwen3Config's default head_dim is 128 (not hidden/heads); the others
        # fall back to hidden_size // num_attention_heads.
        hd = raw.get("head_dim")
        if hd is None:
            hd = 128 if mt == "qwen3" else self.hidden_size // self.num_attention_heads
        self.head_dim = int(hd)
        if self.head_dim % 2:
            raise ReferenceError("config.json: head_dim must be even for RoPE")
        self.rms_norm_eps = float(raw.get("rms_norm_eps", 1e-6))
        act = raw.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise ReferenceError(f"config.json: unsupported hidden_act {act!r} (only silu)")
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))

        # Biases, as in transformers:
        #   llama: q/k/v/o bias = attention_bias, MLP bias = mlp_bias
        #   qwen2: q/k/v bias always, o no bias
        #   qwen3: q/k/v/o bias = attention_bias
        #   mistral: none
        ab = bool(raw.get("attention_bias", False))
        if mt == "llama":
            self.qkv_bias, self.o_bias, self.mlp_bias = ab, ab, bool(raw.get("mlp_bias", False))
        elif mt == "qwen2":
            self.qkv_bias, self.o_bias, self.mlp_bias = True, False, False
        elif mt == "qwen3":
            self.qkv_bias, self.o_bias, self.mlp_bias = ab, ab, False
        else:
            self.qkv_bias, self.o_bias, self.mlp_bias = False, False, False
        self.qk_norm = mt == "qwen3"

        # RoPE. transformers >= 4.5x may keep theta and scaling together in
        # "rope_parameters"; older configs use rope_theta + rope_scaling.
        rp = raw.get("rope_parameters")
        if isinstance(rp, dict):
            self.rope_theta = float(rp.get("rope_theta", raw.get("rope_theta", 10000.0)))
            scaling = rp
        else:
            self.rope_theta = float(raw.get("rope_theta", 10000.0))
            scaling = raw.get("rope_scaling")
        self.rope_type, self.rope_scaling = _parse_rope_scaling(scaling)
        prf = float(raw.get("partial_rotary_factor", 1.0))
        if prf != 1.0:
            raise ReferenceError(f"config.json: partial_rotary_factor {prf} is not supported")

        # Sliding window: mistral uses sliding_window when non-null. qwen2 /
        # qwen3 use it only with use_sliding_window, and then only from
        # max_window_layers on; tune refuses that, and so does the reference.
        sw = raw.get("sliding_window")
        if mt in ("qwen2", "qwen3"):
            if raw.get("use_sliding_window", False):
                raise ReferenceError("config.json: use_sliding_window is not supported")
            sw = None
        self.sliding_window = int(sw) if sw else None


def _parse_rope_scaling(scaling):
    """Returns (rope_type, params) with rope_type in {"default", "linear", "llama3"}."""
    if scaling is None:
        return "default", {}
    if not isinstance(scaling, dict):
        raise ReferenceError("config.json: rope_scaling must be an object or null")
    rt = scaling.get("rope_type", scaling.get("type", "default"))
    if rt == "default":
        return "default", {}
    try:
        if rt == "linear":
            return "linear", {"factor": float(scaling["factor"])}
        if rt == "llama3":
            return "llama3", {
                "factor": float(scaling["factor"]),
                "low_freq_factor": float(scaling["low_freq_factor"]),
                "high_freq_factor": float(scaling["high_freq_factor"]),
                "original_max_position_embeddings":
                    float(scaling["original_max_position_embeddings"]),
            }
    except (KeyError, TypeError, ValueError) as e:
        raise ReferenceError(f"config.json: rope_scaling {rt}: missing or bad field {e}")
    raise ReferenceError(f"config.json: unsupported rope_scaling type {rt!r}")


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

class Model:
    """A loaded model: `config` (Config) and `weights` ({name: f32 tensor})."""

    def __init__(self, config, weights):
        self.config = config
        self.weights = weights
        self._check()

    def w(self, name):
        """The float32 tensor `name`; ReferenceError if absent."""
        t = self.weights.get(name)
        if t is None:
            raise ReferenceError(f"weight {name} is missing from the checkpoint")
        return t

    def _check(self):
        """Verify presence and shapes of all weights the forward pass uses."""
        c = self.config
        D, F, V, hd = c.hidden_size, c.intermediate_size, c.vocab_size, c.head_dim
        Hq, Hk = c.num_attention_heads, c.num_key_value_heads
        want = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
        if not c.tie_word_embeddings:
            want["lm_head.weight"] = (V, D)
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            want[p + "input_layernorm.weight"] = (D,)
            want[p + "post_attention_layernorm.weight"] = (D,)
            want[p + "self_attn.q_proj.weight"] = (Hq * hd, D)
            want[p + "self_attn.k_proj.weight"] = (Hk * hd, D)
            want[p + "self_attn.v_proj.weight"] = (Hk * hd, D)
            want[p + "self_attn.o_proj.weight"] = (D, Hq * hd)
            if c.qkv_bias:
                want[p + "self_attn.q_proj.bias"] = (Hq * hd,)
                want[p + "self_attn.k_proj.bias"] = (Hk * hd,)
                want[p + "self_attn.v_proj.bias"] = (Hk * hd,)
            if c.o_bias:
                want[p + "self_attn.o_proj.bias"] = (D,)
            if c.qk_norm:
                want[p + "self_attn.q_norm.weight"] = (hd,)
                want[p + "self_attn.k_norm.weight"] = (hd,)
            want[p + "mlp.gate_proj.weight"] = (F, D)
            want[p + "mlp.up_proj.weight"] = (F, D)
            want[p + "mlp.down_proj.weight"] = (D, F)
            if c.mlp_bias:
                want[p + "mlp.gate_proj.bias"] = (F,)
                want[p + "mlp.up_proj.bias"] = (F,)
                want[p + "mlp.down_proj.bias"] = (D,)
        for name, shape in want.items():
            got = tuple(self.w(name).shape)
            if got != shape:
                raise ReferenceError(f"weight {name} has shape {list(got)}, expected {list(shape)}")


def load_model(model_dir):
    """Load config.json + safetensors weights from a HF model directory."""
    if not os.path.isdir(model_dir):
        raise ReferenceError(f"{model_dir}: not a directory")
    cfg_path = os.path.join(model_dir, "config.json")
    try:
        with open(cfg_path) as f:
            raw = json.load(f)
    except OSError as e:
        raise ReferenceError(f"{cfg_path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise ReferenceError(f"{cfg_path}: invalid JSON: {e}")
    config = Config(raw)
    weights = load_weights(model_dir)
    # Checkpoints saved from the bare base model lack the "model." prefix.
    if "model.embed_tokens.weight" not in weights and "embed_tokens.weight" in weights:
        weights = {(k if k.startswith("lm_head.") else "model." + k): v
                   for k, v in weights.items()}
    return Model(config, weights)


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    """HF LlamaRMSNorm. x is (..., D), weight is (D,). Computed in float32:
    weight * (x * rsqrt(mean(x^2, -1) + eps))."""
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rope_inv_freq(config):
    """Inverse frequencies, shape (head_dim/2,), float32, exactly as
    transformers' ROPE_INIT_FUNCTIONS[default|linear|llama3]."""
    dim = config.head_dim
    base = config.rope_theta
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim))
    if config.rope_type == "linear":
        inv_freq = inv_freq / config.rope_scaling["factor"]
    elif config.rope_type == "llama3":
        # transformers.modeling_rope_utils._compute_llama3_parameters
        s = config.rope_scaling
        factor = s["factor"]
        low_freq_factor = s["low_freq_factor"]
        high_freq_factor = s["high_freq_factor"]
        old_context_len = s["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        # When low == high this divides by zero (inf/nan); those entries are
        # only selected if wavelen == old_context_len / low exactly, as in HF.
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    return inv_freq


def rope_cos_sin(inv_freq, position_ids):
    """inv_freq is (hd/2,), position_ids is (B, T) ints.
    Returns cos, sin, each (B, T, hd) float32: emb = cat(freqs, freqs)."""
    freqs = position_ids.to(torch.float32)[:, :, None] * inv_freq[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    """x is (..., hd): returns cat(-x[..., hd/2:], x[..., :hd/2])."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, cos, sin):
    """x is (B, H, T, hd); cos, sin are (B, T, hd). HF rotate-half RoPE."""
    cos = cos[:, None, :, :]
    sin = sin[:, None, :, :]
    return x * cos + rotate_half(x) * sin


def attention_allowed(segment_ids):
    """segment_ids is (B, T) ints. Returns bool (B, 1, T, T): [b, 0, i, j] is
    True iff query i may attend key j: j <= i and same nonzero segment, or
    i == j (so padding, segment 0, attends only to itself)."""
    T = segment_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    nonpad = (segment_ids != 0)[:, :, None]
    eye = torch.eye(T, dtype=torch.bool)
    return ((causal[None] & same & nonpad) | eye[None])[:, None]


def proj(x, prefix, model, deltas=None, weight_name=None):
    """nn.Linear: x is (..., in); returns (..., out) = x W^T (+ b).

    prefix names the layer, e.g. "model.layers.0.self_attn.q_proj"; its
    weight is prefix + ".weight" (or weight_name), its optional bias
    prefix + ".bias". deltas.get(prefix), if any, is the adapter hook:
    a tensor dW (out, in) adds x dW^T; a callable f adds f(x, x W^T).
    """
    w = model.w(weight_name or prefix + ".weight")
    base = torch.matmul(x, w.t())
    y = base
    b = model.weights.get(prefix + ".bias")
    if b is not None and _uses_bias(model.config, prefix):
        y = y + b
    if deltas:
        d = deltas.get(prefix)
        if d is not None:
            y = y + (d(x, base) if callable(d) else torch.matmul(x, d.t()))
    return y


def _uses_bias(config, prefix):
    """Whether transformers builds this nn.Linear with bias=True (a bias
    tensor present in the file for a bias-less layer is ignored, as HF does)."""
    leaf = prefix.rsplit(".", 1)[-1]
    if leaf in ("q_proj", "k_proj", "v_proj"):
        return config.qkv_bias
    if leaf == "o_proj":
        return config.o_bias
    if leaf in ("gate_proj", "up_proj", "down_proj"):
        return config.mlp_bias
    return False


def attention(model, i, x, cos, sin, allowed, deltas=None):
    """Self-attention of layer i. x is (B, T, D) (already normed);
    cos, sin are (B, T, hd); allowed is bool (B, 1, T, T). Returns (B, T, D)."""
    c = model.config
    B, T, _ = x.shape
    hd, Hq, Hk = c.head_dim, c.num_attention_heads, c.num_key_value_heads
    p = f"model.layers.{i}.self_attn."
    q = proj(x, p + "q_proj", model, deltas).view(B, T, Hq, hd)
    k = proj(x, p + "k_proj", model, deltas).view(B, T, Hk, hd)
    v = proj(x, p + "v_proj", model, deltas).view(B, T, Hk, hd)
    if c.qk_norm:  # qwen3: per-head RMSNorm over head_dim, before RoPE
        q = rms_norm(q, model.w(p + "q_norm.weight"), c.rms_norm_eps)
        k = rms_norm(k, model.w(p + "k_norm.weight"), c.rms_norm_eps)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, hd)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    groups = Hq // Hk  # GQA: repeat_kv, head h uses kv head h // groups
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5)  # (B, Hq, T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores.to(torch.float32), dim=-1)
    out = torch.matmul(probs, v)  # (B, Hq, T, hd)
    out = out.transpose(1, 2).reshape(B, T, Hq * hd)
    return proj(out, p + "o_proj", model, deltas)


def mlp(model, i, x, deltas=None):
    """SwiGLU MLP of layer i: down(silu(gate(x)) * up(x)). x is (B, T, D)."""
    p = f"model.layers.{i}.mlp."
    g = proj(x, p + "gate_proj", model, deltas)
    u = proj(x, p + "up_proj", model, deltas)
    return proj(torch.nn.functional.silu(g) * u, p + "down_proj", model, deltas)


def apply_sliding_window(config, allowed):
    """Mistral's sliding window, as transformers' sliding-window causal mask:
    query i sees key j only when i - j < sliding_window (index distance in the
    row). allowed is (B, 1, T, T) bool; returns the narrowed mask. The
    diagonal stays allowed so padding rows keep a finite softmax."""
    w = config.sliding_window
    if w is None:
        return allowed
    T = allowed.shape[-1]
    idx = torch.arange(T)
    near = (idx[:, None] - idx[None, :]) < w
    return allowed & near[None, None]


def forward(model, input_ids, position_ids=None, segment_ids=None, deltas=None):
    """Logits of a causal LM.

    input_ids, position_ids, segment_ids are (B, T) int64 tensors
    (position_ids default 0..T-1 per row; segment_ids default all 1).
    deltas: optional adapter hook, see proj(). Returns logits (B, T, V) f32.
    """
    c = model.config
    B, T = input_ids.shape
    if position_ids is None:
        position_ids = torch.arange(T, dtype=torch.int64)[None].expand(B, T)
    if segment_ids is None:
        segment_ids = torch.ones(B, T, dtype=torch.int64)
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= c.vocab_size:
        raise ReferenceError(f"input_ids out of range [0, {c.vocab_size})")
    allowed = attention_allowed(segment_ids)
    allowed = apply_sliding_window(c, allowed)
    cos, sin = rope_cos_sin(rope_inv_freq(c), position_ids)

    h = model.w("model.embed_tokens.weight")[input_ids]  # (B, T, D)
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        a = rms_norm(h, model.w(p + "input_layernorm.weight"), c.rms_norm_eps)
        h = h + attention(model, i, a, cos, sin, allowed, deltas)
        m = rms_norm(h, model.w(p + "post_attention_layernorm.weight"), c.rms_norm_eps)
        h = h + mlp(model, i, m, deltas)
    h = rms_norm(h, model.w("model.norm.weight"), c.rms_norm_eps)
    head = "model.embed_tokens.weight" if c.tie_word_embeddings else "lm_head.weight"
    return proj(h, "lm_head", model, deltas, weight_name=head)


def causal_lm_loss(logits, labels):
    """HF ForCausalLMLoss: logits (B, T, V), labels (B, T) with -100 = ignore.
    Mean float32 cross-entropy of logits[:, :-1] vs labels[:, 1:] over the
    counted labels; NaN when none is counted. Returns a 0-d tensor."""
    V = logits.shape[-1]
    shift_logits = logits[:, :-1, :].reshape(-1, V).to(torch.float32)
    shift_labels = labels[:, 1:].reshape(-1)
    keep = shift_labels != IGNORE_INDEX
    if not bool(keep.any()):
        return torch.tensor(float("nan"))
    logp = torch.log_softmax(shift_logits[keep], dim=-1)
    nll = -logp.gather(1, shift_labels[keep][:, None]).squeeze(1)
    return nll.mean()


# --------------------------------------------------------------------------
# LoRA (Hugging Face PEFT)
# --------------------------------------------------------------------------

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_KEY_PREFIX = "base_model.model."
LINEAR_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraModule:
    """One LoRA-wrapped linear layer: `prefix` (e.g.
    "model.layers.0.self_attn.q_proj"), rank `r`, `alpha`, `scale`
    (alpha/r, or alpha/sqrt(r) with rsLoRA), and the full PEFT keys
    `key_a` (lora_A.weight, (r, in)) and `key_b` (lora_B.weight, (out, r))."""

    def __init__(self, prefix, r, alpha, scale, dora=False):
        self.prefix, self.r, self.alpha, self.scale = prefix, r, alpha, scale
        self.key_a = PEFT_KEY_PREFIX + prefix + ".lora_A.weight"
        self.key_b = PEFT_KEY_PREFIX + prefix + ".lora_B.weight"
        # DoRA's magnitude (out,), as PEFT saves it (no ".weight").
        self.key_m = PEFT_KEY_PREFIX + prefix + ".lora_magnitude_vector" if dora else None


class Adapter:
    """A loaded PEFT LoRA adapter: `config` (the adapter_config.json dict),
    `modules` ({prefix: LoraModule}) and `tensors` ({full PEFT key: f32
    tensor}, A (r, in) and B (out, r) of every module)."""

    def __init__(self, config, modules, tensors):
        self.config, self.modules, self.tensors = config, modules, tensors


def lora_scale(r, alpha, use_rslora):
    """PEFT LoraLayer.update_layer: alpha / sqrt(r) with rsLoRA, else alpha / r
    (a Python float, as in PEFT)."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def lora_delta(a, b, scale):
    """The callable PEFT's lora.Linear adds to the base output:
    f(x) = lora_B(lora_A(x)) * scaling, x (..., in) -> (..., out); a is (r, in),
    b is (out, r). Dropout is inactive (eval mode, or lora_dropout 0)."""
    def f(x, base=None):
        return torch.matmul(torch.matmul(x, a.t()), b.t()) * scale
    return f


def dora_delta(w, a, b, m, scale):
    """What PEFT's DoraLinearLayer.forward adds to the base output (eval mode,
    base_result given): with lora_weight = B A (out, in) and the detached
    weight_norm = ||W + scale * lora_weight||_2 over the input dim,
    mag_norm_scale = m / weight_norm and
    f(x, base) = (mag_norm_scale - 1) * base + mag_norm_scale * lora_B(lora_A(x)) * scale,
    base being x W^T without the bias."""
    def f(x, base):
        lora_weight = torch.matmul(b, a)
        weight_norm = torch.linalg.norm(w + scale * lora_weight.detach(), dim=1).detach()
        mag_norm_scale = (m / weight_norm).view(1, -1)
        lora_result = torch.matmul(torch.matmul(x, a.t()), b.t())
        return (mag_norm_scale - 1) * base + mag_norm_scale * lora_result * scale
    return f


def lora_deltas(adapter, tensors=None, model=None):
    """proj() hooks of an adapter: {prefix: lora_delta(A, B, scale)}, with A and
    B from `tensors` ({full PEFT key: tensor}, default adapter.tensors; pass
    leaf tensors that require grad to train). DoRA modules (use_dora) give
    dora_delta, which needs the model's frozen weights."""
    t = adapter.tensors if tensors is None else tensors
    out = {}
    for p, m in adapter.modules.items():
        if m.key_m is None:
            out[p] = lora_delta(t[m.key_a], t[m.key_b], m.scale)
        else:
            w = model.w(model_linears(model)[p])
            out[p] = dora_delta(w, t[m.key_a], t[m.key_b], t[m.key_m], m.scale)
    return out


def model_linears(model):
    """{prefix: weight name} of every nn.Linear of the causal LM, as PEFT's
    module names ("model.layers.N.self_attn.q_proj", ..., "lm_head")."""
    c = model.config
    out = {}
    for i in range(c.num_hidden_layers):
        for leaf in LINEAR_LEAVES:
            sub = "mlp" if leaf in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            p = f"model.layers.{i}.{sub}.{leaf}"
            out[p] = p + ".weight"
    out["lm_head"] = "model.embed_tokens.weight" if c.tie_word_embeddings else "lm_head.weight"
    return out


def _model_non_linears(model):
    """Names of the other modules of the causal LM (named_modules minus the
    linears), which LoRA target_modules must not select."""
    c = model.config
    out = ["", "model", "model.embed_tokens", "model.layers", "model.norm", "model.rotary_emb"]
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}"
        out += [p, p + ".self_attn", p + ".mlp", p + ".mlp.act_fn",
                p + ".input_layernorm", p + ".post_attention_layernorm"]
        if c.qk_norm:
            out += [p + ".self_attn.q_norm", p + ".self_attn.k_norm"]
    return out


def _is_target(cfg, key):
    """PEFT check_target_module_exists (exclude_modules, target_modules as a
    regex string / list of names or suffixes / "all-linear", and
    layers_to_transform with layers_pattern) for the module name `key`."""
    ex = cfg.get("exclude_modules")
    if ex:
        if isinstance(ex, str):
            if re.fullmatch(ex, key):
                return False
        elif key in ex or any(key.endswith("." + e) for e in ex):
            return False
    tm = cfg.get("target_modules")
    if tm == "all-linear":  # every linear but the output layer, by leaf name
        tm = list(LINEAR_LEAVES)
    if isinstance(tm, str):
        return re.fullmatch(tm, key) is not None
    if key in tm:
        return True
    if not any(key.endswith("." + t) for t in tm):
        return False
    idx = cfg.get("layers_to_transform")
    if idx is None or (isinstance(idx, list) and not idx):
        return True
    pats = cfg.get("layers_pattern")
    if not pats:
        m = re.match(r".*\.[^.]*\.(\d+)\.", key)
    else:
        m = None
        for pat in [pats] if isinstance(pats, str) else pats:
            m = re.match(rf".*\.{pat}\.(\d+)\.", key)
            if m:
                break
    if m is None:
        return False
    n = int(m.group(1))
    return n == idx if isinstance(idx, int) else n in idx


def _pattern_value(patterns, key, default):
    """PEFT get_pattern_key: the first pattern p (in file order) with
    re.match(rf"(.*\\.)?({p})$", key) gives the value, else `default`."""
    for p, v in patterns.items():
        if re.match(rf"(.*\.)?({p})$", key):
            return v
    return default


def _number(v, what, integer=False):
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool) or v <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ReferenceError(f"{ADAPTER_CONFIG}: {what} must be {kind}, got {v!r}")
    return v


def read_adapter_config(adapter_dir):
    """Parse and validate adapter_config.json; returns the dict. Everything
    that would change the math and is not plain LoRA on nn.Linear is refused."""
    path = os.path.join(adapter_dir, ADAPTER_CONFIG)
    if not os.path.isdir(adapter_dir):
        raise ReferenceError(f"{adapter_dir}: not a directory")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError as e:
        raise ReferenceError(f"{path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise ReferenceError(f"{path}: invalid JSON: {e}")
    if not isinstance(cfg, dict):
        raise ReferenceError(f"{path}: not a JSON object")
    if cfg.get("peft_type") != "LORA":
        raise ReferenceError(f"{path}: peft_type {cfg.get('peft_type')!r} is not supported (only LORA)")
    _number(cfg.get("r"), "r", integer=True)
    _number(cfg.get("lora_alpha"), "lora_alpha")
    for key, ok in (("fan_in_fan_out", lambda v: not v), ("bias", lambda v: v in (None, "none")),
                    ("lora_bias", lambda v: not v),
                    ("modules_to_save", lambda v: not v), ("layer_replication", lambda v: not v),
                    ("trainable_token_indices", lambda v: not v), ("target_parameters", lambda v: not v),
                    ("alora_invocation_tokens", lambda v: not v), ("use_qalora", lambda v: not v)):
        if not ok(cfg.get(key)):
            raise ReferenceError(f"{path}: {key}={cfg[key]!r} is not supported")
    tm = cfg.get("target_modules")
    if not (isinstance(tm, str) or (isinstance(tm, list) and all(isinstance(t, str) for t in tm))):
        raise ReferenceError(f"{path}: target_modules must be a string or a list of strings, got {tm!r}")
    idx = cfg.get("layers_to_transform")
    if idx is not None and not (isinstance(idx, int) or (isinstance(idx, list) and all(
            isinstance(i, int) for i in idx))):
        raise ReferenceError(f"{path}: layers_to_transform must be null, an int or a list of ints")
    for key, integer in (("rank_pattern", True), ("alpha_pattern", False)):
        pat = cfg.get(key) or {}
        if not isinstance(pat, dict):
            raise ReferenceError(f"{path}: {key} must be an object")
        for k, v in pat.items():
            _number(v, f"{key}[{k!r}]", integer)
            try:
                re.compile(k)
            except re.error as e:
                raise ReferenceError(f"{path}: {key} key {k!r} is not a regular expression: {e}")
        cfg[key] = pat
    return cfg


def load_adapter(adapter_dir, model):
    """Load a PEFT LoRA adapter directory for `model` (see the module
    docstring). Every key must be base_model.model.<module>.lora_{A,B}.weight
    of a linear of the model that target_modules selects, with A (r, in) and
    B (out, r), r from rank_pattern or r; every selected module needs both.
    Returns an Adapter."""
    cfg = read_adapter_config(adapter_dir)
    wpath = os.path.join(adapter_dir, ADAPTER_WEIGHTS)
    if not os.path.exists(wpath):
        raise ReferenceError(f"{adapter_dir}: {ADAPTER_WEIGHTS} not found")
    tensors = read_safetensors(wpath)
    linears = model_linears(model)
    try:
        targets = {p for p in linears if _is_target(cfg, p)}
        bad = [p for p in _model_non_linears(model) if _is_target(cfg, p)]
    except re.error as e:
        raise ReferenceError(f"{ADAPTER_CONFIG}: bad regular expression in target_modules "
                             f"/ exclude_modules / layers_pattern: {e}")
    if bad:
        raise ReferenceError(f"{ADAPTER_CONFIG}: target_modules selects {bad[0]!r}, "
                             "which is not a linear layer (not supported)")
    dora = bool(cfg.get("use_dora", False))
    found = {}
    for key in sorted(tensors):
        m = re.fullmatch(re.escape(PEFT_KEY_PREFIX) + r"(.+)\.(?:lora_([AB])\.weight|lora_(magnitude)_vector)", key)
        if m is not None and m.group(3) and not dora:
            raise ReferenceError(f"{wpath}: key {key} is a DoRA magnitude, but use_dora is not set")
        if m is None:
            raise ReferenceError(f"{wpath}: unknown key {key} (expected "
                                 f"{PEFT_KEY_PREFIX}<module>.lora_A.weight / .lora_B.weight)")
        prefix = m.group(1)
        if prefix not in linears:
            raise ReferenceError(f"{wpath}: key {key} names module {prefix}, which the model does not have")
        if prefix not in targets:
            raise ReferenceError(f"{wpath}: key {key} names module {prefix}, which "
                                 f"target_modules does not select")
        found.setdefault(prefix, set()).add(m.group(2) or "M")
    if not found:
        raise ReferenceError(f"{wpath}: the adapter has no LoRA weights")
    missing = sorted(targets - set(found))
    if missing:
        raise ReferenceError(f"{wpath}: target module {missing[0]} has no lora_A/lora_B weights")
    modules = {}
    for prefix in sorted(found):
        if not {"A", "B"} <= found[prefix]:
            raise ReferenceError(f"{wpath}: module {prefix} has only one of lora_A and lora_B")
        if dora and "M" not in found[prefix]:
            raise ReferenceError(f"{wpath}: module {prefix} has no lora_magnitude_vector (use_dora)")
        r = _pattern_value(cfg["rank_pattern"], prefix, cfg["r"])
        alpha = _pattern_value(cfg["alpha_pattern"], prefix, cfg["lora_alpha"])
        mod = LoraModule(prefix, r, alpha, lora_scale(r, alpha, bool(cfg.get("use_rslora", False))), dora)
        out_f, in_f = model.w(linears[prefix]).shape
        shapes = [(mod.key_a, (r, in_f)), (mod.key_b, (out_f, r))]
        if dora:
            shapes.append((mod.key_m, (out_f,)))
        for key, want in shapes:
            got = tuple(tensors[key].shape)
            if got != want:
                raise ReferenceError(f"{wpath}: tensor {key} has shape {list(got)}, expected {list(want)}")
        modules[prefix] = mod
    return Adapter(cfg, modules, tensors)


def lora_step(model, adapter, ids, labels, pos=None, seg=None, lr=1e-3, betas=(0.9, 0.999),
              eps=1e-8, weight_decay=0.01, steps=1):
    """Train the adapter's A and B (float32 leaves; base weights frozen) with
    torch.optim.AdamW on the causal LM loss of one fixed batch.

    ids, labels, pos, seg are (B, T) int64 tensors as for forward(). Runs
    `steps` optimizer steps, recomputing loss and gradients before each.
    Returns (losses [steps] floats, the loss before each step; grads {key:
    tensor}, the gradients at the initial parameters; updated {key: tensor},
    the parameters after the last step), keys being full PEFT keys.
    """
    if steps < 1:
        raise ReferenceError(f"--steps must be at least 1, got {steps}")
    if not int((labels[:, 1:] != IGNORE_INDEX).sum()):
        raise ReferenceError("input: no label is counted, the loss is undefined")
    keys = sorted(adapter.tensors)
    params = {k: adapter.tensors[k].detach().clone().to(torch.float32).requires_grad_(True) for k in keys}
    opt = torch.optim.AdamW([params[k] for k in keys], lr=lr, betas=betas, eps=eps,
                            weight_decay=weight_decay)
    deltas = lora_deltas(adapter, params, model)
    losses, grads = [], None
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = causal_lm_loss(forward(model, ids, pos, seg, deltas), labels)
        loss.backward()
        losses.append(float(loss))
        if grads is None:
            grads = {k: (torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
                     for k, p in params.items()}
        opt.step()
    updated = {k: p.detach().clone() for k, p in params.items()}
    return losses, grads, updated


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _int_matrix(obj, key, shape=None):
    """obj[key] as an int64 (B, T) tensor, checking it is rectangular and,
    if shape is given, equal to it."""
    v = obj[key]
    if (not isinstance(v, list) or not v or not all(isinstance(r, list) for r in v)
            or len({len(r) for r in v}) != 1 or not v[0]):
        raise ReferenceError(f"input: {key} must be a non-empty rectangular list of lists")
    if not all(isinstance(e, int) and not isinstance(e, bool) for r in v for e in r):
        raise ReferenceError(f"input: {key} must contain only integers")
    t = torch.tensor(v, dtype=torch.int64)
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ReferenceError(f"input: {key} has shape {list(t.shape)}, expected {list(shape)}")
    return t


def read_input(path):
    """Parse IN.json -> (input_ids, labels, position_ids|None, segment_ids|None)."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except OSError as e:
        raise ReferenceError(f"{path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise ReferenceError(f"{path}: invalid JSON: {e}")
    if not isinstance(obj, dict) or "input_ids" not in obj:
        raise ReferenceError(f"{path}: must be an object with input_ids")
    ids = _int_matrix(obj, "input_ids")
    labels = _int_matrix(obj, "labels", ids.shape) if obj.get("labels") is not None else ids.clone()
    pos = _int_matrix(obj, "position_ids", ids.shape) if obj.get("position_ids") is not None else None
    seg = _int_matrix(obj, "segment_ids", ids.shape) if obj.get("segment_ids") is not None else None
    return ids, labels, pos, seg


def write_output(path, loss, logits):
    """Write little-endian f32: loss, then logits (B, T, V) row-major."""
    arr = np.concatenate([np.array([loss], dtype="<f4"),
                          logits.detach().contiguous().numpy().astype("<f4").reshape(-1)])
    with open(path, "wb") as f:
        f.write(arr.tobytes())


def cmd_forward(args):
    model = load_model(args.model)
    deltas = lora_deltas(load_adapter(args.adapter, model), model=model) if args.adapter else None
    ids, labels, pos, seg = read_input(args.input)
    with torch.no_grad():
        logits = forward(model, ids, pos, seg, deltas)
        loss = float(causal_lm_loss(logits, labels))
    write_output(args.out, loss, logits)
    print(json.dumps({"loss": None if math.isnan(loss) else loss,
                      "shape": list(logits.shape)}))


def cmd_lora_step(args):
    model = load_model(args.model)
    adapter = load_adapter(args.adapter, model)
    ids, labels, pos, seg = read_input(args.input)
    losses, grads, updated = lora_step(
        model, adapter, ids, labels, pos, seg, lr=args.lr, betas=(args.beta1, args.beta2),
        eps=args.eps, weight_decay=args.weight_decay, steps=args.steps)
    out = {"loss": torch.tensor(losses, dtype=torch.float32)}
    for k in adapter.tensors:
        out[k + ".grad"] = grads[k]
        out[k + ".updated"] = updated[k]
    write_safetensors(args.out, out)
    print(json.dumps({"loss": losses[0], "steps": args.steps}))


def setup_torch():
    """Deterministic float32 CPU settings."""
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("forward", help="write loss and logits")
    f.add_argument("--model", required=True, help="HF model directory")
    f.add_argument("--input", required=True, help="IN.json")
    f.add_argument("--out", required=True, help="OUT.bin")
    f.add_argument("--adapter", help="PEFT LoRA adapter directory (optional)")
    s = sub.add_parser("lora-step", help="LoRA gradients and AdamW steps")
    s.add_argument("--model", required=True, help="HF model directory")
    s.add_argument("--input", required=True, help="IN.json")
    s.add_argument("--adapter", required=True, help="PEFT LoRA adapter directory")
    s.add_argument("--out", required=True, help="OUT.safetensors")
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--beta1", type=float, default=0.9)
    s.add_argument("--beta2", type=float, default=0.999)
    s.add_argument("--eps", type=float, default=1e-8)
    s.add_argument("--weight-decay", type=float, default=0.01)
    s.add_argument("--steps", type=int, default=1)
    args = ap.parse_args(argv)
    setup_torch()
    try:
        if args.cmd == "forward":
            cmd_forward(args)
        elif args.cmd == "lora-step":
            cmd_lora_step(args)
    except ReferenceError as e:
        print(f"reference.py: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # unexpected: still one line
        print(f"reference.py: error: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
