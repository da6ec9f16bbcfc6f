"""A Llama-family decoder with LoRA, written by hand in PyTorch for the peer
benchmark (train.py): transformers' modeling_llama / modeling_qwen2 eager
path op for op, without the transformers package.

RMSNorm in f32 scaled back in the input dtype; RoPE with rotate-half; GQA
attention as matmul -> f32 softmax -> matmul under an additive causal mask
(torch 1.13 has no F.scaled_dot_product_attention); SwiGLU MLP; tied or
separate lm_head; cross-entropy on f32 logits. LoRA as PEFT's lora.Linear:
y = W x (+ b) + B (A dropout(x)) * alpha / r. config.json is read, and the
RoPE frequencies (rope_scaling included) computed, by the project's reference
(internal/testmodels/reference/reference.py), the rest is independent of it.
sliding_window is not applied (it does not change the work at these lengths). Frozen weights are random N(0, 0.02)
made directly in their dtype.

Imported after train.py has chosen the BLAS library, since importing torch
loads it.
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testmodels", "reference"))
import reference  # noqa: E402  (config.json rules and RoPE frequencies)

SUPPORTED = ("llama", "mistral", "qwen2")


class ConfigError(Exception):
    """config.json lacks a field or holds a bad value; one line for the user."""


class Config:
    """The fields of a Hugging Face config.json this model needs, read by the
    project's reference (its rules for defaults, biases and RoPE scaling)."""

    def __init__(self, path):
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except OSError as e:
            raise ConfigError(f"{path}: {e.strerror}")
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {e.lineno}: not valid JSON: {e.msg}")
        try:
            c = reference.Config(raw)
        except reference.ReferenceError as e:
            raise ConfigError(f"{path}: {str(e).removeprefix('config.json: ')}")
        if c.model_type not in SUPPORTED:
            raise ConfigError(f"{path}: model_type: expected one of {', '.join(SUPPORTED)}, got {c.model_type!r}")
        self.ref = c
        self.hidden, self.inter = c.hidden_size, c.intermediate_size
        self.layers, self.vocab = c.num_hidden_layers, c.vocab_size
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.eps, self.tied = c.rms_norm_eps, c.tie_word_embeddings
        self.qkv_bias, self.o_bias, self.mlp_bias = c.qkv_bias, c.o_bias, c.mlp_bias


def frozen(shape, dtype, std=0.02):
    # Made in the target dtype directly: an f32 copy first would raise peak RSS
    # above what loading a bf16 checkpoint costs.
    return nn.Parameter(torch.empty(shape, dtype=dtype).normal_(0.0, std), requires_grad=False)


class LoRALinear(nn.Module):
    """A frozen linear layer with an optional LoRA branch (PEFT's lora.Linear).
    lora: (r, alpha, dropout, dtype of A and B) or None."""

    def __init__(self, n_in, n_out, bias, dtype, lora):
        super().__init__()
        self.weight = frozen((n_out, n_in), dtype)
        self.bias = frozen((n_out,), dtype) if bias else None
        self.lora = lora is not None
        if self.lora:
            r, alpha, dropout, ldtype = lora
            self.scale = alpha / r
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.lora_a = nn.Parameter(torch.empty((r, n_in), dtype=ldtype))
            nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
            # PEFT starts B at zero; random here so A's gradient is not all zero.
            self.lora_b = nn.Parameter(torch.empty((n_out, r), dtype=ldtype).normal_(0.0, 1e-3))

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if self.lora:
            a = self.lora_a
            d = F.linear(F.linear(self.dropout(x.to(a.dtype)), a), self.lora_b) * self.scale
            y = y + d.to(y.dtype)
        return y


class RMSNorm(nn.Module):
    def __init__(self, n, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, dtype=dtype), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        # As transformers' LlamaRMSNorm: in f32, scaled back in the input dtype.
        dt = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dt)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Layer(nn.Module):
    def __init__(self, c, dtype, lora, targets):
        super().__init__()

        def lin(name, i, o, bias):
            return LoRALinear(i, o, bias, dtype, lora if name in targets else None)

        hd = c.head_dim
        self.c = c
        self.input_layernorm = RMSNorm(c.hidden, c.eps, dtype)
        self.q_proj = lin("q_proj", c.hidden, c.heads * hd, c.qkv_bias)
        self.k_proj = lin("k_proj", c.hidden, c.kv_heads * hd, c.qkv_bias)
        self.v_proj = lin("v_proj", c.hidden, c.kv_heads * hd, c.qkv_bias)
        self.o_proj = lin("o_proj", c.heads * hd, c.hidden, c.o_bias)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.eps, dtype)
        self.gate_proj = lin("gate_proj", c.hidden, c.inter, c.mlp_bias)
        self.up_proj = lin("up_proj", c.hidden, c.inter, c.mlp_bias)
        self.down_proj = lin("down_proj", c.inter, c.hidden, c.mlp_bias)

    def forward(self, x, cos, sin, mask):
        c = self.c
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, t, c.heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: each KV head serves heads/kv_heads query heads.
        rep = c.heads // c.kv_heads
        if rep > 1:
            k = k[:, :, None].expand(b, c.kv_heads, rep, t, c.head_dim).reshape(b, c.heads, t, c.head_dim)
            v = v[:, :, None].expand(b, c.kv_heads, rep, t, c.head_dim).reshape(b, c.heads, t, c.head_dim)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(c.head_dim) + mask
        p = F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
        a = torch.matmul(p, v).transpose(1, 2).reshape(b, t, c.heads * c.head_dim)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, c, dtype, lora, targets):
        super().__init__()
        self.c = c
        self.embed = frozen((c.vocab, c.hidden), dtype)
        self.layers = nn.ModuleList(Layer(c, dtype, lora, targets) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.eps, dtype)
        self.lm_head = self.embed if c.tied else frozen((c.vocab, c.hidden), dtype)

    def rope(self, t, dtype):
        inv = reference.rope_inv_freq(self.c.ref)  # rope_theta, with rope_scaling applied
        f = torch.outer(torch.arange(t, dtype=torch.float32), inv.to(torch.float32))
        e = torch.cat((f, f), dim=-1)
        return e.cos().to(dtype), e.sin().to(dtype)

    def logits(self, ids):
        """ids (B, T) -> logits (B, T, V) in the compute dtype."""
        dtype = self.embed.dtype if not torch.is_autocast_cpu_enabled() else torch.get_autocast_cpu_dtype()
        t = ids.shape[1]
        cos, sin = self.rope(t, dtype)
        mask = torch.full((t, t), float("-inf"), dtype=dtype).triu(1)
        x = F.embedding(ids, self.embed)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return F.linear(self.norm(x), self.lm_head)

    def forward(self, ids, targets):
        """Mean cross-entropy of the logits at each position against targets
        (B, T), on f32 logits as transformers computes it."""
        logits = self.logits(ids)
        return F.cross_entropy(logits.float().view(-1, self.c.vocab), targets.view(-1))
