"""PRUNE, the reference certifiable-unlearning method (installed as ``bench.methods.prune``).

Importing this package imports no torch: ``Prune.unlearn`` loads the heavy modules
(``network``, ``lp``, ``duals``, ``violation``, ``patches``, ``modules``, ``engine``, ``certify``,
``run``) when it runs.
"""

from .method import Prune

__all__ = ["Prune"]
