"""The unlearned models a run kept (``bench run --save-models``), loaded back.

Each trial of such a run stores the model it measured as the artifact ``model.safetensors``
(``bench.core.keys.MODEL_ARTIFACT``): its state dict, read only through safetensors (no pickle),
with the trial's method, model spec, dataset, seed, number of classes, input shape and trial key
in the file's header. :func:`load_model` rebuilds the architecture from the header through the
model plugin (``--model``) and loads the weights strictly; :func:`load_trial_model` first fetches
the file of one trial run from an MLflow store. A method that returns another architecture than
its input (PRUNE's patched network, SISA's ensemble) stores its state dict all the same, with what
rebuilding it needs in the header (the method's ``saved_header``), and :func:`load_model` rebuilds
it through the method's ``load_saved`` when that method is installed; a returned model of another
architecture whose method has no ``load_saved`` does not load into the plain model: that is said,
and the file can be read with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.keys import MODEL_ARTIFACT, Tag


def read_model_file(path: str | Path, source: str | None = None) -> tuple[dict, dict[str, str]]:
    """(state dict, header metadata) of a ``model.safetensors`` file; ``source`` names it in errors
    (default: its path)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as fh:
            meta = dict(fh.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BenchError(f"{source or path}: not a readable safetensors file ({exc}).") from None
    missing = [k for k in ("model", "num_classes", "input_shape") if k not in meta]
    if missing:
        raise BenchError(f"{source or path}: its header lacks {', '.join(missing)}; it was not written by bench run --save-models "
                         f"(read its tensors with safetensors.torch.load_file).")
    return state, meta


def load_model(path: str | Path, device: str = "cpu", source: str | None = None, state_at: str | None = None):
    """The model in ``path`` (a trial's ``model.safetensors``), rebuilt and loaded, in eval mode.
    Errors name the file as ``source`` (default: its path) and say where its state dict can be read
    as ``state_at`` (default: the file, with ``safetensors.torch.load_file``)."""
    from bench.core.errors import no_exit
    from bench.core.method import load_saved
    from bench.core.plugins import get_registry
    from bench.run.validate import resolve_model

    state, meta = read_model_file(path, source)
    obj, arg, _ = resolve_model(get_registry(), meta["model"])
    if arg and getattr(obj, "name", "") == "timm":  # the file holds every weight: not the run's pretrained file
        arg = ",".join(part for part in arg.split(",") if not part.startswith(("pretrained=", "sha256=")))
    shape = tuple(int(x) for x in meta["input_shape"].split(","))

    def new_model():
        return obj.create(int(meta["num_classes"]), shape, arg)

    method_name = meta.get("method", "?")
    registry = get_registry()
    rebuild = load_saved(registry.get("method", method_name)) if method_name in registry.names("method") else None
    where = state_at or f"the file: safetensors.torch.load_file({str(path)!r})"
    if rebuild is not None:  # the method's own architecture (PRUNE's patched network, SISA's ensemble)
        try:
            with no_exit(f"Method '{method_name}' (load_saved)"):
                net = rebuild(state, dict(meta), new_model)
        except Exception as exc:  # noqa: BLE001 -- a plugin's loader: one line naming it and the file
            why = str(exc).rstrip(".") if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
            raise BenchError(f"{source or path}: method '{method_name}' could not rebuild its model from the file "
                             f"({why}). Its state dict is in {where}.") from None
        return net.to(device).eval()
    net = new_model()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        hint = ("" if method_name in registry.names("method") else
                f" Method '{method_name}' is not installed here: install the plugin that defines it, whose "
                f"load_saved may rebuild its model.")
        raise BenchError(f"{source or path}: the model method '{method_name}' returned is not a plain "
                         f"'{meta['model']}' (its parameters differ) and the method does not say how to rebuild it "
                         f"(no load_saved).{hint} Its state dict is in {where}.") from None
    return net.to(device).eval()


def load_trial_model(run_id: str, tracking_uri: str | None = None, device: str = "cpu"):
    """The unlearned model of trial run ``run_id`` in the MLflow store ``tracking_uri`` (default: as
    ``bench compare`` resolves it), from its ``model.safetensors``."""
    from mlflow.exceptions import MlflowException

    from bench.track.compare.query import open_store

    uri, client = open_store(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        from bench.track.store import shown_uri

        raise BenchError(f"No run {run_id} in {shown_uri(uri)}.") from None
    if run.data.tags.get(Tag.ROLE) != "trial":
        raise BenchError(f"Run {run_id} is not a trial run of bench run; give the run id of one of its trials.")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, MODEL_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 -- MLflow raises several kinds for a missing artifact
            raise BenchError(f"Trial run {run_id} has no {MODEL_ARTIFACT}: its run did not use --save-models; run "
                             f"it again with --save-models to keep the models.") from None
        # the download is deleted on return: errors name the artifact and how to fetch it, not this path
        source = f"Trial run {run_id}'s {MODEL_ARTIFACT}"
        state_at = (f"that artifact: mlflow.artifacts.download_artifacts(run_id={run_id!r}, artifact_path="
                    f"{MODEL_ARTIFACT!r}, tracking_uri={uri!r}) fetches it, safetensors.torch.load_file reads it")
        return load_model(path, device, source, state_at)
