"""Which part of a network PRUNE patches, and its linear regions (PRUNE, arXiv 2505.06520, and
REASSURE, Fu & Li, ICLR 2022).

A network is split into a frozen *extractor* phi and a ReLU *head* (Linear/ReLU layers):

- ``mlp``: a stack of Linear/ReLU (bench.nn.nets.MLP, any Sequential of Flatten/Linear/ReLU):
  phi = flatten, the head is the whole network; PRUNE patches it in input space (the paper's
  setting).
- ``features_head``: a module with ``.features`` and ``.head`` (bench.nn.nets.SmallCNN): phi =
  ``features``, the head is ``head``; feature space.
- ``timm``: a timm model: phi = ``forward_head(forward_features(x), pre_logits=True)``, the head is
  ``get_classifier()``; feature space (REASSURE's ImageNet setting patches an MLP head).

Regions of the head at a point u (closed form from the activation pattern, for all neurons at once,
no autograd): with C_0 = I, c_0 = 0 and for every hidden layer l, Z_l = W_l C_{l-1},
z_l = W_l c_{l-1} + b_l (pre-activations are Z_l u + z_l on the region), s_l = [Z_l u + z_l >= 0],
C_l = diag(s_l) Z_l, c_l = diag(s_l) z_l; finally F = W_L C_{L-1}, e = W_L c_{L-1} + b_L. Row j of
the H-representation is -sigma_j (w_j . x + beta_j) <= 0 with sigma_j = +1 for an active neuron,
-1 for an inactive one: each row is that neuron's own gradient (the released code's rows are
cumulative sums of gradients because it never zeroes them [fix]). Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.core.errors import BenchError

_PASSIVE = (nn.Flatten, nn.Identity, nn.Dropout)


@dataclass
class Head:
    """A ReLU head as float64 numpy weights: ``weights[l]`` (out, in), ``biases[l]`` (out,)."""

    weights: list
    biases: list

    @property
    def hidden(self) -> int:
        return int(sum(w.shape[0] for w in self.weights[:-1]))

    @property
    def in_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.weights[-1].shape[0])


def _linear_relu_stack(module: nn.Module, what: str) -> Head:
    """The Linear layers of ``module`` if it is Flatten/Linear/ReLU/Dropout/Identity only, Linear and
    ReLU alternating and ending with a Linear."""
    leaves = [m for m in module.modules() if not list(m.children())] if list(module.children()) else [module]
    kinds = []
    linears = []
    for m in leaves:
        if isinstance(m, nn.Linear):
            kinds.append("L")
            linears.append(m)
        elif isinstance(m, nn.ReLU):
            kinds.append("R")
        elif isinstance(m, _PASSIVE):
            continue
        else:
            raise BenchError(
                f"PRUNE cannot patch {what}: it contains a {type(m).__name__}; the patched part must be Linear layers "
                "with ReLU between them (an MLP head). Use a ReLU MLP (--model mlp), a CNN with .features/.head "
                "(--model cnn) or a timm model whose get_classifier() is a Linear layer."
            )
    pattern = "".join(kinds)
    if not linears or pattern != "LR" * (len(linears) - 1) + "L":
        raise BenchError(
            f"PRUNE cannot patch {what}: its layers are {pattern or 'empty'} (L = Linear, R = ReLU); expected Linear "
            "layers with one ReLU between consecutive ones, ending with a Linear."
        )
    ws = [m.weight.detach().double().cpu().numpy() for m in linears]
    bs = [m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(m.out_features) for m in linears]
    return Head(ws, bs)


def split(model: nn.Module) -> tuple[str, Head]:
    """``(kind, head)`` for ``model`` (see the module docstring); a clear BenchError otherwise."""
    if isinstance(model, nn.Sequential) or _only_mlp_layers(model):
        return "mlp", _linear_relu_stack(model, f"the model ({type(model).__name__})")
    if isinstance(getattr(model, "features", None), nn.Module) and isinstance(getattr(model, "head", None), nn.Module):
        return "features_head", _linear_relu_stack(model.head, f"the head of {type(model).__name__}")
    if all(callable(getattr(model, a, None)) for a in ("forward_features", "forward_head", "get_classifier")):
        clf = model.get_classifier()
        if not isinstance(clf, nn.Module) or isinstance(clf, nn.Identity):
            raise BenchError(f"PRUNE cannot patch the timm model {type(model).__name__}: it has no classifier layer.")
        return "timm", _linear_relu_stack(clf, f"the classifier of the timm model {type(model).__name__}")
    raise BenchError(
        f"PRUNE cannot patch a {type(model).__name__}: it is neither a ReLU MLP (Linear/ReLU layers only), nor a model "
        "with .features and .head (bench.nn.nets.SmallCNN, --model cnn), nor a timm model (forward_features, "
        "forward_head, get_classifier). Use --model mlp, cnn or a timm architecture."
    )


def _only_mlp_layers(model: nn.Module) -> bool:
    leaves = [m for m in model.modules() if not list(m.children())]
    return bool(leaves) and all(isinstance(m, (nn.Linear, nn.ReLU, *_PASSIVE)) for m in leaves) and any(
        isinstance(m, nn.Linear) for m in leaves)


def features(kind: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """phi(x), flattened to (B, d): the input of the patched head."""
    if kind == "mlp":
        return x.flatten(1)
    if kind == "features_head":
        return model.features(x).flatten(1)
    return model.forward_head(model.forward_features(x), pre_logits=True).flatten(1)


def head_module(kind: str, model: nn.Module) -> nn.Module:
    return model if kind == "mlp" else model.head if kind == "features_head" else model.get_classifier()


@dataclass
class Region:
    """The linear region of the head at ``point``: rows ``A u <= b`` (neuron rows, box rows kept
    apart as bounds ``lo <= u <= hi``), the affine form ``F u + e`` of the head on it and the
    activation ``pattern`` (empty for an l_inf box region)."""

    point: np.ndarray
    A: np.ndarray
    b: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    F: np.ndarray
    e: np.ndarray
    pattern: np.ndarray


def activation_region(head: Head, u: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Region:
    """Closed-form H-representation and linearisation at ``u`` (see the module docstring)."""
    u = np.asarray(u, dtype=np.float64)
    d = u.shape[0]
    C, c = None, np.zeros(d)  # C = None: the identity (skips a d x d product on the first layer)
    rows, rhs, pattern = [], [], []
    for W, bias in zip(head.weights[:-1], head.biases[:-1]):
        Z, z = (W.copy() if C is None else W @ C), W @ c + bias
        pre = Z @ u + z
        s = pre >= 0
        sigma = np.where(s, 1.0, -1.0)
        rows.append(-sigma[:, None] * Z)
        rhs.append(sigma * z)
        pattern.append(s)
        C, c = Z * s[:, None], z * s
    F = head.weights[-1].copy() if C is None else head.weights[-1] @ C
    e = head.weights[-1] @ c + head.biases[-1]
    A = np.concatenate(rows) if rows else np.zeros((0, d))
    b = np.concatenate(rhs) if rhs else np.zeros(0)
    pat = np.concatenate(pattern) if pattern else np.zeros(0, dtype=bool)
    return Region(u, A, b, np.asarray(lo, np.float64), np.asarray(hi, np.float64), F, e, pat)


def activation_box_region(head: Head, u: np.ndarray, lo: np.ndarray, hi: np.ndarray, radius: float) -> Region:
    """The activation region intersected with the l_inf box of ``radius`` around ``u``: the head is
    still affine on it, and it is small where the activation region is large (small heads in feature
    space)."""
    reg = activation_region(head, u, lo, hi)
    d = len(reg.point)
    reg.A = np.concatenate([reg.A, np.eye(d), -np.eye(d)])
    reg.b = np.concatenate([reg.b, reg.point + radius, -(reg.point - radius)])
    return reg


def box_region(head: Head, u: np.ndarray, lo: np.ndarray, hi: np.ndarray, radius: float) -> Region:
    """An l_inf box of ``radius`` around ``u`` intersected with the domain (for a head with no hidden
    ReLU, whose only linear region is the whole space); rows +-I."""
    if head.hidden:
        raise BenchError("region='box' is for heads without hidden ReLU units; use region='activation' here.")
    u = np.asarray(u, dtype=np.float64)
    d = u.shape[0]
    A = np.concatenate([np.eye(d), -np.eye(d)])
    b = np.concatenate([u + radius, -(u - radius)])
    return Region(u, A, b, np.asarray(lo, np.float64), np.asarray(hi, np.float64), head.weights[0].copy(),
                  head.biases[0].copy(), np.zeros(0, dtype=bool))
