"""``bench run --dry-run``: validate the options as ``bench run`` does and print the plan, without
training or recording anything.

The checks are those of a run (``bench.run.validate``: names, parameters per dataset, forget
specs, recipe, resources, store, directories; ``resolve_device``: the GPU that ``--device cuda`` or
``--gpus-per-trial`` asks for); then each dataset is loaded when its files are there and its data
checked, each model is built and run on two inputs of the dataset's shape, and forget requests are
drawn, so a dry run that passes means the run will start. A dataset whose files are missing (the
plugin raised :class:`bench.core.errors.DataFilesMissing`) is reported with the message a run
would stop with (where to put the files) and the dry run still exits 0: the plan itself is valid,
the data is not there yet. Every other error of a dataset (a bad spec, an explicit path that does
not exist, a corrupt file, data that fails ``check_splits``) is refused as the run refuses it.
"""

from __future__ import annotations

from typing import Any

import click

from bench.core.errors import DataFilesMissing


def _shape_of(ds: Any) -> tuple[tuple[int, ...] | None, int | None]:
    """The input shape and number of classes a dataset plugin declares without loading (or None)."""
    shape = getattr(ds, "input_shape", None)
    if shape is None and getattr(ds, "num_features", None):
        shape = (ds.num_features,)
    return (tuple(shape) if shape else None), getattr(ds, "num_classes", None)


def _check_model(obj: Any, arg: str | None, spec: str, dspec: str, splits: Any, shape: tuple[int, ...],
                 classes: int) -> tuple[Any, str]:
    """(the model built for the dataset, a line about it): the checks of ``bench run``'s plan
    (``bench.run.model_probe``) on the dataset's test rows, or on seeded random rows of its declared
    shape when its files are missing; a one-line BenchError if it fails one (until 2026-12-06 the
    dry run ran the model on zeros only and passed what the run then refused)."""
    from types import SimpleNamespace

    import torch

    from bench.run.model_probe import architecture, probe_model, refuse_shared_create

    if splits is None:
        rows = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
        splits = SimpleNamespace(test_x=rows, num_classes=classes, input_shape=shape)
    net = probe_model(spec, obj, arg, dspec, splits)
    refuse_shared_create(spec, obj, arg, splits, {(spec, dspec): net})
    return net, f"{architecture(net)['parameters']:,} parameters"


def dry_run(opts, preset=None, echo=click.echo) -> int:
    """Print the plan of ``opts``; returns the exit code (0: valid; BenchError: bad input)."""
    from bench.core.cache import tensor_digest
    from bench.core.contracts import Setting
    from bench.core.method import check_setting
    from bench.core.plugins import get_registry
    from bench.core.recipe import build_recipe
    from bench.run.checks import check_attacks_fit, check_recipe_fits, check_sendable_plugins, check_splits
    from bench.run.devices import resolve_device
    from bench.run.plan import first_names, load_splits, own_original_note, recipe_sources, shadowed_family_name
    from bench.run.validate import (
        params_for_dataset,
        resolve_data_dir,
            resolve_model,
        validate_options,
    )

    registry = get_registry()
    methods, forgets, uri = validate_options(registry, opts)
    resolve_device(opts)  # as make_plan, before loading: --device cuda / --gpus-per-trial need a GPU here
    attacks = {n: registry.get("attack", n) for n in (registry.resolve("attack", opts.attacks) if opts.attacks else [])}
    check_attacks_fit(methods, forgets, attacks)
    # as make_plan: Ray pickles them into its workers
    check_sendable_plugins(registry, opts, methods, {m: resolve_model(registry, m) for m in opts.models}, attacks)
    data_dir = resolve_data_dir(opts)
    n_trials = len(methods) * len(opts.seeds) * len(opts.datasets) * len(opts.models) * len(forgets)
    echo("Dry run: the plan of this `bench run` (nothing is trained or recorded"
         + ("; --download fetches missing dataset files)." if opts.download else ")."))
    if preset is not None:
        echo(f"preset:      {preset.name}: {preset.title}")
        echo(f"source:      {preset.source}")
        echo(f"cost:        {preset.cost}")
    echo(f"trials:      {n_trials} = {len(methods)} method(s) x {len(opts.seeds)} seed(s) x {len(opts.datasets)} dataset(s) "
         f"x {len(opts.models)} model(s) x {len(forgets)} forget request(s)")
    echo(f"methods:     {', '.join(m.name for m in methods)}")
    left_out = [n for n in registry.resolve("method", opts.methods) if n not in {m.name for m in methods}]
    if left_out:  # as bench run says it (bench.run.runner)
        echo(f"             left out of --methods '{opts.methods}': {', '.join(left_out)} (they cannot take "
             f"{', '.join(opts.forgets)}; name one to see why)")
    echo(f"seeds:       {','.join(map(str, opts.seeds))}" + (f" (forget seed {opts.forget_seed})" if opts.forget_seed is not None else ""))
    echo(f"forget:      {', '.join(f.text for f in forgets)}")
    shadowed = sorted(n for n, a in attacks.items() if {"shadows", "retrain_shadows"} & set(getattr(a, "needs", ())))
    echo(f"attacks:     {opts.attacks or '(none)'}"
         + (f"; {opts.shadow_models} shadow models (for {', '.join(shadowed)})" if shadowed else ""))
    echo(f"executor:    {opts.executor}; {opts.cpus_per_trial:g} CPU(s), {opts.gpus_per_trial:g} GPU(s) per trial; device {opts.device}"
         + (f"; trial timeout {opts.trial_timeout:g} s" if opts.trial_timeout else ""))
    from bench.track.store import shown_uri

    echo(f"tracking:    {shown_uri(uri)} (experiment '{opts.experiment}')")
    echo(f"data dir:    {data_dir}")

    missing: list[str] = []
    built_all: dict[tuple[str, str], Any] = {}  # (model spec, dataset spec) -> network, as make_plan's
    for dspec in opts.datasets:
        ds = registry.get("dataset", dspec.partition(":")[0])
        try:
            splits = load_splits(ds, dspec, str(data_dir), opts.download)  # --download: fetch the files, train nothing
        except DataFilesMissing as exc:  # only missing files; a bad spec or bad data is refused below
            splits = None
            missing.append(dspec)
            echo(f"dataset {dspec}: NOT READY: {exc}")
            shape, classes = _shape_of(ds)
        else:
            splits = check_splits(dspec, splits, registry.entry("dataset", dspec.partition(":")[0]).builtin)
            shape, classes = tuple(splits.input_shape), splits.num_classes
            echo(f"dataset {dspec}: {len(splits.train_y):,} train / {len(splits.test_y):,} test, {classes} classes, "
                 f"input {shape}")
        nets: dict[str, Any] = {}
        for mspec in opts.models:
            mobj, marg, _ = resolve_model(registry, mspec)
            recipe = build_recipe(getattr(ds, "default_recipe", {}), getattr(mobj, "default_recipe", {}), opts.recipe,
                                  sources=recipe_sources(ds, mobj))
            if shape:
                check_recipe_fits(recipe, dspec, shape)
            built = "not built (input shape unknown)"
            if shape and classes:
                nets[mspec], built = _check_model(mobj, marg, mspec, dspec, splits, shape, classes)
                built_all[(mspec, dspec)] = nets[mspec]
            echo(f"  model {mspec}: {built}")
            echo(f"  recipe: {', '.join(f'{k}={v}' for k, v in recipe.shown().items())}")
        if splits is not None and opts.original:  # --original files: read and checked as a run checks them
            from bench.run.plan import check_originals

            check_originals(opts, {m: resolve_model(registry, m) for m in opts.models}, {dspec: splits},
                            lambda line: echo(f"  {line}"))
        elif opts.original:  # no data yet: read each file and fit it to the model the plugin's shape builds
            _check_originals_without_data(opts, registry, dspec, shape, classes, echo)
        forget_sizes: dict[str, int] = {}
        if splits is not None:
            train_y = splits.train_y.numpy()
            digest = tensor_digest(splits.train_x, splits.train_y) if any(f.kind == "indices" for f in forgets) else None
            for f in forgets:
                sizes = sorted({len(f.select(train_y, splits.num_classes, opts.forget_seed if opts.forget_seed is not None else s,
                                             train_sha256=digest)) for s in opts.seeds})
                forget_sizes[f.text] = sizes[-1]
                names = splits.info.get("classes") if isinstance(splits.info, dict) else None
                label = f.label if f.kind == "class" else None
                named = (f" (class {label} is '{names[label]}'; classes are numbered in the order {first_names(names, 4)})"
                         if isinstance(names, list) and label is not None and 0 <= label < len(names) else "")
                echo(f"  forget {f.text}: {'/'.join(map(str, sizes))} of {len(train_y):,} training points{named}")
        # what the run trains before any trial (or finds in the cache): seq:1000x1 hid its 1,000 retrainings
        requests = sum((f.requests or len(f.labels or ())) if f.kind == "seq" else 1 for f in forgets)
        per = len(opts.seeds) * len(opts.models)
        own = len(opts.seeds) * len(opts.original or {})  # read from --original, not trained
        echo(f"  references: {per - own:,} original(s)" + (f" (and {own:,} from --original)" if own else "")
             + f" and {per * requests:,} retrained model(s) to train or find in the cache" + (f" ({', '.join(f.text for f in forgets if f.kind == 'seq')}: one retrained model per request)"
                         if any(f.kind == "seq" for f in forgets) else ""))
        for m in methods:
            params = params_for_dataset(m, dspec, opts.params.get(m.name, {}))
            shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "(no parameters)"
            echo(f"  {m.name}: {shown}")
            if splits is None:
                continue
            for mspec, net in nets.items():  # as make_plan checks them: the setting's size, classes, architecture
                for ftext, size in forget_sizes.items():
                    check_setting(m.name, m.obj, params, Setting(dspec, mspec, ftext, splits.train_size, size, classes,
                                                                 shape, net))
    if built_all:  # as bench run says it (bench.run.plan)
        from bench.run.plan import same_networks

        for line in same_networks({m: resolve_model(registry, m) for m in opts.models}, built_all):
            echo(line)
    if opts.original and own_original_note(methods):  # as bench run says it (bench.run.plan)
        echo(own_original_note(methods))
    for mspec in opts.models:  # a plugin's model over a timm name, as bench run says it
        for line in shadowed_family_name(registry, mspec, resolve_model(registry, mspec)[2]):
            echo(line)
    if missing:
        echo(f"The plan is valid, but {', '.join(missing)} cannot load yet: place the files as said above "
             f"(or pass --data-dir), then run without --dry-run.")
    else:
        echo("The plan is valid and its data loads: run it without --dry-run.")
    return 0


def _check_originals_without_data(opts, registry, dspec: str, shape, classes, echo) -> None:
    """``--original`` on a dataset whose files are missing: each file is read (safetensors or a
    ``weights_only`` state dict; anything else refused) and, where the dataset plugin declares its
    input shape and classes, checked against the model they build; its test accuracy waits for the
    data. The dry run said the plan was valid without opening the file (a pickled module, or the
    digits MLP's file for a CIFAR-10 preset, passed; own-model audit, 2026-12-07)."""
    from bench.run.original import check_against, read_original
    from bench.run.validate import resolve_model

    for mspec, path in opts.original.items():
        orig = read_original(mspec, path)
        head = f"  original    {orig.path} ({orig.format}, SHA-256 {orig.sha256[:12]}) for {dspec}/{mspec}"
        if shape and classes:
            mobj, marg, _ = resolve_model(registry, mspec)
            check_against(orig, mobj.create(int(classes), tuple(shape), marg), dspec)
            echo(f"{head}: fits the model; its test accuracy is measured once the data files are there")
        else:
            echo(f"{head}: read; checked against the model once the data files are there (the dataset's input "
                 f"shape is not known before)")
