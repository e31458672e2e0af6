"""The three outputs of a directory conversion, written from its staging area one sample at a
time: the project's format, pyskl's annotation pickle, CTR-GCN's npz."""

from __future__ import annotations

import mmap
import os
import zipfile
from pathlib import Path

import numpy as np

from ...format import DatasetWriter
from ..pyskl import write_pyskl
from .align import row_to_cthw
from .constants import (
    ACTOR_COLUMNS,
    COORDS,
    DATASET_CLASSES,
    MAX_FRAMES,
    NTU_ACTION_NAMES,
    NUM_ACTORS,
    NUM_JOINTS,
    ROW_COLUMNS,
)
from .names import parse_sample_name
from .pyskl_export import pyskl_record
from .staging import Staging

FINALIZE_RELEASE_EVERY = 256
"""Samples between releasing the written output pages from this process's memory."""


def _release_pages(array: np.ndarray) -> None:
    """Drop an output memmap's written pages from this process's resident memory."""
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise"):
        return
    array.flush()
    mapping.madvise(mmap.MADV_DONTNEED)


def finalize_shapmix(
    staging: Staging, out: Path, ok: list[int], names: list[str],
    splits: dict[str, list[str]], dataset: str, metadata: dict,
) -> None:
    """Write the project's format from the staging area, one sample at a time: the samples
    ``names`` at candidate indices ``ok``, the ``splits`` as name lists."""
    writer = DatasetWriter(
        out, len(ok), (COORDS, MAX_FRAMES, NUM_JOINTS, NUM_ACTORS), "ntu25",
        NTU_ACTION_NAMES[: DATASET_CLASSES[dataset]], metadata=metadata,
    )
    with open(staging.rows_path, "rb") as handle:
        for position, (index, name) in enumerate(zip(ok, names)):
            rows = staging.read_rows(handle, index)
            writer.write(position, row_to_cthw(rows), parse_sample_name(name).label, name)
            if (position + 1) % FINALIZE_RELEASE_EVERY == 0:
                _release_pages(writer.data)
    writer.close(splits)


def finalize_pyskl(
    staging: Staging, out: Path, ok: list[int], names: list[str], splits: dict[str, list[str]]
) -> None:
    """Write pyskl's annotation pickle (the float16 annotations are held in memory, as any
    reader of the pickle must); each sample's number of persons is its journal detail."""
    annotations = []
    with open(staging.rows_path, "rb") as handle:
        for index, name in zip(ok, names):
            rows = staging.read_rows(handle, index)
            persons = int(staging.entries[index][3])
            keypoint = rows[:, : persons * ACTOR_COLUMNS].reshape(
                len(rows), persons, NUM_JOINTS, COORDS
            ).transpose(1, 0, 2, 3)
            annotations.append(pyskl_record(name, keypoint))
    write_pyskl(annotations, splits, out)


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> dict:
    """The ``.npy`` header of a C-order array of ``shape`` and ``dtype`` (written before its
    data is streamed)."""
    return {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": shape,
    }


def finalize_npz(
    staging: Staging, out: Path, index_of: dict[str, int], train: list[str],
    test: list[str], dataset: str,
) -> None:
    """Write CTR-GCN's npz (stored members, like ``np.savez``), streaming row by row.

    Only one ``(300, 150)`` row and one one-hot label row are in memory at a time; the file is
    written next to ``out`` and renamed when complete.
    """
    num_classes = DATASET_CLASSES[dataset]
    tmp = out.with_name(out.name + ".tmp")
    row = np.zeros((MAX_FRAMES, ROW_COLUMNS), dtype=np.float32)
    one_hot = np.zeros(num_classes, dtype=np.float64)  # float64 as upstream's np.zeros
    with open(staging.rows_path, "rb") as handle, zipfile.ZipFile(
        tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True
    ) as archive:
        for part, members in (("train", train), ("test", test)):
            with archive.open(f"x_{part}.npy", "w", force_zip64=True) as member:
                header = _npy_header((len(members), MAX_FRAMES, ROW_COLUMNS), row.dtype)
                np.lib.format.write_array_header_1_0(member, header)
                for name in members:
                    rows = staging.read_rows(handle, index_of[name])
                    row[: rows.shape[0]] = rows
                    row[rows.shape[0]:] = 0
                    member.write(row.tobytes())
            with archive.open(f"y_{part}.npy", "w", force_zip64=True) as member:
                header = _npy_header((len(members), num_classes), one_hot.dtype)
                np.lib.format.write_array_header_1_0(member, header)
                for name in members:
                    one_hot[:] = 0
                    one_hot[parse_sample_name(name).label] = 1
                    member.write(one_hot.tobytes())
            with archive.open(f"name_{part}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.array(members, dtype=str))
    os.replace(tmp, out)
