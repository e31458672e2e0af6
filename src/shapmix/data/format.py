"""The project's on-disk skeleton dataset format.

A dataset is a directory::

    DIR/
      meta.json          format name and version, layout, class names, channel names, metadata
      data.npy           float32 (N, C, T, V, M): sample i is valid for frames [0, lengths[i]),
                         zero after that; an absent person is all zeros (as in NTU RGB+D)
      labels.npy         int64 (N,), 0-based class ids
      lengths.npy        int64 (N,), valid frames per sample (1..T)
      names.txt          N sample names, one per line, unique
      splits/NAME.txt    one sample name per line: the samples of split NAME

``data.npy`` is a plain NumPy array file, opened memory-mapped, so datasets larger than memory
(full NTU RGB+D 120 is about 30 GB in float32) are read lazily.  Splits are lists of *names*,
not indices, so a long-tailed split is a small text file that can be shared and versioned (the
published LT-NTU lists are in exactly this form).

Writing is streamed through :class:`DatasetWriter`: arrays are created memory-mapped at full size
and filled sample by sample, and the directory only becomes a dataset (``meta.json`` written
last, atomically) when :meth:`DatasetWriter.close` succeeds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import DatasetFormatError
from ..skeleton.layouts import Layout, get_layout

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DatasetFormatError",
    "SkeletonData",
    "DatasetWriter",
    "load_dataset",
    "write_dataset",
    "write_split",
    "read_name_list",
]

FORMAT_NAME = "shapmix-skeleton"
FORMAT_VERSION = 1
DATA_FILE = "data.npy"
LABELS_FILE = "labels.npy"
LENGTHS_FILE = "lengths.npy"
NAMES_FILE = "names.txt"
META_FILE = "meta.json"
SPLITS_DIR = "splits"


@dataclass
class SkeletonData:
    """A dataset in the project's format, loaded lazily.

    Attributes:
        root: the dataset directory.
        data: ``(N, C, T, V, M)`` float32 array (memory-mapped when loaded from disk).
        labels: ``(N,)`` int64 class ids.
        lengths: ``(N,)`` int64 valid frame counts.
        names: ``N`` unique sample names.
        layout: the skeleton layout of the ``V`` axis.
        class_names: one name per class; ``len(class_names)`` is the number of classes.
        splits: split name -> sample names.
        channels: names of the ``C`` channels, e.g. ``("x", "y", "z")``.
        metadata: free-form JSON-compatible information (source, units, generator settings...).
    """

    root: Path | None
    data: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    names: list[str]
    layout: Layout
    class_names: list[str]
    splits: dict[str, list[str]] = field(default_factory=dict)
    channels: tuple[str, ...] = ("x", "y", "z")
    metadata: dict[str, Any] = field(default_factory=dict)
    _index_of: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index_of = {name: i for i, name in enumerate(self.names)}
        where = str(self.root) if self.root is not None else "in-memory dataset"
        n = len(self.names)
        if len(self._index_of) != n:
            raise DatasetFormatError(f"{where}: sample names are not unique")
        if self.data.ndim != 5 or self.data.shape[0] != n:
            raise DatasetFormatError(
                f"{where}: data must be (N, C, T, V, M) with N={n}, got {self.data.shape}"
            )
        if self.labels.shape != (n,) or self.lengths.shape != (n,):
            raise DatasetFormatError(f"{where}: labels and lengths must have shape ({n},)")
        if self.data.shape[3] != self.layout.num_joints:
            raise DatasetFormatError(
                f"{where}: layout {self.layout.name} has {self.layout.num_joints} joints, "
                f"data has V={self.data.shape[3]}"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DatasetFormatError(
                f"{where}: labels must lie in 0..{len(self.class_names) - 1}"
            )
        if n and (self.lengths.min() < 1 or self.lengths.max() > self.data.shape[2]):
            raise DatasetFormatError(f"{where}: lengths must lie in 1..{self.data.shape[2]}")
        if len(self.channels) != self.data.shape[1]:
            raise DatasetFormatError(
                f"{where}: {len(self.channels)} channel names for C={self.data.shape[1]}"
            )
        for split, members in self.splits.items():
            self.indices_of(members, what=f"split {split!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __len__(self) -> int:
        return len(self.names)

    def indices_of(self, names: Iterable[str], what: str = "name list") -> np.ndarray:
        """Indices of the given sample names; unknown names are an error listing a few."""
        names = list(names)
        missing = [name for name in names if name not in self._index_of]
        if missing:
            where = str(self.root) if self.root is not None else "dataset"
            raise DatasetFormatError(
                f"{where}: {what} names {len(missing)} unknown samples, e.g. {missing[:3]}"
            )
        return np.array([self._index_of[name] for name in names], dtype=np.int64)

    def split_indices(self, split: str) -> np.ndarray:
        """Indices of the samples of ``split`` (in the split file's order)."""
        if split not in self.splits:
            raise KeyError(
                f"dataset {self.root} has no split {split!r}; it has {sorted(self.splits)}"
            )
        return self.indices_of(self.splits[split], what=f"split {split!r}")

    def class_counts(self, split: str | None = None) -> np.ndarray:
        """``(num_classes,)`` number of samples per class in ``split`` (all samples if None)."""
        labels = self.labels if split is None else self.labels[self.split_indices(split)]
        return np.bincount(labels, minlength=self.num_classes)


def read_name_list(path: str | os.PathLike) -> list[str]:
    """Read one name per line (blank lines ignored); duplicates are an error naming the line."""
    path = Path(path)
    names: list[str] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            name = line.strip()
            if not name:
                continue
            if name in seen:
                raise DatasetFormatError(
                    f"{path}:{line_no}: name {name!r} repeats line {seen[name]}"
                )
            seen[name] = line_no
            names.append(name)
    return names


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_split(root: str | os.PathLike, split: str, names: Sequence[str]) -> Path:
    """Save (or replace) split ``split`` of the dataset at ``root`` as a name list."""
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"invalid split name {split!r}")
    split_dir = Path(root) / SPLITS_DIR
    split_dir.mkdir(parents=True, exist_ok=True)
    path = split_dir / f"{split}.txt"
    _write_text_atomic(path, "".join(f"{name}\n" for name in names))
    return path


def _load_array(path: Path, mmap: bool, dtype: Any, ndim: int) -> np.ndarray:
    if not path.exists():
        raise DatasetFormatError(f"{path}: missing (every dataset directory has this file)")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DatasetFormatError(f"{path}: not a readable .npy array ({error})") from error
    if array.ndim != ndim or not np.issubdtype(array.dtype, dtype):
        raise DatasetFormatError(
            f"{path}: expected a {ndim}-d {np.dtype(dtype).name} array, got "
            f"{array.ndim}-d {array.dtype}"
        )
    return array


def load_dataset(root: str | os.PathLike, mmap: bool = True) -> SkeletonData:
    """Open a dataset directory (``data.npy`` memory-mapped unless ``mmap=False``)."""
    root = Path(root)
    meta_path = root / META_FILE
    if not meta_path.exists():
        raise DatasetFormatError(
            f"{meta_path}: missing; {root} is not a shapmix dataset (make one with "
            "`shapmix synth` or `shapmix prepare`)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{meta_path}:{error.lineno}: invalid JSON ({error.msg})") from error
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise DatasetFormatError(
            f"{meta_path}: expected format {FORMAT_NAME!r} version {FORMAT_VERSION}, got "
            f"{meta.get('format')!r} version {meta.get('version')!r}"
        )
    for key in ("layout", "class_names", "channels"):
        if key not in meta:
            raise DatasetFormatError(f"{meta_path}: key {key!r} is missing")
    names = read_name_list(root / NAMES_FILE)
    splits = {}
    split_dir = root / SPLITS_DIR
    if split_dir.is_dir():
        for path in sorted(split_dir.glob("*.txt")):
            splits[path.stem] = read_name_list(path)
    return SkeletonData(
        root=root,
        data=_load_array(root / DATA_FILE, mmap, np.floating, 5),
        labels=_load_array(root / LABELS_FILE, False, np.integer, 1).astype(np.int64),
        lengths=_load_array(root / LENGTHS_FILE, False, np.integer, 1).astype(np.int64),
        names=names,
        layout=get_layout(meta["layout"]),
        class_names=list(meta["class_names"]),
        splits=splits,
        channels=tuple(meta["channels"]),
        metadata=dict(meta.get("metadata", {})),
    )


class DatasetWriter:
    """Stream samples into a new dataset directory without holding the dataset in memory.

    ``data.npy`` is created at its full size ``(num_samples, C, T, V, M)`` as a memory-mapped
    ``.npy`` file and filled by :meth:`write`; ``meta.json`` is written by :meth:`close`, so a
    directory without it is an unfinished conversion, never mistaken for a dataset.

    Args:
        root: output directory (created).
        num_samples: N.
        sample_shape: ``(C, T, V, M)``; samples shorter than T are zero-padded.
        layout: skeleton layout of the V axis.
        class_names: one per class.
        channels: channel names (length C).
        metadata: JSON-compatible information stored in ``meta.json``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        num_samples: int,
        sample_shape: tuple[int, int, int, int],
        layout: str | Layout,
        class_names: Sequence[str],
        channels: Sequence[str] = ("x", "y", "z"),
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.layout = get_layout(layout)
        if sample_shape[2] != self.layout.num_joints:
            raise ValueError(
                f"sample_shape V={sample_shape[2]} but layout {self.layout.name} has "
                f"{self.layout.num_joints} joints"
            )
        if len(channels) != sample_shape[0]:
            raise ValueError(f"{len(channels)} channel names for C={sample_shape[0]}")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / META_FILE).unlink(missing_ok=True)
        self.num_samples = num_samples
        self.sample_shape = tuple(sample_shape)
        self.class_names = list(class_names)
        self.channels = list(channels)
        self.metadata = dict(metadata or {})
        self.data = np.lib.format.open_memmap(
            self.root / DATA_FILE, mode="w+", dtype=np.float32,
            shape=(num_samples, *self.sample_shape),
        )
        self.labels = np.full(num_samples, -1, dtype=np.int64)
        self.lengths = np.zeros(num_samples, dtype=np.int64)
        self.names: list[str | None] = [None] * num_samples

    def write(self, index: int, sample: np.ndarray, label: int, name: str) -> None:
        """Store ``sample`` of shape ``(C, t, V, M)``, ``t <= T``, at position ``index``."""
        C, T, V, M = self.sample_shape
        if sample.ndim != 4 or sample.shape[0] != C or sample.shape[2:] != (V, M):
            raise ValueError(f"sample {name!r}: expected (C={C}, t, V={V}, M={M}), got {sample.shape}")
        length = sample.shape[1]
        if not 1 <= length <= T:
            raise ValueError(f"sample {name!r}: {length} frames, expected 1..{T}")
        if not 0 <= label < len(self.class_names):
            raise ValueError(f"sample {name!r}: label {label} outside 0..{len(self.class_names) - 1}")
        self.data[index, :, :length] = sample
        self.data[index, :, length:] = 0.0
        self.labels[index] = label
        self.lengths[index] = length
        self.names[index] = name

    def close(self, splits: Mapping[str, Sequence[str]] | None = None) -> SkeletonData:
        """Flush everything, write the splits and ``meta.json``; return the opened dataset."""
        unwritten = [i for i, name in enumerate(self.names) if name is None]
        if unwritten:
            raise ValueError(f"{self.root}: {len(unwritten)} samples were never written, e.g. {unwritten[:5]}")
        self.data.flush()
        del self.data
        np.save(self.root / LABELS_FILE, self.labels)
        np.save(self.root / LENGTHS_FILE, self.lengths)
        _write_text_atomic(self.root / NAMES_FILE, "".join(f"{name}\n" for name in self.names))
        for split, members in (splits or {}).items():
            write_split(self.root, split, members)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "layout": self.layout.name,
            "num_samples": self.num_samples,
            "sample_shape": list(self.sample_shape),
            "class_names": self.class_names,
            "channels": self.channels,
            "metadata": self.metadata,
        }
        _write_text_atomic(self.root / META_FILE, json.dumps(meta, indent=2) + "\n")
        return load_dataset(self.root)


def write_dataset(
    root: str | os.PathLike,
    data: np.ndarray,
    labels: Sequence[int],
    lengths: Sequence[int],
    names: Sequence[str],
    layout: str | Layout,
    class_names: Sequence[str],
    splits: Mapping[str, Sequence[str]] | None = None,
    channels: Sequence[str] = ("x", "y", "z"),
    metadata: Mapping[str, Any] | None = None,
) -> SkeletonData:
    """Write an in-memory ``(N, C, T, V, M)`` array (plus labels, lengths, names) as a dataset."""
    data = np.asarray(data)
    writer = DatasetWriter(root, len(data), data.shape[1:], layout, class_names, channels, metadata)
    for i in range(len(data)):
        writer.write(i, data[i, :, : int(lengths[i])], int(labels[i]), str(names[i]))
    return writer.close(splits)
