"""The plan of a run (loads data, still no training): groups and their trials.

Trials = methods x seeds x datasets x models x forget requests; a *group* is one (dataset, model,
forget request, seed): its trials share the original model and the retrained reference. Each
trial is a frozen :class:`bench.core.spec.TrialSpec`, made here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.core.cache import cache_key, sha256_bytes, tensor_digest
from bench.core.errors import BenchError, no_exit
from bench.core.forget import ForgetSpec
from bench.core.contracts import Setting
from bench.core.method import (
    check_own_training,
    check_setting,
    has_own_training,
    train_version,
    training_params,
)
from bench.core.options import RunOptions
from bench.core.recipe import build_recipe
from bench.core.registry import Registry
from bench.core.spec import OwnOriginal, TrialSpec
from bench.run.checks import check_attacks_fit, check_recipe_fits, check_sendable_plugins, check_splits
from bench.run.validation_split import validation_splits
from bench.run.continual import step_references
from bench.run.devices import resolve_device
from bench.run.model_probe import architecture, probe_model, refuse_shared_create
from bench.run.original import ORIGINAL_KEYS, Original, check_against, load_into, original_doc, read_original
from bench.run.trained_with import measured_with, model_provenance, object_code_digest, trained_with
from bench.run.validate import (
    MethodPlan,
    params_for_dataset,
    resolve_cache_dir,
    resolve_data_dir,
    resolve_model,
    validate_options,
)


@dataclass(frozen=True)
class Group:
    """One (dataset, model, forget request, seed): what its trials share."""

    gid: str
    dataset: str
    model: str
    forget: ForgetSpec
    seed: int
    forget_seed: int
    recipe: Any
    forget_idx: Any  # np.ndarray
    original_key: str
    retrain_key: str
    original_doc: dict
    retrain_doc: dict
    steps: tuple | None = None  # seq: requests, each's training indices (bench.run.continual)
    step_refs: tuple | None = None  # seq: (key, doc) of each request's retrained reference
    original: dict | None = None  # your own original (--original): {"path", "sha256"}; None: trained with the recipe


@dataclass(frozen=True)
class Plan:
    options: RunOptions
    tracking_uri: str
    methods: list[MethodPlan]
    splits: dict[str, Any]  # dataset spec -> Splits
    models: dict[str, tuple[Any, str | None, str]]  # model spec as the trials name it (pinned) -> (obj, arg, origin)
    attacks: dict[str, Any]
    groups: list[Group]
    trials: list[TrialSpec]
    device: str
    data_dir: str
    cache_dir: str
    #: ``--original``: (model spec, dataset spec) -> the file's record and its test accuracy there
    originals: dict[tuple[str, str], dict] = field(default_factory=dict)


def make_plan(registry: Registry, opts: RunOptions, versions: dict[str, str], plugins: dict[str, str],
              say: Callable[[str], None] | None = None) -> Plan:
    """The plan of a run; ``say`` gets the plan-time notes (the test accuracy of each ``--original``)."""
    methods, forgets, uri = validate_options(registry, opts)  # cheap checks before any heavy import

    import numpy as np

    from bench.nn.training import set_threads

    device = resolve_device(opts)
    data_dir = str(resolve_data_dir(opts))
    cache_dir = str(resolve_cache_dir(opts))
    set_threads(opts.cpus_per_trial)

    splits: dict[str, Any] = {}
    digests: dict[str, str] = {}
    whole: dict[str, str] = {}  # train and test tensors: what the trials measure on (TrialSpec.data_sha256)
    for spec in opts.datasets:
        splits[spec] = load_splits(registry.get("dataset", spec.partition(":")[0]), spec, data_dir, opts.download)
        builtin = registry.entry("dataset", spec.partition(":")[0]).builtin
        splits[spec] = check_splits(spec, splits[spec], builtin)  # the plugin's data, before any model or request sees it
        if opts.validation:  # measured on part of the training set; the test set unused (bench.run.validation_split)
            splits[spec] = validation_splits(spec, splits[spec], opts.validation)
            if say is not None:
                say(f"--validation {opts.validation:g}: {spec} is measured on {len(splits[spec].test_y)} training examples "
                    f"kept aside, not on its test set (test_acc and the test columns read them)")
        digests[spec] = tensor_digest(splits[spec].train_x, splits[spec].train_y)
        whole[spec] = sha256_bytes((digests[spec] + tensor_digest(splits[spec].test_x, splits[spec].test_y)).encode())

    models: dict[str, tuple[Any, str | None, str]] = {}
    networks: dict[tuple[str, str], Any] = {}  # (model spec, dataset spec) -> a fresh instance, for check_setting
    pinned: dict[str, str] = {}  # the spec the trials get: a plugin's pin() adds what keys must see (a file digest)
    for spec in opts.models:
        models[spec] = resolve_model(registry, spec)
        obj, arg, origin = models[spec]
        if say is not None:
            for line in shadowed_family_name(registry, spec, origin):
                say(line)
        pin = getattr(obj, "pin", None)
        pinned_arg = pin(arg) if pin is not None else arg
        pinned[spec] = spec if pinned_arg == arg else (f"{spec.partition(':')[0]}:{pinned_arg}" if ":" in spec else pinned_arg)
        for dspec, sp in splits.items():
            networks[(spec, dspec)] = probe_model(spec, obj, arg, dspec, sp)
        refuse_shared_create(spec, obj, arg, next(iter(splits.values())), networks)
    if say is not None:
        for line in same_networks(models, networks):
            say(line, always=True)

    originals = check_originals(opts, models, splits, say)

    attacks = {n: registry.get("attack", n) for n in (registry.resolve("attack", opts.attacks) if opts.attacks else [])}
    check_attacks_fit(methods, forgets, attacks)
    check_sendable_plugins(registry, opts, methods, models, attacks)  # before any training

    provenance = {(pinned[m], d): model_provenance(obj, origin, plugins, versions, networks[(m, d)])
                  for m, (obj, _, origin) in models.items() for d in splits}
    attack_plugins = {n: (registry.entry("attack", n).origin, a) for n, a in attacks.items()}
    groups: list[Group] = []
    for dspec, sp in splits.items():
        dataset_obj = registry.get("dataset", dspec.partition(":")[0])
        train_y = sp.train_y.numpy()
        for mspec, (mobj, _, _) in models.items():
            recipe = build_recipe(getattr(dataset_obj, "default_recipe", {}), getattr(mobj, "default_recipe", {}), opts.recipe,
                                  sources=recipe_sources(dataset_obj, mobj))
            check_recipe_fits(recipe, dspec, sp.input_shape)
            for fspec in forgets:
                for seed in opts.seeds:
                    fseed = opts.forget_seed if opts.forget_seed is not None else seed
                    idx = fspec.select(train_y, sp.num_classes, fseed, train_sha256=digests[dspec])
                    base = {
                        "dataset": dspec, "data_sha256": digests[dspec], "model": pinned[mspec],
                        "input_shape": list(sp.input_shape), "num_classes": sp.num_classes,
                        "recipe": recipe.as_dict(), "seed": seed,
                        "trained_with": trained_with(device, opts.cpus_per_trial, provenance[(pinned[mspec], dspec)]),
                    }
                    own = originals.get((mspec, dspec))
                    odoc = {"kind": "original", **base} if own is None else original_doc(base, own["file"])
                    rdoc = {"kind": "retrain", **base, "forget_sha256": sha256_bytes(np.asarray(idx, np.int64).tobytes())}
                    steps = step_refs = None
                    if fspec.kind == "seq":  # continual requests: one retrained reference per request
                        steps = tuple(fspec.select_steps(train_y, sp.num_classes, fseed))
                        step_refs = tuple(step_references(steps, base))
                    groups.append(Group(f"g{len(groups)}", dspec, pinned[mspec], fspec, seed, fseed, recipe, idx, cache_key(odoc),
                                        cache_key(rdoc), odoc, rdoc, steps, step_refs,
                                        None if own is None else own["file"].record()))

    layouts = {(pinned[m], d): architecture(net) for (m, d), net in networks.items()}
    model_origins = {pinned[m]: origin for m, (_, _, origin) in models.items()}
    attack_origins = {f"attack.{n}": origin for n, (origin, _) in attack_plugins.items()}
    multi = len(opts.datasets) > 1 or len(opts.models) > 1 or len(forgets) > 1
    trials = []
    for group in groups:
        forget_sha256 = forget_digest(group)  # once per group, not per method
        for m in methods:
            name = f"{m.name} seed={group.seed}"
            if multi:
                name += f" {group.dataset} {group.model} {group.forget.text}"
            params = params_for_dataset(m, group.dataset, opts.params.get(m.name, {}))
            own = own_original_of(m, group, params)
            # the own original's training, not its cache key: the key holds the seed, and bench compare
            # showed one method's seeds as variants of different code (sisa[code=...] x 2; found in review)
            own_code = json.dumps({"train_version": train_version(m.obj), "train_params": dict(own.train_params)},
                                  sort_keys=True, default=str) if own else ""
            code = measured_with((m.origin, m.obj), attack_plugins, provenance[(group.model, group.dataset)], own_code, plugins, versions)
            trials.append(TrialSpec(
                trial_name=name, method=m.name, method_plugin=m.origin, params=params, data_access=frozenset(m.access),
                seed=group.seed, forget_seed=group.forget_seed, dataset=group.dataset,
                data=data_params(splits[group.dataset].info), model=group.model, forget=group.forget.text,
                forget_size=int(len(group.forget_idx)), group=group.gid, recipe=group.recipe.as_dict(),
                attacks=tuple(attacks), shadow_models=opts.shadow_models if any(getattr(a, "needs", ()) for a in attacks.values()) else 0,
                device=device, threads=max(1, int(opts.cpus_per_trial)), versions=versions, plugins=plugins,
                own_original=own, original=group.original,
                data_sha256=whole[group.dataset], forget_sha256=forget_sha256, measured_with=code,
                architecture=layouts[(group.model, group.dataset)],
                origins={"dataset": registry.entry("dataset", group.dataset.partition(":")[0]).origin,
                         "model": model_origins[group.model], **attack_origins},
                references=references_of(group),
            ))
    check_settings(methods, groups, trials, splits, networks, pinned)
    if originals and say is not None and own_original_note(methods):
        say(own_original_note(methods))
    if say is not None:
        for line in class_label_notes(forgets, splits):
            say(line)
    record = {key: {**o["file"].record(), "test_acc": o["test_acc"]} for key, o in originals.items()}
    by_trial_spec = {pinned[m]: (obj, resolve_model(registry, pinned[m])[1], origin) for m, (obj, _, origin) in models.items()}
    return Plan(opts, uri, methods, splits, by_trial_spec, attacks, groups, trials, device, data_dir, cache_dir, record)


def shadowed_family_name(registry, spec: str, origin: str) -> list[str]:
    """A note when a plugin's model takes a bare name a built-in family also claims (a plugin's
    ``resnet18`` over timm's): the plugin's wins, silently until 2026-12-07 (plugins audit)."""
    name, sep, _ = spec.partition(":")
    if sep or origin.startswith("bench."):
        return []
    families = [e for e in registry.entries("model") if e.builtin and hasattr(e.obj, "claims") and e.obj.claims(name)]
    return [f"note: model '{name}' is plugin {origin}'s; {e.name}'s model of that name is {e.name}:{name}"
            for e in families]


def load_splits(ds: Any, spec: str, data_dir: str, download: bool) -> Any:
    """The splits dataset plugin ``ds`` loads for ``spec``: a plugin's ``sys.exit`` or stray exception
    becomes one BenchError line (its BenchErrors, ``DataFilesMissing`` among them, pass as they are)."""
    name, _, arg = spec.partition(":")
    try:
        with no_exit(f"Dataset plugin '{name}' (load)"):
            return ds.load(data_dir, download, arg or None)
    except BenchError:
        raise
    except Exception as exc:  # a plugin's bug: one line, as for a model that cannot run below
        raise BenchError(f"Dataset '{spec}' failed to load: {type(exc).__name__}: {exc}. Check the spec's options "
                         "and the files; if they are right, the dataset plugin has a bug (docs/plugins.md, the Splits "
                         "contract).") from exc


def references_of(group: Group) -> dict[str, str]:
    """``TrialSpec.references``: the cache keys of the group's original and retrained references."""
    if not group.step_refs:
        return {"original": group.original_key, "retrain": group.retrain_key}
    steps = {f"request_{t}": key for t, (key, _) in enumerate(group.step_refs, 1)}
    return {"original": group.original_key, "retrain": group.step_refs[-1][0], **steps}


def forget_digest(group: Group) -> str:
    """``TrialSpec.forget_sha256``: the forget set (every step's of a ``seq:`` request)."""
    import numpy as np

    steps = group.steps or (group.forget_idx,)
    return sha256_bytes(b"".join(np.asarray(s, np.int64).tobytes() + b"|" for s in steps))


def check_settings(methods: list[MethodPlan], groups: list[Group], trials: list[TrialSpec], splits: dict,
                   networks: dict, pinned: dict) -> None:
    """Each method's ``check_setting`` once per dataset, model, forget request and parameter set of
    its trials (``bench.core.method.check_setting``): a refusal is one line before any training."""
    objs = {m.name: m.obj for m in methods}
    by_gid = {g.gid: g for g in groups}
    spec_of = {v: k for k, v in pinned.items()}
    seen: set[tuple] = set()
    for t in trials:
        g = by_gid[t.group]
        key = (t.method, t.dataset, t.model, t.forget, json.dumps(t.params, sort_keys=True, default=str))
        if key in seen:
            continue
        seen.add(key)
        sp = splits[t.dataset]
        size = max((len(s) for s in g.steps), default=0) if g.steps else len(g.forget_idx)
        setting = Setting(t.dataset, t.model, t.forget, sp.train_size, int(size), sp.num_classes,
                          tuple(sp.input_shape), networks[(spec_of[t.model], t.dataset)])
        check_setting(t.method, objs[t.method], t.params, setting)


def check_originals(opts: RunOptions, models: dict, splits: dict, say: Callable[[str], None] | None) -> dict:
    """Read and check every ``--original`` against the model ``--model`` builds on each dataset (tensors,
    shapes, finite values) and measure its test accuracy: ``{(model spec, dataset spec): {"file":
    Original, "test_acc": float}}``. Raises a one-line BenchError for a file that does not fit or whose
    outputs on the test set are not finite."""
    from bench.run.original import evaluate_original

    out: dict[tuple[str, str], dict] = {}
    for mspec, path in (opts.original or {}).items():
        obj, arg, _ = models[mspec]
        orig: Original = read_original(mspec, path)
        for dspec, sp in splits.items():
            net = obj.create(sp.num_classes, tuple(sp.input_shape), arg)
            check_against(orig, net, dspec)
            load_into(orig, net)
            acc = evaluate_original(orig, net, dspec, sp.test_x, sp.test_y)
            out[(mspec, dspec)] = {"file": orig, "test_acc": acc}
            if say is not None:
                say(f"original    {orig.path} ({orig.format}, SHA-256 {orig.sha256[:12]}) for {dspec}/{mspec}: "
                    f"test accuracy {acc:.4f} on {len(sp.test_y)} test rows")
    return out


def own_original_of(m: MethodPlan, group: Group, params: dict) -> OwnOriginal | None:
    """The cache key of the original a method with its own training (``OwnTraining``) trains for
    ``group`` with ``params`` (see :func:`own_original_doc`), or ``None`` for other methods."""
    if not has_own_training(m.obj):
        return None
    check_own_training(m.name, m.obj)
    tparams = training_params(m.obj, params)
    return OwnOriginal(cache_key(own_original_doc(m.name, m.obj, group, tparams)), tparams)


def recipe_sources(dataset_obj, model_obj) -> tuple[str, str]:
    """How :func:`bench.core.recipe.build_recipe` names the dataset's and the model's plugin layers."""
    return (f"the default_recipe of dataset plugin '{getattr(dataset_obj, 'name', '?')}'",
            f"the default_recipe of model plugin '{getattr(model_obj, 'name', '?')}'")


def class_label_notes(forgets, splits: dict) -> list[str]:
    """A note per ``class:K`` request on a dataset whose classes have names other than their
    numbers (``csv:``, ``imagefolder:``, numbered in sorted label order): which label K is. The dry
    run said it; a run forgot label '3' for ``class:2`` on labels 1, 2, 3 without a word."""
    notes = []
    for f in forgets:
        labels = [f.label] if f.kind == "class" else list(f.labels or []) if f.kind == "seq" else []
        for dspec, sp in splits.items():
            names = sp.info.get("classes") if isinstance(sp.info, dict) else None
            if not isinstance(names, list):
                continue
            named = [f"{k} is '{names[k]}'" for k in labels if isinstance(k, int) and 0 <= k < len(names)
                     and str(names[k]) != str(k)]
            if named:
                notes.append(f"note: {f.text} on {dspec}: class {', class '.join(named)} (classes are numbered in sorted "
                             f"label order: {first_names(names, 6)})")
    return notes


def first_names(names: list, k: int) -> str:
    """The first ``k`` class names, comma-joined, ``...`` after them when there are more."""
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


def own_original_doc(name: str, method: Any, group: Group, train_params: Any) -> dict:
    """The cache document of a method-trained original: the group's original document, the
    method's training params, its ``train_version`` and the digest of the module defining it (a
    change of its code retrains, whether or not its author bumped ``train_version``)."""
    base = {k: v for k, v in group.original_doc.items() if k != "kind" and k not in ORIGINAL_KEYS}
    return {"kind": "method-original", "method": name, "train_version": train_version(method),
            "method_code": object_code_digest(method), "train_params": dict(train_params), **base}


def data_params(info: dict) -> dict:
    """A dataset's ``Splits.info`` (normalisation, split, input bounds...) as short run params:
    values longer than 250 characters of JSON (per-feature lists) are cut, with their length."""
    out = {}
    for key, value in info.items():
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):  # a tensor or array (logged as its repr, 'tensor([0.5000, ...])'): its values
            text = json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
            value = json.loads(text)
        out[key] = value if len(text) <= 250 else f"{text[:200]}... ({len(text)} characters)"
    return out


def same_networks(models: dict, networks: dict) -> list[str]:
    """A note per pair of ``--model`` specs that build the same network on every dataset (one plugin,
    the same printed structure and tensors: ``mlp`` and ``mlp:256,256``): their trials repeat each
    other under two names (hostile audit, 2026-12-07). A note, not a refusal: a model's settings
    that act only in its forward (a timm model's drop rate) do not show in either."""
    from bench.run.model_probe import architecture

    def identity(spec):
        return (id(models[spec][0]), tuple((str(net), architecture(net)["layout_sha256"])
                                           for (m, _), net in sorted(networks.items()) if m == spec))

    specs = list(models)
    return [f"note: --model {a} and --model {b} build the same network (one plugin, the same layers and tensors): their "
            f"trials likely repeat each other; give one of them."
            for i, a in enumerate(specs) for b in specs[i + 1:] if identity(a) == identity(b)]


def own_original_note(methods) -> str | None:
    """The note that the methods training their own original (SISA) are not given ``--original``,
    or None when no method does (``bench run`` and the dry run say it alike)."""
    own = sorted({m.name for m in methods if has_own_training(m.obj)})
    return f"note: {', '.join(own)} train(s) their own original (their own training); --original does not apply to them" \
        if own else None
