"""Cost of each attack on digits, beside the cost of the unlearning it evaluates.

Usage: python benchmarks/bench_attacks.py [--method ga] [--forget random:10%] [--model mlp]
                                          [--shadow-models 8] [--threads 1] [--device cpu]
                                          [--attacks loss,confidence,...]
Trains the original and the retrained reference (digits recipe), runs the method once (timed:
``unlearn_seconds``), trains the shadow models and the models retrained on D_r that the shadow
attacks use (timed: a one-off per setting and seed, cached by ``bench run``), then times every
attack on the unlearned model exactly as a trial runs it (``bench.attack_run.run_attacks``).
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


    from bench.cache import state_to_bytes
    from bench.experiment import resolve_model
    from bench.forget import parse_forget
    from bench.plugins import get_registry
    from bench.recipe import build_recipe
    from bench.shadows import attach_attack_models, needs_of
    from bench.attack_run import run_attacks
    from bench.training import fit, seed_everything, set_threads, warm_up
    from bench.trial import GroupPayload, model_factory, split_data

    set_threads(a.threads)
    reg = get_registry()
    ds = reg.get("dataset", "digits")
    sp = ds.load(None, False, None)
    model_obj, arg, _ = resolve_model(reg, a.model)
    recipe = build_recipe(getattr(ds, "default_recipe", {}), getattr(model_obj, "default_recipe", {}))
    forget_idx = parse_forget(a.forget).select(sp.train_y.numpy(), sp.num_classes, 0)
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
    access = set(method.requires_for(params) if hasattr(method, "requires_for") else method.requires)
    from bench.contracts import ForgetRequest, MethodContext

    model = new_model()
    model.load_state_dict(original.state_dict())
    request = ForgetRequest(num_classes=sp.num_classes, kind="random", forget_indices=forget_idx,
                            forget_x=fx if "forget" in access else None, forget_y=fy if "forget" in access else None,
                            retain_x=rx if "retain" in access else None, retain_y=ry if "retain" in access else None)
    ctx = MethodContext(seed=0, device=a.device, new_model=new_model, recipe=recipe if "recipe" in access else None)
    seed_everything(0)
    t0 = time.perf_counter()
    unlearned = method.unlearn(model, request, params, ctx)
    t_unlearn = time.perf_counter() - t0

    names = reg.resolve("attack", a.attacks)
    attacks = {n: reg.get("attack", n) for n in names}
    group = GroupPayload(splits=sp, forget_idx=forget_idx, forget_kind="random", forget_class=None,
                         original_state=state_to_bytes(original), retrain_seconds=t_retrain, original_eval=None, retrain_eval=None)
    ref_key = "retrain"
    with tempfile.TemporaryDirectory() as cache_dir:
        doc = {"dataset": "digits", "data_sha256": "bench", "model": a.model, "input_shape": list(sp.input_shape),
               "num_classes": sp.num_classes, "recipe": recipe.as_dict(), "seed": 0}
        plan = SimpleNamespace(attacks=attacks, options=SimpleNamespace(shadow_models=a.shadow_models), cache_dir=cache_dir,
                               groups=[SimpleNamespace(gid="g0", model=a.model, dataset="digits", recipe=recipe, seed=0,
                                                       original_doc={"kind": "original", **doc}, forget_idx=forget_idx,
                                                       retrain_key=ref_key)],
                               models={a.model: (model_obj, arg, "")}, splits={"digits": sp}, device=a.device)
        payload = SimpleNamespace(groups={"g0": group})
        lines: list[str] = []
        t0 = time.perf_counter()
        attach_attack_models(plan, payload, {ref_key: (state_to_bytes(retrained), {})}, lines.append, {})
        t_shadows = time.perf_counter() - t0
    spec = {"device": a.device, "seed": 0, "method": a.method, "recipe": recipe.as_dict()}
    rows = []
    for name, attack in attacks.items():
        metrics: dict = {}
        t0 = time.perf_counter()
        run_attacks({name: attack}, unlearned, metrics, spec=spec, group=group, method=method, params=params, access=access,
                    data=((rx, ry), (fx, fy), (tx, ty)), new_model=new_model)
        rows.append((name, time.perf_counter() - t0, {k: v for k, v in metrics.items() if not isinstance(v, dict)}))

    print(f"digits / {a.model} / {a.forget} ({len(forget_idx)} points), method {a.method}, {a.threads} thread(s), "
          f"device {a.device}, {a.shadow_models} shadow models")
    print(f"original training {t_orig:.2f} s; retrained reference {t_retrain:.2f} s; unlearning ({a.method}) {t_unlearn:.3f} s")
    needs = sorted(needs_of(attacks))
    print(f"shadow/retrained models for {', '.join(needs) or 'nothing'}: {t_shadows:.2f} s once per setting and seed (cached)")
    for line in lines:
        print("  " + line.strip())
    print(f"{'attack':<14} {'seconds':>8} {'x unlearn':>10}  headline")
    for name, sec, m in rows:
        head = ", ".join(f"{k}={v:.3f}" for k, v in list(m.items())[:3])
        print(f"{name:<14} {sec:8.2f} {sec / max(t_unlearn, 1e-9):10.1f}  {head}")


if __name__ == "__main__":
    main()
