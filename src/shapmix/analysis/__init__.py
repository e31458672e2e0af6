"""Analysis of trained Shap-Mix models: exact Shapley saliency and its agreement with the
online table (``shapmix saliency``).

Names are imported lazily (PEP 562), so building the command line does not import torch or
matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "ExactSaliency",
    "RankAgreement",
    "analyse_checkpoint",
    "exact_class_saliency",
    "ground_truth_hits",
    "rank_agreement",
    "spearman_rows",
    "top_combinations",
    "write_training_saliency_figures",
]

_HOMES = {name: ".saliency" for name in __all__}
_HOMES["write_training_saliency_figures"] = "..viz.saliency"


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name], __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
