"""Long-tailed splits: imbalance profiles, the seeded constructor, and Many/Medium/Few groups.

The LT-NTU convention (BRL, Liu et al. 2023, used by Shap-Mix): with ``C`` classes in their
natural order, class ``c`` keeps ``int(n_max * IF ** (-c / (C - 1)))`` training samples, drawn
from a seeded shuffle of that class's samples.  Other profiles:

* ``pareto``: a power law ``n_max * (c + 1) ** -a`` with ``a = ln(IF) / ln(C)``, so the last
  class keeps ``n_max / IF`` like the exponential profile but the head decays faster;
* ``step``: the first ``step_fraction`` of the classes keep ``n_max``, the others ``n_max / IF``.

Counts are truncated to integers (as the published lists are) and never below 1.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, Sequence, get_args

import numpy as np

__all__ = [
    "PROFILES",
    "Profile",
    "Group",
    "GROUP_LABELS",
    "longtail_counts",
    "sample_per_class",
    "make_longtail_split",
    "group_classes",
    "DEFAULT_MANY_THRESHOLD",
    "DEFAULT_FEW_THRESHOLD",
]

Profile = Literal["exponential", "pareto", "step"]
PROFILES: tuple[str, ...] = get_args(Profile)

# A class is "Many" with more than this many training samples, "Few" with fewer than the
# other threshold (Liu et al., OLTR, CVPR 2019; the paper's appendix A.2).
DEFAULT_MANY_THRESHOLD = 100
DEFAULT_FEW_THRESHOLD = 20


class Group(IntEnum):
    MANY = 0
    MEDIUM = 1
    FEW = 2


GROUP_LABELS = {Group.MANY: "Many", Group.MEDIUM: "Medium", Group.FEW: "Few"}
"""How tables and figures name each group (metrics keys are the same words in lower case)."""


def longtail_counts(
    num_classes: int,
    n_max: int,
    imbalance_factor: float,
    profile: Profile = "exponential",
    step_fraction: float = 0.5,
) -> np.ndarray:
    """``(num_classes,)`` int64 target training samples per class, class 0 the head."""
    if num_classes < 1 or n_max < 1:
        raise ValueError("num_classes and n_max must be positive")
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1, got {imbalance_factor}")
    c = np.arange(num_classes, dtype=np.float64)
    if profile == "exponential":
        # Written as (1 / IF) ** (c / (C - 1)), exactly as the LT-NTU lists were made, so the
        # float rounding (and hence every truncated count) matches them.
        raw = n_max * np.power(1.0 / imbalance_factor, c / max(num_classes - 1, 1))
    elif profile == "pareto":
        alpha = np.log(imbalance_factor) / np.log(num_classes) if num_classes > 1 else 0.0
        # Rounded before truncation so the tail lands exactly on n_max / IF despite float error.
        raw = np.round(n_max * np.power(c + 1.0, -alpha), 9)
    elif profile == "step":
        if not 0.0 < step_fraction < 1.0:
            raise ValueError(f"step_fraction must be in (0, 1), got {step_fraction}")
        raw = np.where(c < round(step_fraction * num_classes), n_max, n_max / imbalance_factor)
    else:
        raise ValueError(f"unknown profile {profile!r}; use exponential, pareto or step")
    return np.maximum(raw.astype(np.int64), 1)


def sample_per_class(
    labels: np.ndarray, counts: Sequence[int], seed: int, strict: bool = False
) -> np.ndarray:
    """Pick ``counts[c]`` samples of each class from a seeded shuffle of that class.

    Args:
        labels: ``(N,)`` class id of each candidate sample.
        counts: target count per class.
        seed: shuffle seed; the same seed gives the same selection.
        strict: raise if a class has fewer candidates than asked; otherwise keep them all.

    Returns:
        Sorted ``(K,)`` int64 indices into ``labels``.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, want in enumerate(counts):
        members = np.flatnonzero(labels == cls)
        if strict and len(members) < want:
            raise ValueError(f"class {cls} has {len(members)} samples, {want} requested")
        chosen.append(rng.permutation(members)[:want])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def make_longtail_split(
    labels: np.ndarray,
    num_classes: int,
    n_max: int,
    imbalance_factor: float,
    profile: Profile = "exponential",
    seed: int = 0,
    class_order: Sequence[int] | None = None,
    step_fraction: float = 0.5,
) -> np.ndarray:
    """Indices of a long-tailed subset of a (roughly balanced) labelled pool.

    ``class_order`` lists classes from head to tail (default: natural order, class 0 the head).
    """
    ranked = longtail_counts(num_classes, n_max, imbalance_factor, profile, step_fraction)
    order = np.arange(num_classes) if class_order is None else np.asarray(class_order)
    if sorted(order.tolist()) != list(range(num_classes)):
        raise ValueError("class_order must be a permutation of the class ids")
    counts = np.empty(num_classes, dtype=np.int64)
    counts[order] = ranked
    return sample_per_class(labels, counts, seed)


def group_classes(
    train_counts: Sequence[int],
    many_threshold: int = DEFAULT_MANY_THRESHOLD,
    few_threshold: int = DEFAULT_FEW_THRESHOLD,
) -> np.ndarray:
    """``(num_classes,)`` :class:`Group` of each class from its number of training samples.

    Many: more than ``many_threshold``; Few: fewer than ``few_threshold``; Medium: the rest.
    """
    if few_threshold > many_threshold:
        raise ValueError("few_threshold must not exceed many_threshold")
    counts = np.asarray(train_counts)
    groups = np.full(counts.shape, Group.MEDIUM, dtype=np.int64)
    groups[counts > many_threshold] = Group.MANY
    groups[counts < few_threshold] = Group.FEW
    return groups
