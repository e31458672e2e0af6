"""UTD-MHAD skeletons (Kinect v1, 20 joints).

Format
------
One MATLAB ``.mat`` file per sequence, named ``aA_sS_tT_skeleton.mat`` (action 1..27,
subject 1..8, trial 1..4, numbers not zero-padded), holding a single variable ``d_skel`` of
shape ``(20, 3, T)``: joint (in the dataset's ``Skeleton_joint_order.txt`` order, the
``utd_mhad`` layout), coordinate ``x, y, z`` (metres), frame.

Reading needs SciPy (``scipy.io.loadmat``), an optional dependency imported only when a file is
read: install it with ``pip install 'shapmix[formats]'``.

Conversion
----------
Sample names ``aA_sS_tT``; labels ``action - 1`` over :data:`UTD_CLASS_NAMES`; one person;
``T`` the longest sequence; the standard cross-subject split: odd subjects (1, 3, 5, 7)
``train``, even subjects ``test``.  Unreadable files are skipped and listed in
``metadata["skipped"]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ...errors import SourceFormatError
from ..format import SkeletonData
from .common import (
    check_finite,
    convert_cross_subject_directory,
)

__all__ = ["UTD_CLASS_NAMES", "read_utd_file", "convert_utd_mhad"]

LAYOUT = "utd_mhad"
NUM_JOINTS = 20
NUM_COORDS = 3
VARIABLE = "d_skel"
FILE_SUFFIX = "_skeleton.mat"
NAME_PATTERN = re.compile(r"a(?P<action>\d+)_s(?P<subject>\d+)_t(?P<trial>\d+)")

#: The 27 actions, in action-id order (UTD-MHAD's documentation).
UTD_CLASS_NAMES = (
    "right arm swipe to the left",
    "right arm swipe to the right",
    "right hand wave",
    "two hand front clap",
    "right arm throw",
    "cross arms in the chest",
    "basketball shoot",
    "right hand draw x",
    "right hand draw circle (clockwise)",
    "right hand draw circle (counter clockwise)",
    "draw triangle",
    "bowling (right hand)",
    "front boxing",
    "baseball swing from right",
    "tennis right hand forehand swing",
    "arm curl (two arms)",
    "tennis serve",
    "two hand push",
    "right hand knock on door",
    "right hand catch an object",
    "right hand pick up and throw",
    "jogging in place",
    "walking in place",
    "sit to stand",
    "stand to sit",
    "forward lunge (left foot forward)",
    "squat (two arms stretch out)",
)


def _loadmat():
    try:  # delayed: SciPy is an optional extra (shapmix[formats]), needed only for .mat files
        from scipy.io import loadmat
    except ImportError:
        raise ImportError(
            "reading UTD-MHAD .mat files needs SciPy: pip install 'shapmix[formats]'"
        ) from None
    return loadmat


def read_utd_file(path: str | os.PathLike) -> np.ndarray:
    """Read one UTD-MHAD ``.mat`` file into a ``(T, 20, 3)`` float32 array.

    Raises :class:`SourceFormatError` naming the file when it is not a readable ``.mat`` file,
    lacks ``d_skel``, has the wrong shape, or holds NaN/Inf or only zeros.
    """
    path = Path(path)
    loadmat = _loadmat()
    try:
        content = loadmat(path, variable_names=[VARIABLE])
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise SourceFormatError(path, f"not a readable MATLAB file ({error})") from None
    if VARIABLE not in content:
        raise SourceFormatError(path, f"no variable {VARIABLE!r}")
    skel = content[VARIABLE]
    if (
        not isinstance(skel, np.ndarray)
        or skel.ndim != 3
        or skel.shape[:2] != (NUM_JOINTS, NUM_COORDS)
    ):
        shape = getattr(skel, "shape", type(skel).__name__)
        raise SourceFormatError(
            path, f"{VARIABLE} must be ({NUM_JOINTS}, {NUM_COORDS}, T), got {shape}", where=VARIABLE
        )
    if skel.shape[2] == 0:
        raise SourceFormatError(path, "no frames", where=VARIABLE)
    if not np.issubdtype(skel.dtype, np.number):
        raise SourceFormatError(path, f"{VARIABLE} is not numeric ({skel.dtype})", where=VARIABLE)
    frames = skel.transpose(2, 0, 1)  # (T, V, C)
    check_finite(frames, path, lambda t: f"{VARIABLE}[:, :, {t}] (frame {t + 1})")
    if not frames.any():
        raise SourceFormatError(path, "all-zero skeleton")
    return frames.astype(np.float32)


def convert_utd_mhad(input_dir: str | os.PathLike, out_dir: str | os.PathLike) -> SkeletonData:
    """Convert a directory of ``*_skeleton.mat`` files into the project's format (odd subjects
    train; unreadable files are skipped and listed in ``metadata["skipped"]``)."""
    _loadmat()  # fail once, clearly, if SciPy is missing
    return convert_cross_subject_directory(
        input_dir,
        out_dir,
        FILE_SUFFIX,
        NAME_PATTERN,
        read_utd_file,
        LAYOUT,
        UTD_CLASS_NAMES,
        ("x", "y", "z"),
        source="utd_mhad",
    )
