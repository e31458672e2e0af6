"""Bring your own arrays: NumPy files plus a layout name, converted without writing code.

Inputs
------
Either one ``.npz`` archive holding

* ``data``: the skeletons, any numeric dtype, axes as named by ``axes``;
* ``labels``: ``(N,)`` integer class ids (0-based);
* optionally ``names`` ``(N,)`` strings, ``lengths`` ``(N,)`` valid frame counts, and any number
  of ``split_<name>`` arrays, each listing the members of split ``<name>`` by sample name
  (strings) or by index (integers);

or a ``.npy`` data file with the other parts given separately: ``labels`` (a ``.npy`` file),
``names`` (a ``.npy`` of strings or a text file, one name per line), ``lengths`` (``.npy``) and
``splits`` (``{split: text file of names | list of names}``).  Parts given as arguments override
those of an archive.

``axes`` names the axes of ``data`` with the letters ``N`` (samples), ``C`` (channels),
``T`` (frames), ``V`` (joints) and optionally ``M`` (persons, 1 when absent): ``"NCTVM"``
(the project's order, the default), ``"NTVC"``, ``"NMTVC"`` (pyskl's order per sample)...

Checks: the axes string, shapes agreeing with N and the layout's V, finite values, integer
labels within the class names, unique names, lengths within ``1..T``, split members that exist.
Missing lengths are taken as the frames up to the last non-zero one (an all-zero sample is an
error).  Missing names are ``sample_000000``...; missing class names ``class_0``...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import SourceFormatError
from ...skeleton.layouts import get_layout
from ..format import SkeletonData, read_name_list, write_dataset
from .common import valid_length

__all__ = ["ArrayInputError", "parse_axes", "read_arrays", "convert_arrays"]

TARGET_AXES = "NCTVM"
REQUIRED_AXES = "NCTV"
SPLIT_PREFIX = "split_"
DEFAULT_CHANNELS = {2: ("x", "y"), 3: ("x", "y", "z")}

PathLike = str | os.PathLike


class ArrayInputError(SourceFormatError):
    """User-supplied arrays do not fit the project's format; the message names the input."""


def parse_axes(axes: str) -> str:
    """Validate an axes string (letters of ``NCTVM``, each once; N, C, T, V required)."""
    letters = axes.strip().upper()
    problems = []
    if sorted(set(letters)) != sorted(letters):
        problems.append("a letter repeats")
    if set(letters) - set(TARGET_AXES):
        problems.append(f"unknown letters {''.join(sorted(set(letters) - set(TARGET_AXES)))}")
    if set(REQUIRED_AXES) - set(letters):
        problems.append(f"missing {''.join(sorted(set(REQUIRED_AXES) - set(letters)))}")
    if problems:
        raise ValueError(
            f"axes {axes!r}: "
            + "; ".join(problems)
            + " (use the letters N, C, T, V and optionally M, e.g. 'NCTVM' or 'NTVC')"
        )
    return letters


def _to_nctvm(data: np.ndarray, axes: str, source: Path) -> np.ndarray:
    if data.ndim != len(axes):
        raise ArrayInputError(
            source,
            f"axes {axes!r} name {len(axes)} axes but data is {data.ndim}-d {data.shape}",
            where="data",
        )
    if "M" not in axes:
        data, axes = data[..., None], axes + "M"
    return data.transpose([axes.index(a) for a in TARGET_AXES])


def _load(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ArrayInputError(path, f"cannot read {what} as a .npy array ({error})") from None


def _names_from(source: PathLike | Sequence[str] | np.ndarray) -> list[str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        source = _load(path, "names") if path.suffix == ".npy" else read_name_list(path)
    return [str(v) for v in np.asarray(source).reshape(-1)]


def read_arrays(
    data: PathLike,
    axes: str = TARGET_AXES,
    labels: PathLike | None = None,
    names: PathLike | Sequence[str] | None = None,
    lengths: PathLike | None = None,
    splits: Mapping[str, PathLike | Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Load and check the inputs; returns ``data`` (N, C, T, V, M) (a view, memory-mapped for
    ``.npy``), ``labels``, ``names``, ``lengths`` and ``splits`` (name lists)."""
    source = Path(data)
    axes = parse_axes(axes)
    array, parts, split_parts = _load_inputs(source)
    if labels is not None:
        parts["labels"] = _load(Path(labels), "labels")
    if "labels" not in parts:
        raise ArrayInputError(
            source, "no labels: give a labels .npy (or a 'labels' array in the .npz)"
        )
    array = _checked_data(array, axes, source)
    n = array.shape[0]
    label_array = _checked_labels(np.asarray(parts["labels"]), n, source)
    name_source = names if names is not None else parts.get("names")
    name_list = _checked_names(name_source, n, source)
    length_source = _load(Path(lengths), "lengths") if lengths is not None else parts.get("lengths")
    length_array = _checked_lengths(length_source, array, name_list, source)
    for split, members in (splits or {}).items():
        split_parts[split] = (
            read_name_list(members) if isinstance(members, (str, os.PathLike)) else list(members)
        )
    return {
        "data": array,
        "labels": label_array.astype(np.int64),
        "names": name_list,
        "lengths": length_array.astype(np.int64),
        "splits": _split_names(split_parts, name_list, source),
    }


def _load_inputs(source: Path) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """``(data, parts, split parts)`` of an ``.npz`` archive (its ``split_<name>`` arrays under
    ``<name>``, its other arrays by key), or of a ``.npy`` data file (memory-mapped; no parts)."""
    parts: dict[str, Any] = {}
    split_parts: dict[str, Any] = {}
    if source.suffix != ".npz":
        return _load(source, "data", mmap=True), parts, split_parts
    try:
        with np.load(source, allow_pickle=False) as archive:
            for key in archive.files:
                if key.startswith(SPLIT_PREFIX):
                    split_parts[key[len(SPLIT_PREFIX) :]] = archive[key]
                else:
                    parts[key] = archive[key]
    except (ValueError, OSError) as error:
        raise ArrayInputError(source, f"not a readable .npz archive ({error})") from None
    if "data" not in parts:
        raise ArrayInputError(source, f"no array 'data' (has {sorted(parts)})")
    return parts["data"], parts, split_parts


def _checked_data(array: np.ndarray, axes: str, source: Path) -> np.ndarray:
    """``array`` as ``(N, C, T, V, M)`` (a view), checked to hold real, finite numbers."""
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ArrayInputError(source, f"data must be real numbers, got {array.dtype}", where="data")
    array = _to_nctvm(array, axes, source)
    n = array.shape[0]
    bad = (
        ~np.isfinite(array.reshape(n, -1)).all(axis=1)
        if np.issubdtype(array.dtype, np.floating)
        else None
    )
    if bad is not None and bad.any():
        raise ArrayInputError(
            source, f"sample {int(np.argmax(bad))} holds NaN or Inf", where="data"
        )
    return array


def _checked_labels(label_array: np.ndarray, n: int, source: Path) -> np.ndarray:
    """The labels, checked to be ``(n,)`` non-negative integers."""
    if label_array.shape != (n,) or not np.issubdtype(label_array.dtype, np.integer):
        raise ArrayInputError(
            source,
            f"labels must be ({n},) integers, got {label_array.shape} {label_array.dtype}",
            where="labels",
        )
    if n and label_array.min() < 0:
        raise ArrayInputError(source, f"label {int(label_array.min())} is negative", where="labels")
    return label_array


def _checked_names(
    name_source: PathLike | Sequence[str] | np.ndarray | None, n: int, source: Path
) -> list[str]:
    """``n`` unique sample names: the given ones, or ``sample_000000``... when none are."""
    name_list = (
        _names_from(name_source)
        if name_source is not None
        else [f"sample_{i:06d}" for i in range(n)]
    )
    if len(name_list) != n:
        raise ArrayInputError(source, f"{len(name_list)} names for {n} samples", where="names")
    if len(set(name_list)) != n:
        raise ArrayInputError(source, "sample names are not unique", where="names")
    return name_list


def _checked_lengths(
    length_source: np.ndarray | None, array: np.ndarray, name_list: list[str], source: Path
) -> np.ndarray:
    """The given valid lengths, checked to lie in ``1..T``; without them, the frames up to each
    sample's last non-zero one (an all-zero sample is an error)."""
    n, T = array.shape[0], array.shape[2]
    if length_source is not None:
        length_array = np.asarray(length_source)
        if length_array.shape != (n,) or not np.issubdtype(length_array.dtype, np.integer):
            raise ArrayInputError(source, f"lengths must be ({n},) integers", where="lengths")
        if n and (length_array.min() < 1 or length_array.max() > T):
            raise ArrayInputError(source, f"lengths must lie in 1..{T}", where="lengths")
        return length_array
    length_array = np.array([valid_length(array[i]) for i in range(n)], dtype=np.int64)
    if n and length_array.min() == 0:
        empty = int(np.argmin(length_array))
        raise ArrayInputError(
            source,
            f"sample {empty} ({name_list[empty]!r}) is all zeros; give lengths or leave it out",
            where="data",
        )
    return length_array


def _split_names(
    split_parts: Mapping[str, Any], name_list: list[str], source: Path
) -> dict[str, list[str]]:
    """Each split's members as sample names: given by name (each must exist) or by index."""
    n = len(name_list)
    index_of = {name: i for i, name in enumerate(name_list)}
    split_names: dict[str, list[str]] = {}
    for split, members in split_parts.items():
        members = np.asarray(members).reshape(-1)
        where = f"{SPLIT_PREFIX}{split}"
        if np.issubdtype(members.dtype, np.integer):
            if members.size and (members.min() < 0 or members.max() >= n):
                raise ArrayInputError(source, f"split indices must lie in 0..{n - 1}", where=where)
            split_names[split] = [name_list[i] for i in members]
        else:
            unknown = [str(m) for m in members if str(m) not in index_of]
            if unknown:
                raise ArrayInputError(
                    source, f"{len(unknown)} unknown sample names, e.g. {unknown[:3]}", where=where
                )
            split_names[split] = [str(m) for m in members]
    return split_names


def convert_arrays(
    data: PathLike,
    out_dir: PathLike,
    layout: str,
    axes: str = TARGET_AXES,
    labels: PathLike | None = None,
    names: PathLike | Sequence[str] | None = None,
    lengths: PathLike | None = None,
    splits: Mapping[str, PathLike | Sequence[str]] | None = None,
    class_names: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
) -> SkeletonData:
    """Convert user arrays (see the module docstring) into a dataset at ``out_dir``."""
    source = Path(data)
    parts = read_arrays(data, axes, labels, names, lengths, splits)
    array = parts["data"]
    _, C, _, V, _ = array.shape
    target = get_layout(layout)
    if V != target.num_joints:
        raise ArrayInputError(
            source,
            f"data has V={V} joints, layout {target.name} has {target.num_joints}",
            where="data",
        )
    if channels is None:
        channels = DEFAULT_CHANNELS.get(C, tuple(f"c{i}" for i in range(C)))
    if len(channels) != C:
        raise ArrayInputError(source, f"{len(channels)} channel names for C={C}")
    num_classes = int(parts["labels"].max()) + 1 if len(parts["labels"]) else 0
    if class_names is None:
        class_names = [f"class_{k}" for k in range(num_classes)]
    if len(class_names) < num_classes:
        raise ArrayInputError(
            source,
            f"{len(class_names)} class names but labels reach {num_classes - 1}",
            where="labels",
        )
    return write_dataset(
        out_dir,
        array,
        parts["labels"],
        parts["lengths"],
        parts["names"],
        target,
        class_names,
        splits=parts["splits"],
        channels=channels,
        metadata={"source": "arrays", "input": str(source), "axes": parse_axes(axes)},
    )
