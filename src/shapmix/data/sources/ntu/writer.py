"""Write valid ``.skeleton`` files: the way to build NTU test and benchmark corpora.

The raw NTU RGB+D files cannot be redistributed, so the tests (``tests/test_ntu.py``) and the
preprocessing benchmark (``benchmarks/ntu_prepare.py``) make their corpora with
:func:`write_skeleton`: any joints, bodies and frame gaps, written so that the reader
(:func:`~.parse.read_skeleton`) gives back exactly the float32 values written.  The reader never
depends on this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .constants import COORDS, NUM_JOINTS

WRITER_SIGNIFICANT_DIGITS = 9
"""Nine significant digits make every float32 survive the text round trip exactly."""
WRITER_TRACKED_STATE = 2
_WRITER_INFO_TAIL = f"0 1 1 1 1 0 0 0 {WRITER_TRACKED_STATE}"
"""After the body id: clipped edges, hand confidences and states, restricted, lean x, y,
tracking state."""
_WRITER_JOINT_TAIL = f"0 0 0 0 {WRITER_TRACKED_STATE}"
"""After the colour coordinates: orientation w, x, y, z and tracking state."""


def write_skeleton(
    path: str | os.PathLike,
    joints: np.ndarray,
    body_ids: Sequence[int | str],
    present: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    line_ending: str = "\n",
    digits: int = WRITER_SIGNIFICANT_DIGITS,
) -> Path:
    """Write a valid ``.skeleton`` file.

    Args:
        path: the file to write.
        joints: ``(T, B, 25, 3)`` camera-space x, y, z of ``B`` bodies.
        body_ids: ``B`` body ids (integers or digit strings).
        present: ``(T, B)`` bool, which bodies appear in which frame (default: all); a frame
            with no body present is written with 0 bodies (stage 1 drops it).
        colors: ``(T, B, 25, 2)`` colour-image x, y (default zeros).
        line_ending: ``"\\n"`` or ``"\\r\\n"``.
        digits: significant digits of every value (9 is exact for float32 input).

    The other fields (depth-image coordinates, orientation, lean) are written as zeros and the
    tracking states as "tracked".
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 4 or joints.shape[2:] != (NUM_JOINTS, COORDS):
        raise ValueError(f"joints must be (T, B, {NUM_JOINTS}, {COORDS}), got {joints.shape}")
    frames, bodies = joints.shape[:2]
    if len(body_ids) != bodies:
        raise ValueError(f"{len(body_ids)} body ids for B={bodies}")
    if present is None:
        present = np.ones((frames, bodies), dtype=bool)
    present = np.asarray(present, dtype=bool)
    if present.shape != (frames, bodies):
        raise ValueError(f"present must be (T, B) = {(frames, bodies)}, got {present.shape}")
    if colors is None:
        colors = np.zeros((frames, bodies, NUM_JOINTS, 2))
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape != (frames, bodies, NUM_JOINTS, 2):
        raise ValueError(f"colors must be (T, B, {NUM_JOINTS}, 2), got {colors.shape}")
    if not (np.isfinite(joints).all() and np.isfinite(colors).all()):
        raise ValueError("joints and colors must be finite")
    number = f"%.{digits}g"
    lines = [str(frames)]
    for frame in range(frames):
        members = np.flatnonzero(present[frame])
        lines.append(str(members.size))
        for body in members:
            lines.append(f"{body_ids[body]} {_WRITER_INFO_TAIL}")
            lines.append(str(NUM_JOINTS))
            xyz = joints[frame, body]
            col = colors[frame, body]
            for joint in range(NUM_JOINTS):
                x, y, z = (number % value for value in xyz[joint])
                cx, cy = (number % value for value in col[joint])
                lines.append(f"{x} {y} {z} 0 0 {cx} {cy} {_WRITER_JOINT_TAIL}")
    path = Path(path)
    with open(path, "w", encoding="ascii", newline="") as handle:
        handle.write(line_ending.join(lines) + line_ending)
    return path
