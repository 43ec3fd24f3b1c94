"""Your own original model (``--original``): a trained model to unlearn from, instead of the one
the harness trains with the recipe.

A file per model spec: safetensors, or a torch state dict read with ``torch.load(weights_only=True)``
(tensors and plain containers only: an arbitrary pickle is refused, never run). A checkpoint that
wraps the state dict under ``state_dict`` or ``model`` is unwrapped. Checked at plan time, before
any training, against the model the harness builds for ``--model`` on each dataset: every tensor of
the model present with its shape, no tensor the model lacks, every value finite; then the model is
evaluated on the test split, where its outputs must be finite too, and its accuracy printed. Every
failure is one :class:`BenchError` line (what was wrong, what was expected, what to do).

Identity: the SHA-256 of the file's bytes. It is part of the original's cache key (kind
``original-file``; the weights are read from the file, never copied into the cache) and of the key
of every trial that starts from it, and it is recorded with the run (the trial params
``original.path`` and ``original.sha256``). The retrained reference is still trained with the
recipe: :func:`recipe_mismatch` warns when the original's test accuracy and the recipe-trained
reference's differ by more than :data:`RECIPE_TOLERANCE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.weights import read_weights, shown

#: Largest difference of test accuracy (absolute, as a fraction) between your original and the
#: recipe-trained retrained reference before the run warns that the recipe may not match how the
#: original was trained. Measured on digits (MLP, its recipe, seeds 0-4): originals 0.967-0.975, each
#: seed's reference retrained without 10 % of the training set within 0.6 points of its original.
RECIPE_TOLERANCE = 0.03

@dataclass(frozen=True)
class Original:
    """One ``--original`` file, checked: where it is, its digest, its format and its weights."""

    model: str  # the model spec it is for
    path: str  # absolute path
    sha256: str  # of the file's bytes
    format: str  # "safetensors" or "torch"
    state: dict  # name -> tensor, as read (CPU)

    def record(self) -> dict[str, str]:
        """What is recorded with the run and hashed into the keys."""
        return {"path": self.path, "sha256": self.sha256}


def read_original(model: str, path: str | Path) -> Original:
    """Read ``path`` as safetensors or as a ``weights_only`` torch state dict; refuse anything else."""
    w = read_weights(path, f"--original {Path(path).expanduser()} (for --model {model})")
    return Original(model=model, path=w.path, sha256=w.sha256, format=w.format, state=w.state)


def check_against(orig: Original, net, dataset: str) -> None:
    """Refuse weights that do not fit ``net`` (the model ``--model`` builds on ``dataset``) or are not finite."""
    import torch

    where = f"--original {orig.path} (for --model {orig.model} on dataset '{dataset}')"
    expected = net.state_dict()
    missing = set(expected) - set(orig.state)
    extra = set(orig.state) - set(expected)
    if extra and missing == set(expected) and {n.removeprefix("module.") for n in extra} == set(expected):
        raise BenchError(f"{where}: its tensors are the model's with a 'module.' prefix (saved from a DataParallel or "
                         f"DistributedDataParallel wrapper): save model.module.state_dict(), or strip the prefix.")
    if extra and missing == set(expected) and {n.removeprefix("_orig_mod.") for n in extra} == set(expected):
        raise BenchError(f"{where}: its tensors are the model's with an '_orig_mod.' prefix (saved from a torch.compile "
                         f"wrapper): save model._orig_mod.state_dict(), or strip the prefix.")
    if extra and missing == set(expected):  # not one name in common
        raise BenchError(f"{where}: none of its {len(orig.state)} tensors ({shown(extra)}) is a tensor of the model, "
                         f"which has {shown(expected)}: the file is of another architecture. Pass the --model it was "
                         f"trained as, or a file of this one.")
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) the model has: {shown(missing)}")
        if extra:
            parts.append(f"{len(extra)} tensor(s) the model lacks: {shown(extra)}")
        raise BenchError(f"{where}: {'; '.join(parts)}. Expected exactly the model's {len(expected)} tensors; save the "
                         f"whole model.state_dict() of that architecture (no 'module.' prefixes).")
    reshaped = [(n, tuple(orig.state[n].shape), tuple(ref.shape)) for n, ref in expected.items()
                if tuple(orig.state[n].shape) != tuple(ref.shape)]
    if reshaped:
        listed = "; ".join(f"'{n}' {got} (the model: {want})" for n, got, want in reshaped[:4])
        more = f"; and {len(reshaped) - 4} more" if len(reshaped) > 4 else ""
        raise BenchError(f"{where}: {len(reshaped)} tensor(s) of other shapes: {listed}{more}. The file is of another "
                         f"architecture, size, class count or input shape: pass the --model spec it was trained as, "
                         f"or a file trained on this dataset.")
    for name, ref in expected.items():
        got = orig.state[name]
        if ref.is_floating_point() and not got.is_floating_point():
            raise BenchError(f"{where}: tensor '{name}' has dtype {got.dtype}; the model expects {ref.dtype}.")
        if got.is_floating_point() or got.is_complex():
            finite = torch.isfinite(got)
            if not bool(finite.all()):
                kind = "NaN" if bool(torch.isnan(got).any()) else "infinite"
                raise BenchError(f"{where}: tensor '{name}' holds {int((~finite).sum())} {kind} value(s) of {got.numel()}; "
                                 f"expected finite weights. The training that wrote it diverged: use an earlier checkpoint.")


def evaluate_original(orig: Original, net, dataset: str, x, y) -> float:
    """The accuracy on the test split (``x``, ``y``) of ``net`` holding the file's weights (see
    :func:`load_into`). Refuses finite weights whose outputs are not: an overflow (weights scaled by
    1e30) gave NaN logits, an accuracy of chance, and every trial failed as a diverged training."""
    import torch

    from bench.nn.training import predict_logits

    logits = predict_logits(net, x)
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        rows = int((~finite).reshape(len(logits), -1).any(1).sum())
        kind = "NaN" if bool(torch.isnan(logits).any()) else "infinite"
        floats = [t for t in orig.state.values() if t.is_floating_point() and t.numel()]
        largest = max((float(t.abs().max()) for t in floats), default=0.0)
        raise BenchError(f"--original {orig.path} (for --model {orig.model} on dataset '{dataset}'): its outputs on the "
                         f"test set are not finite ({kind} logits for {rows} of {len(logits)} test rows), though its "
                         f"weights are (largest magnitude {largest:.3g}); expected a trained model with finite outputs. "
                         f"The weights overflow the model's arithmetic: pass a checkpoint from before training went "
                         f"wrong, or check how the file was written (scaling).")
    return float((logits.argmax(1).to(y.device) == y).float().mean())


def load_into(orig: Original, net) -> None:
    """Copy the checked weights into ``net`` (its dtypes and device), strictly."""
    device = next(iter(net.parameters()), None)
    target = net.state_dict()
    net.load_state_dict({k: v.to(dtype=target[k].dtype, device=device.device if device is not None else "cpu")
                         for k, v in orig.state.items()}, strict=True)


def original_doc(base: dict, orig: Original) -> dict:
    """The cache document of a group's original when it is your own: the group's base document
    (dataset, model, recipe, seed...) with kind ``original-file``, the file's digest and its path (so
    the references step reads it again; such an entry is never written to the cache)."""
    return {"kind": "original-file", **base, "original_sha256": orig.sha256, "original_path": orig.path}


#: The keys :func:`original_doc` adds to a group's base document (left out of the documents of
#: models that do not start from the original: shadows, a method's own original).
ORIGINAL_KEYS = ("original_sha256", "original_path")


def reread(doc: dict) -> bytes:
    """The weights of an ``original-file`` document as safetensors bytes, read from its file again and
    checked against the digest the plan recorded (the file must not change during the run)."""
    from safetensors.torch import save

    path = doc["original_path"]
    orig = read_original(doc["model"], path)
    if orig.sha256 != doc["original_sha256"]:
        raise BenchError(f"--original {path} changed during the run (SHA-256 {orig.sha256[:12]}, planned with "
                         f"{doc['original_sha256'][:12]}). Leave the file alone while bench runs, and run again.")
    return save({k: v.detach().cpu().contiguous() for k, v in orig.state.items()})


def recipe_mismatch(original_acc: float, recipe_acc: float, tolerance: float = RECIPE_TOLERANCE) -> bool:
    """Whether your original's test accuracy and the recipe-trained reference's differ by more than ``tolerance``."""
    return abs(original_acc - recipe_acc) > tolerance
