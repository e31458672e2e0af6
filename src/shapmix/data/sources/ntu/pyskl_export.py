"""pyskl's NTU convention (kennymckormick/pyskl, ``tools/data/ntu_preproc.py``).

:func:`pyskl_keypoint` reproduces pyskl's NTU tool instead of the CTR-GCN scripts; its
denoising differs in details (motion ranking first, spread test on every body, half-open
overlap test, untranslated coordinates, leading/trailing empty frames trimmed, a person swap,
float16).  :func:`pyskl_annotation` makes one file's annotation and :func:`pyskl_splits` the
benchmarks' ``split`` dict; ``convert_ntu(..., fmt="pyskl")`` writes the same annotation
pickle as that tool.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from .constants import (
    COORDS,
    DATASET_BENCHMARKS,
    MIN_BODY_FRAMES,
    NOISE_FRAME_FRACTION,
    NTU120_XSUB_TRAIN_SUBJECTS,
    NUM_ACTORS,
    NUM_JOINTS,
    ORIGIN_JOINT,
    XSET_TRAIN_SETUP_PARITY,
)
from .denoise import noisy_frames
from ....errors import NTUFormatError
from .names import SampleInfo, parse_sample_name
from .parse import RawSkeleton, body_motion, read_source

PYSKL_EPS = 1e-3
"""pyskl: a frame (or a joint) whose absolute coordinates sum below this counts as empty."""
PYSKL_KEYPOINT_DTYPE = np.float16
NTU_XVIEW_TEST_CAMERA = 1
"""pyskl's cross-view rule: camera 1 is ``xview_val``, every other camera ``xview_train``."""
PYSKL_TRAIN_SUFFIX = "_train"
PYSKL_TEST_SUFFIX = "_val"


def pyskl_keypoint(raw: RawSkeleton) -> np.ndarray:
    """pyskl's ``(M, T, 25, 3)`` float32 keypoints of a parsed file (``M`` is 1 or 2).

    pyskl's ``gen_keypoint_array`` denoises like the CTR-GCN scripts but differs in details,
    reproduced here exactly:

    * bodies are ranked by motion first (highest first, stable); one body id: its frames as
      they are (``M = 1``, no trimming);
    * bodies present in :data:`MIN_BODY_FRAMES` frames or fewer are dropped; if one is left it
      is returned alone;
    * the spread test runs on *every* remaining body (no stop at one body), in motion order: a
      body whose valid fraction ``r`` has ``1 - r >= NOISE_FRAME_FRACTION`` is dropped,
      otherwise its motion becomes ``min(motion, motion of its valid frames)``; the survivors
      are ranked by motion again;
    * actors: each body fills the half-open frames ``[start, start + n)`` (packed, as
      upstream); a later body joins actor 1 when ``max(s1, s) >= min(e1, e)`` (no shared
      frame at all), else actor 2 by the same test (actor 2 starts as ``[0, 0)``, so it grows
      to ``[0, e)``: upstream's actor-2 bug), else it is discarded;
    * the result has ``M = 2`` and spans frame 0 to the last frame any body reaches; leading
      and trailing frames whose absolute coordinates sum below :data:`PYSKL_EPS` are trimmed
      (empty frames inside are kept); coordinates are *not* translated;
    * the persons are swapped when actor 1's spine-middle joint is empty in the first frame
      and actor 2's is not.

    Raises:
        NTUFormatError: no body survives (pyskl's tool stops with an assertion).
    """
    if len(raw.bodies) == 1:
        return raw.bodies[0].joints[None]
    motion = {body.body_id: body.motion for body in raw.bodies}
    ordered = sorted(raw.bodies, key=lambda body: -motion[body.body_id])
    long_enough = [body for body in ordered if body.num_frames > MIN_BODY_FRAMES]
    if len(long_enough) == 1:
        return long_enough[0].joints[None]
    kept = []
    for body in long_enough:
        noisy = noisy_frames(body.joints)
        num_valid = body.num_frames - int(noisy.sum())
        if num_valid < body.num_frames:
            if 1 - num_valid / body.num_frames >= NOISE_FRAME_FRACTION:
                continue
            motion[body.body_id] = min(motion[body.body_id], body_motion(body.joints[~noisy]))
        kept.append(body)
    if not kept:
        raise NTUFormatError(
            raw.name, None,
            f"no body of the {len(raw.bodies)} body ids survives pyskl's denoising "
            f"(length > {MIN_BODY_FRAMES} frames, spread)",
        )
    kept.sort(key=lambda body: -motion[body.body_id])
    if len(kept) == 1:
        return kept[0].joints[None]

    spans = [(int(body.frames[0]), int(body.frames[0]) + body.num_frames) for body in kept]
    keypoint = np.zeros(
        (NUM_ACTORS, max(end for _, end in spans), NUM_JOINTS, COORDS), dtype=np.float32
    )
    (start1, end1), (start2, end2) = spans[0], (0, 0)
    keypoint[0, start1:end1] = kept[0].joints
    for body, (start, end) in zip(kept[1:], spans[1:]):
        if max(start1, start) >= min(end1, end):
            keypoint[0, start:end] = body.joints
            start1, end1 = min(start, start1), max(end, end1)
        elif max(start2, start) >= min(end2, end):
            keypoint[1, start:end] = body.joints
            start2, end2 = min(start, start2), max(end, end2)
    occupied = np.flatnonzero(~(np.abs(keypoint).sum(axis=(0, 2, 3)) < PYSKL_EPS))
    if occupied.size == 0:
        raise NTUFormatError(raw.name, None, "every frame is empty after pyskl's denoising")
    keypoint = keypoint[:, occupied[0]: occupied[-1] + 1]
    spine = np.abs(keypoint[:, 0, ORIGIN_JOINT]).sum(axis=1)
    if spine[0] < PYSKL_EPS and spine[1] > PYSKL_EPS:
        keypoint = keypoint[::-1]
    return np.ascontiguousarray(keypoint)


def pyskl_record(name: str, keypoint: np.ndarray) -> dict:
    """pyskl's annotation dict (its key order) for float32 ``(M, T, 25, 3)`` keypoints."""
    return {
        "frame_dir": name,
        "label": parse_sample_name(name).label,
        "keypoint": keypoint.astype(PYSKL_KEYPOINT_DTYPE),
        "total_frames": int(keypoint.shape[1]),
    }


def pyskl_annotation(source: str | os.PathLike | bytes, name: str | None = None) -> dict:
    """The annotation pyskl's NTU tool makes of one ``.skeleton`` file (path, or bytes + name).

    ``{"frame_dir", "label" (0-based), "keypoint" (M, T, 25, 3) float16, "total_frames"}``;
    see :func:`pyskl_keypoint`.
    """
    raw, _ = read_source(source, name, colors=False)
    return pyskl_record(raw.name, pyskl_keypoint(raw))


def _pyskl_is_train(info: SampleInfo, benchmark: str) -> bool:
    """pyskl's rules: one list of 53 training performers for NTU60 and NTU120 (the NTU60 ones
    are its first 20), cameras other than 1, even setups."""
    if benchmark == "xview":
        return info.camera != NTU_XVIEW_TEST_CAMERA
    if benchmark == "xset":
        return info.setup % 2 == XSET_TRAIN_SETUP_PARITY
    return info.performer in NTU120_XSUB_TRAIN_SUBJECTS


def pyskl_splits(names: Iterable[str], dataset: str) -> dict[str, list[str]]:
    """pyskl's ``split`` dict: ``xsub_train``, ``xsub_val`` and ``xview_*`` (NTU60) or
    ``xset_*`` (NTU120), each in the order of ``names``."""
    infos = [parse_sample_name(name) for name in names]
    splits: dict[str, list[str]] = {}
    for benchmark in DATASET_BENCHMARKS[dataset]:
        train = [_pyskl_is_train(info, benchmark) for info in infos]
        splits[benchmark + PYSKL_TRAIN_SUFFIX] = [i.name for i, t in zip(infos, train) if t]
        splits[benchmark + PYSKL_TEST_SUFFIX] = [i.name for i, t in zip(infos, train) if not t]
    return splits
