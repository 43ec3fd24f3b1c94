"""The device a run's trials use (:func:`resolve_device`), checked against the GPUs torch sees here,
once planning starts (it imports torch): ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) with
``--gpus-per-trial``, the executor and ``--ray-address``. Each refusal is one BenchError line."""

from __future__ import annotations

from bench.core.errors import BenchError
from bench.core.options import RunOptions
from bench.run.checks import check_gpus


def resolve_device(opts: RunOptions) -> str:
    import torch

    device = opts.device
    if device == "auto":
        device = "cuda" if opts.gpus_per_trial > 0 else "cpu"
    if device == "cpu" and opts.gpus_per_trial > 0:  # Ray reserved GPU shares the trials never used
        raise BenchError(f"--gpus-per-trial {opts.gpus_per_trial:g} with --device cpu: the trials would hold GPU shares "
                         "they never use. Drop --gpus-per-trial, or use --device cuda.")
    if device.startswith("cuda"):
        asked = f"--device {opts.device}" if opts.device != "auto" else f"--gpus-per-trial {opts.gpus_per_trial:g}"
        index = device.partition(":")[2]
        if index and not index.isdigit():  # 'cuda:abc' failed in every reference and trial
            raise BenchError(f"Bad --device '{device}': expected cuda or cuda:N with N a GPU number (0, 1, ...).")
        # first whether there is a GPU at all, so the advice below is one that can work. The driver needs one
        # itself, with --ray-address too: it evaluates the references and trains the attacks' shadow models on
        # the device (a GPU-less driver joining a GPU cluster failed with a raw "Found no NVIDIA driver"; found
        # in review)
        if not torch.cuda.is_available():
            raise BenchError(f"{asked} but torch sees no GPU on this machine: use --device cpu (and no --gpus-per-trial)"
                             + (", or run bench on a node of the cluster that has a GPU (bench's own process evaluates "
                                "the references and trains the attacks' shadow models on the device)." if opts.ray_address
                                else ", or run bench on a machine with a GPU."))
        if index and opts.executor == "ray" and int(index) > 0:  # Ray shows each trial its own GPUs from cuda:0
            raise BenchError(f"--device {device} under Ray: Ray gives each trial its own GPU(s), numbered from cuda:0 in "
                             "the trial, so cuda:N with N > 0 names no GPU there. Use --device cuda (choose the GPUs "
                             "with CUDA_VISIBLE_DEVICES), or --executor local for one GPU of this machine.")
        if index and int(index) >= torch.cuda.device_count():
            raise BenchError(f"--device {device} but this machine has {torch.cuda.device_count()} GPU(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); use one of those.")
        if opts.gpus_per_trial <= 0 and opts.executor == "ray":
            raise BenchError("--device cuda under Ray needs --gpus-per-trial > 0 (fractions such as 0.25 are allowed).")
    check_gpus(opts.gpus_per_trial, opts.ray_address)
    return device
