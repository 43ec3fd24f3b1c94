"""PRUNE: certified unlearning by patching (Li, Wang, Yuan, Zhang, "PRUNE: A Patching Based Repair
Framework for Certifiable Unlearning of Neural Networks", arXiv 2505.06520, and its Neural Networks
2026 extension; code github.com/RitaAnonymous/PRUNE2023, built on REASSURE, Fu & Li, ICLR 2022,
github.com/BU-DEPEND-Lab/REASSURE; "Sound and Complete Neural Network Repair with Minimality and
Locality Guarantees", ICLR 2022).

For each forget point (or each cluster representative) PRUNE adds a small ReLU *patch* network to
the logits of the untouched original: an affine map p, gated by a support network that is 1 on the
point's linear region R and 0 once the region's constraints are violated by 1/gamma in total. The
patch is built so that the patched model predicts a target label t != y on all of R (the
certificate), and changes nothing where the support is 0.

Choices made where the sources leave room ([recon]: reconstructed where they are silent; [fix]: a
defect of the released code corrected):

- Regions: closed form from the activation pattern, one row per neuron ([fix] true per-neuron
  gradients); float64 throughout; rows the input box already implies are dropped from LPs only.
- Patch LP: ``lp="rows"`` (default) is REASSURE's per-row construction as released in the
  ``ICLR/tools`` code PRUNE builds on; with the one-sided specification "argmax = t" it needs only the
  C - 1 upper bounds and gives a constant patch (c = 0), so K = max|d| holds on every input, inside
  the box or not. ``lp="minimal"`` is REASSURE's minimal-l_inf LP (``Repair.py``), exact but
  ~(3C - 1)(N + 2d) dual variables: for small heads.
- ``relax_rows`` > 0: the patch LPs keep only that many region rows, those nearest to the point
  (a superset of the region, so the bounds are sound and the certificate still holds on all of R):
  much smaller LPs for a larger patch (less locality; benchmarks/bench_prune.py measures both).
- Regions: ``region="auto"`` takes the activation region for heads with hidden ReLU units and an
  l_inf box of ``box_radius`` around the point for a single linear head (whose one linear region is
  the whole space; REASSURE's ImageNet setting patches an MLP head in feature space);
  ``"activation_box"`` intersects both (the head stays affine on it): for small heads in feature
  space, whose activation regions are large enough that a patch on one flips most inputs.
- ``lp_threads``: the C - 1 margin LPs of a patch split over that many threads, each group on its
  own HiGHS copy of the region (0, the default: the trial's CPU threads, so one in a 1-CPU trial).
  The values agree to the LP's rounding (~1e-12) across thread counts; one count is deterministic.
- Strict argmax: the specification is f_t - f_j >= eps (``eps``, default 1e-3) [recon].
- Composition: each patch is computed against the current patched model [fix], and overlapping
  patches are separated at construction (``separate``, engine.py: supports are narrowed by raising
  gamma until they are provably 0 on every other certified region; touching regions share the
  target or are refused and reported per point), so every certificate holds on the final model.
- gamma: sharpness on true region rows; the released code's gamma = 0.1 acts on cumulative-sum
  rows about 20x longer, i.e. like gamma ~ 2 here (docs/prune.md, "The paper's protocol").
- Many points (PRUNE's representatives, released code ``purchase_multipoint.py``): KMeans(k, n_init=10, random_state=seed + iteration) on the points still
  predicted as their label; the representative is the member of each cluster nearest to its
  centroid; each cluster draws its own target ([fix]: the released code reuses one label vector);
  one support per (distinct-region) member, gated by their maximum; re-cluster the survivors until
  none is left, the forget accuracy is <= ``stop_forget_acc``, or ``max_iter`` iterations. When no
  more survivors than ``k`` are left, each is its own representative (so every survivor of the
  last iteration gets a certified patch). Points the model already misclassifies are not patched.
- Whole classes: the same loop on the class's training points [recon].
- Targets: ``target="random"`` (PRUNE's: a random label != y, seeded here) or ``"nearest"`` (the runner-up
  class of the current model at the point: the smallest patch).
- Input box X: ``request.input_bounds`` in input space (the data's domain, e.g. the unit box for
  [0, 1] pixels); in feature space (CNN/timm heads), where PRUNE has only the forget set, the
  per-dimension min/max of the forget set's features widened by ``feature_margin`` times their
  range on each side (at least ``feature_margin`` times the mean range, so constant dimensions get
  room too). The box always contains every forget point. K bounds |p| on X.
- Continual requests: called on a PatchedModel it returned, it adds patches to it.
- ``save_model`` (off by default: ~30-60 MB per trial on digits): the patched model as the trial's
  artifact ``prune_model.safetensors`` (``PatchedModel.save``: the original's weights, every patch,
  the input box and the construction's LP multipliers), so that an auditor can load it and run the
  independent check again (docs/prune.md, "Checking a run's certificates yourself").

Limitations: forgetting means misclassifying into another label on the region, which a
retrained model would not do for many points (over-unlearning, itself a membership signal: compare
with the retrained model's forget accuracy); nothing is removed from the weights (the patches can be
stripped; they are the audit trail); linear regions are tiny in high dimension and each patch costs
about N d parameters per member.
"""

from __future__ import annotations

from bench.core import space
from bench.core.method import Method, check_params

TARGET_RULES = ("random", "nearest")
REGIONS = ("auto", "activation", "box", "activation_box")
#: the regions ``bench tune`` samples: "box" is for a single linear head only, which "auto" already
#: covers (it takes the box there), and refused on every head with hidden ReLU units
TUNED_REGIONS = ("auto", "activation", "activation_box")
LP_VARIANTS = ("rows", "minimal")
BACKENDS = ("auto", "highspy", "scipy")


class Prune(Method):
    name = "prune"
    description = "PRUNE: certified patches on the linear regions of forget points (REASSURE repair), representatives for many points."
    requires = frozenset({"forget"})
    trains = False  # no optimiser step: LPs and closed forms only
    default_params = {
        "gamma": 2.0,
        "k": 8,
        "max_iter": 20,
        "target": "random",
        "region": "auto",
        "box_radius": 0.05,
        "lp": "rows",
        "relax_rows": 0,
        "eps": 1e-3,
        "feature_margin": 0.5,
        "stop_forget_acc": 0.0,
        "certify": True,
        "lp_backend": "auto",
        "lp_threads": 0,
        "separate": True,
        "save_model": False,
    }
    search_space = {
        "gamma": space.loguniform(0.01, 100.0),
        "k": space.randint(1, 33),
        "max_iter": space.randint(1, 51),
        "target": space.choice(TARGET_RULES),
        "region": space.choice(TUNED_REGIONS),
        "box_radius": space.loguniform(1e-3, 1.0),
        "lp": space.choice(LP_VARIANTS),
    }

    def check_params(self, params: dict) -> None:
        import math

        def bad(key, expected):
            raise ValueError(f"{key}={params[key]!r} is invalid; expected {expected}")

        def number(key):
            value = params[key]
            return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)

        def integer(key, low):
            return number(key) and params[key] >= low and int(params[key]) == params[key]

        for key, allowed in (("target", TARGET_RULES), ("region", REGIONS), ("lp", LP_VARIANTS),
                             ("lp_backend", BACKENDS)):
            if params[key] not in allowed:
                bad(key, "one of " + ", ".join(allowed))
        for key in ("gamma", "box_radius", "eps"):
            if not (number(key) and params[key] > 0):
                bad(key, "a finite number > 0")
        if not integer("lp_threads", 0):
            bad("lp_threads", "an integer >= 0 (0: the trial's CPU threads)")
        if not integer("relax_rows", 0):
            bad("relax_rows", "an integer >= 0 (0: every row of the region)")
        for key in ("k", "max_iter"):
            if not integer(key, 1):
                bad(key, "an integer >= 1")
        if not (number("feature_margin") and params["feature_margin"] >= 0):
            bad("feature_margin", "a finite number >= 0")
        if not (number("stop_forget_acc") and 0 <= params["stop_forget_acc"] <= 1):
            bad("stop_forget_acc", "a forget accuracy in [0, 1] at or below which to stop")
        for key in ("certify", "separate", "save_model"):
            if not isinstance(params[key], bool):
                bad(key, "true or false")

    def check_setting(self, params: dict, setting) -> None:
        """The model must have a part PRUNE can patch (``network.split``: a ReLU MLP, or the MLP head
        of a CNN or timm model), and ``region="box"`` needs a head without hidden ReLU units."""
        from .network import split

        _, head = split(setting.network)
        if params["region"] == "box" and head.hidden:
            raise ValueError(f"region='box' is for a single linear head, and {setting.model}'s head has {head.hidden} hidden "
                             "ReLU units; use region=auto (or activation, activation_box)")

    def prepare(self) -> None:
        """The imports of the first call (PRUNE's modules with HiGHS, SciPy's sparse matrices and
        LP solver, scikit-learn's KMeans; about 1-2 s in a fresh worker), made before the harness
        times ``unlearn``."""
        import scipy.optimize  # noqa: F401
        import scipy.sparse  # noqa: F401
        from sklearn.cluster import KMeans  # noqa: F401

        from . import run  # noqa: F401  (imports the construction and the check)

    def saved_header(self, model) -> dict[str, str]:
        """The patches' kind, targets, labels and summaries, with which :meth:`load_saved` rebuilds
        the patched model from the state dict ``--save-models`` keeps."""
        return model.header()

    def load_saved(self, state, header, new_model):
        """The patched model of a ``--save-models`` file: a fresh model of the run's architecture
        takes the original's weights, then the patches (``PatchedModel.from_tensors``)."""
        import json

        from bench.core.errors import BenchError

        from .modules import PatchedModel

        if "prune" not in header:
            raise BenchError("the file has no 'prune' entry in its header (saved before 2026-12-07, when PRUNE's "
                             "--save-models files began to carry it); its state dict is the original's weights under "
                             "'original.' and each patch's under 'patches.I.'")
        return PatchedModel.from_tensors(state, json.loads(header["prune"]), new_model())

    def unlearn(self, model, request, params, ctx):
        check_params(self.name, self, params)  # direct callers (the harness checked at plan time)
        from .run import run_prune

        return run_prune(model, request, dict(params), ctx)

