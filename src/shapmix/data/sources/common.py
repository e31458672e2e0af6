"""Helpers shared by the source readers: fast text parsing, file-name metadata, and the
assembly of parsed samples into a dataset directory (the errors that locate a problem are in
:mod:`shapmix.errors`).

Every reader in :mod:`shapmix.data.sources` follows the same pattern:

* a *file reader* (``read_<fmt>_file``) parses one file and returns arrays, raising a
  :class:`~shapmix.errors.SourceFormatError` (a :class:`~shapmix.errors.DatasetFormatError`)
  that names the file, the place in it (``path:line`` for text, ``path at data[3].pose`` for json) and what was
  expected;
* a *converter* (``convert_<fmt>``) walks a directory, lets no single broken file stop the
  conversion (each one is recorded as a :class:`SkippedFile` with its reason, logged, and listed
  under ``metadata["skipped"]`` of the written dataset), and writes the project's format with the
  dataset's standard ``train``/``test`` split as name lists.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ...errors import DatasetFormatError, SourceFormatError
from ..format import DatasetWriter, SkeletonData

__all__ = [
    "SKIPPED_KEY",
    "SourceFormatError",
    "SkippedFile",
    "Sample",
    "decode_text",
    "load_json",
    "check_json_numbers",
    "parse_float_table",
    "check_finite",
    "parse_name_fields",
    "valid_length",
    "skip_reason",
    "convert_files",
    "write_samples",
    "split_by",
    "is_odd",
    "is_number",
]

logger = logging.getLogger("shapmix.data.sources")

#: metadata key under which converters list the files they skipped.
SKIPPED_KEY = "skipped"


@dataclass(frozen=True)
class SkippedFile:
    """A file a directory conversion left out, and why."""

    path: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"file": self.path, "reason": self.reason}


@dataclass
class Sample:
    """One parsed recording: ``data`` is ``(C, T, V, M)`` holding only valid frames (any real
    dtype, converted to float32 when written; ``M`` may be below the dataset's, padded then)."""

    name: str
    data: np.ndarray
    label: int


def decode_text(raw: bytes, path: str | os.PathLike) -> str:
    """Decode a text file as UTF-8, or fail naming the line of the first NUL or undecodable byte."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raise SourceFormatError(
            path, f"not a text file (NUL byte at offset {nul})", line=raw.count(b"\n", 0, nul) + 1
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise SourceFormatError(
            path,
            f"not a text file (byte 0x{raw[error.start]:02x} at offset {error.start} is not UTF-8)",
            line=line,
        ) from None


def load_json(path: Path) -> Any:
    """The json content of a UTF-8 text file; an empty file or invalid json is an error naming
    the file (and the line of a json syntax error)."""
    text = decode_text(path.read_bytes(), path)
    if not text.strip():
        raise SourceFormatError(path, "empty file; expected a json object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SourceFormatError(path, f"invalid json ({error.msg})", line=error.lineno) from None


def check_json_numbers(values: Sequence[Any], path: str | os.PathLike, where: str) -> None:
    """Raise naming ``where[i]`` of the first value of a json list that is not a finite number."""
    for i, value in enumerate(values):
        if not is_number(value):
            raise SourceFormatError(
                path, f"expected a finite number, found {value!r}", where=f"{where}[{i}]"
            )


def parse_float_table(text: str, path: str | os.PathLike, columns: int) -> np.ndarray:
    """Parse whitespace-separated numbers, ``columns`` per line, into ``(lines, columns)``.

    The whole text is split and converted in one NumPy call; only when that fails is the text
    scanned line by line, so the error names the offending line.  Trailing blank lines are
    allowed, blank lines elsewhere are not.  Non-finite values (``nan``, ``inf``) are an error.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    tokens = text.split()
    if len(tokens) != columns * len(lines):
        for number, line in enumerate(lines, start=1):
            count = len(line.split())
            if count != columns:
                raise SourceFormatError(
                    path, f"expected {columns} numbers, found {count}", line=number
                )
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        for index, token in enumerate(tokens):
            try:
                float(token)
            except ValueError:
                raise SourceFormatError(
                    path,
                    f"{token[:40]!r} is not a number",
                    line=index // columns + 1,
                ) from None
        raise  # pragma: no cover - NumPy and float() agree on what a number is
    table = values.reshape(len(lines), columns)
    bad = ~np.isfinite(table)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise SourceFormatError(path, "non-finite coordinate (NaN or Inf)", line=row + 1)
    return table


def check_finite(array: np.ndarray, path: str | os.PathLike, where: Callable[[int], str]) -> None:
    """Raise naming ``where(first_bad_index_along_axis_0)`` if ``array`` holds NaN or Inf."""
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise SourceFormatError(
            path, "non-finite value (NaN or Inf)", where=where(int(np.argmax(bad)))
        )


def parse_name_fields(
    name: str, pattern: re.Pattern[str], path: str | os.PathLike
) -> dict[str, int]:
    """Integer fields of a file name matching ``pattern`` (named groups), or a clear error."""
    match = pattern.fullmatch(name)
    if match is None:
        raise SourceFormatError(path, f"file name {name!r} does not match {pattern.pattern!r}")
    return {key: int(value) for key, value in match.groupdict().items()}


def valid_length(sample: np.ndarray, time_axis: int = 1) -> int:
    """Frames up to and including the last frame with any non-zero value (0 if all zero)."""
    moved = np.moveaxis(sample, time_axis, 0)
    nonzero = np.flatnonzero(moved.reshape(len(moved), -1).any(axis=1))
    return int(nonzero[-1]) + 1 if nonzero.size else 0


def skip_reason(error: Exception) -> str:
    """The reason a skipped file is listed with: a source error's message without the file
    (the listing names it), any other error's whole message."""
    return error.what if isinstance(error, SourceFormatError) else str(error)


def convert_files(
    files: Iterable[Path],
    read: Callable[[Path], Sample],
) -> tuple[list[Sample], list[SkippedFile]]:
    """Read every file with ``read``; a file whose reading raises a format error (or an
    ``OSError``) is recorded as skipped, with the reason, and the walk goes on."""
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    for path in files:
        try:
            samples.append(read(path))
        except (DatasetFormatError, OSError) as error:
            reason = skip_reason(error)
            skipped.append(SkippedFile(str(path), reason))
            logger.warning("skipping %s: %s", path, reason)
    return samples, skipped


def write_samples(
    out_dir: str | os.PathLike,
    samples: Sequence[Sample],
    layout: str,
    class_names: Sequence[str],
    splits: Mapping[str, Sequence[str]],
    channels: Sequence[str],
    metadata: Mapping[str, Any],
    skipped: Sequence[SkippedFile] = (),
    num_frames: int | None = None,
    num_persons: int | None = None,
) -> SkeletonData:
    """Write parsed samples as a dataset.

    ``T`` is the longest sample unless ``num_frames`` is given, ``M`` the most persons unless
    ``num_persons`` is given; samples with fewer persons are padded with absent (zero) persons.

    The skipped files are listed in ``metadata["skipped"]`` as ``{"file", "reason"}`` records.
    """
    if not samples:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise DatasetFormatError(f"{out_dir}: no readable sample to convert ({reasons})")
    C, _, V, _ = samples[0].data.shape
    T = num_frames if num_frames is not None else max(s.data.shape[1] for s in samples)
    M = num_persons if num_persons is not None else max(s.data.shape[3] for s in samples)
    meta = dict(metadata)
    meta[SKIPPED_KEY] = [s.as_json() for s in skipped]
    writer = DatasetWriter(out_dir, len(samples), (C, T, V, M), layout, class_names, channels, meta)
    for i, sample in enumerate(samples):
        data = sample.data
        if data.shape[3] < M:
            absent = np.zeros((*data.shape[:3], M - data.shape[3]), dtype=data.dtype)
            data = np.concatenate([data, absent], axis=3)
        writer.write(i, data, sample.label, sample.name)
    return writer.close(splits)


def split_by(samples: Sequence[Sample], in_train: Callable[[Sample], bool]) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}`` name lists by a predicate on each sample."""
    train = [s.name for s in samples if in_train(s)]
    test = [s.name for s in samples if not in_train(s)]
    return {"train": train, "test": test}


def is_odd(value: int) -> bool:
    return value % 2 == 1


def convert_cross_subject_directory(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    suffix: str,
    name_pattern: re.Pattern[str],
    read_file: Callable[[Path], np.ndarray],
    layout: str,
    class_names: Sequence[str],
    channels: Sequence[str],
    source: str,
) -> SkeletonData:
    """Convert a folder of one-file-per-sample skeletons named ``a<action>_s<subject>_...``.

    ``read_file(path)`` returns one sample as ``(T, V, C)``; ``name_pattern`` must have named
    groups ``action`` (1-based over ``class_names``) and ``subject``.  Odd subjects train, even
    subjects test (the common cross-subject protocol of MSR Action3D and UTD-MHAD).  Unreadable
    files are skipped and listed in ``metadata["skipped"]``.
    """
    input_dir = Path(input_dir)
    files = sorted(input_dir.glob(f"*{suffix}"))
    if not files:
        raise SourceFormatError(input_dir, f"no *{suffix} file in this directory")
    subjects: dict[str, int] = {}

    def read(path: Path) -> Sample:
        name = path.name[: -len(suffix)]
        fields = parse_name_fields(name, name_pattern, path)
        if not 1 <= fields["action"] <= len(class_names):
            raise SourceFormatError(path, f"action {fields['action']} outside 1..{len(class_names)}")
        skeleton = read_file(path)
        subjects[name] = fields["subject"]
        # (T, V, C) -> (C, T, V, M=1)
        return Sample(name, skeleton.transpose(2, 0, 1)[..., None], fields["action"] - 1)

    samples, skipped = convert_files(files, read)
    return write_samples(
        out_dir,
        samples,
        layout,
        class_names,
        splits=split_by(samples, lambda s: is_odd(subjects[s.name])),
        channels=channels,
        metadata={
            "source": source,
            "input": str(input_dir),
            "units": "metres",
            "split": "cross-subject: odd subjects train, even subjects test",
        },
        skipped=skipped,
    )


def is_number(value: Any) -> bool:
    """Whether a json scalar is a finite number (bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
