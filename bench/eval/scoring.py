"""Membership scores -> the shared privacy metrics, and the log-scale ROC plot.

Every attack turns a model and the attack context into a per-example membership score, higher
meaning "member", for a set of members and a set of non-members. This module is the one place
that turns those scores into metrics, those the membership-inference literature reports (the LiRA
reference's ROC, AUC and TPR at a low FPR; the threshold attacks' balanced accuracy):

- ``auc``: area under the ROC curve of ``sklearn.metrics.roc_curve`` (trapezoidal, which equals
  ``roc_auc_score``; 0.5 = chance).
- ``tpr_at_1fpr`` / ``tpr_at_0.1fpr``: the largest true-positive rate at a false-positive rate
  strictly below 1% (0.1%), read off ``sklearn.metrics.roc_curve`` as in the LiRA reference
  (Carlini et al., S&P 2022, ``tensorflow/privacy`` ``research/mi_lira_2021/plot.py``:
  ``tpr[np.where(fpr < .001)[0][-1]]``), over every threshold: ``plot.py`` calls ``roc_curve``
  with its default ``drop_intermediate=True``, which drops ROC points collinear with their
  neighbours; where members and non-members tie, the dropped point can be the one with the
  largest TPR below the limit (10 members, 200 non-members, ties at two scores: 0.1 instead of
  0.2). We keep every threshold, a fix (found in review, 2026-12-06); AUC and ``balanced_acc``
  are the same either way. With fewer than 100 (1,000) non-members the only rate
  below the limit is FPR = 0, so the value is the fraction of members scored above every
  non-member: a coarse figure (it may well be above 0); report it on sets large enough for the
  rate to mean something.
- ``balanced_acc``: the best balanced accuracy of a single threshold, max_t 1 - (FPR + FNR)/2
  (the threshold attacks of Yeom et al., CSF 2018 and Song & Mittal, USENIX Security 2021,
  optimised on the scored sets themselves: an upper bound on what an attacker calling "member"
  every score above a threshold reaches). One-sided: where members score lower (an AUC well below
  0.5) it stays near 0.5, though the reversed rule would separate the sets.

``roc_png`` draws the curves of one or more attacks on log-log axes (the LiRA paper's figure
style), as PNG bytes, painting the axes once per process and only each plot's own parts over them
(the pixels of ``roc_figure``'s full draw); ``RocPlot`` holds the curves and draws them when the
harness records the trial (``bench.core.contracts.Rendered``), so trial workers never import
matplotlib.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

import numpy as np


def _as_arrays(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if len(m) == 0 or len(n) == 0:
        raise ValueError(f"membership scores need members and non-members (got {len(m)} and {len(n)}).")
    # +inf / -inf are legitimate ("certainly member"); NaN is not a score: rank it as least member-like
    m = np.nan_to_num(m, nan=-np.inf)
    n = np.nan_to_num(n, nan=-np.inf)
    return m, n


def roc(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the score threshold sweep, members as the positive class."""
    from sklearn.metrics import roc_curve

    m, n = _as_arrays(member_scores, nonmember_scores)
    labels = np.r_[np.ones(len(m)), np.zeros(len(n))]
    scores = np.r_[m, n]
    finite = np.isfinite(scores)
    if not finite.all():  # roc_curve refuses infinities: map them just outside the finite range
        lo, hi = (scores[finite].min(), scores[finite].max()) if finite.any() else (0.0, 0.0)
        scores = np.where(scores == np.inf, hi + 1.0, np.where(scores == -np.inf, lo - 1.0, scores))
    # every threshold kept: scikit-learn's default drops points collinear with their neighbours, and
    # with tied scores the dropped one can be the largest TPR below the FPR limit (a fix, see above)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """Largest TPR among thresholds with FPR strictly below ``max_fpr`` (LiRA ``plot.py``)."""
    ok = np.where(fpr < max_fpr)[0]
    return float(tpr[ok[-1]]) if len(ok) else 0.0


def score_metrics(member_scores, nonmember_scores) -> dict[str, float]:
    """``auc``, ``tpr_at_1fpr``, ``tpr_at_0.1fpr`` and ``balanced_acc`` of one attack's scores."""
    fpr, tpr = roc(member_scores, nonmember_scores)
    return {
        "auc": float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr)),
        "tpr_at_1fpr": tpr_at_fpr(fpr, tpr, 0.01),
        "tpr_at_0.1fpr": tpr_at_fpr(fpr, tpr, 0.001),
        "balanced_acc": float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0)),
    }


_FLOOR = 1e-4  # the plot's lowest rate: log axes from 10^-4 to 1


def _roc_axes(titled: bool):
    """A figure (with its Agg canvas) holding the plot's fixed parts: margins, log axes with decade
    ticks, grid, axis labels and the chance diagonal. Fixed margins instead of ``tight_layout`` and
    fixed decade ticks without minor ticks (matplotlib's log locators and the layout pass cost about
    four times the drawing itself), labelled in plain text with Unicode superscripts (10⁻³) rather
    than mathtext, whose parsing took a third of a plot's time."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.16, right=0.96, bottom=0.12, top=0.92 if titled else 0.96)
    ax = fig.add_subplot()
    ax.plot([_FLOOR, 1], [_FLOOR, 1], ls="--", color="grey", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    decades = [10.0**e for e in range(-4, 1)]
    names = ["10\u207b\u2074", "10\u207b\u00b3", "10\u207b\u00b2", "10\u207b\u00b9", "1"]  # 10⁻⁴ ... 10⁻¹, 1
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(decades))
        axis.set_major_formatter(FixedFormatter(names))
        axis.set_minor_locator(NullLocator())
    ax.set_xlim(_FLOOR, 1)
    ax.set_ylim(_FLOOR, 1)
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    return fig, ax


def _add_curves(ax, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str) -> list:
    """The plot's own parts on ``ax``: one line per curve, the title, the legend; returns them in
    the order a full draw paints them (lines, then the title, then the legend)."""
    lines = [ax.plot(np.clip(fpr, _FLOOR, 1), np.clip(tpr, _FLOOR, 1), lw=1.4, label=label)[0]
             for label, (fpr, tpr) in curves.items()]
    if title:
        ax.set_title(title, fontsize=9)
    return lines + ([ax.title] if title else []) + [ax.legend(loc="lower right", fontsize=7)]


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = ""):
    """The ROC plot as a whole matplotlib figure (``roc_png`` paints the same pixels faster)."""
    fig, ax = _roc_axes(bool(title))
    _add_curves(ax, curves, title)
    return fig


_PNG = {"format": "png", "pil_kwargs": {"compress_level": 3}}  # Pillow's default 6: 11% slower, 10% smaller
_painted: dict = {}  # titled -> (figure, axes, its fixed parts painted without the spines)
_paint_lock = threading.Lock()


def roc_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> bytes:
    """A log-log ROC plot of ``{label: (fpr, tpr)}`` with the chance diagonal, as PNG bytes.

    Drawn once per attack per trial on the process that records the trial, so it is kept cheap:
    the fixed parts (``_roc_axes``: axes, ticks and their labels, whose text layout was most of a
    plot's time) are painted once per process, and each plot restores those pixels and paints only
    its lines, the spines, the title and the legend over them, in the order a full draw paints
    them, so the image is the one ``roc_figure(curves, title).savefig`` gives, pixel for pixel
    (tested): 0.05 -> 0.014 s per plot."""
    import io

    from matplotlib.image import imsave

    titled = bool(title)
    with _paint_lock:
        if titled not in _painted:
            fig, ax = _roc_axes(titled)
            spines = list(ax.spines.values())  # zorder 2.5: above the curves (2), so painted per plot
            for spine in spines:
                spine.set_visible(False)
            fig.canvas.draw()
            for spine in spines:
                spine.set_visible(True)
            _painted[titled] = fig, ax, fig.canvas.copy_from_bbox(fig.bbox)
        fig, ax, fixed = _painted[titled]
        canvas = fig.canvas
        canvas.restore_region(fixed)
        ax.set_prop_cycle(None)  # the curves' colours start where a new figure's do
        parts = _add_curves(ax, curves, title)
        renderer = canvas.get_renderer()
        for artist in parts[:len(curves)] + list(ax.spines.values()) + parts[len(curves):]:
            artist.draw(renderer)
        buf = io.BytesIO()
        imsave(buf, canvas.buffer_rgba(), origin="upper", dpi=fig.dpi, **_PNG)
        for artist in parts:
            if artist is not ax.title:
                artist.remove()
        ax.set_title("")
    return buf.getvalue()


@dataclass(frozen=True, repr=False)
class RocPlot:
    """``roc_png(curves, title)``, drawn when the trial is recorded (``bench.core.contracts.Rendered``):
    an attack puts ``RocPlot(curves, title)`` in ``ctx.artifacts["roc/<name>.png"]`` and its worker
    never imports matplotlib; the curves travel as float32 (a plot needs no more). Its repr names
    the curves and their lengths only: Ray Tune formats every result into debug messages whether or
    not they are logged, and numpy's repr of the curves cost the driver 0.05 s per trial."""

    curves: Mapping[str, tuple[np.ndarray, np.ndarray]]
    title: str = ""

    def __post_init__(self) -> None:
        packed = {str(k): (np.asarray(f, dtype=np.float32), np.asarray(t, dtype=np.float32)) for k, (f, t) in self.curves.items()}
        object.__setattr__(self, "curves", packed)

    def render(self) -> bytes:
        return roc_png(self.curves, self.title)

    def __repr__(self) -> str:
        curves = ", ".join(f"{k}: {len(f)} points" for k, (f, _) in self.curves.items())
        return f"RocPlot({self.title!r}, {{{curves}}})"
