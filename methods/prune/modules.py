"""The torch modules of PRUNE: support network, patch network, and the patched model.

Support network of one region {u : a_j u <= b_j, j = 1..n} with sharpness gamma (REASSURE's
``SupportNN``; REASSURE, Fu & Li, ICLR 2022):
g(u) = relu(1 - sum_j [relu(gamma v_j) - relu(gamma v_j - 1)]), v_j = a_j u - b_j,
= max(0, 1 - sum_j min(1, gamma [v_j]_+)). This is the same function as the reference form
relu(sum_j [relu(gamma (b_j - a_j u) + 1) - relu(gamma (b_j - a_j u))] - n + 1); the form used here
is exactly 1 on the region in floating point (every term is 0 there) instead of 1 up to the rounding
of n differences of large numbers. A patch built for a cluster has one support per member and
uses their maximum (PRUNE's representatives, released code ``purchase_multipoint.py``).

Patch network (``PatchNN``): h(u) = relu(p(u) + K g(u) - K) - relu(-p(u) + K g(u) - K) with
p(u) = c u + d and K >= max |p| over the input box: h = p where g = 1, h = 0 where g = 0,
|h| <= |p| everywhere.

Patches run in float64 (their buffers are float64); the sum is added to the original logits in the
original's dtype. The original network is never changed: ``PatchedModel.original`` is the untouched
model and ``PatchedModel.patches`` the list of patches, detachable and auditable.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from .network import features, head_module

FORMAT = "bench-prune-patched-model/1"


def _clipped_sum(gv: torch.Tensor) -> torch.Tensor:
    """sum over the last axis of min(1, [gv]_+), written relu(gv) - relu(gv - 1) under autograd
    (its derivative is 0 at gv = 0, as the support network's). Without autograd it is one clamp,
    in place on ``gv`` (callers pass a temporary): the same values, since relu(gv) - relu(gv - 1)
    is exactly min(1, [gv]_+) in float64 below 2^53, and about a third of the patched model's
    forward pass (measured: the main job's 20 patches on 1,797 points)."""
    if gv.requires_grad:
        return (torch.relu(gv) - torch.relu(gv - 1)).sum(-1)
    return gv.clamp_(0, 1).sum(-1)


def _scaled_violation(products: torch.Tensor, b: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """gamma (products - b), in place on ``products`` (a temporary) when no gradient is needed."""
    if products.requires_grad or b.requires_grad or gamma.requires_grad:
        return gamma * (products - b)
    return products.sub_(b).mul_(gamma)


class Patch(nn.Module):
    """One affine patch p = c u + d gated by the maximum of ``len(A)`` supports.

    Buffers (float64 unless noted): ``A`` (members, n, d) and ``b`` (members, n) the support rows,
    ``c`` (C, d), ``d`` (C,), ``K`` and ``gamma`` (scalars), ``point`` (d,) the point whose region
    the patch is certified on (member 0's region), ``pattern`` (n,) uint8 its activation pattern.
    ``target`` and ``label`` (ints) and ``info`` (a dict) are plain attributes, saved as metadata.
    """

    def __init__(self, A, b, c, d, K, gamma, point, pattern, target: int, label: int, info: dict | None = None):
        super().__init__()
        as64 = lambda t: torch.as_tensor(t, dtype=torch.float64).clone()  # noqa: E731
        self.register_buffer("A", as64(A))
        self.register_buffer("b", as64(b))
        self.register_buffer("c", as64(c))
        self.register_buffer("d", as64(d))
        self.register_buffer("K", as64(K).reshape(()))
        self.register_buffer("gamma", as64(gamma).reshape(()))
        self.register_buffer("point", as64(point))
        self.register_buffer("pattern", torch.as_tensor(pattern, dtype=torch.uint8).clone())
        self.target, self.label = int(target), int(label)
        self.info = dict(info or {})

    @property
    def params(self) -> int:
        """Parameters the patch adds: support rows and offsets, and the affine patch."""
        return int(self.A.numel() + self.b.numel() + self.c.numel() + self.d.numel())

    #: rows of the screening pass of :meth:`support` (every SCREEN_STRIDE-th row of each member)
    SCREEN_STRIDE = 8

    def _violation(self, u: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """sum_j min(1, gamma [a_j u - b_j]_+) over ``rows``, for u (B, d) -> (B, members)."""
        return _clipped_sum(_scaled_violation(torch.einsum("bd,mnd->bmn", u, self.A[:, rows]), self.b[:, rows], self.gamma))

    def support(self, u: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """g(u) = max over members of each member's support, for u (B, d) float64 -> (B,).

        Every term of a member's violation sum is >= 0, so a partial sum >= 1 already gives that
        member g = 0. A screening pass over every ``SCREEN_STRIDE``-th row settles most (input,
        member) pairs (on digits, 100 points, 97.7% of them) at an eighth of the cost; only the
        rest get the full sum. The screen uses the margin 1 + 1e-9, far above the rounding of a
        sum of at most a few thousand terms in [0, 1], so a pair it settles has a full sum >= 1
        too: the result is the full computation's (tests/test_prune.py checks it).
        """
        out = []
        for s in range(0, len(u), chunk):
            ub = u[s:s + chunk]
            if self.A.shape[1] <= 2 * self.SCREEN_STRIDE:
                out.append(torch.relu(1 - self._violation(ub)).amax(1))
                continue
            alive = self._violation(ub, slice(None, None, self.SCREEN_STRIDE)) < 1 + 1e-9  # (B, members)
            g = ub.new_zeros(len(ub))
            for m in torch.nonzero(alive.any(0)).flatten().tolist():
                idx = torch.nonzero(alive[:, m]).flatten()
                gm = torch.relu(1 - _clipped_sum(_scaled_violation(ub[idx] @ self.A[m].T, self.b[m], self.gamma)))
                g[idx] = torch.maximum(g[idx], gm)
            out.append(g)
        return torch.cat(out) if out else u.new_zeros(0)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        g = self.support(u)
        p = u @ self.c.T + self.d
        s = (self.K * (g - 1))[:, None]
        return torch.relu(p + s) - torch.relu(-p + s)

    def summary(self) -> dict:
        return {"target": self.target, "label": self.label, "members": int(self.A.shape[0]),
                "rows": int(self.A.shape[1]), "K": float(self.K), "gamma": float(self.gamma),
                "params": self.params, **self.info}


class PatchedModel(nn.Module):
    """The untouched original plus a list of patches on its head's input (see the module docstring).

    ``kind`` says where the patches act: ``"mlp"`` (input space, flattened) or ``"features_head"`` /
    ``"timm"`` (the feature space of a frozen extractor, see ``network.py``). ``forward`` returns
    ``original(x) + sum_i h_i(phi(x))``.
    """

    def __init__(self, original: nn.Module, kind: str, patches=(), info: dict | None = None, lo=None, hi=None):
        super().__init__()
        self.original = original
        self.kind = kind
        self.patches = nn.ModuleList(patches)
        self.info = dict(info or {})
        # the input box X of every patch (K bounds |p| on it); empty until the first patch
        self.register_buffer("lo", torch.as_tensor(lo if lo is not None else [], dtype=torch.float64).clone())
        self.register_buffer("hi", torch.as_tensor(hi if hi is not None else [], dtype=torch.float64).clone())
        for p in self.original.parameters():
            p.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return features(self.kind, self.original, x)

    #: patch outputs kept per (input, patch state): evaluation and the attacks feed the same
    #: forget/test/train tensors through the patched model several times per trial
    CACHE = 16

    def _patch_state(self) -> tuple:
        """What the patches' output depends on: each patch object and each of its buffers, with the
        buffer's in-place version counter (``gamma.fill_`` by the construction, a K replaced on a
        larger box, a loaded file: any change gives another state)."""
        return tuple((id(p), tuple((id(t), t._version) for t in p.buffers())) for p in self.patches)

    def patch_output(self, u: torch.Tensor) -> torch.Tensor:
        """sum_i h_i(u) in float64, for features ``u`` (B, d).

        Without autograd, the result is memoised on the exact bytes of ``u`` (SHA-256) and the patch
        state (``_patch_state``): a repeated input returns the stored tensor (a clone), computed by
        the same code, so the numbers are the same; the memo holds the last ``CACHE`` results and
        lives in memory only (not saved, not copied by ``save``)."""
        u = u.double()
        cacheable = len(self.patches) and not (torch.is_grad_enabled() and u.requires_grad) and u.device.type == "cpu"
        if cacheable:
            import hashlib

            data = u.detach().contiguous()
            key = (tuple(data.shape), hashlib.sha256(data.numpy().tobytes()).hexdigest(), self._patch_state())
            memo = self.__dict__.setdefault("_output_memo", {})
            if key in memo:
                memo[key] = memo.pop(key)  # most recently used last
                return memo[key].clone()
        total = u.new_zeros(len(u), self.patches[0].d.numel()) if len(self.patches) else None
        for patch in self.patches:
            total = total + patch(u)
        if cacheable:
            memo[key] = total.detach().clone()
            while len(memo) > self.CACHE:
                memo.pop(next(iter(memo)))
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            logits = self.original(x)
            u = x.flatten(1)
        else:
            u = self.features(x)
            logits = head_module(self.kind, self.original)(u)
        if not len(self.patches):
            return logits
        return logits + self.patch_output(u).to(logits.dtype)

    @property
    def patch_params(self) -> int:
        return sum(p.params for p in self.patches)

    def summary(self) -> dict:
        return {"format": FORMAT, "kind": self.kind, "patches": len(self.patches), "patch_params": self.patch_params,
                **self.info, "per_patch": [p.summary() for p in self.patches]}

    # -- files ---------------------------------------------------------------------------------

    def _file_contents(self) -> tuple[dict, dict]:
        """The tensors and the header metadata of the safetensors file (:meth:`save`, :meth:`to_bytes`)."""
        tensors = {f"original.{k}": v.detach().cpu().contiguous() for k, v in self.original.state_dict().items()}
        tensors["lo"], tensors["hi"] = self.lo.contiguous(), self.hi.contiguous()
        for i, patch in enumerate(self.patches):
            for k, v in patch.state_dict().items():
                tensors[f"patches.{i}.{k}"] = v.detach().cpu().contiguous()
        tensors.update(_witness_tensors(self.__dict__.get("_witness", {})))
        return tensors, self.header()

    def header(self) -> dict[str, str]:
        """The safetensors header entry that rebuilds this model with its tensors: ``{"prune": JSON}``
        of the kind, the info and each patch's target, label and summary (:meth:`from_tensors`)."""
        meta = {"format": FORMAT, "kind": self.kind, "info": self.info,
                "patches": [{"target": p.target, "label": p.label, "info": p.info} for p in self.patches]}
        return {"prune": json.dumps(meta)}

    def save(self, path) -> None:
        """Write the original's weights and every patch to one safetensors file, with the patch
        metadata (kinds, targets, labels, summaries) as JSON in its header."""
        from safetensors.torch import save_file

        tensors, header = self._file_contents()
        save_file(tensors, str(path), metadata=header)

    def to_bytes(self) -> bytes:
        """The bytes of the file :meth:`save` writes, without writing it (a trial's artifact)."""
        from safetensors.torch import save

        tensors, header = self._file_contents()
        return save(tensors, metadata=header)

    @staticmethod
    def read_info(path) -> dict:
        """The ``info`` a file written by :meth:`save` carries (``num_classes``, ``input_shape``,
        gamma, ...), read from its safetensors header alone: what a fresh model of the original's
        architecture needs before :meth:`load`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return dict(_prune_meta(f, path).get("info") or {})

    @classmethod
    def load(cls, path, original: nn.Module) -> "PatchedModel":
        """Read a file written by :meth:`save`; ``original`` is a model of the same architecture
        (e.g. a fresh one from the model plugin) whose weights are replaced by the saved ones."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = _prune_meta(f, path)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return cls.from_tensors(tensors, meta, original)

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict, original: nn.Module) -> "PatchedModel":
        """The model of a file's ``tensors`` (the original's weights under ``original.``, each
        patch's under ``patches.I.``, the box ``lo``/``hi``, witnesses if any) and its decoded
        ``prune`` header ``meta``: :meth:`load`'s file, or the state dict that ``bench run
        --save-models`` keeps (the same names, without witnesses)."""
        state = {k[len("original."):]: v for k, v in tensors.items() if k.startswith("original.")}
        original.load_state_dict(state)
        patches = []
        for i, pm in enumerate(meta["patches"]):
            t = {k: tensors[f"patches.{i}.{k}"] for k in ("A", "b", "c", "d", "K", "gamma", "point", "pattern")}
            patches.append(Patch(t["A"], t["b"], t["c"], t["d"], t["K"], t["gamma"], t["point"], t["pattern"],
                                 pm["target"], pm["label"], pm["info"]))
        out = cls(original, meta["kind"], patches, meta.get("info"), tensors["lo"], tensors["hi"])
        out.__dict__["_witness"] = _witness_from(tensors)
        return out


def _prune_meta(f, path) -> dict:
    """The PRUNE metadata of an open safetensors file ``f``; a file without it is refused."""
    from bench.core.errors import BenchError

    header = f.metadata() or {}
    if "prune" not in header:
        raise BenchError(f"{path} is not a PRUNE patched model (no 'prune' metadata in its safetensors header).")
    return json.loads(header["prune"])


# -- witnesses in the file ---------------------------------------------------------------------
# The construction's LP multipliers (``PatchedModel._witness``, see certify.py) travel with the
# patches, so that the certificate check of a loaded model verifies them (a few products per bound)
# instead of solving every LP again. They are hints only: the check re-derives every bound from the
# patches' own rows by weak duality, so a wrong or altered witness gives a weaker bound (and the
# check's own LP), never a wrong certificate. Stored sparse (most multipliers are 0):
#   witness.margin.I            (C - 1, rows) float64: patch I's margin LPs
#   witness.floor.keys          (n, 3) int64: (patch i, patch j, support m) of each floor witness
#   witness.floor.{mu,lam}.len  (n,) int64: the dense length of each vector (-1: no vector)
#   witness.floor.{mu,lam}.ptr  (n + 1,) int64, .idx int32, .val float64: CSR rows of the vectors


def _witness_tensors(witness: dict) -> dict:
    import numpy as np

    out = {}
    floors = []
    for key, value in witness.items():
        if key[0] == "margin":
            out[f"witness.margin.{int(key[1])}"] = torch.as_tensor(np.ascontiguousarray(value, dtype=np.float64))
        elif key[0] == "floor":
            floors.append((key[1:], value))
    if not floors:
        return out
    out["witness.floor.keys"] = torch.tensor([[int(k) for k in key] for key, _ in floors], dtype=torch.int64)
    for slot, name in ((0, "mu"), (1, "lam")):
        lens, ptr, idx, val = [], [0], [], []
        for _, proof in floors:
            vec = proof[slot]
            if vec is None:
                lens.append(-1)
                ptr.append(ptr[-1])
                continue
            vec = np.asarray(vec, dtype=np.float64)
            nz = np.flatnonzero(vec)
            lens.append(len(vec))
            ptr.append(ptr[-1] + len(nz))
            idx.append(nz.astype(np.int32))
            val.append(vec[nz])
        out[f"witness.floor.{name}.len"] = torch.tensor(lens, dtype=torch.int64)
        out[f"witness.floor.{name}.ptr"] = torch.tensor(ptr, dtype=torch.int64)
        out[f"witness.floor.{name}.idx"] = torch.as_tensor(np.concatenate(idx) if idx else np.zeros(0, np.int32))
        out[f"witness.floor.{name}.val"] = torch.as_tensor(np.concatenate(val) if val else np.zeros(0))
    return out


def _witness_from(tensors: dict) -> dict:
    """The witness dict of a file written by ``save`` (empty for files without witnesses)."""
    import numpy as np

    witness = {}
    for name, t in tensors.items():
        if name.startswith("witness.margin."):
            witness[("margin", int(name.rsplit(".", 1)[1]))] = t.numpy().astype(np.float64)
    if "witness.floor.keys" not in tensors:
        return witness
    keys = tensors["witness.floor.keys"].numpy()
    vectors = {}
    for name in ("mu", "lam"):
        lens, ptr = tensors[f"witness.floor.{name}.len"].numpy(), tensors[f"witness.floor.{name}.ptr"].numpy()
        idx, val = tensors[f"witness.floor.{name}.idx"].numpy(), tensors[f"witness.floor.{name}.val"].numpy()
        vecs = []
        for r, n in enumerate(lens):
            if n < 0:
                vecs.append(None)
                continue
            vec = np.zeros(int(n))
            vec[idx[ptr[r]:ptr[r + 1]]] = val[ptr[r]:ptr[r + 1]]
            vecs.append(vec)
        vectors[name] = vecs
    for r, key in enumerate(keys):
        witness[("floor", *(int(k) for k in key))] = (vectors["mu"][r], vectors["lam"][r])
    return witness
