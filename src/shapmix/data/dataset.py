"""A torch ``Dataset`` over one split of a dataset in the project's format.

Items are the raw padded samples; augmentation runs batched on the training device (see
:mod:`shapmix.data.transforms`), so loading is a slice of the memory-mapped array.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .format import SkeletonData

__all__ = ["SkeletonSplit", "SkeletonItem"]


class SkeletonItem(NamedTuple):
    x: torch.Tensor  # (C, T, V, M) float32, zero after `length` frames
    label: int
    length: int
    index: int  # row in the underlying SkeletonData


class SkeletonSplit(Dataset):
    """The samples of ``split`` (or explicit ``indices``) of ``data``.

    Args:
        data: an opened dataset.
        split: split name; ignored when ``indices`` is given.
        indices: explicit rows of ``data`` (e.g. a long-tailed subset).
    """

    def __init__(self, data: SkeletonData, split: str | None = None, indices: np.ndarray | None = None):
        if indices is None:
            if split is None:
                raise ValueError("give a split name or explicit indices")
            indices = data.split_indices(split)
        self.data = data
        self.split = split
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = data.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> SkeletonItem:
        row = int(self.indices[item])
        sample = torch.from_numpy(np.array(self.data.data[row], dtype=np.float32))
        return SkeletonItem(sample, int(self.data.labels[row]), int(self.data.lengths[row]), row)

    def batch(self, items: np.ndarray | torch.Tensor) -> SkeletonItem:
        """The samples at positions ``items`` (``(B,)`` ints, repeats allowed) read in one
        gather, as :func:`~torch.utils.data.default_collate` of their items would give them:
        ``x (B, C, T, V, M)`` float32, ``label``, ``length`` and ``index`` ``(B,)`` int64."""
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        return SkeletonItem(
            torch.from_numpy(np.asarray(self.data.data[rows], dtype=np.float32)),
            torch.from_numpy(self.data.labels[rows].astype(np.int64)),
            torch.from_numpy(self.data.lengths[rows].astype(np.int64)),
            torch.from_numpy(rows),
        )

    def class_counts(self) -> np.ndarray:
        """``(num_classes,)`` samples per class in this split."""
        return np.bincount(self.labels, minlength=self.data.num_classes)

    @property
    def names(self) -> list[str]:
        return [self.data.names[i] for i in self.indices]
