"""SISA: Sharded, Isolated, Sliced and Aggregated training (Bourtoule et al., IEEE S&P 2021,
"Machine Unlearning"; reference code cleverhans-lab/machine-unlearning, ``sisa.py``,
``distribution.py``, ``aggregation.py``, ``sharded.py``).

SISA changes how the original model is trained, so it implements the harness's optional
``train`` hook (``bench.core.contracts.OwnTraining``): the training split D is cut into ``shards``
disjoint shards of equal size (``distribution.py``'s uniform contiguous split, the last shard
taking the remainder; we split a seeded permutation of the training indices, because the
reference's split runs over a dataset its preparation scripts had already shuffled, whereas our
datasets may be stored class by class). Each shard is cut into ``slices`` slices of
``shard_size // slices`` points (the last takes the remainder, as ``sisa.py``). One constituent
model per shard is trained incrementally: with e epochs (the recipe's, or ``epochs``) and
ē = 2e/(R+1), slice r (1-based) is trained for floor(r·ē) − floor((r−1)·ē) epochs on slices
1..r, starting from the checkpoint saved after slice r−1 (a fresh initialisation for r = 1);
the checkpoint after every slice is kept. The optimizer (the recipe's optimizer, lr, momentum,
weight decay, batch size and schedule) starts afresh for every slice (a fix: ``sisa.py`` builds one
optimizer per process before its slice loop, so a stateful optimizer carries its state across
slices in training but starts afresh at the slice an unlearning run resumes from, and its
retrained constituent is not what its own training gives; run beside it in
``benchmarks/upstream_sisa.py``); the recipe's schedule therefore runs over each slice's epochs (with R = 1 a
constituent is trained exactly like the monolithic model, on its shard). All constituents start
from the harness's seeded initialisation (``ctx.new_model()``); each slice's shuffling is seeded
by (seed, shard, slice).

Prediction (``aggregation.py``): each constituent outputs a one-hot argmax (``aggregation=
"argmax"``, the reference default: a majority vote) or its softmax vector (``"softmax"``: the
reference's ``--output_type softmax``, which crashes there because ``softmax`` is never imported,
and with the name supplied because ``.numpy()`` is called on an output that requires grad; here it
works); votes = Σ_k w_k · out_k with w_k = 1/S (``weighting="uniform"``) or the number of
points shard k currently trains on (``"proportional"``). The ensemble's forward returns
``log(votes)`` (clamped at 1e-12), so its argmax is the vote and its softmax is the aggregated
distribution: the harness evaluates it like any model.

Unlearning (``unlearn``): for every shard holding forgotten points, r* = the first slice that
holds one; the constituent is reloaded from the checkpoint before slice r* (its initialisation
when r* = 1) and slices r*..R are retrained on the same schedule without the forgotten points.
The reference finds that resume point by hashing each slice's kept indices
(``sharded.getShardHash``) and hitting its checkpoint cache; we record the kept indices per slice
and compare directly, which picks the same checkpoint. Constituents of other shards are not
touched (bit for bit). The ensemble keeps its state (kept indices, checkpoints, points forgotten
so far), so a later request continues from it (continual unlearning).

Data: unlearning needs the training points of the affected shards, i.e. retain data
(``requires = {"retain"}``): ``request.retain_x`` holds every training point not forgotten so far,
in training-index order, and ``request.forget_indices`` says which points go; the forget points
themselves are never read. The training recipe is recorded in the ensemble when it is trained,
so unlearning reuses it without asking for it again.

Expected cost per uniformly placed request: (e·|D|/S)·(2R+1)/(3R) example passes against
e·|D| for retraining, a speed-up of about S·3R/(2R+1) (``benchmarks/bench_sisa.py`` measures it).
Storage: S·(R+1) state dicts (initialisation and one checkpoint per slice) besides the current
weights; inference: S forward passes.
"""

from __future__ import annotations

import json

from bench.core import console, space
from bench.core.method import Method, check_params
from bench.core.params import require_choice, require_int

AGGREGATIONS = ("argmax", "softmax")
WEIGHTINGS = ("uniform", "proportional")


def slice_epochs(epochs: int, slices: int) -> list[int]:
    """Epochs of each slice: floor(r·ē) − floor((r−1)·ē) with ē = 2e/(R+1), in exact integer
    arithmetic (``sisa.py``'s ``avg_epochs_per_slice``). They sum to floor(2eR/(R+1))."""
    return [(r * 2 * epochs) // (slices + 1) - ((r - 1) * 2 * epochs) // (slices + 1) for r in range(1, slices + 1)]


def _ensemble_class():
    from .sisa_ensemble import SisaEnsemble

    return SisaEnsemble


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Sisa(Method):
    name = "sisa"
    description = "SISA: sharded, sliced training of an ensemble; unlearning retrains only the affected shards (Bourtoule et al.)."
    requires = frozenset({"retain"})
    default_params = {
        "shards": 5,
        "slices": 1,
        "epochs": 0,  # 0: the recipe's epochs
        "aggregation": "argmax",
        "weighting": "uniform",
    }
    search_space = {
        "shards": space.randint(1, 21),
        "slices": space.randint(1, 9),
        "epochs": space.randint(0, 61),  # 0 (the default: the recipe's epochs) must lie in it, as every default
        "aggregation": space.choice(AGGREGATIONS),
        "weighting": space.choice(WEIGHTINGS),
    }
    #: Bump when the training code changes what it produces: part of the cache key.
    train_version = "1"

    # -- parameters ------------------------------------------------------------------------

    def check_params(self, params: dict) -> None:
        require_int(params, "shards", 1)
        require_int(params, "slices", 1)
        require_int(params, "epochs", 0, "0: the recipe's epochs")
        require_choice(params, "aggregation", AGGREGATIONS)
        require_choice(params, "weighting", WEIGHTINGS)

    def check_setting(self, params: dict, setting) -> None:
        n, shards, slices = setting.train_size, params["shards"], params["slices"]
        if n < shards * slices:
            raise ValueError(f"shards={shards} x slices={slices} needs at least {shards * slices:,} training points, "
                             f"and {setting.dataset} has {n:,}")

    def training_params(self, params: dict) -> dict:
        """The params that change what ``train`` produces (aggregation and weighting act at
        prediction time only, so all their values share one trained ensemble)."""
        return {k: params[k] for k in ("shards", "slices", "epochs")}

    # -- the train hook --------------------------------------------------------------------

    def train(self, x, y, params, ctx):
        """Train the sharded, sliced ensemble on the whole training split (x, y)."""
        import torch

        from bench.core.errors import BenchError

        check_params(self.name, self, params)  # direct callers (the harness checked at plan time)
        n, shards, slices = len(y), params["shards"], params["slices"]
        if n < shards * slices:
            raise BenchError(f"Method 'sisa': {n} training points cannot fill {shards} shards x {slices} slices; "
                             f"lower -p sisa.shards / sisa.slices.")
        recipe = ctx.recipe.as_dict()
        epochs = params["epochs"] or recipe["epochs"]
        config = {"shards": shards, "slices": slices, "epochs": epochs, "recipe": recipe, "train_size": n,
                  "seed": ctx.seed, "slice_epochs": slice_epochs(epochs, slices),
                  "aggregation": params["aggregation"], "weighting": params["weighting"]}
        g = torch.Generator().manual_seed(ctx.seed)
        order = torch.randperm(n, generator=g)
        shard_size = n // shards
        models, all_slices = [], []
        for k in range(shards):
            shard = order[k * shard_size:(k + 1) * shard_size] if k < shards - 1 else order[k * shard_size:]
            size = len(shard) // slices
            cuts = [shard[r * size:(r + 1) * size] if r < slices - 1 else shard[r * size:] for r in range(slices)]
            all_slices.append([c.sort().values for c in cuts])
            models.append(ctx.new_model())
        ens = _ensemble_class()(models, config)
        ens.slice_indices = all_slices
        ens.inits = [_state(m) for m in models]
        ens.checkpoints = [[None] * slices for _ in range(shards)]
        console.expect_epochs(shards * sum(config["slice_epochs"]))  # progress across every shard's loops
        for k in range(shards):
            _train_from(ens, k, 0, x, y, torch.arange(n, device=x.device))
        return ens

    # -- serialisation (safetensors) -------------------------------------------------------

    def save_trained(self, model) -> bytes:
        """The ensemble as safetensors bytes: current weights, initialisations, every slice
        checkpoint but the last (the current weights), every slice's kept indices, the deleted mask;
        the config as metadata."""
        from safetensors.torch import save

        tensors = {}
        for k in range(len(model.constituents)):
            for name, t in model.constituents[k].state_dict().items():
                tensors[f"current.{k}.{name}"] = t
            for name, t in model.inits[k].items():
                tensors[f"init.{k}.{name}"] = t
            for r, ckpt in enumerate(model.checkpoints[k]):
                for name, t in (ckpt or {}).items():  # the last slice's: None (the constituent itself)
                    tensors[f"ckpt.{k}.{r}.{name}"] = t
                tensors[f"slice.{k}.{r}"] = model.slice_indices[k][r]
        tensors["deleted"] = model.deleted
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        return save(tensors, metadata={"sisa_config": json.dumps(model.config, sort_keys=True)})

    def load_trained(self, data: bytes, params, ctx):
        """Rebuild the ensemble from :meth:`save_trained`'s bytes on ``ctx.device``, with the
        prediction settings (aggregation, weighting) of ``params``."""
        import torch
        from safetensors.torch import load

        config = json.loads(_metadata(data)["sisa_config"])
        config.update(aggregation=params["aggregation"], weighting=params["weighting"])
        tensors = {k: v.to(ctx.device) for k, v in load(data).items()}
        shards, slices = config["shards"], config["slices"]
        models = []
        for k in range(shards):
            m = ctx.new_model()
            m.load_state_dict(_prefixed(tensors, f"current.{k}."), strict=True)
            models.append(m)
        ens = _ensemble_class()(models, config)
        ens.inits = [_prefixed(tensors, f"init.{k}.") for k in range(shards)]
        ens.checkpoints = [[_prefixed(tensors, f"ckpt.{k}.{r}.") if r < slices - 1 else None for r in range(slices)]
                           for k in range(shards)]
        ens.slice_indices = [[tensors[f"slice.{k}.{r}"].cpu() for r in range(slices)] for k in range(shards)]
        ens.deleted = tensors["deleted"].cpu().to(torch.bool)
        return ens

    def saved_header(self, model) -> dict[str, str]:
        """How the ensemble votes (aggregation, each constituent's weight): with the constituents'
        weights in the state dict, what :meth:`load_saved` needs to predict as the trial measured
        (not the slices and checkpoints that further unlearning needs: ``save_trained``'s file)."""
        return {"sisa": json.dumps({"shards": len(model.constituents), "aggregation": model.aggregation,
                                    "weighting": model.weighting, "weights": [float(w) for w in model._weights()]})}

    def load_saved(self, state, header, new_model):
        """The ensemble of a ``--save-models`` file, for prediction: each constituent a fresh model of
        the run's architecture with its saved weights (``constituents.K.``), voting as it did."""
        from bench.core.errors import BenchError

        if "sisa" not in header:
            raise BenchError("the file has no 'sisa' entry in its header (saved before 2026-12-07, when SISA's "
                             "--save-models files began to carry it); its state dict holds each constituent's weights "
                             "under 'constituents.K.'")
        meta = json.loads(header["sisa"])
        models = []
        for k in range(int(meta["shards"])):
            m = new_model()
            m.load_state_dict(_prefixed(state, f"constituents.{k}."), strict=True)
            models.append(m)
        ens = _ensemble_class()(models, {"train_size": 0, "aggregation": meta["aggregation"],
                                         "weighting": meta["weighting"]})
        ens.fixed_weights = [float(w) for w in meta["weights"]]
        return ens

    # -- unlearning ------------------------------------------------------------------------

    def unlearn(self, model, request, params, ctx):
        import numpy as np
        import torch

        from bench.core.errors import BenchError

        if not hasattr(model, "slice_indices") or not hasattr(model, "constituents"):
            raise BenchError(f"Method 'sisa' was given a {type(model).__name__}, not its own ensemble: SISA trains its "
                             f"original with its train hook (the harness does this; bench.testing's kit too).")
        check_params(self.name, self, params)  # direct callers (the harness checked at plan time)
        model.aggregation, model.weighting = params["aggregation"], params["weighting"]
        n = int(model.config["train_size"])
        forget = torch.as_tensor(np.asarray(request.forget_indices, dtype=np.int64).reshape(-1))
        if len(forget) and (int(forget.min()) < 0 or int(forget.max()) >= n):
            raise BenchError(f"Method 'sisa': forget indices outside the {n} training points the ensemble was trained on.")
        new = torch.zeros(n, dtype=torch.bool)
        new[forget] = True
        new &= ~model.deleted
        gone = model.deleted | new
        # request.retain_x holds every point not forgotten so far, in training-index order
        retain_positions = torch.nonzero(~gone).flatten()
        if request.retain_y is None or len(request.retain_y) != len(retain_positions):
            got = None if request.retain_y is None else len(request.retain_y)
            raise BenchError(f"Method 'sisa': the request's retain set has {got} points, but the ensemble expects "
                             f"{len(retain_positions)} (its {n} training points minus those forgotten so far).")
        # global index -> row of retain_x
        row = torch.full((n,), -1, dtype=torch.long)
        row[retain_positions] = torch.arange(len(retain_positions))
        model.deleted = gone
        affected = {}  # shard -> the first slice that lost a point
        for k in range(len(model.constituents)):
            for r, idx in enumerate(model.slice_indices[k]):
                hit = new[idx]
                if bool(hit.any()):
                    model.slice_indices[k][r] = idx[~hit]
                    affected.setdefault(k, r)
        # one progress over every shard's retraining (each loop was its own, its time left a loop's)
        console.expect_epochs(sum(sum(model.config["slice_epochs"][r:]) for r in affected.values()))
        for k, first in affected.items():
            _train_from(model, k, first, request.retain_x, request.retain_y, row.to(request.retain_y.device))
        ctx.metrics["sisa_shards_retrained"] = float(len(affected))
        if not params["epochs"]:  # 0: the recipe's, which the ensemble was trained with
            ctx.resolved["epochs"] = int(model.config["epochs"])
        return model


def _metadata(data: bytes) -> dict:
    import struct

    header_len = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + header_len]).get("__metadata__", {})


def _prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _train_from(ens, k: int, first: int, x, y, row) -> None:
    """Retrain constituent ``k`` from the checkpoint before slice ``first`` through the last
    slice; ``row`` maps a training index to its row in (x, y)."""
    import torch

    from bench.nn.training import train_epochs

    model = ens.constituents[k]
    start = ens.inits[k] if first == 0 else ens.checkpoints[k][first - 1]
    model.load_state_dict(start, strict=True)
    recipe, seed = ens.config["recipe"], int(ens.config["seed"])
    for r in range(first, len(ens.slice_indices[k])):
        kept = torch.cat(ens.slice_indices[k][:r + 1])
        rows = row[kept.to(row.device)]
        train_epochs(model, x[rows], y[rows], epochs=ens.config["slice_epochs"][r], batch_size=recipe["batch_size"],
                     optimizer=recipe["optimizer"], lr=recipe["lr"], momentum=recipe.get("momentum", 0.0),
                     weight_decay=recipe["weight_decay"], schedule=recipe["schedule"],
                     seed=(seed * 1_000_003 + k * 1009 + r) % 2**63)
        # the last slice's state is the constituent itself, and nothing retrains from it: not kept
        # twice (a third of the cached ensemble at one slice; scale audit, 2026-12-07)
        ens.checkpoints[k][r] = _state(model) if r < len(ens.slice_indices[k]) - 1 else None
