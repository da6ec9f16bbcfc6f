#!/usr/bin/env python3
"""Independent PyTorch oracle for `tune merge`: what the merged adapter's
update of every module should be, from the input adapters.

    python3 merge.py --model DIR --method cat|svd|ties --r R [--density D]
        --weights w1,w2,... --merged MDIR [--true OUT.safetensors] ADIR...

Every adapter (inputs and the merged one) is read with reference.py's
load_adapter, which applies PEFT's rules (target_modules, layers_to_transform,
rank_pattern / alpha_pattern, rsLoRA scale), for the model in DIR. In float64:

  true update   T = Σ wᵢ·sᵢ·Bᵢ·Aᵢ over the inputs that have the module
  merged update M = s·B·A of the merged adapter (zero if it lacks the module)

and per module (stdout, one JSON object {"modules": {name: {...}}}):

  all methods: "max_true" max|T|, "rank" the merged module's r
  cat:  "max_err" max|M - T|
  svd:  "err_fro" ‖T - M‖_F and "err_nuc" (sum of the singular values of
        T - M) next to "opt_fro" and "opt_nuc", the same norms of the best
        rank-R approximation's error, i.e. of T's singular values beyond R
        (Eckart–Young: no rank-R matrix does better); "gap" σ_R - σ_{R+1}
  ties: "max_err" max|M - P| where P is PEFT's ties_svd result written out
        below from peft/utils/merge_utils.py (ties, magnitude_based_pruning,
        calculate_majority_sign_mask "total", disjoint_merge) and
        LoraModel._svd_generalized_task_arithmetic_weighted_adapter (full SVD,
        U[:, :R]·diag(S[:R]), Vh[:R]), with task tensors τᵢ = sᵢ·Bᵢ·Aᵢ (PEFT's
        get_delta_weight) and weights wᵢ (PEFT passes wᵢ·sᵢ, scaling twice);
        "gap" as for svd, of the TIES update.

--true writes T of every module as float32 (key: the module name).
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402


def deltas(adapter):
    """{module: (scale·B·A in float64, r)}."""
    out = {}
    for p, m in adapter.modules.items():
        a = adapter.tensors[m.key_a].to(torch.float64)
        b = adapter.tensors[m.key_b].to(torch.float64)
        out[p] = (m.scale * (b @ a), m.r)
    return out


def magnitude_based_pruning(t, density):
    mask = torch.zeros_like(t).reshape(-1)
    k = int(density * t.numel())
    top_k = torch.topk(t.abs().reshape(-1), k=k, largest=True)
    mask[top_k[1]] = 1
    return t * mask.reshape(t.shape)


def ties(task_tensors, weights, density):
    if density < 1:
        task_tensors = [magnitude_based_pruning(t, density) for t in task_tensors]
    task_tensors = torch.stack(task_tensors, dim=0)
    sign = task_tensors.sign()
    majority_sign = torch.where(task_tensors.sum(dim=0) >= 0, 1, -1)
    mask = sign == majority_sign
    weighted = task_tensors * weights.view(-1, 1, 1)
    mixed = (weighted * mask).sum(dim=0)
    return mixed / torch.clamp(mask.sum(dim=0), min=1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--method", required=True, choices=["cat", "svd", "ties"])
    ap.add_argument("--r", type=int, required=True)
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--true")
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args()
    ref.setup_torch()
    weights = [float(w) for w in args.weights.split(",")]
    model = ref.load_model(args.model)
    inputs = [deltas(ref.load_adapter(d, model)) for d in args.inputs]
    merged = deltas(ref.load_adapter(args.merged, model))
    names = sorted(set().union(*inputs, merged))
    out, true = {}, {}
    for name in names:
        have = [(w, d[name][0]) for w, d in zip(weights, inputs) if name in d]
        shape = (have or [(0, merged[name][0])])[0][1].shape
        t = sum((w * d for w, d in have), torch.zeros(shape, dtype=torch.float64))
        m, r = merged.get(name, (torch.zeros(shape, dtype=torch.float64), 0))
        true[name] = t.to(torch.float32)
        res = {"max_true": float(t.abs().max()), "rank": r}
        if args.method == "cat":
            res["max_err"] = float((m - t).abs().max())
        elif args.method == "svd":
            s = torch.linalg.svdvals(t)
            res["opt_fro"] = float(s[args.r:].square().sum().sqrt())
            res["opt_nuc"] = float(s[args.r:].sum())
            res["err_fro"] = float(torch.linalg.matrix_norm(t - m))
            res["err_nuc"] = float(torch.linalg.svdvals(t - m).sum())
            res["gap"] = float(s[args.r - 1] - s[args.r]) if len(s) > args.r else None
        else:
            tw = torch.tensor([w for w, _ in have], dtype=torch.float64)
            delta = ties([d for _, d in have], tw, args.density) if have else t
            u, s, vh = torch.linalg.svd(delta, full_matrices=True)
            p = (u[:, :args.r] @ torch.diag(s[:args.r])) @ vh[:args.r, :]
            res["max_err"] = float((m - p).abs().max())
            res["max_ties"] = float(delta.abs().max())
            res["gap"] = float(s[args.r - 1] - s[args.r]) if len(s) > args.r else None
        out[name] = res
    if args.true:
        ref.write_safetensors(args.true, true)
    print(json.dumps({"modules": out}))


if __name__ == "__main__":
    main()
