"""The SISA ensemble module (imported lazily by ``bench.methods.sisa``: it imports torch)."""

from __future__ import annotations

import torch
from torch import nn


class SisaEnsemble(nn.Module):
    """The SISA ensemble: S constituents plus what unlearning needs.

    ``constituents[k]`` is shard k's current model. ``slice_indices[k][r]`` are the training
    indices slice r of shard k still trains on; ``checkpoints[k][r]`` the state dict saved after
    slice r and ``inits[k]`` its initialisation (the start of slice 1);
    ``deleted`` the training indices forgotten so far; ``config`` the training settings.
    The checkpoints and indices are plain attributes (not in ``state_dict``), so the module's
    state dict is just the constituents' weights.
    """

    def __init__(self, constituents, config: dict) -> None:
        super().__init__()
        self.constituents = nn.ModuleList(constituents)
        self.config = dict(config)
        self.slice_indices: list[list[torch.Tensor]] = []
        self.checkpoints: list[list[dict]] = []
        self.inits: list[dict] = []
        self.deleted = torch.zeros(int(config["train_size"]), dtype=torch.bool)
        self.aggregation = config.get("aggregation", "argmax")
        self.weighting = config.get("weighting", "uniform")
        #: the constituents' vote weights of an ensemble read back from a ``--save-models`` file (it
        #: has no slices to weigh by); None: from the shards' current sizes
        self.fixed_weights: list[float] | None = None

    def shard_sizes(self) -> list[int]:
        return [int(sum(len(s) for s in slices)) for slices in self.slice_indices]

    def shard_indices(self, k: int) -> torch.Tensor:
        """Every training index constituent k currently trains on."""
        return torch.cat(self.slice_indices[k]) if self.slice_indices[k] else torch.empty(0, dtype=torch.long)

    def forward(self, x):
        weights = self._weights()
        votes = None
        for w, model in zip(weights, self.constituents, strict=True):
            logits = model(x)
            if self.aggregation == "softmax":
                out = torch.softmax(logits.float(), dim=1)
            else:
                out = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float()
            votes = w * out if votes is None else votes + w * out
        votes = votes / votes.sum(1, keepdim=True).clamp_min(1e-12)
        return votes.clamp_min(1e-12).log()

    def _weights(self) -> list[float]:
        if self.fixed_weights is not None:
            return list(self.fixed_weights)
        sizes = self.shard_sizes()
        if self.weighting == "proportional":
            total = max(1, sum(sizes))
            return [s / total for s in sizes]
        # uniform over the constituents that still train on some point: one whose shard a request
        # emptied is an untrained model (a fix of ours: it kept its vote, 1/4 of a 4-shard ensemble)
        live = sum(1 for s in sizes if s) or len(sizes)
        return [(1.0 / live if (s or live == len(sizes)) else 0.0) for s in sizes]
