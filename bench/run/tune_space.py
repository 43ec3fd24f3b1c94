"""The search space ``bench tune`` samples: the method's declared space, checked against the
method before any work, and fitted to the setting.

Every domain's edges (and every ``choice`` value) are converted to the parameter's type and go
through the method's ``check_params``: a space wider than the method accepts is a bug of the plugin
and stops the command (exit 2). Then each value must fit the setting (``check_setting`` on the
tuned dataset and model, the other parameters at their defaults): an integer range or a choice is
narrowed to the values that fit, said in a note (``cf-k`` samples k in 1..4, and the default MLP has
2 blocks: half of its samples failed; a range with a gap becomes a choice); a float range whose
edges do not fit stops the command. Parameters that constrain each other (SISA's shards x slices)
are checked together on every drawn sample (:func:`refused_samples`): those refused are not run,
said in a note.
"""

from __future__ import annotations

from typing import Any, Callable

from bench.core.errors import BenchError
from bench.core.params import UnusedParam
from bench.core.space import Domain, choice, domain_problem, probes, randint
from bench.eval.metrics import METRIC_DIRECTIONS, no_direction_reason
from bench.run.validate import coerce_param, params_for_dataset

#: the widest integer range whose every value is checked against the setting (wider: its edges)
MAX_CHECKED_INTS = 1000


def check_space(m, keys: list[str], datasets: list[str], given: dict) -> None:
    """The values a method's search space samples fit the parameters' types and the method's own
    ``check_params`` (probed at the edges of each domain, every other parameter as the samples have
    it): a space wider than the method accepts saved a best value ``bench run`` then refused, and a
    float range over an integer parameter failed every sample."""
    from bench.core.method import check_params

    for key in keys:
        domain = m.obj.search_space[key]
        fix = (f"Fix the search space in the plugin, or fix {key} with -p {m.name}.{key}=VALUE (bench tune "
               f"then searches the rest).")
        problem = domain_problem(domain)
        if problem:  # drawing from it was a raw traceback (math domain error, StopIteration; params audit)
            raise BenchError(f"Method '{m.name}' (plugin {m.origin}) declares search_space['{key}'] that cannot be "
                             f"sampled: {problem}. {fix}")
        where = f"Method '{m.name}' (plugin {m.origin}) searches {key} over {domain.describe()}"
        for probe in probes(domain):
            try:
                value = coerce_param(m.name, key, probe, m.params[key])
                for dataset in datasets:
                    check_params(m.name, m.obj, {**params_for_dataset(m, dataset, given), key: value})
            except BenchError as exc:  # its own "Fix it with -p ..." would point away from the space
                if isinstance(exc.__context__, UnusedParam):  # a combination (cf-k's lr_decay at epochs 1):
                    continue  # the samples that make it are left out with a note (refused_samples)
                inner = str(exc).split(" Fix it with", 1)[0].rstrip(".")
                raise BenchError(f"{where}, and a sample of it is refused: {inner}. {fix}") from None


def fit_space(m, plan, given: dict, say: Callable[..., None]) -> dict[str, Domain]:
    """The domains to search for method plan ``m`` (the declared ones not fixed by ``given``):
    checked by :func:`check_space`, then fitted to the plan's settings (see the module docstring)."""
    keys = [k for k in m.obj.search_space if k not in given]
    check_space(m, keys, list(plan.options.datasets), given)
    settings = _settings(plan)
    out: dict[str, Domain] = {}
    for key in keys:
        domain = m.obj.search_space[key]
        refusals: dict[Any, str] = {}

        def fits(value: Any) -> bool:
            for dataset, setting in settings:
                params = {**params_for_dataset(m, dataset, given), key: coerce_param(m.name, key, value, m.params[key])}
                try:
                    _check_setting(m, params, setting)
                except BenchError as exc:  # without its "Fix it with -p": the note and refusal say what to do
                    refusals.setdefault(value, str(exc).split(" Fix it with", 1)[0])
                    return False
            return True

        if domain.kind == "randint" and int(domain.args[1]) - int(domain.args[0]) <= MAX_CHECKED_INTS:
            good = [v for v in range(int(domain.args[0]), int(domain.args[1])) if fits(v)]
            if good and good == list(range(good[0], good[-1] + 1)):
                fitted = randint(good[0], good[-1] + 1)
            else:  # a gap (one refused value in the middle): the values that fit, each as likely
                fitted = choice(good) if good else None
        elif domain.kind == "choice":
            good = [v for v in domain.args[0] if fits(v)]
            fitted = choice(good) if good else None
        else:
            fitted = domain if all([fits(v) for v in probes(domain)]) else None
        if fitted is None:
            first = next(iter(refusals.values()))
            raise BenchError(f"Method '{m.name}' searches {key} over {domain.describe()}, and this setting refuses "
                             f"{'its values' if domain.kind in ('randint', 'choice') else 'an edge of it'}: "
                             f"{first.rstrip('.')}. Fix {key} with -p {m.name}.{key}=VALUE (bench tune then searches "
                             f"the rest), or tune on another setting.")
        if fitted != domain:
            bad = ", ".join(map(str, list(refusals)[:8]))
            say(f"note: {m.name} searches {key} over {fitted.describe()}, not its declared {domain.describe()}: "
                f"this setting refuses {key}={bad} ({next(iter(refusals.values())).rstrip('.')})", always=True)
        out[key] = fitted
    return out


def refused_samples(m, plan, specs) -> dict[int, str]:
    """The samples (by number) that the method's ``check_params`` or ``check_setting`` refuses on
    the plan's setting, with why: each value was checked with the other parameters at their
    defaults, and parameters that constrain each other (SISA's shards x slices) can still refuse
    some combinations. Every sample is known before the search (``bench.run.tune_samples``), so
    each is checked (until 2026-12-06 the space's corners were, and such samples failed in Ray)."""
    from bench.core.method import check_params

    settings = _settings(plan)
    out: dict[int, str] = {}
    for k, spec in enumerate(specs):
        params = dict(spec.params)
        try:
            check_params(m.name, m.obj, params)
            for _, setting in settings:
                _check_setting(m, params, setting)
        except BenchError as exc:
            out[k] = str(exc).split(" Fix it with", 1)[0].rstrip(".")
    return out


def _check_setting(m, params: dict, setting) -> None:
    from bench.core.method import check_setting

    check_setting(m.name, m.obj, params, setting)


def _settings(plan) -> list[tuple[str, Any]]:
    """(dataset spec, ``Setting``) of each group of the plan: what its trials' ``check_setting`` sees."""
    import torch

    from bench.core.contracts import Setting

    out = []
    for g in plan.groups:
        sp = plan.splits[g.dataset]
        obj, arg, _ = plan.models[g.model]
        torch.manual_seed(0)
        network = obj.create(sp.num_classes, tuple(sp.input_shape), arg)
        size = max((len(s) for s in g.steps), default=0) if g.steps else len(g.forget_idx)
        out.append((g.dataset, Setting(g.dataset, g.model, g.forget.text, sp.train_size, int(size), sp.num_classes,
                                       tuple(sp.input_shape), network)))
    return out


SCHEDULERS = ("fifo", "asha")


#: The most samples one search draws (each is drawn up front, in order; 3,000 take 0.7 s).
MAX_SAMPLES = 100_000


def check_tunable(registry, method: str, objective: str, num_samples: int, scheduler: str) -> None:
    """Everything that needs no heavy import, before any work."""
    obj = registry.get("method", method)
    if not obj.search_space:
        tunable = [e.name for e in registry.entries("method") if e.obj.search_space]
        raise BenchError(
            f"Method '{method}' declares no search space: there is nothing to tune. "
            f"Methods with one: {', '.join(tunable) or '(none)'}."
        )
    if objective not in METRIC_DIRECTIONS:
        why = no_direction_reason(objective)
        head = f"Objective '{objective}' has no better side.{why}" if why else f"Unknown objective '{objective}'."
        raise BenchError(f"{head} Objectives: {', '.join(sorted(METRIC_DIRECTIONS))}.")
    if not 1 <= num_samples <= MAX_SAMPLES:  # every sample is drawn up front: 99999999999 filled memory, no word
        raise BenchError(f"--num-samples must be from 1 to {MAX_SAMPLES:,} (got {num_samples}).")
    if scheduler not in SCHEDULERS:
        raise BenchError(f"Unknown scheduler '{scheduler}': expected one of {', '.join(SCHEDULERS)}.")
