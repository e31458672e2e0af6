"""Long-tailed splits of a prepared dataset, written into it as name lists (``shapmix prepare
longtail``).

A split is drawn by the long-tail constructor of :mod:`shapmix.data.longtail`
(:func:`make_longtail_split_file`) or registered from a published list after checking every name
(:func:`register_split`); either way it is written as ``DIR/splits/NAME.txt``.  A bad option
value is a :class:`ValueError`, a name list that does not fit the dataset a
:class:`~shapmix.errors.DatasetFormatError` naming the list file and the line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetFormatError
from .format import load_dataset, read_name_list, write_split
from .longtail import (
    DEFAULT_FEW_THRESHOLD,
    DEFAULT_MANY_THRESHOLD,
    GROUP_LABELS,
    Group,
    group_classes,
    longtail_counts,
    make_longtail_split,
)

__all__ = [
    "DEFAULT_IMBALANCE_FACTOR",
    "DEFAULT_POOL_SPLIT",
    "DEFAULT_PROFILE",
    "DEFAULT_SEED",
    "DEFAULT_STEP_FRACTION",
    "LISTED_AT_MOST",
    "SplitSummary",
    "make_longtail_split_file",
    "register_split",
]

DEFAULT_POOL_SPLIT = "train"
DEFAULT_PROFILE = "exponential"
DEFAULT_IMBALANCE_FACTOR = 100.0
DEFAULT_STEP_FRACTION = 0.5
DEFAULT_SEED = 0
LISTED_AT_MOST = 20
"""Classes (or files) listed at most in a message; the rest are counted."""


@dataclass
class SplitSummary:
    """A split written by ``prepare longtail``.

    Attributes:
        path: the split file.
        name: the split's name.
        counts: ``(num_classes,)`` samples per class.
        groups: ``(num_classes,)`` :class:`~shapmix.data.longtail.Group` of each class.
        class_names: one per class.
    """

    path: Path
    name: str
    counts: np.ndarray
    groups: np.ndarray
    class_names: list[str]

    def format(self) -> str:
        """Per-class counts and the Many/Medium/Few group sizes, as printed by the command."""
        lines = [f"wrote split {self.name!r} ({int(self.counts.sum())} samples): {self.path}"]
        lines.append(f"{'class':>6}  {'count':>6}  {'group':<7} name")
        for cls, (count, group) in enumerate(zip(self.counts.tolist(), self.groups.tolist())):
            lines.append(f"{cls:>6}  {count:>6}  {GROUP_LABELS[Group(group)]:<7} {self.class_names[cls]}")
        sizes = np.bincount(self.groups, minlength=len(Group))
        lines.append(
            f"groups: Many (> {DEFAULT_MANY_THRESHOLD} samples) {sizes[0]}, Medium {sizes[1]}, "
            f"Few (< {DEFAULT_FEW_THRESHOLD}) {sizes[2]} classes"
        )
        return "\n".join(lines)


def _summary(dataset, name: str, path: Path, members: Sequence[str]) -> SplitSummary:
    labels = dataset.labels[dataset.indices_of(members)]
    counts = np.bincount(labels, minlength=dataset.num_classes)
    return SplitSummary(path, name, counts, group_classes(counts), list(dataset.class_names))


def _check_new_split(dataset, name: str, overwrite: bool, protected: Sequence[str]) -> None:
    if name in protected:
        raise ValueError(f"the new split cannot replace split {name!r} it is drawn from")
    if name in dataset.splits and not overwrite:
        raise ValueError(
            f"{dataset.root} already has a split {name!r}; choose another name or pass overwrite"
        )


def _pool_indices(dataset, split: str) -> np.ndarray:
    if split not in dataset.splits:
        raise ValueError(f"{dataset.root} has no split {split!r}; it has {sorted(dataset.splits)}")
    return dataset.split_indices(split)


def make_longtail_split_file(
    dataset_dir: str | os.PathLike,
    name: str,
    split: str = DEFAULT_POOL_SPLIT,
    profile: str = DEFAULT_PROFILE,
    imbalance_factor: float = DEFAULT_IMBALANCE_FACTOR,
    n_max: int | None = None,
    seed: int = DEFAULT_SEED,
    step_fraction: float = DEFAULT_STEP_FRACTION,
    class_order: Sequence[int] | None = None,
    overwrite: bool = False,
) -> SplitSummary:
    """Draw a long-tailed subset of split ``split`` and save it as split ``name``.

    The targets are :func:`~shapmix.data.longtail.longtail_counts` (class ``class_order[0]``
    the head; natural order by default) and the samples of each class are drawn from a seeded
    shuffle by :func:`~shapmix.data.longtail.make_longtail_split`.  ``n_max`` defaults to the
    smallest class of the pool, so every class can meet its target; a class with fewer samples
    than its target is an error (the split would not follow the profile).
    """
    dataset = load_dataset(dataset_dir)
    _check_new_split(dataset, name, overwrite, protected=(split,))
    pool = _pool_indices(dataset, split)
    labels = dataset.labels[pool]
    available = np.bincount(labels, minlength=dataset.num_classes)
    if n_max is None:
        n_max = int(available.min())
        if n_max < 1:
            raise ValueError(
                f"class {int(available.argmin())} has no sample in split {split!r}; give n_max"
            )
    order = np.arange(dataset.num_classes) if class_order is None else np.asarray(class_order)
    if sorted(order.tolist()) != list(range(dataset.num_classes)):
        raise ValueError(
            f"the class order must list each of the {dataset.num_classes} class ids once"
        )
    targets = np.empty(dataset.num_classes, dtype=np.int64)
    targets[order] = longtail_counts(
        dataset.num_classes, n_max, imbalance_factor, profile, step_fraction
    )
    short = np.flatnonzero(available < targets)
    if short.size:
        listed = ", ".join(
            f"{c} ({available[c]} < {targets[c]})" for c in short[:LISTED_AT_MOST].tolist()
        )
        raise ValueError(
            f"split {split!r} has too few samples for the profile in {short.size} classes: "
            f"{listed}; lower n_max"
        )
    chosen = make_longtail_split(
        labels, dataset.num_classes, n_max, imbalance_factor, profile, seed, order, step_fraction
    )
    members = [dataset.names[i] for i in pool[chosen].tolist()]
    path = write_split(dataset.root, name, members)
    return _summary(dataset, name, path, members)


def _line_of(path: Path, name: str) -> int:
    """1-based line of ``name`` in a name list."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip() == name:
                return line_no
    raise ValueError(f"{name!r} is not in {path}")  # pragma: no cover - callers found it there


def register_split(
    dataset_dir: str | os.PathLike,
    list_path: str | os.PathLike,
    name: str | None = None,
    within: str | None = None,
    overwrite: bool = False,
) -> SplitSummary:
    """Save a published name list (one sample name per line) as split ``name`` of a dataset.

    Every name must be a sample of the dataset and, with ``within``, a member of that split
    (e.g. an LT-NTU list must lie in the benchmark's ``train``); the first that is not is a
    :class:`~shapmix.data.format.DatasetFormatError` naming the list file and the line.
    ``name`` defaults to the file's stem.
    """
    list_path = Path(list_path)
    dataset = load_dataset(dataset_dir)
    name = name or list_path.stem
    _check_new_split(dataset, name, overwrite, protected=(within,) if within else ())
    members = read_name_list(list_path)
    if not members:
        raise DatasetFormatError(f"{list_path}: the list holds no sample name")
    known = set(dataset.names)
    allowed = set(dataset.splits[within]) if within and within in dataset.splits else None
    if within and allowed is None:
        raise ValueError(f"{dataset.root} has no split {within!r}; it has {sorted(dataset.splits)}")
    for member in members:
        if member not in known:
            raise DatasetFormatError(
                f"{list_path}:{_line_of(list_path, member)}: sample {member!r} is not in the "
                f"dataset {dataset.root}"
            )
        if allowed is not None and member not in allowed:
            raise DatasetFormatError(
                f"{list_path}:{_line_of(list_path, member)}: sample {member!r} is not in split "
                f"{within!r} of {dataset.root}"
            )
    path = write_split(dataset.root, name, members)
    return _summary(dataset, name, path, members)
