"""CTR-GCN's npz skeleton files (``NTU60_CS.npz`` and the like).

Format
------
An ``.npz`` archive with

* ``x_train``, ``x_test``: float32 ``(N, T, M * V * C)``, each frame flattened person-major
  (for NTU: ``(N, 300, 150)`` = 2 persons x 25 joints x 3 coordinates), zero after the sample's
  last frame;
* ``y_train``, ``y_test``: labels, one-hot ``(N, K)`` (as CTR-GCN's ``seq_transformation.py``
  writes them) or integer ``(N,)``;
* optionally ``name_train``, ``name_test``: sample names (strings).

Conversion
----------
Each frame is reshaped ``(M, V, C)`` and the array transposed to ``(N, C, T, V, M)`` (what
CTR-GCN's feeder does); the valid length is the number of frames up to the last non-zero one; an
all-zero sample is skipped (listed in ``metadata["skipped"]``).  Names are ``train_000000``...
and ``test_000000``... when absent.  ``x_train`` becomes split ``train``, ``x_test`` split
``test``.  :func:`write_ctrgcn_npz` writes the same format (used for round trips and export).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import SourceFormatError
from ...skeleton.layouts import get_layout
from ..format import DatasetWriter, SkeletonData
from .common import SKIPPED_KEY, SkippedFile, valid_length

__all__ = ["CtrgcnSplit", "read_ctrgcn_npz", "convert_ctrgcn_npz", "write_ctrgcn_npz"]

SPLITS = ("train", "test")
DEFAULT_LAYOUT = "ntu25"
DEFAULT_CHANNELS = ("x", "y", "z")


@dataclass
class CtrgcnSplit:
    """One split of a CTR-GCN npz.

    Attributes:
        data: ``(N, C, T, V, M)`` float32 (a transposed view of the npz array).
        labels: ``(N,)`` int64.
        names: ``N`` sample names.
        num_classes: the one-hot width, else ``max(labels) + 1``.
    """

    data: np.ndarray
    labels: np.ndarray
    names: list[str]
    num_classes: int


def _labels(y: np.ndarray, path: Path, key: str, n: int) -> tuple[np.ndarray, int]:
    if y.ndim == 2 and y.shape[0] == n:
        hot = y == 1
        if not (hot.sum(axis=1) == 1).all() or not ((y == 0) | hot).all():
            row = int(np.argmax((hot.sum(axis=1) != 1) | ~((y == 0) | hot).all(axis=1)))
            raise SourceFormatError(path, f"row {row} is not one-hot", where=key)
        return hot.argmax(axis=1).astype(np.int64), y.shape[1]
    if y.ndim == 1 and y.shape[0] == n and np.issubdtype(y.dtype, np.integer):
        if n and y.min() < 0:
            raise SourceFormatError(path, "negative label", where=key)
        return y.astype(np.int64), int(y.max()) + 1 if n else 0
    raise SourceFormatError(
        path,
        f"expected ({n}, K) one-hot or ({n},) integer labels, got {y.shape} {y.dtype}",
        where=key,
    )


def read_ctrgcn_npz(
    path: str | os.PathLike, num_joints: int = 25, num_channels: int = 3
) -> dict[str, CtrgcnSplit]:
    """Read a CTR-GCN npz into ``{"train": CtrgcnSplit, "test": CtrgcnSplit}``.

    ``num_joints`` (V) and ``num_channels`` (C) fix how a frame's ``M * V * C`` values unfold.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise SourceFormatError(path, f"not a readable .npz file ({error})") from None
    result = {}
    with archive:
        for split in SPLITS:
            x_key, y_key, n_key = f"x_{split}", f"y_{split}", f"name_{split}"
            for key in (x_key, y_key):
                if key not in archive.files:
                    raise SourceFormatError(path, f"missing array {key!r} (has {archive.files})")
            x = archive[x_key]
            per_person = num_joints * num_channels
            if x.ndim != 3 or x.shape[2] % per_person or not np.issubdtype(x.dtype, np.floating):
                raise SourceFormatError(
                    path,
                    f"expected float (N, T, M*{num_joints}*{num_channels}), got {x.shape} "
                    f"{x.dtype}",
                    where=x_key,
                )
            if not np.isfinite(x).all():
                row = int(np.argmax(~np.isfinite(x).reshape(len(x), -1).all(axis=1)))
                raise SourceFormatError(path, f"sample {row} holds NaN or Inf", where=x_key)
            N, T, _ = x.shape
            labels, num_classes = _labels(archive[y_key], path, y_key, N)
            if n_key in archive.files:
                names = [str(n) for n in archive[n_key].reshape(-1)]
                if len(names) != N:
                    raise SourceFormatError(
                        path, f"{len(names)} names for {N} samples", where=n_key
                    )
            else:
                names = [f"{split}_{i:06d}" for i in range(N)]
            data = x.reshape(N, T, -1, num_joints, num_channels).transpose(0, 4, 1, 3, 2)
            # a view: samples are copied one at a time when written
            result[split] = CtrgcnSplit(
                data.astype(np.float32, copy=False), labels, names, num_classes
            )
    return result


def convert_ctrgcn_npz(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    layout: str = DEFAULT_LAYOUT,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    class_names: Sequence[str] | None = None,
) -> SkeletonData:
    """Convert a CTR-GCN npz to the project's format (splits ``train`` and ``test``)."""
    path = Path(path)
    parts = read_ctrgcn_npz(path, get_layout(layout).num_joints, len(channels))
    num_classes = max(p.num_classes for p in parts.values())
    if class_names is None:
        class_names = [f"class_{k}" for k in range(num_classes)]
    elif len(class_names) < num_classes:
        raise SourceFormatError(path, f"{len(class_names)} class names for {num_classes} classes")
    shapes = {p.data.shape[1:] for p in parts.values() if len(p.data)}
    if len(shapes) != 1:
        raise SourceFormatError(path, f"train and test samples differ in shape: {sorted(shapes)}")
    names = [n for p in parts.values() for n in p.names]
    if len(set(names)) != len(names):
        raise SourceFormatError(path, "sample names are not unique across train and test")

    keep: dict[str, list[int]] = {}
    skipped: list[SkippedFile] = []
    lengths: dict[tuple[str, int], int] = {}
    for split, part in parts.items():
        keep[split] = []
        for i in range(len(part.data)):
            length = valid_length(part.data[i])
            if length:
                keep[split].append(i)
                lengths[split, i] = length
            else:
                skipped.append(SkippedFile(f"{path} at x_{split}[{i}]", "all-zero sample"))
    total = sum(len(v) for v in keep.values())
    if not total:
        raise SourceFormatError(path, "every sample is all zeros")
    writer = DatasetWriter(
        out_dir,
        total,
        shapes.pop(),
        layout,
        class_names,
        channels,
        {"source": "ctrgcn_npz", "input": str(path), SKIPPED_KEY: [s.as_json() for s in skipped]},
    )
    position = 0
    splits: dict[str, list[str]] = {}
    for split, part in parts.items():
        splits[split] = []
        for i in keep[split]:
            length = lengths[split, i]
            writer.write(position, part.data[i, :, :length], int(part.labels[i]), part.names[i])
            splits[split].append(part.names[i])
            position += 1
    return writer.close(splits)


def write_ctrgcn_npz(
    path: str | os.PathLike,
    train: tuple[np.ndarray, Sequence[int], Sequence[str]],
    test: tuple[np.ndarray, Sequence[int], Sequence[str]],
    num_classes: int,
    one_hot: bool = True,
) -> Path:
    """Write ``(data (N, C, T, V, M), labels, names)`` for train and test as a CTR-GCN npz."""
    path = Path(path)
    arrays = {}
    for split, (data, labels, names) in zip(SPLITS, (train, test)):
        data = np.asarray(data, dtype=np.float32)
        N, C, T, V, M = data.shape
        arrays[f"x_{split}"] = data.transpose(0, 2, 4, 3, 1).reshape(N, T, M * V * C)
        labels = np.asarray(labels, dtype=np.int64)
        arrays[f"y_{split}"] = np.eye(num_classes, dtype=np.float32)[labels] if one_hot else labels
        arrays[f"name_{split}"] = np.asarray(list(names), dtype=str)
    with open(path, "wb") as handle:  # a file object: np.savez would append ".npz" to a name
        np.savez(handle, **arrays)
    return path
