"""NW-UCLA Multiview Action3D skeletons, as CTR-GCN distributes them.

Format
------
One json file per sequence, ``aAA_sSS_eEE_vVV.json`` (action, subject, repetition, view)::

    {"file_name": "a01_s01_e00_v01",
     "skeletons": [[[x, y, z] * 20] * T],     # T >= 1 frames of 20 joints, Kinect v1 SDK order
     "label": 1}

Action ids are 1-6, 8, 9, 11, 12 (:data:`UCLA_ACTION_IDS`); ``label`` numbers them 1..10 in that
order in CTR-GCN's files (its feeder subtracts 1), so ``label - label_base`` must equal the
position of the name's action id; a disagreement is an error.  Joints follow the Kinect v1 SDK
order, the ``kinect_v1`` layout (checked on the data: hip centre, spine, shoulder centre and
head rise in that order).

Conversion
----------
Channels ``x, y, z``; one person; ``T`` the longest sequence; the standard cross-view split:
views 1 and 2 ``train``, view 3 ``test``.  Unreadable files are skipped and listed in
``metadata["skipped"]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ...errors import SourceFormatError
from ..format import SkeletonData
from .common import (
    Sample,
    check_finite,
    check_json_numbers,
    convert_files,
    load_json,
    parse_name_fields,
    split_by,
    write_samples,
)

__all__ = ["UCLA_ACTION_IDS", "UCLA_CLASS_NAMES", "read_nw_ucla_file", "convert_nw_ucla"]

LAYOUT = "kinect_v1"
NUM_JOINTS = 20
NUM_COORDS = 3
TRAIN_VIEWS = (1, 2)
#: CTR-GCN's json ``label`` is 1-based over :data:`UCLA_ACTION_IDS`.
DEFAULT_LABEL_BASE = 1
NAME_PATTERN = re.compile(
    r"a(?P<action>\d\d)_s(?P<subject>\d\d)_e(?P<repetition>\d\d)_v(?P<view>\d\d)"
)
UCLA_ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
UCLA_CLASS_NAMES = (
    "pick up with one hand",
    "pick up with two hands",
    "drop trash",
    "walk around",
    "sit down",
    "stand up",
    "donning",
    "doffing",
    "throw",
    "carry",
)


def _locate_shape_error(skeletons: list, path: Path) -> NoReturn:
    """Find the first frame/joint that is not a list of 20 lists of 3 numbers and raise."""
    for t, frame in enumerate(skeletons):
        if not isinstance(frame, list) or len(frame) != NUM_JOINTS:
            found = f"{len(frame)} joints" if isinstance(frame, list) else type(frame).__name__
            raise SourceFormatError(
                path,
                f"expected a list of {NUM_JOINTS} joints, found {found}",
                where=f"skeletons[{t}]",
            )
        for v, joint in enumerate(frame):
            where = f"skeletons[{t}][{v}]"
            if not isinstance(joint, list) or len(joint) != NUM_COORDS:
                found = f"{len(joint)} values" if isinstance(joint, list) else type(joint).__name__
                raise SourceFormatError(path, f"expected [x, y, z], found {found}", where=where)
            check_json_numbers(joint, path, where)
    raise SourceFormatError(
        path, "skeletons is not a [T][20][3] array of numbers", where="skeletons"
    )


def read_nw_ucla_file(
    path: str | os.PathLike, label_base: int = DEFAULT_LABEL_BASE
) -> tuple[str, np.ndarray, int]:
    """Read one NW-UCLA json file: ``(name, skeleton (T, 20, 3) float32, label 0..9)``.

    The label is checked against the action id in ``file_name``.  Raises
    :class:`SourceFormatError` naming the file and the json path of the problem.
    """
    path = Path(path)
    content: Any = load_json(path)
    if not isinstance(content, dict):
        raise SourceFormatError(
            path, f"expected a json object, found {type(content).__name__}", where="$"
        )
    for key in ("file_name", "skeletons", "label"):
        if key not in content:
            raise SourceFormatError(path, f"missing key {key!r}", where="$")
    name = content["file_name"]
    if not isinstance(name, str):
        raise SourceFormatError(path, "expected a string", where="file_name")
    fields = parse_name_fields(name, NAME_PATTERN, path)
    if fields["action"] not in UCLA_ACTION_IDS:
        raise SourceFormatError(
            path, f"action {fields['action']} is not one of {UCLA_ACTION_IDS}", where="file_name"
        )
    skeletons = content["skeletons"]
    if not isinstance(skeletons, list) or not skeletons:
        raise SourceFormatError(path, "expected a non-empty list of frames", where="skeletons")
    try:
        skeleton = np.array(skeletons, dtype=np.float64)
    except (ValueError, TypeError):
        _locate_shape_error(skeletons, path)
    if skeleton.shape[1:] != (NUM_JOINTS, NUM_COORDS):
        _locate_shape_error(skeletons, path)
    check_finite(skeleton, path, lambda t: f"skeletons[{t}]")
    label = content["label"]
    expected = UCLA_ACTION_IDS.index(fields["action"])
    if not isinstance(label, int) or isinstance(label, bool) or label - label_base != expected:
        raise SourceFormatError(
            path,
            f"label {label!r} disagrees with action a{fields['action']:02d} of the name "
            f"(expected {expected + label_base} with label_base={label_base})",
            where="label",
        )
    return name, skeleton.astype(np.float32), expected


def convert_nw_ucla(
    input_dir: str | os.PathLike, out_dir: str | os.PathLike, label_base: int = DEFAULT_LABEL_BASE
) -> SkeletonData:
    """Convert a directory of NW-UCLA json files into the project's format."""
    input_dir = Path(input_dir)
    files = sorted(input_dir.glob("*.json"))
    if not files:
        raise SourceFormatError(input_dir, "no *.json file in this directory")
    views: dict[str, int] = {}

    def read(path: Path) -> Sample:
        name, skeleton, label = read_nw_ucla_file(path, label_base)
        if name in views:
            raise SourceFormatError(
                path, f"file_name {name!r} repeats another file's", where="file_name"
            )
        views[name] = parse_name_fields(name, NAME_PATTERN, path)["view"]
        return Sample(name, skeleton.transpose(2, 0, 1)[..., None], label)

    samples, skipped = convert_files(files, read)
    return write_samples(
        out_dir,
        samples,
        LAYOUT,
        UCLA_CLASS_NAMES,
        splits=split_by(samples, lambda s: views[s.name] in TRAIN_VIEWS),
        channels=("x", "y", "z"),
        metadata={
            "source": "nw_ucla",
            "input": str(input_dir),
            "units": "metres",
            "split": "cross-view: views 1 and 2 train, view 3 test",
        },
        skipped=skipped,
    )
