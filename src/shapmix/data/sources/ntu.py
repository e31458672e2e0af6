"""NTU RGB+D 60/120: raw ``.skeleton`` files to the community's arrays, exactly and fast.

Most skeleton papers train on the ``NTU60_CS.npz`` / ``NTU60_CV.npz`` / ``NTU120_CSub.npz`` /
``NTU120_CSet.npz`` files built by CTR-GCN's three preprocessing scripts
(``get_raw_skes_data.py``, ``get_raw_denoised_data.py``, ``seq_transformation.py``).  This
module reproduces those scripts bit for bit (float32, maximum absolute difference 0), three
stages per file:

1. :func:`parse_skeleton` (stage 1): frames without bodies are dropped (their indices are kept
   in ``frames_drop``); bodies are keyed by body id in order of first appearance, each with its
   joints (x, y, z), colour-image coordinates and the kept-frame indices it appears in; with
   several body ids every body gets ``motion``, the summed per-axis variance of its joints.
2. :func:`denoise` (stage 2): for several body ids, bodies present in :data:`MIN_BODY_FRAMES`
   frames or fewer are dropped; then (first-appearance order, stopping at one body) a body whose
   fraction of "spread-noisy" frames (x-range of the joints > :data:`NOISE_SPREAD_RATIO` times
   the y-range) is at least :data:`NOISE_FRAME_FRACTION` is dropped, otherwise its motion becomes
   ``min(motion, motion over its clean frames)``; the rest are sorted by motion (highest first,
   stable) and assigned to at most two actors by interval overlap; all-zero rows are deleted.
3. :func:`align` (stage 3): every coordinate minus the spine-middle joint of actor 1 in its first
   non-zero frame (an actor's all-zero frames stay zero), zero-padded to :data:`MAX_FRAMES` rows
   of 150 columns (one-actor data gets 75 zero columns, or a copy of actor 1 as in the NTU120
   script when ``duplicate_single_actor`` is set).

:func:`process_skeleton` runs all three; :func:`convert_ntu` converts a directory in parallel
into the project's dataset format or into CTR-GCN's npz, resumably and with bounded memory.

Upstream bugs and ``fix_upstream_bugs``
---------------------------------------
By default the upstream behaviour is reproduced, bugs included.  With ``fix_upstream_bugs=True``
exactly two things change, both in stage 2:

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

Parsing
-------
The parser reads the file's bytes once and works on NumPy arrays: one scan finds every space and
line break; the frame/body structure comes from the count lines (a short Python walk over
frames and bodies, not lines); the field boundaries of all joint lines follow from the space
positions; and the wanted fields (x, y, z, plus colour x, y for stage 1's output) are decoded
by a vectorised decimal parser: each token is read as two 64-bit words and its digits combined
eight at a time (SWAR) into an exact integer mantissa, then divided once by an exact power of
ten, which rounds correctly exactly as ``strtod`` does; the float64 values are cast to float32
like upstream's ``np.array(strings, dtype=np.float32)``.  Anything unusual (tabs, repeated
spaces, lone carriage returns, non-numeric text) makes the fast path step aside for a strict
line-by-line parser that returns the same result or raises :class:`NTUFormatError` naming the
file, the 1-based line and what was expected.  Fields the pipeline does not use (depth-image
coordinates, orientation, tracking states, the body-info fields after the body id, and the
colour coordinates when only the final arrays are wanted) are counted but not interpreted, as
upstream.

pyskl's annotations
-------------------
:func:`pyskl_keypoint` reproduces instead the NTU tool of pyskl (``tools/data/ntu_preproc.py``),
whose denoising differs in details (motion ranking first, spread test on every body, half-open
overlap test, untranslated coordinates, leading/trailing empty frames trimmed, a person swap,
float16); ``convert_ntu(..., fmt="pyskl")`` writes the same annotation pickle as that tool.

Directory conversion
--------------------
:func:`convert_ntu` processes the files in worker processes (``imap`` in order, in chunks) and
appends every sample's valid rows to ``OUT.partial/rows.f32`` with a journal line per finished
file (flushed every :data:`JOURNAL_FLUSH_EVERY` files or :data:`JOURNAL_FLUSH_SECONDS`).  Only
then, with the number of good samples known, the output is written from that staging area one
sample at a time: the project's format through :class:`~shapmix.data.format.DatasetWriter`
(``(N, 3, 300, 25, 2)``, lengths = valid frames, splits ``train``/``test``), CTR-GCN's npz
streamed member by member, or pyskl's pickle (whose float16 annotations are assembled in memory,
as pickling needs).  A run that is interrupted resumes from the journal; the staging
area is deleted when the output is complete.

Deliberate differences from upstream on malformed input (upstream crashes or silently accepts):
non-blank content after the declared frames, a joint count other than 25, a joint line without
12 fields, NaN/Inf or values beyond float32, a body id twice in one frame, no body longer than
:data:`MIN_BODY_FRAMES` frames in a multi-body file and sequences longer than :data:`MAX_FRAMES`
are all :class:`NTUFormatError`.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import multiprocessing
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..format import DatasetFormatError, DatasetWriter
from .pyskl import write_pyskl

__all__ = [
    "MAX_FRAMES",
    "MIN_BODY_FRAMES",
    "NOISE_FRAME_FRACTION",
    "NOISE_SPREAD_RATIO",
    "NTU60_XSUB_TRAIN_SUBJECTS",
    "NTU60_XVIEW_TRAIN_CAMERAS",
    "NTU120_XSUB_TRAIN_SUBJECTS",
    "NTU_ACTION_NAMES",
    "NUM_JOINTS",
    "ConversionReport",
    "DenoisedSkeleton",
    "NTUFormatError",
    "ProcessedSample",
    "RawBody",
    "RawSkeleton",
    "SampleInfo",
    "align",
    "convert_ntu",
    "denoise",
    "is_train_sample",
    "parse_sample_name",
    "parse_skeleton",
    "process_skeleton",
    "pyskl_annotation",
    "pyskl_keypoint",
    "pyskl_splits",
    "read_skeleton",
    "row_to_cthw",
    "split_names",
    "write_skeleton",
]

# --------------------------------------------------------------------------------------------
# Constants of the format and of the upstream method
# --------------------------------------------------------------------------------------------

NUM_JOINTS = 25
"""Kinect v2 joints per body."""
JOINT_FIELDS = 12
"""Fields of a joint line: x y z, depth x y, colour x y, orientation w x y z, tracking state."""
XYZ_FIELDS = (0, 1, 2)
COLOR_FIELDS = (5, 6)
USED_FIELDS = XYZ_FIELDS + COLOR_FIELDS
"""The joint-line fields the pipeline reads, in the order the fast parser decodes them."""
BODY_INFO_FIELDS = 10
"""Fields of a body info line (only field 0, the body id, is used)."""
LINES_PER_BODY = 2 + NUM_JOINTS
"""Body info line, joint-count line, then one line per joint."""
COORDS = 3
ACTOR_COLUMNS = NUM_JOINTS * COORDS  # 75
NUM_ACTORS = 2
ROW_COLUMNS = NUM_ACTORS * ACTOR_COLUMNS  # 150
ORIGIN_JOINT = 1
"""Spine middle (0-based joint 1): stage 3's origin."""
MAX_FRAMES = 300
"""Rows of a final sample (the longest NTU sequence has 300 frames)."""

MIN_BODY_FRAMES = 11
"""Stage 2, length: a body present in this many frames or fewer is noise."""
NOISE_SPREAD_RATIO = 0.8
"""Stage 2, spread: a frame is noisy when x-range > this ratio times y-range."""
NOISE_FRAME_FRACTION = 0.69754
"""Stage 2, spread: a body with at least this fraction of noisy frames is dropped."""

NTU60_NUM_CLASSES = 60
NTU120_NUM_CLASSES = 120
NTU60_MAX_SETUP = 17
"""NTU RGB+D 60 is setups 1-17; NTU120 adds 18-32."""

NTU60_XSUB_TRAIN_SUBJECTS = (
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
)
NTU60_XVIEW_TRAIN_CAMERAS = (2, 3)
NTU120_XSUB_TRAIN_SUBJECTS = (
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49,
    50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
    94, 95, 97, 98, 100, 103,
)
"""The 53 training performers of the NTU120 cross-subject protocol (CTR-GCN's list)."""
XSET_TRAIN_SETUP_PARITY = 0
"""NTU120 cross-setup: even setup ids train, odd ones test."""

DATASET_CLASSES = {"ntu60": NTU60_NUM_CLASSES, "ntu120": NTU120_NUM_CLASSES}
DATASET_BENCHMARKS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}

NTU_ACTION_NAMES = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup",
    "throw", "sitting down", "standing up (from sitting position)", "clapping", "reading",
    "writing", "tear up paper", "wear jacket", "take off jacket", "wear a shoe",
    "take off a shoe", "wear on glasses", "take off glasses", "put on a hat/cap",
    "take off a hat/cap", "cheer up", "hand waving", "kicking something", "reach into pocket",
    "hopping (one foot jumping)", "jump up", "make a phone call/answer phone",
    "playing with phone/tablet", "typing on a keyboard", "pointing to something with finger",
    "taking a selfie", "check time (from watch)", "rub two hands together", "nod head/bow",
    "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling",
    "touch head (headache)", "touch chest (stomachache/heart pain)", "touch back (backache)",
    "touch neck (neckache)", "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quite)", "flick hair",
    "thumb up", "thumb down", "make ok sign", "make victory sign", "staple book",
    "counting money", "cutting nails", "cutting paper (using scissors)", "snapping fingers",
    "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper",
    "ball up paper", "play magic cube", "apply cream on face", "apply cream on hand back",
    "put on bag", "take off bag", "put something into a bag", "take something out of a bag",
    "open a box", "move heavy objects", "shake fist", "throw up cap/hat",
    "hands up (both hands)", "cross arms", "arm circles", "arm swings", "running on the spot",
    "butt kicks (kick backward)", "cross toe touch", "side kick", "yawn", "stretch oneself",
    "blow nose", "hit other person with something", "wield knife towards other person",
    "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person",
    "follow other person", "whisper in other person's ear",
    "exchange things with other person", "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
)
"""The 120 NTU RGB+D action names; the first 60 are NTU RGB+D 60's."""

SKELETON_SUFFIX = ".skeleton"
SAMPLE_NAME_PATTERN = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")

# Bytes the parser looks at.
NEWLINE = ord("\n")
CARRIAGE_RETURN = ord("\r")
SPACE = ord(" ")
DOT = ord(".")
MINUS = ord("-")
ZERO = ord("0")
DECIMAL_DIGITS = 10
MAX_EXACT_MANTISSA_DIGITS = 15
"""Tokens of up to 15 digits (and a dot) have an exact double mantissa (< 10**15 < 2**53);
longer ones are left to the strict parser."""
DECIMAL_PATTERN = re.compile(rb"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
NON_FINITE_WORDS = (b"nan", b"inf", b"infinity")
MAX_COUNT_DIGITS = 9
"""Frame, body and joint counts have at most this many digits."""
ERROR_SNIPPET_CHARS = 40
"""How much of an offending line an error message quotes."""


# --------------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------------


class NTUFormatError(DatasetFormatError):
    """A ``.skeleton`` file (or its processing) is invalid.

    The message reads ``FILE:LINE: what was expected, what was found`` (``FILE: ...`` when the
    problem is not on one line, e.g. no body survives denoising).

    Attributes:
        path: the file (or the name given to the parser).
        line: 1-based line number, or ``None``.
        reason: the message without the location.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.line, self.reason))


@dataclass
class RawBody:
    """One body id of a sequence (stage 1).

    Attributes:
        body_id: the id as written in the file.
        joints: ``(n, 25, 3)`` float32 camera-space x, y, z for the ``n`` frames it appears in.
        colors: ``(n, 25, 2)`` float32 colour-image x, y (``None`` when not read).
        frames: ``(n,)`` int64 indices, among the kept (non-empty) frames, where it appears.
        motion: float32 summed per-axis joint variance (only when the file has several ids).
    """

    body_id: str
    joints: np.ndarray
    colors: np.ndarray | None
    frames: np.ndarray
    motion: np.float32 | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.size)

    @property
    def interval(self) -> np.ndarray:
        """Upstream's frame indices: first appearance, then +1 per appearance (packed)."""
        return self.frames[0] + np.arange(self.num_frames, dtype=np.int64)

    def span(self, packed: bool) -> tuple[int, int]:
        """``[start, end]`` frames: upstream's packed span, or the real one."""
        start = int(self.frames[0])
        end = start + self.num_frames - 1 if packed else int(self.frames[-1])
        return start, end

    def placement(self, packed: bool) -> np.ndarray | slice:
        """Rows this body fills in a ``(T, ...)`` array (packed as upstream, or real)."""
        if packed:
            start = int(self.frames[0])
            return slice(start, start + self.num_frames)
        return self.frames


@dataclass
class RawSkeleton:
    """Stage 1 of one file.

    Attributes:
        name: sample name (file stem).
        num_frames_in_file: frames declared (and present) in the file.
        frames_drop: ``(k,)`` int64 0-based indices of the frames without bodies.
        bodies: bodies in order of first appearance.
    """

    name: str
    num_frames_in_file: int
    frames_drop: np.ndarray
    bodies: list[RawBody]

    @property
    def num_frames_valid(self) -> int:
        return self.num_frames_in_file - int(self.frames_drop.size)

    @property
    def body_ids(self) -> list[str]:
        return [body.body_id for body in self.bodies]


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

    @property
    def num_actors(self) -> int:
        return self.joints.shape[1] // ACTOR_COLUMNS


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

    def to_cthw(self) -> np.ndarray:
        """The valid frames as a ``(3, T, 25, 2)`` sample of the project's format."""
        return row_to_cthw(self.row[: self.num_frames])


def row_to_cthw(rows: np.ndarray) -> np.ndarray:
    """``(T, 150)`` rows (actor-major, joint, xyz) to ``(3, T, 25, 2)`` (CTR-GCN's feeder)."""
    frames = rows.shape[0]
    return rows.reshape(frames, NUM_ACTORS, NUM_JOINTS, COORDS).transpose(3, 0, 2, 1)


# --------------------------------------------------------------------------------------------
# Stage 1: parsing
# --------------------------------------------------------------------------------------------


@dataclass
class _Structure:
    """What the count lines say: one entry per body occurrence (frame, body) in file order."""

    num_frames_in_file: int
    frames_drop: list[int]
    occ_frame: list[int]  # kept-frame index of each occurrence
    occ_body: list[str]  # body id of each occurrence
    occ_info_line: list[int]  # 0-based line index of each occurrence's body info line


def _snippet(line: bytes) -> str:
    text = line[:ERROR_SNIPPET_CHARS].decode("ascii", errors="backslashreplace")
    return repr(text + ("..." if len(line) > ERROR_SNIPPET_CHARS else ""))


def _walk_structure(line_at: Callable[[int], bytes], num_lines: int, path: str) -> _Structure:
    """Follow the count lines (frames, bodies per frame, joints per body).

    ``line_at(i)`` returns line ``i`` (0-based) without its line ending.  Validates the counts,
    the body ids and that nothing but blank lines follows the declared frames (trailing blank
    lines are not content: running out of lines reads "file ends early").
    """

    while num_lines and not line_at(num_lines - 1).strip():
        num_lines -= 1  # trailing blank lines (and the empty "line" after the last newline)
    if num_lines == 0:
        raise NTUFormatError(path, 1, "empty file: expected the number of frames")

    def count_at(index: int, what: str) -> int:
        if index >= num_lines:
            raise NTUFormatError(path, index + 1, f"file ends early: expected {what}")
        text = line_at(index).strip()
        if not text.isdigit() or len(text) > MAX_COUNT_DIGITS:
            raise NTUFormatError(
                path, index + 1,
                f"expected {what} (an integer of at most {MAX_COUNT_DIGITS} digits), "
                f"got {_snippet(text)}",
            )
        return int(text)

    num_frames = count_at(0, "the number of frames")
    if num_frames == 0:
        raise NTUFormatError(path, 1, "the file declares 0 frames")
    frames_drop: list[int] = []
    occ_frame: list[int] = []
    occ_body: list[str] = []
    occ_info_line: list[int] = []
    line = 1
    kept = 0
    for frame in range(num_frames):
        num_bodies = count_at(line, f"the number of bodies of frame {frame + 1} of {num_frames}")
        line += 1
        if num_bodies == 0:
            frames_drop.append(frame)
            continue
        seen: set[str] = set()
        for body in range(num_bodies):
            if line >= num_lines:
                raise NTUFormatError(
                    path, line + 1,
                    f"file ends early: expected the info line of body {body + 1} of "
                    f"{num_bodies} in frame {frame + 1}",
                )
            fields = line_at(line).split()
            if not fields:
                raise NTUFormatError(
                    path, line + 1,
                    f"expected a body info line ({BODY_INFO_FIELDS} fields, the body id "
                    "first), got an empty line",
                )
            try:
                body_id = fields[0].decode("ascii")
            except UnicodeDecodeError:
                raise NTUFormatError(
                    path, line + 1, f"expected a body id, got {_snippet(fields[0])}"
                ) from None
            if body_id in seen:
                raise NTUFormatError(
                    path, line + 1, f"body id {body_id} appears twice in frame {frame + 1}"
                )
            seen.add(body_id)
            joints = count_at(line + 1, "the joint count")
            if joints != NUM_JOINTS:
                raise NTUFormatError(
                    path, line + 2, f"expected the joint count {NUM_JOINTS}, got {joints}"
                )
            if line + LINES_PER_BODY > num_lines:
                raise NTUFormatError(
                    path, num_lines + 1,
                    f"file ends early (truncated mid-frame): frame {frame + 1} body "
                    f"{body + 1} needs {NUM_JOINTS} joint lines from line {line + 3}",
                )
            occ_frame.append(kept)
            occ_body.append(body_id)
            occ_info_line.append(line)
            line += LINES_PER_BODY
        kept += 1
    if line < num_lines:
        raise NTUFormatError(
            path, line + 1,
            f"the file declares {num_frames} frames but content continues: "
            f"{_snippet(line_at(line))}",
        )
    if not occ_frame:
        raise NTUFormatError(path, 1, f"all {num_frames} frames have 0 bodies")
    return _Structure(num_frames, frames_drop, occ_frame, occ_body, occ_info_line)


def _joint_line_indices(structure: _Structure) -> np.ndarray:
    """``(K * 25,)`` 0-based line index of every joint line, occurrence-major."""
    first = np.asarray(structure.occ_info_line, dtype=np.int64) + 2
    return (first[:, None] + np.arange(NUM_JOINTS, dtype=np.int64)).ravel()


def _decimal_value(token: bytes) -> float | None:
    """The value of one decimal token, ``None`` when it is not a decimal number."""
    if DECIMAL_PATTERN.match(token) is None:
        return None
    return float(token)


_WORD_BYTES = 8
_ROW_BYTES = 2 * _WORD_BYTES  # a token right-aligned in two 64-bit words: 16 > 15 characters
_POW10 = 10.0 ** np.arange(_ROW_BYTES)  # exact doubles (10**k is exact up to k = 22)


def _repeat_byte(value: int) -> np.uint64:
    return np.uint64(int.from_bytes(bytes([value]) * _WORD_BYTES, "little"))


_LOW_BYTE_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(_WORD_BYTES + 1)], dtype=np.uint64)
"""``[n]``: the mask of a little-endian word's first ``n`` characters (low-order bytes)."""
_ZEROS = _repeat_byte(ZERO)
_ONES = _repeat_byte(1)
_HIGH_BITS = _repeat_byte(0x80)
_DOTS = _repeat_byte(DOT)
_ABOVE_NINE = _repeat_byte(0x80 - (ZERO + DECIMAL_DIGITS))  # a byte > '9' gets its high bit
_BYTE_INDEX = np.uint64(0x0001020304050607)  # times 256**k, the top byte is k
_DOT_TO_ZERO_SHIFT = np.uint64(6)  # the flag 0x80 of a dot byte, shifted: 2 = '0' - '.'
_FLAG_SHIFT = np.uint64(7)
_TOP_BYTE_SHIFT = np.uint64(56)
_EIGHT = np.uint64(8)
_SIXTEEN = np.uint64(16)
_THIRTY_TWO = np.uint64(32)
_TEN = np.uint64(10)
_PAIR_MASK = np.uint64(0x000000FF000000FF)
_PAIR_MULTIPLIER = np.uint64(100 + (1000000 << 32))
_QUAD_MULTIPLIER = np.uint64(1 + (10000 << 32))
_EIGHT_DIGITS = np.uint64(10**8)


def _lowest_dot(words: np.ndarray) -> np.ndarray:
    """Per word, the high bit (0x80 << 8k) of its first '.' byte k, or 0 (no dot).

    The classic "has zero byte" test on ``word ^ '........'``: its lowest flagged byte is
    exact (borrows only ever flag bytes above a zero byte).
    """
    x = words ^ _DOTS
    flags = (x - _ONES) & ~x & _HIGH_BITS
    return flags & (~flags + np.uint64(1))


def _eight_digits(words: np.ndarray) -> np.ndarray:
    """The integer value of 8 ASCII digits per little-endian word (first character highest)."""
    value = words - _ZEROS
    value = value * _TEN + (value >> _EIGHT)  # 2-digit lanes
    return (
        (value & _PAIR_MASK) * _PAIR_MULTIPLIER
        + ((value >> _SIXTEEN) & _PAIR_MASK) * _QUAD_MULTIPLIER
    ) >> _THIRTY_TWO


def _parse_decimals(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Decode the decimal tokens ``buf[starts[i]:ends[i]]`` to float64, vectorised and exact.

    Each token is read right-aligned as two little-endian 64-bit words (two unaligned gathers),
    the bytes before it (and its minus sign) become ``'0'``, its dot becomes ``'0'`` too, and
    the digits are combined eight at a time with the classic SWAR multiply-shift steps into an
    exact integer ``A`` (the dot counted as a zero digit).  With ``f`` fraction digits,
    ``A = high * 10**(f+1) + low`` and the mantissa is ``M = A - 9 * high * 10**f``; the value
    is ``M / 10**f``.  ``M < 10**15`` and ``10**f`` are exact doubles, so the one division is
    correctly rounded, exactly like ``strtod``.  Tokens that are not plain ``-ddd.ddd``
    (exponents, plus signs) are rare and decoded one by one by Python's ``float``.

    Returns ``None`` when a token is not a decimal number or is longer than
    :data:`MAX_EXACT_MANTISSA_DIGITS` (the caller then uses the strict parser, which reports
    the problem precisely).
    """
    count = starts.size
    if count == 0:
        return np.empty(0)
    negative = buf[starts] == MINUS
    body = ends - starts - negative  # digits and dot
    if body.min() < 1 or body.max() > MAX_EXACT_MANTISSA_DIGITS:
        return None
    if ends.min() < _ROW_BYTES:  # too close to the file start for two words: pad a copy
        buf = np.concatenate([np.full(_ROW_BYTES, ZERO, dtype=np.uint8), buf])
        starts, ends = starts + _ROW_BYTES, ends + _ROW_BYTES
    words = np.ndarray((buf.size - _WORD_BYTES + 1,), dtype="<u8", buffer=buf, strides=(1,))
    left = words[ends - _ROW_BYTES].astype(np.uint64)  # row characters 0-7
    right = words[ends - _WORD_BYTES].astype(np.uint64)  # row characters 8-15
    pad = _ROW_BYTES - body  # leading row characters that are not digits or the dot
    left_mask = _LOW_BYTE_MASKS[np.minimum(pad, _WORD_BYTES)]
    right_mask = _LOW_BYTE_MASKS[np.maximum(pad - _WORD_BYTES, 0)]
    left = (left & ~left_mask) | (_ZEROS & left_mask)
    right = (right & ~right_mask) | (_ZEROS & right_mask)
    left_dot = _lowest_dot(left)
    right_dot = _lowest_dot(right)
    left += left_dot >> _DOT_TO_ZERO_SHIFT
    right += right_dot >> _DOT_TO_ZERO_SHIFT
    not_digit = ((left + _ABOVE_NINE) | (left - _ZEROS) | (right + _ABOVE_NINE)
                 | (right - _ZEROS)) & _HIGH_BITS
    irregular = (not_digit != 0) | ((left_dot != 0) & (right_dot != 0))
    has_dot = (left_dot | right_dot) != 0
    if (body <= has_dot).any():
        return None  # ".", "-.": no digit
    integer = (_eight_digits(left) * _EIGHT_DIGITS + _eight_digits(right)).astype(np.float64)
    dot_column = np.where(
        left_dot != 0,
        ((left_dot >> _FLAG_SHIFT) * _BYTE_INDEX) >> _TOP_BYTE_SHIFT,
        _EIGHT + (((right_dot >> _FLAG_SHIFT) * _BYTE_INDEX) >> _TOP_BYTE_SHIFT),
    )
    dotted = np.flatnonzero(has_dot)
    scale = _POW10[_ROW_BYTES - 1 - dot_column[dotted].astype(np.int64)]
    with_dot = integer[dotted]
    # floor(A / 10**f) = 10 * high exactly: the fraction low / 10**f stays below 1 by more
    # than the quotient's rounding error, as A < 10**15.
    high = np.floor(with_dot / scale) / DECIMAL_DIGITS
    integer[dotted] = (with_dot - (DECIMAL_DIGITS - 1) * high * scale) / scale
    np.negative(integer, out=integer, where=negative)
    for row in np.flatnonzero(irregular).tolist():
        value = _decimal_value(buf[starts[row]: ends[row]].tobytes())
        if value is None:
            return None
        integer[row] = value
    return integer


def _fast_fields(
    text: bytes, path: str, fields: tuple[int, ...]
) -> tuple[_Structure, np.ndarray] | None:
    """The joint-line ``fields`` of a file in the common layout, ``None`` for the strict parser.

    The common layout: LF or CRLF line endings, fields separated by single spaces (no empty
    field anywhere), no other control characters, every wanted field a plain decimal number.
    Returns the structure and the ``(K, 25, len(fields))`` float64 values.
    """
    buf = np.frombuffer(text, dtype=np.uint8)
    separators = np.flatnonzero(buf <= SPACE)
    kinds = buf[separators]
    is_newline = kinds == NEWLINE
    is_space = kinds == SPACE
    is_return = kinds == CARRIAGE_RETURN
    if not (is_newline | is_space | is_return).all():
        return None  # tabs or other control characters
    adjacent = np.flatnonzero(np.diff(separators) == 1)
    if (
        (buf.size and buf[0] == SPACE)
        or is_space[adjacent].any()
        or is_space[adjacent + 1].any()
    ):
        return None  # an empty field somewhere: leading, trailing or repeated spaces
    newlines = separators[is_newline]
    spaces = separators[is_space]
    returns = separators[is_return]
    if returns.size and (returns[-1] + 1 >= buf.size or (buf[returns + 1] != NEWLINE).any()):
        return None  # a carriage return that does not end a line
    line_starts = np.empty(newlines.size + 1, dtype=np.int64)
    line_starts[0] = 0
    line_starts[1:] = newlines + 1
    line_ends = np.empty(newlines.size + 1, dtype=np.int64)
    line_ends[:-1] = newlines
    line_ends[-1] = buf.size
    if returns.size:
        line_ends[np.searchsorted(newlines, returns + 1)] -= 1  # CRLF: the line ends at CR
    starts_list = line_starts.tolist()
    ends_list = line_ends.tolist()
    structure = _walk_structure(
        lambda i: text[starts_list[i]: ends_list[i]], len(starts_list), path
    )
    joint_lines = _joint_line_indices(structure)
    j_start = line_starts[joint_lines]
    j_end = line_ends[joint_lines]
    first_space = np.searchsorted(spaces, j_start)
    if (np.searchsorted(spaces, j_end) - first_space != JOINT_FIELDS - 1).any():
        return None  # a joint line without exactly 12 fields
    bounds = spaces[first_space[:, None] + np.arange(max(fields) + 1)]  # spaces ending fields
    field_starts = np.empty((joint_lines.size, len(fields)), dtype=np.int64)
    field_ends = np.empty_like(field_starts)
    for column, field_index in enumerate(fields):
        field_starts[:, column] = j_start if field_index == 0 else bounds[:, field_index - 1] + 1
        field_ends[:, column] = bounds[:, field_index]
    values = _parse_decimals(buf, field_starts.ravel(), field_ends.ravel())
    if values is None:
        return None
    return structure, values.reshape(-1, NUM_JOINTS, len(fields))


def _strict_fields(
    text: bytes, path: str, fields: tuple[int, ...]
) -> tuple[_Structure, np.ndarray]:
    """Line-by-line parser: slower, accepts any ASCII whitespace, names every problem."""
    lines = text.split(b"\n")
    structure = _walk_structure(lines.__getitem__, len(lines), path)
    joint_lines = _joint_line_indices(structure)
    values = np.empty((joint_lines.size, len(fields)), dtype=np.float64)
    for row, index in enumerate(joint_lines.tolist()):
        tokens = lines[index].split()
        if len(tokens) != JOINT_FIELDS:
            raise NTUFormatError(
                path, index + 1,
                f"expected a joint line of {JOINT_FIELDS} fields, got {len(tokens)}: "
                f"{_snippet(lines[index])}",
            )
        for column, field_index in enumerate(fields):
            token = tokens[field_index]
            value = _decimal_value(token)
            if value is None:
                word = token.lower().lstrip(b"+-")
                kind = "NaN/Inf" if word in NON_FINITE_WORDS else "non-numeric"
                raise NTUFormatError(
                    path, index + 1,
                    f"expected a number in field {field_index + 1}, got {kind} "
                    f"{_snippet(token)}",
                )
            values[row, column] = value
    return structure, values.reshape(-1, NUM_JOINTS, len(fields))


def _normalise_line_endings(data: bytes) -> bytes:
    if b"\r" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def parse_skeleton(data: bytes, name: str = "<bytes>", colors: bool = True) -> RawSkeleton:
    """Stage 1 of a ``.skeleton`` file given as bytes (``name`` appears in errors).

    Args:
        data: the file's content.
        name: the file name or path, used in errors and for the sample name.
        colors: also read the colour-image coordinates (stage 1's ``colors``).  Stages 2 and 3
            never use them, so :func:`process_skeleton` skips them (and does not validate
            them); the bodies' ``colors`` are then ``None``.

    Raises:
        NTUFormatError: the content is not a valid skeleton file.
    """
    path = str(name)
    fields = USED_FIELDS if colors else XYZ_FIELDS
    parsed = _fast_fields(data, path, fields)
    if parsed is None:
        parsed = _strict_fields(_normalise_line_endings(data), path, fields)
    structure, values = parsed
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported just below
        fields32 = values.astype(np.float32)
    if not np.isfinite(fields32).all():
        occurrence, joint, column = np.argwhere(~np.isfinite(fields32))[0]
        line = structure.occ_info_line[occurrence] + 2 + joint + 1
        raise NTUFormatError(
            path, int(line),
            f"field {fields[column] + 1} is NaN/Inf or beyond float32 "
            f"({values[occurrence, joint, column]!r})",
        )
    return _assemble(Path(path).name.removesuffix(SKELETON_SUFFIX), structure, fields32)


def _assemble(name: str, structure: _Structure, fields32: np.ndarray) -> RawSkeleton:
    """Group the occurrences by body id (first-appearance order) and compute motion."""
    groups: dict[str, list[int]] = {}
    for occurrence, body_id in enumerate(structure.occ_body):
        groups.setdefault(body_id, []).append(occurrence)
    occ_frame = np.asarray(structure.occ_frame, dtype=np.int64)
    xyz = slice(0, len(XYZ_FIELDS))
    color = slice(len(XYZ_FIELDS), len(USED_FIELDS))
    with_colors = fields32.shape[-1] == len(USED_FIELDS)
    bodies = []
    for body_id, occurrences in groups.items():
        take = np.asarray(occurrences, dtype=np.int64)
        picked = fields32[take]
        bodies.append(
            RawBody(
                body_id=body_id,
                joints=np.ascontiguousarray(picked[..., xyz]),
                colors=np.ascontiguousarray(picked[..., color]) if with_colors else None,
                frames=occ_frame[take],
            )
        )
    if len(bodies) > 1:
        for body in bodies:
            body.motion = _motion(body.joints)
    return RawSkeleton(
        name=name,
        num_frames_in_file=structure.num_frames_in_file,
        frames_drop=np.asarray(structure.frames_drop, dtype=np.int64),
        bodies=bodies,
    )


def read_skeleton(path: str | os.PathLike, colors: bool = True) -> RawSkeleton:
    """Stage 1 of the ``.skeleton`` file at ``path`` (see :func:`parse_skeleton`)."""
    path = Path(path)
    return parse_skeleton(path.read_bytes(), str(path), colors)


# --------------------------------------------------------------------------------------------
# Stage 2: denoising and actors
# --------------------------------------------------------------------------------------------


def _motion(joints: np.ndarray) -> np.float32:
    """Upstream's motion: sum over x, y, z of the variance of all joint positions (float32).

    Computed on a contiguous ``(n * 25, 3)`` float32 array as upstream, so the float32
    accumulation order (and thus every bit) is the same.
    """
    pooled = np.ascontiguousarray(joints, dtype=np.float32).reshape(-1, COORDS)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd coordinates: inf, as upstream
        return np.sum(np.var(pooled, axis=0))


def _noisy_frames(joints: np.ndarray) -> np.ndarray:
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
            noisy = _noisy_frames(body.joints)
            num_noisy = int(noisy.sum())
            if num_noisy == 0:
                continue
            if num_noisy / float(body.num_frames) >= NOISE_FRAME_FRACTION:
                kept.remove(body)
                discarded_ids.append(body.body_id)
            else:
                clean_motion = _motion(body.joints[~noisy])
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


# --------------------------------------------------------------------------------------------
# Stage 3: translation and padding
# --------------------------------------------------------------------------------------------


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
    if isinstance(source, (bytes, bytearray, memoryview)):
        where = name or "<bytes>"
        raw = parse_skeleton(bytes(source), where, colors=False)
    else:
        raw = read_skeleton(source, colors=False)
        where = str(source)
    denoised = denoise(raw, fix_upstream_bugs)
    row = align(denoised.joints, max_frames, duplicate_single_actor, where)
    return ProcessedSample(raw.name, row, denoised.joints.shape[0], raw, denoised)


# --------------------------------------------------------------------------------------------
# Sample names and benchmarks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleInfo:
    """Metadata carried by an NTU sample name ``SsssCcccPpppRrrrAaaa`` (all 1-based)."""

    name: str
    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        """0-based class id."""
        return self.action - 1


def parse_sample_name(name: str | os.PathLike) -> SampleInfo:
    """Parse ``S001C002P003R002A013`` (a path or a ``.skeleton`` suffix is allowed).

    Raises:
        ValueError: the name does not follow the pattern or has a zero id.
    """
    stem = Path(name).name.removesuffix(SKELETON_SUFFIX)
    match = SAMPLE_NAME_PATTERN.match(stem)
    if match is None:
        raise ValueError(f"{name!r} is not an NTU sample name (expected SsssCcccPpppRrrrAaaa)")
    ids = [int(group) for group in match.groups()]
    if min(ids) < 1:
        raise ValueError(f"{name!r}: the ids of an NTU sample name are 1-based")
    return SampleInfo(stem, *ids)


def _check_benchmark(dataset: str, benchmark: str) -> None:
    if dataset not in DATASET_BENCHMARKS:
        raise ValueError(
            f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_BENCHMARKS)}"
        )
    if benchmark not in DATASET_BENCHMARKS[dataset]:
        raise ValueError(
            f"{dataset} has benchmarks {DATASET_BENCHMARKS[dataset]}, not {benchmark!r}"
        )


def _group_id(info: SampleInfo, benchmark: str) -> int:
    """The id the upstream scripts group rows by (performer, camera or setup)."""
    return {"xsub": info.performer, "xview": info.camera, "xset": info.setup}[benchmark]


def is_train_sample(info: SampleInfo | str, dataset: str, benchmark: str) -> bool:
    """Whether a sample is in the training part of a standard benchmark.

    ``ntu60``: ``xsub`` (the 20 training performers), ``xview`` (cameras 2 and 3);
    ``ntu120``: ``xsub`` (the 53 training performers), ``xset`` (even setups).
    """
    _check_benchmark(dataset, benchmark)
    if not isinstance(info, SampleInfo):
        info = parse_sample_name(info)
    if benchmark == "xview":
        return info.camera in NTU60_XVIEW_TRAIN_CAMERAS
    if benchmark == "xset":
        return info.setup % 2 == XSET_TRAIN_SETUP_PARITY
    subjects = NTU60_XSUB_TRAIN_SUBJECTS if dataset == "ntu60" else NTU120_XSUB_TRAIN_SUBJECTS
    return info.performer in subjects


def split_names(
    names: Iterable[str], dataset: str, benchmark: str
) -> tuple[list[str], list[str]]:
    """``(train, test)`` names in the upstream row order.

    Upstream concatenates, for each group id in ascending order (performer, camera or setup),
    the samples of that group in list order: a stable sort by the group id.
    """
    _check_benchmark(dataset, benchmark)
    infos = [parse_sample_name(name) for name in names]
    ordered = sorted(infos, key=lambda info: _group_id(info, benchmark))
    train = [info.name for info in ordered if is_train_sample(info, dataset, benchmark)]
    test = [info.name for info in ordered if not is_train_sample(info, dataset, benchmark)]
    return train, test


# --------------------------------------------------------------------------------------------
# pyskl's convention (kennymckormick/pyskl, tools/data/ntu_preproc.py)
# --------------------------------------------------------------------------------------------

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
        noisy = _noisy_frames(body.joints)
        num_valid = body.num_frames - int(noisy.sum())
        if num_valid < body.num_frames:
            if 1 - num_valid / body.num_frames >= NOISE_FRAME_FRACTION:
                continue
            motion[body.body_id] = min(motion[body.body_id], _motion(body.joints[~noisy]))
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


def _pyskl_record(name: str, keypoint: np.ndarray) -> dict:
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
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = parse_skeleton(bytes(source), name or "<bytes>", colors=False)
    else:
        raw = read_skeleton(source, colors=False)
    return _pyskl_record(raw.name, pyskl_keypoint(raw))


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


# --------------------------------------------------------------------------------------------
# Writing .skeleton files
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Directory conversion
# --------------------------------------------------------------------------------------------

FORMATS = ("shapmix", "ctrgcn-npz", "pyskl")
STAGING_SUFFIX = ".partial"
STAGING_ROWS = "rows.f32"
STAGING_JOURNAL = "journal.tsv"
STAGING_SETTINGS = "settings.json"
STAGING_VERSION = 1
JOURNAL_FLUSH_EVERY = 64
"""Results between journal flushes (also flushed every JOURNAL_FLUSH_SECONDS)."""
JOURNAL_FLUSH_SECONDS = 2.0
DEFAULT_CHUNKSIZE = 8
"""Files handed to a worker at a time."""
FINALIZE_RELEASE_EVERY = 256
"""Samples between releasing the written output pages from this process's memory."""
ROW_BYTES = ROW_COLUMNS * np.dtype(np.float32).itemsize
STATUS_OK = "ok"
STATUS_FAILED = "failed"
SKIPPED_METADATA_KEY = "skipped"
"""Metadata key listing the files a conversion left out (``{"file", "reason"}`` each)."""
MISSING_REASON = "listed among the samples with missing skeletons"


@dataclass
class ConversionReport:
    """What :func:`convert_ntu` did.

    Attributes:
        output: the dataset directory or npz file written.
        fmt, dataset, benchmark: as requested.
        num_candidates: sample files considered (after the missing-skeleton list).
        converted: names converted, in dataset order.
        num_train, num_test: sizes of the two parts.
        skipped_missing: names skipped because the missing-skeleton list names them.
        failures: ``(name, reason)`` of every other file that was not converted.
        resumed: files found already finished by an interrupted earlier run.
        seconds: wall time of this call.
    """

    output: Path
    fmt: str
    dataset: str
    benchmark: str
    num_candidates: int = 0
    converted: list[str] = field(default_factory=list)
    num_train: int = 0
    num_test: int = 0
    skipped_missing: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0
    seconds: float = 0.0

    @property
    def files_per_second(self) -> float:
        processed = self.num_candidates - self.resumed
        return processed / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        head = (
            f"{self.output}: {len(self.converted)} of {self.num_candidates} samples converted "
            f"({self.num_train} train, {self.num_test} test; {self.benchmark}), "
            f"{len(self.skipped_missing)} skipped as missing skeletons, "
            f"{len(self.failures)} failed, {self.resumed} resumed, {self.seconds:.1f} s"
        )
        lines = [head]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.failures]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    index: int
    name: str
    path: str


@dataclass
class _Result:
    index: int
    status: str
    rows: np.ndarray | None
    detail: str


def _guarded(task: _Task, compute: Callable[[], tuple[np.ndarray, str]]) -> _Result:
    """Run a worker's ``compute`` (rows and detail); every problem becomes a failed result."""
    try:
        rows, detail = compute()
    except DatasetFormatError as error:
        return _Result(task.index, STATUS_FAILED, None, str(error))
    except OSError as error:
        return _Result(task.index, STATUS_FAILED, None, f"{task.path}: cannot read ({error})")
    except Exception as error:  # noqa: BLE001 - a broken file must never stop the whole run
        return _Result(
            task.index, STATUS_FAILED, None,
            f"{task.path}: unexpected error {type(error).__name__}: {error}",
        )
    return _Result(task.index, STATUS_OK, rows, detail)


def _process_task(
    task: _Task, fix_upstream_bugs: bool, duplicate_single_actor: bool, max_frames: int
) -> _Result:
    """Worker: one file to its valid rows (CTR-GCN's convention)."""

    def compute() -> tuple[np.ndarray, str]:
        sample = process_skeleton(
            task.path, fix_upstream_bugs=fix_upstream_bugs,
            duplicate_single_actor=duplicate_single_actor, max_frames=max_frames,
        )
        return sample.row[: sample.num_frames], ""

    return _guarded(task, compute)


def _process_pyskl_task(task: _Task) -> _Result:
    """Worker for pyskl's convention: the keypoints as ``(T, 150)`` rows (person-major, zero
    columns for a single person) and, as the result's detail, the number of persons ``M``."""

    def compute() -> tuple[np.ndarray, str]:
        keypoint = pyskl_keypoint(read_skeleton(task.path, colors=False))
        persons, frames = keypoint.shape[:2]
        rows = np.zeros((frames, ROW_COLUMNS), dtype=np.float32)
        rows[:, : persons * ACTOR_COLUMNS] = keypoint.transpose(1, 0, 2, 3).reshape(frames, -1)
        return rows, str(persons)

    return _guarded(task, compute)


class _Staging:
    """Append-only results of a conversion, next to its output, so a run can resume.

    ``rows.f32`` holds the valid rows of every finished sample back to back; ``journal.tsv``
    has one line ``index, status, offset (rows), frames, detail`` per finished file (detail: the
    failure reason; for pyskl's convention, the number of persons of a finished sample) and is
    only written after the rows it points to have been flushed.
    """

    def __init__(self, root: Path, settings: dict) -> None:
        self.root = root
        self.rows_path = root / STAGING_ROWS
        self.journal_path = root / STAGING_JOURNAL
        self.settings_path = root / STAGING_SETTINGS
        self.entries: dict[int, tuple[str, int, int, str]] = {}
        if root.is_dir() and self._settings_match(settings):
            self._load()
        else:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            self.settings_path.write_text(json.dumps(settings, indent=1), encoding="utf-8")
        self.resumed = len(self.entries)
        # kept open for the whole run; closed by close() (convert_ntu's finally)
        self._rows = open(self.rows_path, "ab")  # noqa: SIM115
        self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115
        self._next_row = self._rows.tell() // ROW_BYTES
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def _settings_match(self, settings: dict) -> bool:
        try:
            return json.loads(self.settings_path.read_text(encoding="utf-8")) == settings
        except (OSError, ValueError):
            return False

    def _load(self) -> None:
        """Read the journal's complete lines; cut the rows file after the last recorded row."""
        end_row = 0
        rows_size = self.rows_path.stat().st_size if self.rows_path.exists() else 0
        good = []
        if self.journal_path.exists():
            text = self.journal_path.read_text(encoding="utf-8")
            for line in text.split("\n")[:-1]:  # an unterminated last line is unfinished
                parts = line.split("\t", 4)
                try:
                    index, status = int(parts[0]), parts[1]
                    offset, frames, detail = int(parts[2]), int(parts[3]), parts[4]
                except (ValueError, IndexError):
                    break  # a damaged line: it and everything after it is redone
                if status == STATUS_OK and (offset + frames) * ROW_BYTES > rows_size:
                    break
                self.entries[index] = (status, offset, frames, detail)
                end_row = max(end_row, offset + frames)
                good.append(line + "\n")
        with open(self.journal_path, "w", encoding="utf-8") as handle:
            handle.write("".join(good))
        with open(self.rows_path, "ab") as handle:
            handle.truncate(end_row * ROW_BYTES)

    def add(self, result: _Result) -> None:
        frames = 0
        offset = self._next_row
        if result.status == STATUS_OK:
            rows = np.ascontiguousarray(result.rows, dtype=np.float32)
            frames = rows.shape[0]
            self._rows.write(rows.tobytes())
            self._next_row += frames
        detail = result.detail.replace("\t", " ").replace("\n", " ")
        self.entries[result.index] = (result.status, offset, frames, detail)
        self._pending.append(f"{result.index}\t{result.status}\t{offset}\t{frames}\t{detail}\n")
        if (
            len(self._pending) >= JOURNAL_FLUSH_EVERY
            or time.monotonic() - self._last_flush >= JOURNAL_FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        self._rows.flush()
        if self._pending:
            self._journal.write("".join(self._pending))
            self._journal.flush()
            self._pending.clear()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        os.fsync(self._rows.fileno())
        os.fsync(self._journal.fileno())
        self._rows.close()
        self._journal.close()

    def read_rows(self, handle, index: int) -> np.ndarray:
        """The ``(T, 150)`` rows of a finished sample (plain reads, no mapping)."""
        _, offset, frames, _ = self.entries[index]
        handle.seek(offset * ROW_BYTES)
        data = handle.read(frames * ROW_BYTES)
        return np.frombuffer(data, dtype=np.float32).reshape(frames, ROW_COLUMNS)


def _in_dataset(info: SampleInfo, dataset: str, fmt: str) -> bool:
    """Whether a file of the directory belongs to ``dataset``: pyskl's tool keeps every setup
    and selects by action; the CTR-GCN lists of NTU60 are setups 1-17."""
    if fmt == "pyskl":
        return info.action <= DATASET_CLASSES[dataset]
    return dataset != "ntu60" or info.setup <= NTU60_MAX_SETUP


def _list_candidates(
    raw_dir: Path, dataset: str, sample_names: Iterable[str] | None, fmt: str
) -> list[tuple[str, Path]]:
    if sample_names is None:
        found = sorted(raw_dir.glob(f"*{SKELETON_SUFFIX}"))
        names = []
        for path in found:
            stem = path.name.removesuffix(SKELETON_SUFFIX)
            try:
                info = parse_sample_name(stem)
            except ValueError:
                names.append(stem)  # reported as a failure with the reason
                continue
            if _in_dataset(info, dataset, fmt):
                names.append(stem)
    else:
        names = [str(name).strip() for name in sample_names if str(name).strip()]
    return [(name, raw_dir / f"{name}{SKELETON_SUFFIX}") for name in names]


def _read_missing(missing_list: str | os.PathLike | Iterable[str] | None) -> set[str]:
    if missing_list is None:
        return set()
    if isinstance(missing_list, (str, os.PathLike)):
        text = Path(missing_list).read_text(encoding="utf-8")
        return {line.strip() for line in text.splitlines() if line.strip()}
    return {str(name).strip() for name in missing_list}


def _name_problem(name: str, dataset: str) -> str | None:
    try:
        info = parse_sample_name(name)
    except ValueError as error:
        return str(error)
    if info.action > DATASET_CLASSES[dataset]:
        return (
            f"{name}: action {info.action} is not one of the {DATASET_CLASSES[dataset]} "
            f"{dataset} classes"
        )
    return None


def _run_tasks(
    tasks: list[_Task], worker: Callable[[_Task], _Result], workers: int, chunksize: int
) -> Iterator[_Result]:
    if workers <= 1 or len(tasks) <= 1:
        yield from map(worker, tasks)
        return
    with multiprocessing.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(worker, tasks, chunksize=chunksize)


def _release_pages(array: np.ndarray) -> None:
    """Drop an output memmap's written pages from this process's resident memory."""
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise"):
        return
    array.flush()
    mapping.madvise(mmap.MADV_DONTNEED)


def convert_ntu(
    raw_dir: str | os.PathLike,
    out: str | os.PathLike,
    dataset: str = "ntu60",
    benchmark: str = "xsub",
    fmt: str = "shapmix",
    workers: int | None = 1,
    fix_upstream_bugs: bool = False,
    sample_names: Iterable[str] | str | os.PathLike | None = None,
    missing_list: Iterable[str] | str | os.PathLike | None = None,
    progress: bool = True,
    duplicate_single_actor: bool | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> ConversionReport:
    """Convert a directory of raw ``.skeleton`` files.

    Args:
        raw_dir: the directory of ``SsssCcccPpppRrrrAaaa.skeleton`` files.
        out: ``fmt="shapmix"``: a dataset directory of the project's format (``(N, 3, 300,
            25, 2)``, lengths = valid frames, splits ``train`` and ``test``); ``"ctrgcn-npz"``:
            an npz file with CTR-GCN's keys ``x_train`` ``(N, 300, 150)`` float32, one-hot
            ``y_train``, ``x_test``, ``y_test`` (rows in upstream order) plus ``name_train`` and
            ``name_test``; ``"pyskl"``: the annotation pickle pyskl's own NTU tool makes
            (:func:`pyskl_keypoint`: untranslated float16 ``(M, T, 25, 3)`` keypoints; the
            splits of both benchmarks, ``xsub_train``/``xsub_val`` and ``xview_*`` or
            ``xset_*``, by :func:`pyskl_splits`).
        dataset: ``"ntu60"`` or ``"ntu120"`` (number of classes; which setups are listed).
        benchmark: ``"xsub"`` or ``"xview"`` (NTU60), ``"xsub"`` or ``"xset"`` (NTU120); for
            ``"pyskl"`` (which holds every benchmark) only the report's train/test counts.
        workers: processes (``<= 1``: in this process; ``None``/``0``: all CPUs).
        fix_upstream_bugs: correct the two documented stage-2 bugs (module docstring); not
            for ``"pyskl"``.
        sample_names: the samples to convert, in order (a list, or a file with one name per
            line such as ``skes_available_name.txt``); default: every ``.skeleton`` file of
            ``raw_dir``, sorted; for NTU60 only setups 1-17, or for ``"pyskl"`` (as pyskl's
            tool selects) every setup and the dataset's actions (1-60 or 1-120).
        missing_list: names to skip (a list or a file such as
            ``samples_with_missing_skeletons.txt``).
        progress: show a tqdm progress bar.
        duplicate_single_actor: one-actor samples also fill actor 2's columns; default: only
            for ``ctrgcn-npz`` of NTU120, as its upstream script does.
        chunksize: files per worker hand-out.

    Every file that cannot be converted is skipped and listed in the report with its reason
    (and, for the project's format, under ``metadata["skipped"]`` of the dataset).
    Finished files are journaled in ``OUT.partial`` (flushed every few seconds); an
    interrupted run called again with the same arguments resumes where it stopped, and the
    staging directory is deleted once the output is complete.
    """
    started = time.perf_counter()
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {FORMATS}")
    pyskl = fmt == "pyskl"
    if pyskl and fix_upstream_bugs:
        raise ValueError(
            "fix_upstream_bugs corrects the CTR-GCN scripts; the pyskl format reproduces "
            "pyskl's own tool and has no such option"
        )
    _check_benchmark(dataset, benchmark)
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: no such directory of .skeleton files")
    out = Path(out)
    if workers is None or workers <= 0:
        workers = os.cpu_count() or 1
    if duplicate_single_actor is None:
        duplicate_single_actor = fmt == "ctrgcn-npz" and dataset == "ntu120"
    if isinstance(sample_names, (str, os.PathLike)):
        sample_names = Path(sample_names).read_text(encoding="utf-8").split()
    missing = _read_missing(missing_list)
    report = ConversionReport(output=out, fmt=fmt, dataset=dataset, benchmark=benchmark)

    candidates = []
    for name, path in _list_candidates(raw_dir, dataset, sample_names, fmt):
        if name in missing:
            report.skipped_missing.append(name)
        else:
            candidates.append((name, path))
    report.num_candidates = len(candidates)
    if len({name for name, _ in candidates}) != len(candidates):
        raise ValueError("the sample names to convert contain duplicates")
    settings = {
        "version": STAGING_VERSION,
        "dataset": dataset,
        "fix_upstream_bugs": fix_upstream_bugs,
        "duplicate_single_actor": duplicate_single_actor,
        "max_frames": MAX_FRAMES,
        "convention": "pyskl" if pyskl else "ctrgcn",
        "candidates": hashlib.sha256(
            "\n".join(f"{name}\t{path}" for name, path in candidates).encode()
        ).hexdigest(),
    }
    staging = _Staging(Path(f"{out}{STAGING_SUFFIX}"), settings)
    report.resumed = staging.resumed
    tasks = []
    for index, (name, path) in enumerate(candidates):
        if index in staging.entries:
            continue
        problem = _name_problem(name, dataset)
        if problem is not None:
            staging.add(_Result(index, STATUS_FAILED, None, problem))
        else:
            tasks.append(_Task(index, name, str(path)))
    worker = _process_pyskl_task if pyskl else partial(
        _process_task, fix_upstream_bugs=fix_upstream_bugs,
        duplicate_single_actor=duplicate_single_actor, max_frames=MAX_FRAMES,
    )
    try:
        with tqdm(total=len(tasks), unit="file", disable=not progress, desc="NTU") as bar:
            for result in _run_tasks(tasks, worker, workers, chunksize):
                staging.add(result)
                bar.update()
    finally:
        staging.close()

    ok = [i for i in range(len(candidates)) if staging.entries[i][0] == STATUS_OK]
    report.failures = [
        (candidates[i][0], staging.entries[i][3])
        for i in range(len(candidates)) if staging.entries[i][0] != STATUS_OK
    ]
    if not ok:
        raise NTUFormatError(
            raw_dir, None,
            f"no sample could be converted ({len(report.failures)} failures, e.g. "
            f"{report.failures[:1]})",
        )
    names = [candidates[i][0] for i in ok]
    if pyskl:
        splits = pyskl_splits(names, dataset)
        train = splits[benchmark + PYSKL_TRAIN_SUFFIX]
        test = splits[benchmark + PYSKL_TEST_SUFFIX]
    else:
        train, test = split_names(names, dataset, benchmark)
    report.converted, report.num_train, report.num_test = names, len(train), len(test)
    index_of = {candidates[i][0]: i for i in ok}
    if fmt == "shapmix":
        skipped = [{"file": str(candidates[i][1]), "reason": staging.entries[i][3]}
                   for i in range(len(candidates)) if staging.entries[i][0] != STATUS_OK]
        skipped += [{"file": name, "reason": MISSING_REASON} for name in report.skipped_missing]
        metadata = {
            "source": f"NTU RGB+D {dataset[len('ntu'):]} raw .skeleton files",
            "preprocessing": "CTR-GCN's scripts, reproduced by shapmix.data.sources.ntu",
            "benchmark": benchmark,
            "fix_upstream_bugs": fix_upstream_bugs,
            "duplicate_single_actor": duplicate_single_actor,
            "units": "metres, relative to actor 1's first spine-middle joint",
            SKIPPED_METADATA_KEY: skipped,
        }
        _finalize_shapmix(staging, out, ok, names, train, test, dataset, metadata)
    elif pyskl:
        _finalize_pyskl(staging, out, ok, names, splits)
    else:
        _finalize_npz(staging, out, index_of, train, test, dataset)
    shutil.rmtree(staging.root, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _finalize_shapmix(
    staging: _Staging, out: Path, ok: list[int], names: list[str], train: list[str],
    test: list[str], dataset: str, metadata: dict,
) -> None:
    """Write the project's format from the staging area, one sample at a time."""
    writer = DatasetWriter(
        out, len(ok), (COORDS, MAX_FRAMES, NUM_JOINTS, NUM_ACTORS), "ntu25",
        NTU_ACTION_NAMES[: DATASET_CLASSES[dataset]], metadata=metadata,
    )
    with open(staging.rows_path, "rb") as handle:
        for position, (index, name) in enumerate(zip(ok, names)):
            rows = staging.read_rows(handle, index)
            writer.write(position, row_to_cthw(rows), parse_sample_name(name).label, name)
            if (position + 1) % FINALIZE_RELEASE_EVERY == 0:
                _release_pages(writer.data)
    writer.close({"train": train, "test": test})


def _finalize_pyskl(
    staging: _Staging, out: Path, ok: list[int], names: list[str], splits: dict[str, list[str]]
) -> None:
    """Write pyskl's annotation pickle (the float16 annotations are held in memory, as any
    reader of the pickle must)."""
    annotations = []
    with open(staging.rows_path, "rb") as handle:
        for index, name in zip(ok, names):
            rows = staging.read_rows(handle, index)
            persons = int(staging.entries[index][3])
            keypoint = rows[:, : persons * ACTOR_COLUMNS].reshape(
                len(rows), persons, NUM_JOINTS, COORDS
            ).transpose(1, 0, 2, 3)
            annotations.append(_pyskl_record(name, keypoint))
    write_pyskl(annotations, splits, out)


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> dict:
    return {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": shape,
    }


def _finalize_npz(
    staging: _Staging, out: Path, index_of: dict[str, int], train: list[str],
    test: list[str], dataset: str,
) -> None:
    """Write CTR-GCN's npz (stored members, like ``np.savez``), streaming row by row.

    Only one ``(300, 150)`` row and one one-hot label row are in memory at a time; the file is
    written next to ``out`` and renamed when complete.
    """
    num_classes = DATASET_CLASSES[dataset]
    tmp = out.with_name(out.name + ".tmp")
    row = np.zeros((MAX_FRAMES, ROW_COLUMNS), dtype=np.float32)
    one_hot = np.zeros(num_classes, dtype=np.float64)  # float64 as upstream's np.zeros
    with open(staging.rows_path, "rb") as handle, zipfile.ZipFile(
        tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True
    ) as archive:
        for part, members in (("train", train), ("test", test)):
            with archive.open(f"x_{part}.npy", "w", force_zip64=True) as member:
                header = _npy_header((len(members), MAX_FRAMES, ROW_COLUMNS), row.dtype)
                np.lib.format.write_array_header_1_0(member, header)
                for name in members:
                    rows = staging.read_rows(handle, index_of[name])
                    row[: rows.shape[0]] = rows
                    row[rows.shape[0]:] = 0
                    member.write(row.tobytes())
            with archive.open(f"y_{part}.npy", "w", force_zip64=True) as member:
                header = _npy_header((len(members), num_classes), one_hot.dtype)
                np.lib.format.write_array_header_1_0(member, header)
                for name in members:
                    one_hot[:] = 0
                    one_hot[parse_sample_name(name).label] = 1
                    member.write(one_hot.tobytes())
            with archive.open(f"name_{part}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.array(members, dtype=str))
    os.replace(tmp, out)
