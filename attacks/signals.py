"""Per-example signals computed from a model's outputs (numpy, float64), shared by the attacks.

- ``loss``: cross-entropy -log p_y (Yeom et al., CSF 2018).
- ``confidence``: p_y (Yeom et al.; Song & Mittal, USENIX Security 2021).
- ``entropy``: -sum_c p_c log p_c (Song & Mittal; Shokri et al.).
- ``mentropy``: the modified entropy of Song & Mittal, section 3.2,
  Mentr = -(1 - p_y) log p_y - sum_{c != y} p_c log(1 - p_c), logs clipped at 1e-30 as in
  ``inspire-group/membership-inference-evaluation`` ``membership_inference_attacks.py``
  (``_log_value``). Unlearn-Sparse ``evaluation/SVC_MIA.py`` ``m_entropy`` indexes whole
  columns and takes log p for the other classes; that bug is not reproduced.
- ``logit_conf``: the logit-scaled confidence phi = log p_y - log sum_{c != y} p_c of LiRA
  (Carlini et al., S&P 2022, ``research/mi_lira_2021/score.py``), computed stably from
  max-subtracted logits.
"""

from __future__ import annotations

import numpy as np

LOG_FLOOR = 1e-30


def logits_of(model, x) -> np.ndarray:
    """Eval-mode logits as float64 numpy (``bench.nn.training.predict_logits``)."""
    from bench.nn.training import predict_logits

    if len(x) == 0:
        return np.zeros((0, 1))
    return predict_logits(model, x).double().cpu().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _labels(y) -> np.ndarray:
    return y.cpu().numpy().astype(np.int64) if hasattr(y, "cpu") else np.asarray(y, dtype=np.int64)


def loss(logits: np.ndarray, y) -> np.ndarray:
    y = _labels(y)
    z = logits - logits.max(1, keepdims=True)
    logz = np.log(np.exp(z).sum(1))
    return logz - z[np.arange(len(y)), y]


def confidence(logits: np.ndarray, y) -> np.ndarray:
    y = _labels(y)
    return softmax(logits)[np.arange(len(y)), y]


def entropy(logits: np.ndarray, y=None) -> np.ndarray:
    p = softmax(logits)
    return -(p * np.log(np.maximum(p, LOG_FLOOR))).sum(1)


def mentropy(logits: np.ndarray, y) -> np.ndarray:
    y = _labels(y)
    p = softmax(logits)
    rows = np.arange(len(y))
    py = p[rows, y]
    other = p.copy()
    other[rows, y] = 0.0
    term_y = -(1.0 - py) * np.log(np.maximum(py, LOG_FLOOR))
    term_o = -(other * np.log(np.maximum(1.0 - other, LOG_FLOOR))).sum(1)
    return term_y + term_o


def logit_conf(logits: np.ndarray, y) -> np.ndarray:
    """phi = log p_y - log sum_{c != y} p_c, stable: z_y - logsumexp_{c != y} z_c."""
    y = _labels(y)
    rows = np.arange(len(y))
    z = logits.copy()
    zy = z[rows, y].copy()
    z[rows, y] = -np.inf
    m = z.max(1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(1))
    return zy - lse
