"""Analysis of trained Shap-Mix models: exact Shapley saliency and its agreement with the
online table (``shapmix saliency``).  The pictures are drawn by :mod:`shapmix.viz.saliency`."""

from .saliency import (
    ExactSaliency,
    RankAgreement,
    analyse_checkpoint,
    exact_class_saliency,
    format_saliency_summary,
    ground_truth_hits,
    rank_agreement,
    spearman_rows,
    top_combinations,
)

__all__ = [
    "ExactSaliency",
    "RankAgreement",
    "analyse_checkpoint",
    "exact_class_saliency",
    "format_saliency_summary",
    "ground_truth_hits",
    "rank_agreement",
    "spearman_rows",
    "top_combinations",
]
