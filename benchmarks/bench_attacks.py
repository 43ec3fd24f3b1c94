"""Cost of each attack on digits, beside the cost of the unlearning it evaluates.

Usage: python benchmarks/bench_attacks.py [--method ga] [--forget random:10%] [--model mlp]
                                          [--shadow-models 8] [--threads 1] [--device cpu]
                                          [--attacks loss,confidence,...]
Trains the original and the retrained reference (digits recipe), runs the method once (timed:
``unlearn_seconds``), trains the shadow models and the models retrained on D_r that the shadow
attacks use (timed: a one-off per setting and seed, cached by ``bench run``), then times every
attack on the unlearned model exactly as a trial runs it (``bench.run.attack_step.run_attacks``).
Needs neither Ray nor MLflow (the cache is a temporary directory).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from types import SimpleNamespace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="ga")
    ap.add_argument("--forget", default="random:10%")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--shadow-models", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--attacks", default="*")
    a = ap.parse_args()


    from bench.core.cache import state_to_bytes
    from bench.core.keys import ATTACK_ERRORS_KEY
    from bench.run.validate import resolve_model
    from bench.core.forget import parse_forget
    from bench.core.plugins import get_registry
    from bench.core.recipe import build_recipe
    from bench.core.method import requires_for
    from bench.core.spec import TrialSpec
    from bench.eval.shadows import needs_of
    from bench.nn.nets import model_factory
    from bench.nn.training import fit, seed_everything, set_threads, warm_up
    from bench.run.attack_step import run_attacks
    from bench.run.payload import GroupPayload
    from bench.run.prepare import attack_models
    from bench.run.request import build_request, input_bounds, split_data

    set_threads(a.threads)
    reg = get_registry()
    ds = reg.get("dataset", "digits")
    sp = ds.load(None, False, None)
    model_obj, arg, _ = resolve_model(reg, a.model)
    recipe = build_recipe(getattr(ds, "default_recipe", {}), getattr(model_obj, "default_recipe", {}))
    fspec = parse_forget(a.forget)
    if fspec.kind == "seq":
        raise SystemExit(f"bench_attacks.py: --forget {a.forget}: a single request (random:, class: or indices:), "
                         f"not a sequence.")
    forget_idx = fspec.select(sp.train_y.numpy(), sp.num_classes, 0)
    (rx, ry), (fx, fy), (tx, ty) = split_data(sp, forget_idx, a.device)
    new_model = model_factory(model_obj, arg, sp, 0, a.device)
    warm_up(new_model(), rx, ry)

    t0 = time.perf_counter()
    original = fit(new_model(), sp.train_x.to(a.device), sp.train_y.to(a.device), recipe, seed=0)
    t_orig = time.perf_counter() - t0
    t0 = time.perf_counter()
    retrained = fit(new_model(), rx, ry, recipe, seed=0)
    t_retrain = time.perf_counter() - t0

    method = reg.get("method", a.method)
    params = dict(method.default_params)
    access = requires_for(method, params)
    from bench.core.contracts import MethodContext

    model = new_model()
    model.load_state_dict(original.state_dict())
    bounds = input_bounds(sp, a.device)
    # the request's own kind (a class request said "random": unsir refused it, others got the wrong kind)
    request = build_request(num_classes=sp.num_classes, kind=fspec.kind, forget_indices=forget_idx,
                            forget_class=fspec.label if fspec.kind == "class" else None,
                            forget=(fx, fy), retain=(rx, ry), access=access, bounds=bounds)
    ctx = MethodContext(seed=0, device=a.device, new_model=new_model, recipe=recipe if "recipe" in access else None)
    seed_everything(0)
    t0 = time.perf_counter()
    unlearned = method.unlearn(model, request, params, ctx)
    t_unlearn = time.perf_counter() - t0

    names = reg.resolve("attack", a.attacks)
    attacks = {n: reg.get("attack", n) for n in names}
    ref_key = "retrain"
    with tempfile.TemporaryDirectory() as cache_dir:
        doc = {"dataset": "digits", "data_sha256": "bench", "model": a.model, "input_shape": list(sp.input_shape),
               "num_classes": sp.num_classes, "recipe": recipe.as_dict(), "seed": 0}
        plan = SimpleNamespace(attacks=attacks, options=SimpleNamespace(shadow_models=a.shadow_models), cache_dir=cache_dir,
                               groups=[SimpleNamespace(gid="g0", model=a.model, dataset="digits", recipe=recipe, seed=0,
                                                       original_doc={"kind": "original", **doc}, forget_idx=forget_idx,
                                                       original_key="original", retrain_key=ref_key, step_refs=None)],
                               models={a.model: (model_obj, arg, "")}, splits={"digits": sp}, device=a.device)
        lines: list[str] = []
        t0 = time.perf_counter()
        refs = {"original": (state_to_bytes(original), {}), ref_key: (state_to_bytes(retrained), {})}
        extras = attack_models(plan, refs, lines.append, {}).get("g0", {})  # none: no attack needs models
        t_shadows = time.perf_counter() - t0
    group = GroupPayload(splits=sp, forget_idx=forget_idx, original_state=state_to_bytes(original), steps=(), continual=False,
                         attack_models=extras)
    spec = TrialSpec(trial_name=a.method, method=a.method, method_plugin="", params=params, data_access=access, seed=0,
                     forget_seed=0, dataset="digits", data={}, model=a.model, forget=a.forget, forget_size=len(forget_idx),
                     group="g0", recipe=recipe.as_dict(), attacks=tuple(attacks), shadow_models=a.shadow_models,
                     device=a.device, threads=a.threads, versions={}, plugins={})
    rows = []
    for name, attack in attacks.items():
        metrics: dict = {}
        t0 = time.perf_counter()
        run_attacks({name: attack}, unlearned, metrics, spec=spec, group=group, method=method,
                    data=((rx, ry), (fx, fy), (tx, ty)), new_model=new_model, bounds=bounds)
        failed = (metrics.get(ATTACK_ERRORS_KEY) or {}).get(name)
        rows.append((name, time.perf_counter() - t0, {k: v for k, v in metrics.items() if not isinstance(v, dict)},
                     failed.strip().splitlines()[-1] if failed else None))

    print(f"digits / {a.model} / {a.forget} ({len(forget_idx)} points), method {a.method}, {a.threads} thread(s), "
          f"device {a.device}, {a.shadow_models} shadow models")
    print(f"original training {t_orig:.2f} s; retrained reference {t_retrain:.2f} s; unlearning ({a.method}) {t_unlearn:.3f} s")
    needs = sorted(needs_of(attacks))
    print(f"shadow/retrained models for {', '.join(needs) or 'nothing'}: {t_shadows:.2f} s once per setting and seed (cached)")
    for line in lines:
        print("  " + line.strip())
    print(f"{'attack':<14} {'seconds':>8} {'x unlearn':>10}  headline")
    for name, sec, m, failed in rows:  # a failed attack's time is no measurement: its error instead
        if failed:
            print(f"{name:<14} {'-':>8} {'-':>10}  FAILED: {failed}")
            continue
        head = ", ".join(f"{k}={v:.3f}" for k, v in list(m.items())[:3])
        print(f"{name:<14} {sec:8.2f} {sec / max(t_unlearn, 1e-9):10.1f}  {head}")
    if any(failed for *_, failed in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
