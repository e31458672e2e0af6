"""MSR Action3D skeletons (real-world coordinates, as distributed with Vemulapalli et al.'s code).

Format
------
One text file per sequence, named ``aAA_sSS_eEE_skeleton3D.txt`` (action 1..20, subject 1..10,
repetition 1..3).  Each line holds four numbers ``x y z c``: a joint's real-world coordinates
(metres) and a confidence value; 20 consecutive lines form one frame, in the order of the
``msr_action3d`` layout, so the number of frames is ``lines / 20``.  There is no header and no
frame count.  Lines are split on any whitespace; trailing blank lines are ignored.

Conversion
----------
* channels ``x, y, z``; the confidence column is dropped unless ``keep_confidence=True``, which
  adds it as a fourth channel ``confidence``;
* one person (``M = 1``); ``T`` is the longest sequence;
* the cross-subject split used by most papers: odd subjects (1, 3, 5, 7, 9) ``train``, even
  subjects ``test``;
* a sequence that is all zeros (the known broken ``a13_s09_e02``) is skipped with the reason
  ``all-zero skeleton``, like any unreadable file, and listed in ``metadata["skipped"]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ...errors import SourceFormatError
from ..format import SkeletonData
from .common import (
    convert_cross_subject_directory,
    decode_text,
    parse_float_table,
)

__all__ = ["MSR_CLASS_NAMES", "read_msr_file", "convert_msr_action3d"]

LAYOUT = "msr_action3d"
NUM_JOINTS = 20
NUM_COLUMNS = 4  # x y z c
FILE_SUFFIX = "_skeleton3D.txt"
NAME_PATTERN = re.compile(r"a(?P<action>\d\d)_s(?P<subject>\d\d)_e(?P<repetition>\d\d)")

#: The 20 actions, in action-id order (from the dataset's ``action_names.mat``).
MSR_CLASS_NAMES = (
    "high arm wave",
    "horizontal arm wave",
    "hammer",
    "hand catch",
    "forward punch",
    "high throw",
    "draw X",
    "draw tick",
    "draw circle",
    "hand clap",
    "two hand wave",
    "side boxing",
    "bend",
    "forward kick",
    "side kick",
    "jogging",
    "tennis swing",
    "tennis serve",
    "golf swing",
    "pickup and throw",
)


def read_msr_file(path: str | os.PathLike, keep_confidence: bool = False) -> np.ndarray:
    """Read one MSR Action3D skeleton file into a ``(T, 20, C)`` float32 array.

    ``C`` is 3 (``x, y, z``) or 4 with ``keep_confidence``.  Raises :class:`SourceFormatError`
    naming the file and line for an empty file, a line without 4 numbers, a non-number, a NaN or
    Inf, a last frame with fewer than 20 joints, binary content, or an all-zero skeleton.
    """
    path = Path(path)
    text = decode_text(path.read_bytes(), path)
    if not text.strip():
        raise SourceFormatError(
            path, f"empty file; expected {NUM_JOINTS} lines of 'x y z c' per frame"
        )
    table = parse_float_table(text, path, NUM_COLUMNS)
    lines = len(table)
    if lines % NUM_JOINTS:
        raise SourceFormatError(
            path,
            f"file ends mid-frame: {lines} lines is not a multiple of {NUM_JOINTS} joints "
            f"(the last frame has {lines % NUM_JOINTS})",
            line=lines,
        )
    skeleton = table.reshape(lines // NUM_JOINTS, NUM_JOINTS, NUM_COLUMNS)
    if not skeleton[..., :3].any():
        raise SourceFormatError(path, "all-zero skeleton")
    channels = NUM_COLUMNS if keep_confidence else 3
    return skeleton[..., :channels].astype(np.float32)


def convert_msr_action3d(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    keep_confidence: bool = False,
) -> SkeletonData:
    """Convert a directory of ``*_skeleton3D.txt`` files into the project's format.

    Sample names are ``aAA_sSS_eEE``; labels are ``action - 1`` over :data:`MSR_CLASS_NAMES`;
    odd subjects train.  Unreadable files are skipped and listed in ``metadata["skipped"]``.
    """
    return convert_cross_subject_directory(
        input_dir,
        out_dir,
        FILE_SUFFIX,
        NAME_PATTERN,
        lambda path: read_msr_file(path, keep_confidence),
        LAYOUT,
        MSR_CLASS_NAMES,
        ("x", "y", "z", "confidence") if keep_confidence else ("x", "y", "z"),
        source="msr_action3d",
    )
