"""Stage 3: translate and pad to CTR-GCN's ``(300, 150)`` rows (:func:`align`), and the rows'
layout in the project's format (:func:`row_to_cthw`).

As CTR-GCN's ``seq_transformation.py``: every coordinate minus the spine-middle joint of actor 1
in its first non-zero frame (an actor's all-zero frames stay zero), zero-padded to
:data:`MAX_FRAMES` rows of 150 columns (one-actor data gets 75 zero columns, or a copy of actor 1
as in the NTU120 script when ``duplicate_single_actor`` is set).
"""

from __future__ import annotations

import numpy as np

from .constants import (
    ACTOR_COLUMNS,
    COORDS,
    MAX_FRAMES,
    NUM_ACTORS,
    NUM_JOINTS,
    ORIGIN_JOINT,
    ROW_COLUMNS,
)
from ....errors import NTUFormatError


def align(
    joints: np.ndarray,
    max_frames: int = MAX_FRAMES,
    duplicate_single_actor: bool = False,
    name: str = "<array>",
) -> np.ndarray:
    """Stage 3: translate to actor 1's first spine-middle and pad to ``(max_frames, 150)``.

    Args:
        joints: stage 2's ``(T, 75)`` or ``(T, 150)`` float32 rows.
        max_frames: rows of the result.
        duplicate_single_actor: one-actor data also fills columns 75-149 with actor 1 (the
            NTU120 script does this; the NTU60 script leaves zeros).
        name: used in errors.

    Raises:
        NTUFormatError: more than ``max_frames`` rows, or actor 1 is zero in every frame.
    """
    num_frames, columns = joints.shape
    if num_frames > max_frames:
        raise NTUFormatError(name, None, f"{num_frames} frames, more than {max_frames}")
    two_actors = columns == ROW_COLUMNS
    if two_actors:
        absent1 = joints[:, :ACTOR_COLUMNS].sum(axis=1) == 0
        absent2 = joints[:, ACTOR_COLUMNS:].sum(axis=1) == 0
    present = np.flatnonzero((joints[:, :ACTOR_COLUMNS] != 0).any(axis=1))
    if present.size == 0:
        raise NTUFormatError(name, None, "actor 1 is zero in every frame: no origin")
    origin = joints[present[0], ORIGIN_JOINT * COORDS: (ORIGIN_JOINT + 1) * COORDS].copy()
    translated = joints - np.tile(origin, columns // COORDS)
    if two_actors:
        translated[absent1, :ACTOR_COLUMNS] = 0
        translated[absent2, ACTOR_COLUMNS:] = 0
    row = np.zeros((max_frames, ROW_COLUMNS), dtype=np.float32)
    row[:num_frames, :columns] = translated
    if not two_actors and duplicate_single_actor:
        row[:num_frames, ACTOR_COLUMNS:] = translated
    return row


def row_to_cthw(rows: np.ndarray) -> np.ndarray:
    """``(T, 150)`` rows (actor-major, joint, xyz) to ``(3, T, 25, 2)`` (CTR-GCN's feeder)."""
    frames = rows.shape[0]
    return rows.reshape(frames, NUM_ACTORS, NUM_JOINTS, COORDS).transpose(3, 0, 2, 1)
