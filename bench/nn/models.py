"""Built-in model architectures: ``mlp``, ``cnn`` and every timm architecture.

A model spec is ``NAME`` or ``NAME:ARG``: ``mlp:256,256`` (hidden sizes), ``cnn:32,64``
(conv widths), ``resnet18`` or ``timm:resnet18`` (any name ``timm.list_models()`` knows,
built with ``timm.create_model(name, pretrained=False, num_classes=K, in_chans=C)``; nothing
is downloaded). ``resnet18-cifar`` (bench/nn/resnet_cifar.py) is the usual model for 32x32 images (``--model resnet18-cifar``; the default is ``mlp``).

timm models may start from pretrained weights in a local file: ``timm:resnet18,pretrained=PATH``
(safetensors or a ``weights_only`` torch state dict, read by ``bench.core.weights``), handed to
timm as ``pretrained_cfg_overlay={"state_dict": ..., "num_classes": rows of the file's classifier}``
so timm adapts it as for its own pretrained weights: a classifier of another size (ImageNet's
1000 classes) is left out and initialised afresh, the first convolution is adapted to the
dataset's channels; a parameter the file leaves at its random initialisation otherwise (a second
build under another seed, once per process and file, differs in it) is refused. Nothing is
downloaded. At plan time bench pins the file's SHA-256 into the
spec (``...,pretrained=PATH,sha256=HEX``), so every cache and trial key depends on the file's
content, and a worker refuses a file that changed since.
"""

from __future__ import annotations

import bench
from bench.core.errors import BenchError


def _ints(arg: str, what: str) -> tuple[int, ...]:
    try:  # an empty entry is refused too: mlp:256,,256 was the default 256-256 under another spec string
        vals = tuple(int(v) for v in arg.split(","))
    except ValueError:
        raise BenchError(f"Bad {what} '{arg}': expected comma-separated positive integers, e.g. 256,256.") from None
    if not vals or any(v <= 0 for v in vals):
        raise BenchError(f"Bad {what} '{arg}': expected comma-separated positive integers, e.g. 256,256.")
    return vals


class MLPModel:
    name = "mlp"
    description = "ReLU MLP on flattened inputs; hidden sizes in the spec, e.g. mlp:256,256 (default 256,256)."

    def create(self, num_classes, input_shape, arg=None):
        from bench.nn.nets import MLP, flat_size

        hidden = _ints(arg, "mlp hidden sizes") if arg else (256, 256)
        return MLP(flat_size(input_shape), hidden, num_classes)


class CNNModel:
    name = "cnn"
    description = "Small ReLU CNN (2 conv layers, max pool, ReLU MLP head) for (C,H,W) inputs; widths e.g. cnn:32,64."

    def create(self, num_classes, input_shape, arg=None):
        from bench.nn.nets import SmallCNN

        if len(input_shape) != 3:
            raise BenchError(
                f"Model 'cnn' needs image inputs of shape (C, H, W); this dataset's inputs have shape "
                f"{tuple(input_shape)}. Use --model mlp for vector data."
            )
        widths = _ints(arg, "cnn widths") if arg else (32, 64)
        if len(widths) != 2:
            raise BenchError(f"Bad cnn widths '{arg}': expected two integers, e.g. cnn:32,64.")
        return SmallCNN(input_shape[0], num_classes, widths)


class TimmModels:
    """Every timm architecture, randomly initialised (``pretrained=False``)."""

    name = "timm"
    description = "Any timm architecture by name (resnet18, test_resnet, ...), random init or timm:NAME,pretrained=PATH (a local file); `bench list models 'resnet*'`."

    def claims(self, name: str) -> bool:
        import timm

        return timm.is_model(name.partition(",")[0])

    def list_names(self, pattern: str = "*") -> list[str]:
        import timm

        return timm.list_models(pattern)

    def pin(self, arg: str | None) -> str | None:
        """``arg`` with the SHA-256 of its pretrained file added (unchanged without one)."""
        name, opts = _timm_options(arg or "")
        if not opts.get("pretrained") or opts.get("sha256"):
            return arg
        from bench.core.weights import read_weights

        digest = read_weights(opts["pretrained"], f"timm:{arg} pretrained file").sha256
        return f"{arg},sha256={digest}"

    def create(self, num_classes, input_shape, arg=None):
        import timm

        if not arg:
            raise BenchError("Model 'timm' needs an architecture name: timm:resnet18, or just resnet18.")
        arg, opts = _timm_options(arg)
        if not timm.is_model(arg):
            raise BenchError(f"Unknown timm architecture '{arg}'. List them with: bench list models '{arg[:3]}*'")
        if len(input_shape) != 3:
            raise BenchError(
                f"timm model '{arg}' needs image inputs of shape (C, H, W); this dataset's inputs have shape "
                f"{tuple(input_shape)}. Use --model mlp for vector data."
            )
        if not opts.get("pretrained"):
            return timm.create_model(arg, pretrained=False, num_classes=num_classes, in_chans=input_shape[0])
        return _timm_pretrained(arg, opts, num_classes, input_shape[0])


TIMM_OPTIONS = ("pretrained", "sha256")


def _timm_options(arg: str) -> tuple[str, dict[str, str]]:
    """``resnet18,pretrained=PATH[,sha256=HEX]`` -> ``("resnet18", {"pretrained": PATH, ...})``."""
    name, *rest = arg.split(",")
    opts: dict[str, str] = {}
    for part in rest:
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in TIMM_OPTIONS or not value.strip():
            raise BenchError(f"Bad timm model option '{part}' in 'timm:{arg}': expected pretrained=PATH (a local "
                             f"safetensors or torch state-dict file), e.g. timm:resnet18,pretrained=resnet18.safetensors.")
        if key.strip() in opts and opts[key.strip()] != value.strip():
            raise BenchError(f"Bad model spec 'timm:{arg}': {key.strip()} is set twice; give it once.")
        opts[key.strip()] = value.strip()
    return name.strip(), opts


def _timm_pretrained(name: str, opts: dict[str, str], num_classes: int, in_chans: int):
    """A timm model started from the local pretrained file ``opts["pretrained"]`` (see the module doc)."""
    import timm

    from bench.core.weights import read_weights

    where = f"timm:{name} pretrained file {opts['pretrained']}"
    weights = read_weights(opts["pretrained"], where)
    if opts.get("sha256") and weights.sha256 != opts["sha256"]:
        raise BenchError(f"{where} changed since the run was planned (SHA-256 {weights.sha256[:12]}, planned with "
                         f"{opts['sha256'][:12]}). Leave the file alone while bench runs, and run again.")
    cfg = timm.get_pretrained_cfg(name)
    heads = getattr(cfg, "classifier", None) or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    rows = next((int(weights.state[f"{h}.weight"].shape[0]) for h in heads if f"{h}.weight" in weights.state), num_classes)
    create = lambda: timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans,  # noqa: E731
                                       pretrained_cfg_overlay={"state_dict": dict(weights.state), "num_classes": rows})
    try:
        model = create()
        random_left = _left_random(model, create, (name, weights.sha256, num_classes, in_chans))
    except (RuntimeError, KeyError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        why = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # torch's "Error(s) in loading ...:" heads its reasons
        raise BenchError(f"{where} does not fit timm's {name}: {why[:240]}. Give the weights "
                         f"of the same architecture (model.state_dict() of timm.create_model('{name}')).") from None
    # timm loads without strictness once it has dropped a classifier of another size (or could not
    # adapt the first convolution): a tensor the file lacks, or holds under another name, kept its
    # random initialisation without a word (seresnet18 from resnet18's weights: its SE blocks; a
    # file of the classifier alone: everything; exit 0)
    fresh = {f"{h}.{p}" for h in heads for p in ("weight", "bias")} if rows != num_classes else set()
    left = [k for k in random_left if k not in fresh]
    if left:
        shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
        total = sum(1 for _ in model.parameters())
        raise BenchError(f"{where} leaves {len(left)} of the {total} parameter tensors of timm's {name} at their random "
                         f"initialisation ({shown}): the file lacks them or holds them under other names. Give the "
                         f"weights of the same architecture (model.state_dict() of timm.create_model('{name}')); only a "
                         f"classifier of another size ({', '.join(heads) or 'none known'}) is left out and trained afresh.")
    return model


#: per process: the parameters a pretrained file leaves at their random initialisation, by
#: (architecture, file digest, classes, channels)
_RANDOM_LEFT: dict[tuple, tuple[str, ...]] = {}


def _left_random(model, create, key: tuple) -> tuple[str, ...]:
    """The names of ``model``'s parameters that ``create()`` leaves at their random initialisation:
    those in which a second build, from another seed, differs (the file's tensors, loaded, are the
    same in both). Independent of how timm maps the file's keys (its checkpoint filters, the first
    convolution's adaptation). Once per process and file; the second build runs on a forked CPU
    generator, so the caller's random state, and the model it built, are as without the check."""
    if key not in _RANDOM_LEFT:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed((torch.initial_seed() + 1) % 2**63)  # not the seed ``model`` had
            other = dict(create().named_parameters())
        _RANDOM_LEFT[key] = tuple(sorted(k for k, v in model.named_parameters() if not torch.equal(v, other[k])))
    return _RANDOM_LEFT[key]


@bench.hookimpl
def register_models(register):
    register(MLPModel())
    register(CNNModel())
    register(TimmModels())
    from bench.nn.resnet_cifar import ResNet18Cifar

    register(ResNet18Cifar())
