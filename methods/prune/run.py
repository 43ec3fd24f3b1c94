"""PRUNE's unlearning loop: single points, representatives for many points, whole classes
(PRUNE's representatives, released code ``purchase_multipoint.py``;
the choices are listed in method.py)."""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from bench.core import console
from bench.core.errors import BenchError

from .certify import check
from .engine import Builder, Refusal
from .lp import Clock
from .modules import PatchedModel
from .network import features, head_module, split
from .patches import bound_K


def _bounds(model: PatchedModel, request, u: torch.Tensor, x_shape, margin: float):
    """The input box X (see method.py) as float64 numpy arrays over the patched space."""
    lo = hi = None
    if model.kind == "mlp" and getattr(request, "input_bounds", None) is not None:
        blo, bhi = request.input_bounds
        shape = tuple(x_shape)
        lo = torch.broadcast_to(torch.as_tensor(blo, dtype=torch.float64).cpu(), shape).flatten().numpy().copy()
        hi = torch.broadcast_to(torch.as_tensor(bhi, dtype=torch.float64).cpu(), shape).flatten().numpy().copy()
    if lo is None:
        if not len(u):
            return None, None
        umin, umax = u.min(0).values.numpy(), u.max(0).values.numpy()
        span = umax - umin
        pad = margin * np.maximum(span, span.mean() if span.size else 0.0)
        lo, hi = umin - pad, umax + pad
    if len(u):
        lo = np.minimum(lo, u.min(0).values.numpy())
        hi = np.maximum(hi, u.max(0).values.numpy())
    if model.lo.numel():
        lo, hi = np.minimum(lo, model.lo.numpy()), np.maximum(hi, model.hi.numpy())
    return lo, hi


def _set_bounds(model: PatchedModel, lo, hi) -> None:
    """Record X; if it grew, recompute every earlier patch's K on the larger box (a larger K keeps
    h = p where g = 1 and h = 0 where g = 0)."""
    grew = not model.lo.numel() or (lo < model.lo.numpy()).any() or (hi > model.hi.numpy()).any()
    model.lo = torch.as_tensor(lo, dtype=torch.float64).clone()
    model.hi = torch.as_tensor(hi, dtype=torch.float64).clone()
    if grew:
        for patch in model.patches:
            patch.K = torch.tensor(bound_K(patch.c.numpy(), patch.d.numpy(), lo, hi), dtype=torch.float64)


def _target(rule: str, label: int, logits: np.ndarray, rng: np.random.Generator) -> int:
    C = len(logits)
    if rule == "nearest":
        order = np.argsort(-logits, kind="stable")
        return int(next(c for c in order if c != label))
    t = int(rng.integers(C - 1))
    return t + 1 if t >= label else t


def run_prune(model, request, params: dict, ctx):
    from sklearn.cluster import KMeans

    x, y = request.forget_x, request.forget_y
    if x is None or y is None:
        raise BenchError("Method 'prune' needs the forget set (request.forget_x/forget_y).")
    if isinstance(model, PatchedModel):
        pm = model
        _, head = split(pm.original)
    else:
        kind, head = split(model)
        pm = PatchedModel(model, kind)
    device = next(pm.original.parameters()).device
    x, y = x.to(device), y.to(device)  # a forget set in host memory where the data are streamed
    pm.patches.cpu()
    pm.lo, pm.hi = pm.lo.cpu(), pm.hi.cpu()
    was_training = pm.original.training
    pm.eval()
    hmod = head_module(pm.kind, pm.original)
    with torch.no_grad():
        u_dev = features(pm.kind, pm.original, x) if len(y) else x.new_zeros(0, head.in_dim)
        if len(y):
            probe = pm.original(x[: min(len(y), 64)])
            if not torch.allclose(hmod(u_dev[: len(probe)]), probe, atol=1e-4, rtol=1e-4):
                raise BenchError(f"PRUNE: the model's {pm.kind} split does not reproduce its outputs (head(phi(x)) != "
                                 "model(x)); the model must be phi followed by its head.")
        base = hmod(u_dev).double().cpu() if len(y) else torch.zeros(0, head.out_dim, dtype=torch.float64)
    u = u_dev.detach().double().cpu()
    labels = y.detach().cpu().numpy()
    if u.shape[1] != head.in_dim:
        raise BenchError(f"PRUNE: the patched space has {u.shape[1]} dimensions but the head expects {head.in_dim}.")

    lo, hi = _bounds(pm, request, u, x.shape[1:], float(params["feature_margin"]))
    if lo is not None:
        _set_bounds(pm, lo, hi)
    clock = Clock()
    builder = Builder(head, lo, hi, params, clock, pm.__dict__.setdefault("_witness", {}))
    # what the automatic ones took, as the builder uses them (region: activation, or box on a head
    # without hidden layers; lp_threads: the trial's threads), recorded as resolved.*
    if params["region"] == "auto":
        ctx.resolved["region"] = builder.region_kind
    if not params["lp_threads"]:
        ctx.resolved["lp_threads"] = builder.threads
    rng = np.random.default_rng([int(ctx.seed), len(pm.patches)])
    start = time.perf_counter()

    def current_logits() -> np.ndarray:
        with torch.no_grad():
            out = base + (pm.patch_output(u) if len(pm.patches) else 0.0)
        return out.numpy()

    added = []
    iterations = 0
    logits = current_logits() if len(y) else np.zeros((0, head.out_dim))
    refused: dict[int, dict] = {}  # forget index -> why its certificate cannot hold (Builder.build)
    still = logits.argmax(1) == labels if len(y) else np.zeros(0, dtype=bool)
    alive = still.copy()
    u_np = u.numpy()
    # progress in forget points settled (patched or refused): hours of LPs at 2,000 points printed
    # nothing (scale audit, 2026-12-07); within an iteration, each cluster counts its members
    console.epoch(0, len(y), "forget point")
    while len(y) and alive.any() and still.mean() > float(params["stop_forget_acc"]) and iterations < params["max_iter"]:
        iterations += 1
        idx = np.nonzero(alive)[0]
        k = int(params["k"])
        if len(idx) <= k:
            clusters = [(i, []) for i in idx]
        else:
            km = KMeans(n_clusters=k, n_init=10, random_state=int(ctx.seed) + iterations).fit(u_np[idx])
            clusters = []
            for c in range(k):
                members = idx[km.labels_ == c]
                if not len(members):
                    continue
                rep = members[np.argmin(np.linalg.norm(u_np[members] - km.cluster_centers_[c], axis=1))]
                clusters.append((rep, [m for m in members if m != rep]))
        settled = int(len(y) - alive.sum())
        for rep, members in clusters:
            settled += 1 + len(members)
            with torch.no_grad():
                cur = (base[rep] + (pm.patch_output(u[rep:rep + 1])[0] if len(pm.patches) else 0.0)).numpy()
            target = _target(params["target"], int(labels[rep]), cur, rng)
            seen = {builder.region(u_np[rep]).pattern.tobytes() if builder.region_kind == "activation" else rep}
            distinct = []
            for m in members:
                key = builder.region(u_np[m]).pattern.tobytes() if builder.region_kind == "activation" else m
                if key not in seen:
                    seen.add(key)
                    distinct.append(u_np[m])
            try:
                patch = builder.build(list(pm.patches), u_np[rep], int(labels[rep]), target, distinct)
            except Refusal as no:
                refused[int(rep)] = {"forget_index": int(rep), "label": int(labels[rep]), "target": target,
                                     "conflicts_with_patch": no.patch, "why": no.why}
                continue
            patch.info["iteration"] = iterations
            patch.info["cluster_size"] = 1 + len(members)
            pm.patches.append(patch)
            added.append(patch)
            console.epoch(max(1, min(settled, len(y) - 1)), len(y), "forget point")
        logits = current_logits()
        still = logits.argmax(1) == labels
        alive = still.copy()
        alive[list(refused)] = False
        console.epoch(max(1, int(len(y) - alive.sum())), len(y), "forget point")
    seconds = time.perf_counter() - start

    pm.info = {"gamma": float(params["gamma"]), "lp": params["lp"], "region": builder.region_kind,
               "calls": int(pm.info.get("calls", 0)) + 1,
               # what a fresh model of the original's architecture needs (a saved file is self-describing)
               "num_classes": int(request.num_classes), "input_shape": [int(v) for v in x.shape[1:]]}
    ctx.metrics["patches"] = float(len(pm.patches))
    ctx.metrics["patch_params"] = float(pm.patch_params)
    ctx.metrics["lp_seconds"] = clock.seconds
    ctx.metrics["prune_iterations"] = float(iterations)
    ctx.metrics["uncertifiable_points"] = float(len(refused))
    records = []
    if params["certify"]:
        t0 = time.perf_counter()
        records = check(pm, *(b.numpy() for b in (pm.lo, pm.hi))) if len(pm.patches) else []
        ctx.metrics["certify_seconds"] = time.perf_counter() - t0
        # a representative refused as uncertifiable counts as a point not certified
        total = len(records) + len(refused)
        ctx.metrics["certified_fraction"] = (float(sum(r["certified"] for r in records)) / total
                                             if total else float("nan"))
    summary = pm.summary()
    summary.update({"build_seconds": seconds, "iterations": iterations, "patches_added": len(added),
                    "lp_solves": clock.solves, "lp_iterations": clock.iterations, "certificates": records,
                    "uncertifiable": list(refused.values()), "construction": builder.stats})
    ctx.artifacts["prune_patches.json"] = json.dumps(summary, indent=1, default=float)
    if params.get("save_model"):
        ctx.artifacts["prune_model.safetensors"] = pm.to_bytes()
    pm.to(device)
    pm.original.train(was_training)
    return pm
