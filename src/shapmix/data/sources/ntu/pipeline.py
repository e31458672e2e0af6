"""All three stages of one file (:func:`process_skeleton`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .align import align
from .constants import MAX_FRAMES
from .denoise import DenoisedSkeleton, denoise
from .parse import RawSkeleton, read_source


@dataclass
class ProcessedSample:
    """All three stages of one file.

    Attributes:
        name: sample name.
        row: ``(MAX_FRAMES, 150)`` float32, the CTR-GCN npz row.
        num_frames: valid rows (the rest are zero).
        raw: stage 1.
        denoised: stage 2.
    """

    name: str
    row: np.ndarray
    num_frames: int
    raw: RawSkeleton
    denoised: DenoisedSkeleton


def process_skeleton(
    source: str | os.PathLike | bytes,
    name: str | None = None,
    fix_upstream_bugs: bool = False,
    duplicate_single_actor: bool = False,
    max_frames: int = MAX_FRAMES,
) -> ProcessedSample:
    """All three stages for a file path (or its bytes, with ``name``).

    Stage 1 runs without the colour-image coordinates, which do not affect the result (so a
    colour field that is not a number goes unnoticed here, as any other unused field).
    """
    raw, where = read_source(source, name, colors=False)
    denoised = denoise(raw, fix_upstream_bugs)
    row = align(denoised.joints, max_frames, duplicate_single_actor, where)
    return ProcessedSample(raw.name, row, denoised.joints.shape[0], raw, denoised)
