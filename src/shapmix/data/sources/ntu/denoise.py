"""Stage 2: drop noisy bodies and place at most two actors (:func:`denoise`).

As CTR-GCN's ``get_raw_denoised_data.py``: for several body ids, bodies present in
:data:`MIN_BODY_FRAMES` frames or fewer are dropped; then (first-appearance order, stopping at
one body) a body whose fraction of "spread-noisy" frames (x-range of the joints >
:data:`NOISE_SPREAD_RATIO` times the y-range) is at least :data:`NOISE_FRAME_FRACTION` is
dropped, otherwise its motion becomes ``min(motion, motion over its clean frames)``; the rest are
sorted by motion (highest first, stable) and assigned to at most two actors by interval overlap;
all-zero rows are deleted.

Upstream bugs and ``fix_upstream_bugs``
---------------------------------------
By default the upstream behaviour is reproduced, bugs included.  With ``fix_upstream_bugs=True``
exactly two things change, both in this stage:

* **Packed frames.**  Upstream records a body's frames as ``first, first + 1, ...`` (it counts
  appearances, not frame indices), so a body that disappears and reappears is packed
  contiguously and shifted earlier in time, and its span used in the actor-overlap test is too
  short.  Fixed: a body's frames are placed at the kept-frame indices where it really appears
  and its span is ``[first appearance, last appearance]``.
* **Actor-2 span.**  Upstream starts actor 2's span at ``[0, 0]``, so after its first body the
  span is ``[0, end]`` and a later body that starts before ``end`` is discarded even when it
  does not overlap the real actor-2 body (a continuation of actor 2 under a new body id is
  lost).  Fixed: actor 2's span starts empty and becomes ``[start, end]`` of its first body.

Everything else (the thresholds, the one-shared-frame overlap rule where the later body
overwrites the shared frame, motion never used as a filter, the zero-row deletion) is the
documented upstream method and stays as it is.  Stage 1 and stage 3 are never changed; stage 1
always reports the upstream (packed) ``interval`` next to the real ``frames``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import (
    ACTOR_COLUMNS,
    MIN_BODY_FRAMES,
    NOISE_FRAME_FRACTION,
    NOISE_SPREAD_RATIO,
    ROW_COLUMNS,
)
from ....errors import NTUFormatError
from .parse import RawSkeleton, body_motion


@dataclass
class DenoisedSkeleton:
    """Stage 2 of one file.

    Attributes:
        joints: ``(T, 75)`` float32 (one actor) or ``(T, 150)`` (two actors).
        actor1_ids, actor2_ids: body ids placed in actor 1's / actor 2's columns, in order.
        discarded_ids: body ids dropped (length, spread, or no room in either actor).
    """

    joints: np.ndarray
    actor1_ids: list[str]
    actor2_ids: list[str]
    discarded_ids: list[str]


def noisy_frames(joints: np.ndarray) -> np.ndarray:
    """Frames whose joints' x-range exceeds NOISE_SPREAD_RATIO times their y-range (float32)."""
    x = joints[:, :, 0]
    y = joints[:, :, 1]
    x_range = x.max(axis=1) - x.min(axis=1)
    y_range = y.max(axis=1) - y.min(axis=1)
    return ~(x_range <= NOISE_SPREAD_RATIO * y_range)


def denoise(raw: RawSkeleton, fix_upstream_bugs: bool = False) -> DenoisedSkeleton:
    """Stage 2: drop noisy bodies and place at most two actors (see the module docstring).

    Raises:
        NTUFormatError: several body ids and none is present in more than MIN_BODY_FRAMES
            frames (upstream crashes).
    """
    num_frames = raw.num_frames_valid
    packed = not fix_upstream_bugs
    if len(raw.bodies) == 1:
        body = raw.bodies[0]
        joints = np.zeros((num_frames, ACTOR_COLUMNS), dtype=np.float32)
        joints[body.placement(packed)] = body.joints.reshape(-1, ACTOR_COLUMNS)
        return DenoisedSkeleton(joints, [body.body_id], [], [])

    motion = {body.body_id: body.motion for body in raw.bodies}
    discarded: list[str] = []
    kept = []
    for body in raw.bodies:
        (kept if body.num_frames > MIN_BODY_FRAMES else discarded).append(body)
    discarded_ids = [body.body_id for body in discarded]
    if len(kept) > 1:
        for body in list(kept):
            if len(kept) == 1:
                break
            noisy = noisy_frames(body.joints)
            num_noisy = int(noisy.sum())
            if num_noisy == 0:
                continue
            if num_noisy / float(body.num_frames) >= NOISE_FRAME_FRACTION:
                kept.remove(body)
                discarded_ids.append(body.body_id)
            else:
                clean_motion = body_motion(body.joints[~noisy])
                motion[body.body_id] = min(motion[body.body_id], clean_motion)
    if not kept:
        raise NTUFormatError(
            raw.name, None,
            f"no body is present in more than {MIN_BODY_FRAMES} frames "
            f"({len(raw.bodies)} body ids); nothing survives denoising",
        )
    ordered = sorted(kept, key=lambda body: motion[body.body_id], reverse=True)

    if len(ordered) == 1:
        body = ordered[0]
        joints = np.zeros((num_frames, ACTOR_COLUMNS), dtype=np.float32)
        joints[body.placement(packed)] = body.joints.reshape(-1, ACTOR_COLUMNS)
        actor1, actor2 = [body.body_id], []
    else:
        joints = np.zeros((num_frames, ROW_COLUMNS), dtype=np.float32)
        actor1_cols = slice(0, ACTOR_COLUMNS)
        actor2_cols = slice(ACTOR_COLUMNS, ROW_COLUMNS)
        first = ordered[0]
        joints[first.placement(packed), actor1_cols] = first.joints.reshape(-1, ACTOR_COLUMNS)
        start1, end1 = first.span(packed)
        # Upstream's virtual initial span of actor 2 is [0, 0] (the bug); fixed: empty.
        span2: tuple[int, int] | None = None if fix_upstream_bugs else (0, 0)
        actor1, actor2 = [first.body_id], []
        for body in ordered[1:]:
            start, end = body.span(packed)
            rows = body.joints.reshape(-1, ACTOR_COLUMNS)
            if min(end1, end) - max(start1, start) <= 0:
                joints[body.placement(packed), actor1_cols] = rows
                start1, end1 = min(start, start1), max(end, end1)
                actor1.append(body.body_id)
            elif span2 is None or min(span2[1], end) - max(span2[0], start) <= 0:
                joints[body.placement(packed), actor2_cols] = rows
                span2 = (start, end) if span2 is None else (
                    min(start, span2[0]), max(end, span2[1])
                )
                actor2.append(body.body_id)
            else:
                discarded_ids.append(body.body_id)
    # Multi-body sequences: delete the rows where every kept actor is absent (sum exactly 0).
    joints = joints[joints.sum(axis=1) != 0]
    return DenoisedSkeleton(joints, actor1, actor2, discarded_ids)
