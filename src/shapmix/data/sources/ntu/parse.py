"""Stage 1: a ``.skeleton`` file's bytes to its bodies (:func:`parse_skeleton`).

Frames without bodies are dropped (their indices are kept in ``frames_drop``); bodies are keyed
by body id in order of first appearance, each with its joints (x, y, z), colour-image
coordinates and the kept-frame indices it appears in; with several body ids every body gets
``motion``, the summed per-axis variance of its joints (as CTR-GCN's ``get_raw_skes_data.py``).

The parser reads the file's bytes once and works on NumPy arrays: one scan finds every space and
line break; the frame/body structure comes from the count lines (a short Python walk over
frames and bodies, not lines); the field boundaries of all joint lines follow from the space
positions; and the wanted fields (x, y, z, plus colour x, y for stage 1's output) are decoded
at once by the fast decimal parser (:mod:`.decimals`).  Anything unusual (tabs, repeated
spaces, lone carriage returns, non-numeric text) makes the fast path step aside for a strict
line-by-line parser that returns the same result or raises :class:`NTUFormatError` naming the
file, the 1-based line and what was expected.  Fields the pipeline does not use (depth-image
coordinates, orientation, tracking states, the body-info fields after the body id, and the
colour coordinates when only the final arrays are wanted) are counted but not interpreted, as
upstream.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import (
    BODY_INFO_FIELDS,
    COORDS,
    JOINT_FIELDS,
    LINES_PER_BODY,
    NUM_JOINTS,
    SKELETON_SUFFIX,
    USED_FIELDS,
    XYZ_FIELDS,
)
from .decimals import decimal_value, parse_decimals
from ....errors import NTUFormatError

# Bytes the parser looks at.
NEWLINE = ord("\n")
CARRIAGE_RETURN = ord("\r")
SPACE = ord(" ")
NON_FINITE_WORDS = (b"nan", b"inf", b"infinity")
MAX_COUNT_DIGITS = 9
"""Frame, body and joint counts have at most this many digits."""
ERROR_SNIPPET_CHARS = 40
"""How much of an offending line an error message quotes."""


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
    lines = _Lines(line_at, num_lines, path)
    num_frames = lines.count(0, "the number of frames")
    if num_frames == 0:
        raise NTUFormatError(path, 1, "the file declares 0 frames")
    structure = _Structure(num_frames, [], [], [], [])
    line = 1
    kept = 0
    for frame in range(num_frames):
        num_bodies = lines.count(line, f"the number of bodies of frame {frame + 1} of {num_frames}")
        line += 1
        if num_bodies == 0:
            structure.frames_drop.append(frame)
            continue
        seen: set[str] = set()
        for body in range(num_bodies):
            body_id = _body_at(lines, line, frame, body, num_bodies, seen)
            structure.occ_frame.append(kept)
            structure.occ_body.append(body_id)
            structure.occ_info_line.append(line)
            line += LINES_PER_BODY
        kept += 1
    if line < num_lines:
        raise NTUFormatError(
            path, line + 1,
            f"the file declares {num_frames} frames but content continues: "
            f"{_snippet(line_at(line))}",
        )
    if not structure.occ_frame:
        raise NTUFormatError(path, 1, f"all {num_frames} frames have 0 bodies")
    return structure


@dataclass(frozen=True)
class _Lines:
    """The lines of one file: ``line_at(i)`` (0-based, without line ending), the first
    ``num_lines`` of them (trailing blank lines left out), and the file's name for errors."""

    line_at: Callable[[int], bytes]
    num_lines: int
    path: str

    def count(self, index: int, what: str) -> int:
        """The count on line ``index``, or an error saying it should be ``what``."""
        if index >= self.num_lines:
            raise NTUFormatError(self.path, index + 1, f"file ends early: expected {what}")
        text = self.line_at(index).strip()
        if not text.isdigit() or len(text) > MAX_COUNT_DIGITS:
            raise NTUFormatError(
                self.path, index + 1,
                f"expected {what} (an integer of at most {MAX_COUNT_DIGITS} digits), "
                f"got {_snippet(text)}",
            )
        return int(text)


def _body_at(
    lines: _Lines, line: int, frame: int, body: int, num_bodies: int, seen: set[str]
) -> str:
    """The id of body ``body`` of frame ``frame``, whose info line is ``line`` (0-based), added
    to ``seen`` (the frame's ids so far) after checking that it is new, its joint count and
    that its joint lines are all there."""
    path = lines.path
    if line >= lines.num_lines:
        raise NTUFormatError(
            path, line + 1,
            f"file ends early: expected the info line of body {body + 1} of "
            f"{num_bodies} in frame {frame + 1}",
        )
    fields = lines.line_at(line).split()
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
    joints = lines.count(line + 1, "the joint count")
    if joints != NUM_JOINTS:
        raise NTUFormatError(
            path, line + 2, f"expected the joint count {NUM_JOINTS}, got {joints}"
        )
    if line + LINES_PER_BODY > lines.num_lines:
        raise NTUFormatError(
            path, lines.num_lines + 1,
            f"file ends early (truncated mid-frame): frame {frame + 1} body "
            f"{body + 1} needs {NUM_JOINTS} joint lines from line {line + 3}",
        )
    return body_id


def _joint_line_indices(structure: _Structure) -> np.ndarray:
    """``(K * 25,)`` 0-based line index of every joint line, occurrence-major."""
    first = np.asarray(structure.occ_info_line, dtype=np.int64) + 2
    return (first[:, None] + np.arange(NUM_JOINTS, dtype=np.int64)).ravel()


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
    values = parse_decimals(buf, field_starts.ravel(), field_ends.ravel())
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
            value = decimal_value(token)
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
            body.motion = body_motion(body.joints)
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


def body_motion(joints: np.ndarray) -> np.float32:
    """Upstream's motion: sum over x, y, z of the variance of all joint positions (float32).

    Computed on a contiguous ``(n * 25, 3)`` float32 array as upstream, so the float32
    accumulation order (and thus every bit) is the same.
    """
    pooled = np.ascontiguousarray(joints, dtype=np.float32).reshape(-1, COORDS)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd coordinates: inf, as upstream
        return np.sum(np.var(pooled, axis=0))


def read_source(
    source: str | os.PathLike | bytes, name: str | None = None, colors: bool = True
) -> tuple[RawSkeleton, str]:
    """Stage 1 of a file path, or of a file's bytes named ``name``; also the name errors use
    (the path as given, or ``name``, ``"<bytes>"`` when none)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        where = name or "<bytes>"
        return parse_skeleton(bytes(source), where, colors), where
    return read_skeleton(source, colors), str(source)
