"""Kinetics-skeleton, ST-GCN's OpenPose-18 json release of Kinetics-400.

Format
------
A root folder with ``kinetics_train/`` and ``kinetics_val/`` (one json file per video, named
``<video id>.json``) and the label files ``kinetics_train_label.json`` /
``kinetics_val_label.json``.  A video file::

    {"data": [{"frame_index": k,
               "skeleton": [{"pose": [x0, y0, x1, y1, ..., x17, y17],   # 36 numbers in [0, 1]
                             "score": [s0, ..., s17]}, ...]},          # 18 confidences
              ...],
     "label": "class name", "label_index": k}

joints in OpenPose-18 order (the ``openpose18`` layout), coordinates normalised by the frame
size.  A label file maps each video id to ``{"has_skeleton": bool, "label": str,
"label_index": int}``.

Conversion (ST-GCN's ``feeder_kinetics`` convention)
----------------------------------------------------
* frame ``frame_index`` fills time step ``frame_index - frame_index_base`` (ST-GCN uses the index
  as is: base 0); frames at or beyond ``max_frames`` (300) are dropped;
* per frame, at most ``num_person_in`` (5) skeletons are read in file order; with ``center``
  (default) coordinates become ``x - 0.5`` and ``0.5 - y`` and are zeroed where the score is 0;
* per frame, persons are sorted by descending total score and the first ``num_person_out`` (2)
  kept (OpenPose does not track identities, so the sort is per frame, as in ST-GCN);
* channels ``x, y, score``; ``T = max_frames``; valid length up to the last frame with data;
* splits: ``kinetics_train`` is ``train``, ``kinetics_val`` is ``test``; videos whose label
  entry has ``has_skeleton: false`` are skipped (ST-GCN's ``ignore_empty_sample``), as are
  videos missing from the label file or unreadable, each listed in ``metadata["skipped"]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import SourceFormatError
from ..format import SkeletonData
from .common import (
    Sample,
    SkippedFile,
    check_json_numbers,
    convert_files,
    load_json,
    write_samples,
)

__all__ = [
    "KineticsLabel",
    "read_kinetics_labels",
    "read_kinetics_file",
    "convert_kinetics_skeleton",
]

LAYOUT = "openpose18"
NUM_JOINTS = 18
NUM_CHANNELS = 3  # x, y, score
DEFAULT_MAX_FRAMES = 300
DEFAULT_PERSONS_IN = 5
DEFAULT_PERSONS_OUT = 2
CENTER_OFFSET = 0.5
PHASES = (("train", "train"), ("val", "test"))  # (folder suffix, split name)


@dataclass(frozen=True)
class KineticsLabel:
    """One entry of a ``kinetics_*_label.json`` file."""

    has_skeleton: bool
    label: str
    label_index: int


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_kinetics_labels(path: str | os.PathLike) -> dict[str, KineticsLabel]:
    """Read a ``kinetics_*_label.json`` file: video id -> :class:`KineticsLabel`."""
    path = Path(path)
    content = load_json(path)
    if not isinstance(content, dict):
        raise SourceFormatError(path, "expected an object {video id: {...}}", where="$")
    labels = {}
    for video, entry in content.items():
        where = f"[{video!r}]"
        if not isinstance(entry, dict):
            raise SourceFormatError(path, "expected an object", where=where)
        has_skeleton, label, index = (
            entry.get(k) for k in ("has_skeleton", "label", "label_index")
        )
        if not isinstance(has_skeleton, bool):
            raise SourceFormatError(path, "expected true or false", where=f"{where}.has_skeleton")
        if not isinstance(label, str):
            raise SourceFormatError(path, "expected a string", where=f"{where}.label")
        if not _is_int(index) or index < 0:
            raise SourceFormatError(
                path, "expected a non-negative integer", where=f"{where}.label_index"
            )
        labels[video] = KineticsLabel(has_skeleton, label, index)
    return labels


def _check_numbers(values: Any, count: int, path: Path, where: str) -> None:
    """Raise naming the first problem if ``values`` is not a list of ``count`` finite numbers."""
    if not isinstance(values, list) or len(values) != count:
        found = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
        raise SourceFormatError(
            path, f"expected a list of {count} numbers, found {found}", where=where
        )
    check_json_numbers(values, path, where)


def _as_arrays(
    poses: list[list], scores: list[list], places: list[str], path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 18, 2)`` and ``(N, 18)`` float32 arrays, converted at once; only if that fails are
    the values checked one by one, to name the json path of the first bad one."""
    try:
        xy = np.array(poses, dtype=np.float64).reshape(len(poses), NUM_JOINTS, 2)
        conf = np.array(scores, dtype=np.float64).reshape(len(scores), NUM_JOINTS)
        if np.isfinite(xy).all() and np.isfinite(conf).all():
            return xy.astype(np.float32), conf.astype(np.float32)
    except (ValueError, TypeError):
        pass
    for pose, score, at in zip(poses, scores, places):
        _check_numbers(pose, 2 * NUM_JOINTS, path, f"{at}.pose")
        _check_numbers(score, NUM_JOINTS, path, f"{at}.score")
    raise SourceFormatError(path, "pose or score values are not numbers", where="data")


def read_kinetics_file(
    path: str | os.PathLike,
    max_frames: int = DEFAULT_MAX_FRAMES,
    num_person_in: int = DEFAULT_PERSONS_IN,
    num_person_out: int = DEFAULT_PERSONS_OUT,
    center: bool = True,
    frame_index_base: int = 0,
) -> tuple[np.ndarray, int | None]:
    """Read one Kinetics-skeleton video json: ``((3, t, 18, num_person_out) float32, label_index)``.

    ``t`` is the valid length (up to the last frame with a skeleton); ``label_index`` is ``None``
    when the file has none.  Raises :class:`SourceFormatError` naming the file and the json path
    (e.g. ``data[4].skeleton[1].pose``) of the first problem, or when no frame has a skeleton.
    """
    path = Path(path)
    content = load_json(path)
    if not isinstance(content, dict):
        raise SourceFormatError(
            path, f"expected a json object, found {type(content).__name__}", where="$"
        )
    frames = content.get("data")
    if not isinstance(frames, list):
        raise SourceFormatError(path, "expected a list of frames", where="data")
    label_index = content.get("label_index")
    if label_index is not None and (not _is_int(label_index) or label_index < 0):
        raise SourceFormatError(path, "expected a non-negative integer", where="label_index")

    places, kept, poses, scores = _gather_skeletons(
        frames, path, max_frames, num_person_in, frame_index_base
    )
    xy, conf = _as_arrays(poses, scores, places, path)
    data = _person_array(xy, conf, kept, max_frames, num_person_in, num_person_out, center)
    frame_has_data = data.reshape(NUM_CHANNELS, max_frames, -1).any(axis=(0, 2))
    if not frame_has_data.any():
        raise SourceFormatError(path, f"no skeleton in the first {max_frames} frames", where="data")
    length = int(np.flatnonzero(frame_has_data)[-1]) + 1
    return data[:, :length], label_index


def _gather_skeletons(
    frames: list, path: Path, max_frames: int, num_person_in: int, frame_index_base: int
) -> tuple[list[str], list[tuple[int, int]], list[list], list[list]]:
    """Walk a video's ``data`` list: ``(places, kept, poses, scores)``, one entry per skeleton.

    ``places`` is the json path of each skeleton (for error messages), ``kept`` its
    ``(time step, person slot)`` or ``(-1, -1)`` when it lies beyond ``max_frames`` or
    ``num_person_in``; ``poses`` and ``scores`` are its lists as found (their lengths checked,
    their values not yet).  Every structural problem is an error naming its json path.
    """
    places: list[str] = []
    kept: list[tuple[int, int]] = []
    poses: list[list] = []
    scores: list[list] = []
    seen: dict[int, int] = {}
    for f, frame in enumerate(frames):
        where = f"data[{f}]"
        if not isinstance(frame, dict) or "frame_index" not in frame or "skeleton" not in frame:
            raise SourceFormatError(path, "expected {frame_index, skeleton}", where=where)
        index, skeletons = frame["frame_index"], frame["skeleton"]
        if not _is_int(index) or index < frame_index_base:
            raise SourceFormatError(
                path,
                f"expected an integer >= {frame_index_base}, found {index!r}",
                where=f"{where}.frame_index",
            )
        if index in seen:
            raise SourceFormatError(
                path,
                f"frame_index {index} repeats data[{seen[index]}]",
                where=f"{where}.frame_index",
            )
        seen[index] = f
        if not isinstance(skeletons, list):
            raise SourceFormatError(path, "expected a list of skeletons", where=f"{where}.skeleton")
        step = index - frame_index_base
        for m, skeleton in enumerate(skeletons):
            at = f"{where}.skeleton[{m}]"
            if not isinstance(skeleton, dict):
                raise SourceFormatError(path, "expected {pose, score}", where=at)
            pose, score = skeleton.get("pose"), skeleton.get("score")
            if not isinstance(pose, list) or len(pose) != 2 * NUM_JOINTS:
                _check_numbers(pose, 2 * NUM_JOINTS, path, f"{at}.pose")
            if not isinstance(score, list) or len(score) != NUM_JOINTS:
                _check_numbers(score, NUM_JOINTS, path, f"{at}.score")
            places.append(at)
            kept.append((step, m) if step < max_frames and m < num_person_in else (-1, -1))
            poses.append(pose)
            scores.append(score)
    return places, kept, poses, scores


def _person_array(
    xy: np.ndarray,
    conf: np.ndarray,
    kept: list[tuple[int, int]],
    max_frames: int,
    num_person_in: int,
    num_person_out: int,
    center: bool,
) -> np.ndarray:
    """``(3, max_frames, 18, num_person_out)`` float32: the kept skeletons' ``x, y, score`` at
    their time steps and slots, centred (when ``center``), then per frame the persons sorted by
    descending total score and the first ``num_person_out`` kept (ST-GCN's feeder)."""
    data = np.zeros((NUM_CHANNELS, max_frames, NUM_JOINTS, num_person_in), dtype=np.float32)
    if kept:
        steps, persons = np.array(kept).T
        use = steps >= 0
        steps, persons = steps[use], persons[use]
        data[0, steps, :, persons] = xy[use, :, 0]
        data[1, steps, :, persons] = xy[use, :, 1]
        data[2, steps, :, persons] = conf[use]
    if center:
        data[0] -= CENTER_OFFSET
        data[1] = CENTER_OFFSET - data[1]
        absent = data[2] == 0
        data[0][absent] = 0
        data[1][absent] = 0
    order = np.argsort(-data[2].sum(axis=1), axis=1, kind="stable")  # (T, M_in)
    return np.take_along_axis(data, order[None, :, None, :], axis=3)[..., :num_person_out]


def _read_video(
    path: Path, labels: dict[str, KineticsLabel], label_file: str, **options: Any
) -> Sample:
    """One video of a conversion, its label checked against the label file."""
    entry = labels.get(path.stem)
    if entry is None:
        raise SourceFormatError(path, f"video {path.stem!r} is not in {label_file}")
    data, label_index = read_kinetics_file(path, **options)
    if label_index is not None and label_index != entry.label_index:
        raise SourceFormatError(
            path,
            f"label_index {label_index} disagrees with {label_file} ({entry.label_index})",
            where="label_index",
        )
    return Sample(path.stem, data, entry.label_index)


def convert_kinetics_skeleton(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    max_frames: int = DEFAULT_MAX_FRAMES,
    num_person_in: int = DEFAULT_PERSONS_IN,
    num_person_out: int = DEFAULT_PERSONS_OUT,
    center: bool = True,
    frame_index_base: int = 0,
    class_names: Sequence[str] | None = None,
) -> SkeletonData:
    """Convert a Kinetics-skeleton root (``kinetics_{train,val}`` + label files).

    Class names come from the label files (``label`` by ``label_index``) unless given; a missing
    index is named ``class_<k>``.  The label in a video file must agree with the label file.
    Note: parsed samples (valid frames, float32: up to 130 kB a video) are held in memory
    before writing; the full Kinetics-400 train set needs tens of GB.
    """
    root = Path(root)
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    splits: dict[str, list[str]] = {}
    names_of_class: dict[int, str] = {}
    for folder, split in PHASES:
        video_dir = root / f"kinetics_{folder}"
        label_path = root / f"kinetics_{folder}_label.json"
        if not video_dir.is_dir() or not label_path.is_file():
            raise SourceFormatError(root, f"expected {video_dir.name}/ and {label_path.name}")
        labels = read_kinetics_labels(label_path)
        for entry in labels.values():
            known = names_of_class.setdefault(entry.label_index, entry.label)
            if known != entry.label:
                raise SourceFormatError(
                    label_path,
                    f"label_index {entry.label_index} is both {known!r} and {entry.label!r}",
                )

        files = []
        for path in sorted(video_dir.glob("*.json")):
            entry = labels.get(path.stem)
            if entry is not None and not entry.has_skeleton:  # ST-GCN's ignore_empty_sample
                reason = f"has_skeleton is false in {label_path.name}"
                skipped.append(SkippedFile(str(path), reason))
            else:
                files.append(path)
        read = partial(
            _read_video,
            labels=labels,
            label_file=label_path.name,
            max_frames=max_frames,
            num_person_in=num_person_in,
            num_person_out=num_person_out,
            center=center,
            frame_index_base=frame_index_base,
        )
        phase_samples, phase_skipped = convert_files(files, read)
        skipped.extend(phase_skipped)
        splits[split] = [s.name for s in phase_samples]
        samples.extend(phase_samples)
    names = [s.name for s in samples]
    if len(set(names)) != len(names):
        raise SourceFormatError(root, "a video id appears in both kinetics_train and kinetics_val")
    if class_names is None:
        count = max(names_of_class, default=-1) + 1
        class_names = [names_of_class.get(k, f"class_{k}") for k in range(count)]
    return write_samples(
        out_dir,
        samples,
        LAYOUT,
        class_names,
        splits=splits,
        channels=("x", "y", "score"),
        metadata={
            "source": "kinetics_skeleton",
            "input": str(root),
            "max_frames": max_frames,
            "num_person_in": num_person_in,
            "centered": center,
            "frame_index_base": frame_index_base,
        },
        skipped=skipped,
        num_frames=max_frames,
    )
