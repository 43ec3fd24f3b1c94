"""Shadow and reference models for the attacks, trained several at once where the model allows.

Shadow-based attacks (LiRA, U-LiRA, RMIA) need M models of the target's architecture trained
with the target's recipe on random halves of a candidate pool; the NeurIPS 2023 forgetting
score needs N models retrained on D_r with different seeds. ``train_models`` trains any such
list of (subset, seed) jobs:

- **stacked** when every subset has the same size and the model is a plain chain of
  Flatten/Linear/ReLU layers (the MLPs): the M models' parameters are stacked with
  ``torch.func.stack_module_state`` and go through one batched matrix multiply (``baddbmm``) per
  layer for all M;
- **vmap** for other architectures without BatchNorm, on CUDA only (on the CPU it was measured
  slower than training one after another, ``benchmarks/bench_shadows.py``): the same stacked
  parameters through ``torch.func.vmap`` over ``torch.func.functional_call``.

  Either way one optimizer of the recipe's kind steps all stacked tensors (SGD momentum and weight
  decay, Adam and AdamW act elementwise, and the summed loss gives each model the gradient of its
  own mean loss). Each model keeps its own initialisation (seeded like
  ``bench.nn.nets.model_factory``) and its own shuffling generator, so it follows exactly the
  schedule that ``bench.nn.training.fit`` gives it alone; the results agree with sequential
  training up to floating-point summation order (``tests/test_attacks.py``). BatchNorm's in-place
  running statistics do not vmap (``torch.func``'s "Patching Batch Norm" note; its
  ``replace_all_batch_norm_modules_`` would change what the model computes), so such models train
  sequentially.
- **sequentially** with ``bench.nn.training.fit`` otherwise: models with BatchNorm, subsets of
  unequal sizes, a single model, non-MLP architectures on the CPU, or any model whose vectorized
  training fails (an operation without a batching rule).

The pool of the LiRA family is the training split followed by the test split (position
``train_size + j`` is test point j), so that every target, forget or test point, has shadow
models that trained on it and models that did not. The membership matrix follows the LiRA
reference (``tensorflow/privacy`` ``research/mi_lira_2021/train.py``, each point IN half of the
models) in complementary pairs as RMIA's reference models are (``ml_privacy_meter``: models
2k and 2k+1 split the pool): pair k draws a random permutation of the pool, model 2k trains on its
first half and model 2k+1 on the next ``floor(P/2)`` points (with an odd pool one point sits out
of that pair). Every model therefore has the same training-set size, which vectorized training
needs.

Each model is cached in the ``ReferenceCache`` under a content-addressed key (the group's
reference document plus kind, pool digest, subset digest and seed), so a second run trains
nothing. ``bench.run.prepare.attack_models`` (called before the trials, after the references) trains what the
selected attacks declare in their ``needs`` and puts it in each group's payload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from bench.core import console
from bench.core.cache import (
    cache_key,
    load_state,
    sha256_bytes,
    state_to_bytes,
    tensor_digest,
)

#: What an attack may declare in ``needs`` (see ``bench.core.contracts.AttackContext``).
NEEDS = ("shadows", "retrain_shadows", "unlearn", "reference")


@dataclass
class ShadowSet:
    """Trained models of one architecture with their membership over a pool.

    ``keep[m, p]`` is True when model m trained on pool point p. The pool is the training split
    followed by the test split (``train_size`` tells where the test points start); for
    ``retrain_shadows`` it is the same, with every model trained on D_r.
    """

    states: list[bytes]
    keep: np.ndarray
    seeds: list[int]
    train_size: int
    model_obj: Any
    arg: str | None
    num_classes: int
    input_shape: tuple[int, ...]
    train_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.keep = np.asarray(self.keep).view()  # shared by every trial of a group: attacks only read it
        self.keep.flags.writeable = False

    def __len__(self) -> int:
        return len(self.states)

    def model(self, m: int, device: str):
        """Model ``m`` in eval mode on ``device``."""
        import torch

        with torch.random.fork_rng(devices=[]):  # the initialisation is overwritten: leave the global RNG alone
            net = self.model_obj.create(self.num_classes, tuple(self.input_shape), self.arg).to(device)
        load_state(net, self.states[m])
        return net.eval()

    def models(self, device: str) -> list:
        return [self.model(m, device) for m in range(len(self))]


def pair_keep(num_models: int, pool_size: int, seed: int) -> np.ndarray:
    """``[M, P]`` membership in complementary pairs, each model on ``floor(P/2)`` points."""
    if num_models < 2 or num_models % 2:
        raise ValueError(f"shadow models come in complementary pairs: need an even count >= 2 (got {num_models}).")
    rng = np.random.default_rng(seed)
    half = pool_size // 2
    keep = np.zeros((num_models, pool_size), dtype=bool)
    for k in range(num_models // 2):
        perm = rng.permutation(pool_size)
        keep[2 * k, perm[:half]] = True
        keep[2 * k + 1, perm[half : 2 * half]] = True
    return keep


def vectorizable(model) -> bool:
    """Whether ``train_models`` can vmap this architecture: no BatchNorm-style running stats."""
    from torch import nn

    return not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())


def train_models(new_model: Callable[[int], Any], x, y, subsets: Sequence[np.ndarray], seeds: Sequence[int], recipe,
                 vectorize: bool | None = None, force_vmap: bool = False) -> tuple[list, str]:
    """Train one model per (subset of ``x, y``, seed) with ``recipe``; return (models, how).

    ``new_model(seed)`` returns a fresh, seeded initialisation on the data's device. ``vectorize``:
    None = where it pays (linear chains anywhere, other vmap-able models on CUDA), True = insist
    (ValueError if impossible), False = one after another.
    ``how`` is ``"stacked"`` (stacked parameters, batched matrix multiplies: Flatten/Linear/ReLU
    chains), ``"vmap"`` (stacked parameters, ``vmap(functional_call)``: other architectures, or
    ``force_vmap``) or ``"sequential"``.
    """
    from bench.nn.training import fit

    sizes = {len(s) for s in subsets}
    models = [new_model(int(s)) for s in seeds]
    # one model too (a set's one corrupt entry rebuilt alone): trained sequentially it differed from
    # its stacked siblings in the last digits under the same cache key, and so did every later run's
    # numbers from a run on an empty cache (found in review); a stack of one trains as in any stack
    streamed = x.device != next(models[0].parameters()).device  # a pool in host memory: fit streams it
    can = len(sizes) == 1 and vectorizable(models[0]) and not streamed
    if vectorize and not can:
        raise ValueError("cannot vectorize: the pool is streamed from host memory." if streamed else
                         "cannot vectorize: subsets of unequal size, or BatchNorm in the model.")
    if vectorize is None and can and linear_chain(models[0]) is None and not str(x.device).startswith("cuda"):
        # measured on 2 CPU cores (benchmarks/bench_shadows.py): vmap's batching rules cost more than
        # they save when the model's own matrix multiplies dominate; on the CPU only the stacked
        # linear chains pay, so other architectures train one after another there
        can = False
    if can and vectorize is not False:
        try:
            how = "vmap" if force_vmap or linear_chain(models[0]) is None else "stacked"
            return _train_vmap(models, x, y, subsets, seeds, recipe, force_vmap=force_vmap), how
        except (RuntimeError, NotImplementedError):  # an op without a batching rule: fall back
            if vectorize:
                raise
            models = [new_model(int(s)) for s in seeds]
    import torch

    console.expect_epochs(len(models) * recipe.epochs)  # the progress of an enclosing task spans every model
    for model, subset, seed in zip(models, subsets, seeds):
        idx = torch.tensor(np.asarray(subset), dtype=torch.long, device=x.device)  # a copy (read-only under Ray)
        fit(model, x[idx], y[idx], recipe, seed=int(seed))
    return models, "sequential"


def linear_chain(model) -> list[tuple[str, str | None]] | None:
    """For a plain chain of Flatten / Linear / ReLU layers (``bench.nn.nets.MLP``, or such an
    ``nn.Sequential``): its layers as (kind, parameter prefix); None for anything else."""
    from torch import nn

    from bench.nn.nets import MLP

    if isinstance(model, MLP):
        seq, prefix = model.net, "net."
    elif isinstance(model, nn.Sequential):
        seq, prefix = model, ""
    else:
        return None
    chain: list[tuple[str, str | None]] = []
    for name, layer in seq.named_children():
        if type(layer) is nn.Linear and layer.bias is not None:
            chain.append(("linear", f"{prefix}{name}"))
        elif type(layer) is nn.ReLU:
            chain.append(("relu", None))
        elif type(layer) is nn.Flatten and layer.start_dim == 1 and layer.end_dim == -1:
            chain.append(("flatten", None))
        else:
            return None
    return chain


def _chain_forward(chain, params, buffers, x):
    """The stacked forward of a linear chain: one ``baddbmm`` per layer for all M models."""
    import torch

    z = x
    for kind, name in chain:
        if kind == "linear":
            z = torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), z, params[f"{name}.weight"].transpose(1, 2))
        elif kind == "relu":
            z = torch.relu(z)
        else:
            z = z.flatten(2)
    return z


def _train_vmap(models: list, x, y, subsets, seeds, recipe, force_vmap: bool = False) -> list:
    """Lock-step training of equally sized subsets; mirrors ``bench.nn.training.train_epochs``.

    The forward pass is ``vmap(functional_call)`` over the stacked parameters; for a plain chain
    of Flatten/Linear/ReLU layers (the MLPs) the same stacked parameters go through one batched
    matrix multiply per layer instead, which has less per-step overhead than vmap's batching
    rules (``force_vmap`` turns that off; benchmarks/bench_shadows.py measures both)."""
    import copy
    import functools

    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, stack_module_state, vmap

    from bench.nn.augment import augment_batch
    from bench.nn.training import make_optimizer, make_schedule

    M = len(models)
    n = len(subsets[0])
    bs = recipe.batch_size
    dev = x.device
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    base.train()

    def forward(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    chain = linear_chain(models[0])
    if chain is not None and not force_vmap:
        batched = functools.partial(_chain_forward, chain)
    else:
        batched = vmap(forward, randomness="different")
    subs = torch.as_tensor(np.stack([np.asarray(s) for s in subsets]), dtype=torch.long, device=dev)  # [M, n]
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    # the recipe's augmentation, each model's from its own generator seeded as train_epochs seeds it
    aug_gens = ([torch.Generator(device=dev).manual_seed(int(s)) for s in seeds]
                if recipe.augment != "none" else None)
    starts = [s for s in range(0, n, bs) if min(bs, n - s) > 1 or n == 1]
    steps = max(1, len(starts))
    opt = make_optimizer(params.values(), recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay)
    sched = make_schedule(opt, recipe.schedule, recipe.epochs, steps)
    rows = torch.arange(M, device=dev)[:, None]
    console.expect_epochs(recipe.epochs)  # all M models step together: one loop of the recipe's epochs
    console.epoch(0, recipe.epochs)
    for epoch in range(recipe.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)  # [M, n], as batches() draws
        for s in starts:
            pos = subs[rows, order[:, s : s + bs]]  # [M, B] indices into x
            xb = x[pos]
            if aug_gens is not None:
                xb = torch.stack([augment_batch(xb[m], recipe.augment, aug_gens[m]) for m in range(M)])
            logits = batched(params, buffers, xb)  # [M, B, K]
            B = pos.shape[1]
            loss = F.cross_entropy(logits.reshape(M * B, -1), y[pos].reshape(-1), reduction="none").view(M, B).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        console.epoch(epoch + 1, recipe.epochs)
    out = []
    with torch.no_grad():
        for m, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][m])
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name][m])
            out.append(model)
    return out


# -- the harness side: train what the selected attacks need, once per group, cached ---------


def shadow_seed(group_seed: int, m: int, kind: str) -> int:
    """Initialisation and shuffling seed of shadow ``m`` (distinct from every trial seed)."""
    return 1_000_003 * (group_seed + 1) + (0 if kind == "shadows" else 500_000) + m


def plan_set(kind: str, count: int, train_size: int, test_size: int, forget_idx, group_seed: int):
    """(keep matrix over the pool, seeds) of ``count`` models of ``kind``."""
    P = train_size + test_size
    if kind == "shadows":
        keep = pair_keep(count, P, shadow_seed(group_seed, 0, kind))
    elif kind == "retrain_shadows":
        keep = np.zeros((count, P), dtype=bool)
        keep[:, :train_size] = True
        keep[:, np.asarray(forget_idx if forget_idx is not None else [], dtype=np.int64)] = False
    else:
        raise ValueError(f"unknown kind {kind!r}: expected shadows or retrain_shadows")
    return keep, [shadow_seed(group_seed, m, kind) for m in range(count)]


def shadow_set(kind: str, count: int, model_obj, arg, splits, recipe, seed: int = 0, forget_idx=None,
               device: str = "cpu", vectorize: bool | None = None) -> ShadowSet:
    """Train a :class:`ShadowSet` directly (no cache): ``count`` models of ``kind`` on ``splits``'s
    pool (training split then test split) with ``recipe``; for tests, benchmarks and notebooks."""
    import torch

    from bench.nn.nets import model_factory
    from bench.nn.training import place

    keep, seeds = plan_set(kind, count, splits.train_size, len(splits.test_y), forget_idx, seed)
    # on the GPU when the pool fits its share, else in host memory, streamed (bench.nn.training.place)
    x, y = place((torch.cat([splits.train_x, splits.test_x]), torch.cat([splits.train_y, splits.test_y])), device)
    t0 = time.perf_counter()
    models, _ = train_models(lambda s: model_factory(model_obj, arg, splits, s, device)(), x, y,
                             [np.flatnonzero(k) for k in keep], seeds, recipe, vectorize=vectorize)
    return ShadowSet([state_to_bytes(m) for m in models], keep, seeds, splits.train_size, model_obj, arg,
                     splits.num_classes, tuple(splits.input_shape), time.perf_counter() - t0)


def needs_of(attacks: dict) -> set[str]:
    return {n for a in attacks.values() for n in getattr(a, "needs", ())}


def ensure_shadow_set(kind: str, count: int, *, model_obj, arg, splits, recipe, group_seed: int, base_doc: dict,
                      forget_idx, device: str, cache, say: Callable[[str], None], versions: dict) -> ShadowSet:
    """Load ``count`` models of ``kind`` ("shadows" or "retrain_shadows") from the cache, training the missing ones.

    Entries are verified (a corrupt one is reported, moved aside and retrained); the missing keys
    are locked and looked up again before training, so concurrent runs train each model once."""
    keep, seeds = plan_set(kind, count, splits.train_size, len(splits.test_y), forget_idx, group_seed)
    pool_digest = sha256_bytes(base_doc["data_sha256"].encode(), tensor_digest(splits.test_x, splits.test_y).encode())
    keys, docs = [], []
    for m in range(count):
        doc = {**base_doc, "kind": kind.rstrip("s"), "pool_sha256": pool_digest, "seed": seeds[m],
               "subset_sha256": sha256_bytes(np.flatnonzero(keep[m]).astype(np.int64).tobytes())}
        if recipe.augment != "none":  # stacked shadows of entries before 2026-12-05 skipped the augmentation
            doc["augmented"] = True
        docs.append(doc)
        keys.append(cache_key(doc))
    states: list[bytes | None] = [None if hit is None else hit[0] for hit, _ in map(cache.check, keys)]
    seconds, missing = 0.0, []
    if any(s is None for s in states):
        # lock the missing keys, then look again (verified; a corrupt entry is quarantined and reported):
        # a concurrent run sharing the cache may have trained them meanwhile (not held while these train)
        with cache.locked([keys[m] for m, s in enumerate(states) if s is None], say) as held:
            for m, s in enumerate(states):
                if s is None and (hit := cache.get(keys[m], say)) is not None:
                    states[m] = hit[0]
                    held.release(keys[m])
            missing = [m for m, s in enumerate(states) if s is None]
            if missing:  # said first: seconds to minutes of training (10 s of silence before, found in review)
                say(f"training    {len(missing)} {kind.replace('_', ' ')} for {base_doc['dataset']}/{base_doc['model']} "
                    f"seed={group_seed}")
                seconds, how = _train_missing(missing, keys, docs, keep, seeds, states, model_obj=model_obj, arg=arg,
                                              splits=splits, recipe=recipe, device=device, cache=cache, versions=versions)
                say(f"trained     {len(missing)} {kind.replace('_', ' ')} ({how}) for {base_doc['dataset']}/"
                    f"{base_doc['model']} seed={group_seed} in {seconds:.1f}s")
    if not missing:
        say(f"cache hit   {count} {kind.replace('_', ' ')} for {base_doc['dataset']}/{base_doc['model']} seed={group_seed}")
    return ShadowSet(states=states, keep=keep, seeds=seeds, train_size=splits.train_size, model_obj=model_obj, arg=arg,
                     num_classes=splits.num_classes, input_shape=tuple(splits.input_shape), train_seconds=seconds)


def _train_missing(missing, keys, docs, keep, seeds, states, *, model_obj, arg, splits, recipe, device, cache,
                   versions) -> tuple[float, str]:
    """Train the models ``missing`` (indices into ``keys``) together, fill ``states`` and put
    them in the cache (the caller holds their locks); returns (seconds, how they trained)."""
    from datetime import datetime, timezone

    import torch

    from bench.nn.nets import model_factory
    from bench.nn.training import check_trained, place

    # on the GPU when the pool fits its share, else in host memory, streamed (bench.nn.training.place)
    x, y = place((torch.cat([splits.train_x, splits.test_x]), torch.cat([splits.train_y, splits.test_y])), device)

    def new_model(seed):
        return model_factory(model_obj, arg, splits, seed, device)()

    t0 = time.perf_counter()
    doc = docs[missing[0]]
    name = f"{len(missing)} {doc['kind'].replace('_', ' ')}s for {doc['dataset']}/{doc['model']}"
    with console.task(name):  # per-epoch progress on the terminal (bench.core.console), minutes on large data
        models, how = train_models(new_model, x, y, [np.flatnonzero(keep[m]) for m in missing],
                                   [seeds[m] for m in missing], recipe)
    seconds = time.perf_counter() - t0
    for m, model in zip(missing, models):  # none is cached if one diverged: the attacks would score NaN
        check_trained(model, x, f"{docs[m]['kind'].replace('_', ' ')} {m} (seed {seeds[m]})", recipe)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for m, model in zip(missing, models):
        states[m] = state_to_bytes(model)
        cache.put(keys[m], states[m], {"document": docs[m], "train_seconds": seconds / len(missing),
                                       "created": created, "versions": versions, "how": how})
    return seconds, how
