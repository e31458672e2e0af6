"""pyskl / mmaction2 skeleton annotation pickles: safe reading, conversion, and writing.

Format (pyskl's ``tools/data/README.md``)
-----------------------------------------
A pickle holding ``{"split": {split name: [frame_dir, ...]}, "annotations": [annotation, ...]}``,
each annotation a dict with

* ``frame_dir`` (str): the sample's identifier (its name here);
* ``label`` (int): 0-based class id;
* ``total_frames`` (int): ``T``;
* ``keypoint``: ``(M, T, V, C)`` array, float16 in pyskl's own files: ``C = 3`` (x, y, z) for
  3D skeletons (NTU RGB+D, ``V = 25``), ``C = 2`` for 2D (COCO-17 from HRNet, ``V = 17``);
* ``keypoint_score`` (2D only): ``(M, T, V)`` confidence, stored here as a third channel
  ``score`` after ``x, y``;
* ``img_shape`` / ``original_shape`` (2D only): ``(height, width)``; other keys are kept when
  reading raw and ignored by the conversion.

Kinetics-400 (``k400_hrnet.pkl``) is "compressed": its annotations carry no ``keypoint``; instead

* ``raw_file``: path of a *kpfile*, a pickle ``{frame_dir: {"keypoint": (N, V, 3)}}`` holding all
  N detected skeletons of the video as ``x, y, score``;
* ``frame_inds`` (N,): the frame of each skeleton; ``box_score`` (N,): its detection score;
  optionally ``anno_inds``: the skeletons to use.

These are expanded like pyskl's ``DecompressPose(squeeze=True, max_person=M)``: frames without
any skeleton are dropped, skeletons of a frame are stacked as persons in file order, and when a
frame has more than ``M`` of them they are ordered by descending total keypoint score before the
first ``M`` are kept.  A relative ``raw_file`` is looked up under ``kpfile_root`` (default: the
annotation file's folder), then by its base name directly in that folder.

Safety
------
Pickles can run arbitrary code when loaded.  Every pickle here is read with
:class:`RestrictedUnpickler`, which only admits the built-in container types and the NumPy
array/scalar reconstruction globals (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, ``numpy.core.multiarray.scalar`` and their ``numpy._core`` variants), plus
``_codecs.encode`` restricted to latin-1 (how protocol-2 pickles, e.g. those written by mmcv,
store bytes).  Any other global is refused with an :class:`UnsafePickleError` naming the file and
the global, before anything is executed.

Writing
-------
:func:`write_pyskl` writes the same structure pyskl loads (same keys; ``keypoint`` and
``keypoint_score`` float16; ``label`` and ``total_frames`` Python ints);
:func:`annotations_from_arrays` and :func:`annotations_from_dataset` turn ``(N, C, T, V, M)``
arrays or a dataset into such annotations.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ...errors import DatasetFormatError, SourceFormatError
from ...skeleton.layouts import get_layout
from ..format import SkeletonData
from .common import Sample, SkippedFile, skip_reason, write_samples

__all__ = [
    "UnsafePickleError",
    "RestrictedUnpickler",
    "safe_load_pickle",
    "read_pyskl",
    "decompress_pose",
    "KpfileCache",
    "expand_annotation",
    "convert_pyskl",
    "annotations_from_arrays",
    "annotations_from_dataset",
    "write_pyskl",
]

PICKLE_PROTOCOL = 4
KEYPOINT_DTYPE = np.float16
#: Layout used when none is given, by number of keypoints.
DEFAULT_LAYOUTS = {25: "ntu25", 17: "coco17", 18: "openpose18"}
#: (train, test) split-name pairs aliased to ``train``/``test``, first match wins.
STANDARD_SPLIT_PAIRS = (
    ("train", "test"),
    ("train", "val"),
    ("xsub_train", "xsub_val"),
    ("train1", "test1"),
)
DEFAULT_K400_PERSONS = 2
REQUIRED_KEYS = ("frame_dir", "label")

_NUMPY_GLOBALS = frozenset(
    (module, name)
    for prefix in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{prefix}.multiarray", "_reconstruct"),
        (f"{prefix}.multiarray", "scalar"),
    )
) | {("numpy", "ndarray"), ("numpy", "dtype")}
_BUILTIN_CONTAINERS = frozenset(
    ("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray")
)
_LATIN1 = {"latin1", "latin-1", "iso-8859-1"}


class UnsafePickleError(SourceFormatError):
    """A pickle references a global outside the allow-list; nothing was executed."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, and nothing else."""
    if encoding.lower() not in _LATIN1 or not isinstance(text, str):
        raise pickle.UnpicklingError(
            f"_codecs.encode only admitted for latin-1 text, got {encoding!r}"
        )
    return codecs.encode(text, "latin1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler admitting only containers and NumPy arrays (see the module docstring).

    ``path`` is used in error messages.
    """

    def __init__(self, file, path: str | os.PathLike) -> None:
        super().__init__(file)
        self.path = Path(path)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (module, name) in _BUILTIN_CONTAINERS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise UnsafePickleError(
            self.path,
            f"refusing to load global {module}.{name}: only containers and NumPy "
            "arrays are allowed in skeleton pickles (a pickle can run code when loaded)",
        )


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler`; errors name the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, path).load()
        except UnsafePickleError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
        ) as error:
            raise SourceFormatError(
                path, f"not a readable pickle ({type(error).__name__}: {error})"
            ) from None


def read_pyskl(path: str | os.PathLike) -> dict[str, Any]:
    """Read a pyskl annotation pickle exactly as stored (arrays keep their dtype, e.g. float16).

    Only the top-level structure is checked: a dict with ``split`` (name -> list of str) and
    ``annotations`` (list of dicts).  Loading is restricted (see :class:`RestrictedUnpickler`).
    """
    path = Path(path)
    content = safe_load_pickle(path)
    if not isinstance(content, dict):
        raise SourceFormatError(path, f"expected a dict, found {type(content).__name__}")
    for key in ("split", "annotations"):
        if key not in content:
            raise SourceFormatError(path, f"missing key {key!r}", where="$")
    split, annotations = content["split"], content["annotations"]
    if not isinstance(split, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
        for k, v in split.items()
    ):
        raise SourceFormatError(path, "expected {split name: [frame_dir, ...]}", where="split")
    if not isinstance(annotations, list):
        raise SourceFormatError(path, "expected a list", where="annotations")
    for i, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise SourceFormatError(path, "expected a dict", where=f"annotations[{i}]")
    return content


def decompress_pose(
    frame_inds: np.ndarray, keypoint: np.ndarray, max_person: int
) -> tuple[np.ndarray, np.ndarray]:
    """Expand Kinetics-style compressed skeletons, as pyskl's ``DecompressPose(squeeze=True)``.

    Args:
        frame_inds: ``(N,)`` frame of each skeleton, non-decreasing.
        keypoint: ``(N, V, 3)`` skeletons as ``x, y, score``.
        max_person: persons kept per frame (by descending total score when a frame has more).

    Returns:
        ``keypoint (M, T, V, 2)`` and ``keypoint_score (M, T, V)``, float16, where ``T`` is the
        number of distinct frames and ``M = min(max_person, most skeletons in one frame)``.
    """
    frame_inds = np.asarray(frame_inds).reshape(-1)
    if np.any(np.diff(frame_inds) < 0):
        raise ValueError("frame_inds must be non-decreasing")
    frames, frame_pos = np.unique(frame_inds, return_inverse=True)
    first_of_frame = np.searchsorted(frame_inds, frames)
    person = np.arange(len(frame_inds)) - first_of_frame[frame_pos]
    num_person = int(person.max()) + 1
    T, V = len(frames), keypoint.shape[1]
    kp = np.zeros((num_person, T, V, 2), dtype=KEYPOINT_DTYPE)
    score = np.zeros((num_person, T, V), dtype=KEYPOINT_DTYPE)
    kp[person, frame_pos] = keypoint[..., :2]
    score[person, frame_pos] = keypoint[..., 2]
    if num_person > max_person:
        totals = score.astype(np.float32).sum(axis=2)  # (P, T); absent persons sum to 0
        order = np.argsort(-totals, axis=0, kind="stable")  # (P, T)
        kp = np.take_along_axis(kp, order[:, :, None, None], axis=0)
        score = np.take_along_axis(score, order[:, :, None], axis=0)
        num_person = max_person
    return kp[:num_person], score[:num_person]


class KpfileCache:
    """Kinetics kpfiles under ``root``, each loaded once (restricted) and looked up by
    ``frame_dir``; see the module docstring for how ``raw_file`` paths are resolved."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[Path, dict] = {}

    def resolve(self, raw_file: str) -> Path:
        candidate = Path(raw_file)
        if candidate.is_absolute():
            return candidate
        for path in (self.root / candidate, self.root / candidate.name):
            if path.exists():
                return path
        return self.root / candidate

    def lookup(self, raw_file: str, frame_dir: str) -> np.ndarray:
        path = self.resolve(raw_file)
        if path not in self.files:
            if not path.exists():
                raise FileNotFoundError(f"kpfile {raw_file!r} not found under {self.root}")
            content = safe_load_pickle(path)
            if not isinstance(content, dict):
                raise SourceFormatError(
                    path, "a kpfile must be a dict {frame_dir: {'keypoint': ...}}"
                )
            self.files[path] = content
        entry = self.files[path].get(frame_dir)
        if not isinstance(entry, dict) or not isinstance(entry.get("keypoint"), np.ndarray):
            raise SourceFormatError(path, "no {'keypoint': array} entry", where=repr(frame_dir))
        return entry["keypoint"]


def _as_int(value: Any) -> int | None:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None


def expand_annotation(
    annotation: Mapping[str, Any],
    kpfiles: KpfileCache | None = None,
    max_person: int = DEFAULT_K400_PERSONS,
    box_threshold: float | None = None,
) -> dict[str, Any]:
    """A copy of ``annotation`` with ``keypoint`` (and ``keypoint_score``) filled in.

    Plain annotations are returned as they are; compressed (Kinetics) ones are expanded with
    :func:`decompress_pose` from their kpfile, after keeping only ``anno_inds`` (if present) and
    skeletons whose ``box_score`` is at least ``box_threshold`` (if given).
    """
    result = dict(annotation)
    if "keypoint" in result or "raw_file" not in result:
        return result
    if kpfiles is None:
        raise ValueError("a compressed (raw_file) annotation needs a kpfile root")
    frame_dir = str(result["frame_dir"])
    keypoint = np.asarray(kpfiles.lookup(str(result["raw_file"]), frame_dir))
    frame_inds = np.asarray(result.get("frame_inds", ()))
    if keypoint.ndim != 3 or keypoint.shape[2] != 3 or len(frame_inds) != len(keypoint):
        raise ValueError(
            f"kpfile keypoint must be (N, V, 3) with N = len(frame_inds) = {len(frame_inds)}, "
            f"got {keypoint.shape}"
        )
    keep = np.arange(len(keypoint))
    if "anno_inds" in result:
        keep = np.asarray(result["anno_inds"], dtype=np.int64).reshape(-1)
    if box_threshold is not None:
        box_score = np.asarray(result.get("box_score", np.ones(len(keypoint))))
        keep = keep[box_score[keep] >= box_threshold]
    if keep.size == 0:
        raise ValueError("no skeleton left in this video")
    result["keypoint"], result["keypoint_score"] = decompress_pose(
        frame_inds[keep], keypoint[keep], max_person
    )
    result["total_frames"] = result["keypoint"].shape[1]
    return result


def _sample_of(annotation: Mapping[str, Any], num_joints: int) -> tuple[str, np.ndarray, int]:
    """``(name, (C, T, V, M') array, label)`` of an expanded annotation, or ValueError."""
    for key in REQUIRED_KEYS:
        if key not in annotation:
            raise ValueError(f"missing key {key!r}")
    name, label = annotation["frame_dir"], _as_int(annotation["label"])
    if not isinstance(name, str) or label is None or label < 0:
        raise ValueError("frame_dir must be a str and label a non-negative int")
    keypoint = annotation.get("keypoint")
    if not isinstance(keypoint, np.ndarray) or keypoint.ndim != 4:
        raise ValueError(
            f"keypoint must be an (M, T, V, C) array, got {getattr(keypoint, 'shape', keypoint)!r}"
        )
    M, T, V, C = keypoint.shape
    if V != num_joints or M < 1 or T < 1:
        raise ValueError(
            f"keypoint shape {keypoint.shape}: expected V={num_joints}, M >= 1, T >= 1"
        )
    total = _as_int(annotation.get("total_frames", T))
    if total != T:
        raise ValueError(f"total_frames={annotation.get('total_frames')!r} but keypoint has T={T}")
    array = keypoint  # kept in its dtype (float16 for pyskl) until written, to save memory
    if "keypoint_score" in annotation:
        score = annotation["keypoint_score"]
        if not isinstance(score, np.ndarray) or score.shape != (M, T, V):
            raise ValueError(
                f"keypoint_score must be {(M, T, V)}, got {getattr(score, 'shape', score)!r}"
            )
        array = np.concatenate([keypoint, score[..., None]], axis=-1)
    if not np.isfinite(array).all():
        raise ValueError("keypoint holds NaN or Inf")
    return name, array.transpose(3, 1, 2, 0), label


def _channels_of(annotation: Mapping[str, Any]) -> tuple[str, ...]:
    dims = annotation["keypoint"].shape[-1]
    coords = ("x", "y", "z")[:dims] if dims <= 3 else tuple(f"c{i}" for i in range(dims))
    return coords + (("score",) if "keypoint_score" in annotation else ())


def convert_pyskl(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    layout: str | None = None,
    class_names: Sequence[str] | None = None,
    num_person: int | None = None,
    kpfile_root: str | os.PathLike | None = None,
    box_threshold: float | None = None,
) -> SkeletonData:
    """Convert a pyskl annotation pickle (plain or Kinetics-compressed) to the project's format.

    Args:
        path: the annotation pickle.
        out_dir: the dataset directory to write.
        layout: joint layout; by default chosen from V (25 ``ntu25``, 17 ``coco17``,
            18 ``openpose18``).
        class_names: one per class; default ``class_0..class_K`` for K the largest label.
        num_person: M; default the most persons of any plain annotation (2 for compressed ones);
            extra persons are dropped (pyskl's ``FormatGCNInput`` keeps the first M too).
        kpfile_root: where relative ``raw_file`` paths of compressed annotations are resolved.
        box_threshold: for compressed annotations, keep skeletons with ``box_score`` at least this.

    All the file's splits are saved under their own names (names of skipped or absent samples
    dropped); the first pair of :data:`STANDARD_SPLIT_PAIRS` present is also saved as
    ``train``/``test``.  Annotations that cannot be converted are skipped and listed in
    ``metadata["skipped"]`` (as ``FILE at annotations[i]``).
    """
    path = Path(path)
    content = read_pyskl(path)
    annotations = content["annotations"]
    if not annotations:
        raise SourceFormatError(path, "no annotation", where="annotations")
    kpfiles = KpfileCache(Path(kpfile_root) if kpfile_root is not None else path.parent)
    compressed = any("keypoint" not in a and "raw_file" in a for a in annotations)
    if num_person is None:
        num_person = _most_persons(annotations, compressed)
    samples, skipped, channels, num_joints = _convert_annotations(
        path, annotations, kpfiles, num_person, box_threshold
    )
    if not samples:
        raise SourceFormatError(
            path, f"no convertible annotation (first problem: {skipped[0].reason})"
        )
    if len({s.name for s in samples}) != len(samples):
        raise SourceFormatError(path, "frame_dir values are not unique", where="annotations")
    layout_name = _layout_for(path, layout, num_joints)
    if class_names is None:
        class_names = [f"class_{k}" for k in range(max(s.label for s in samples) + 1)]
    return write_samples(
        out_dir,
        samples,
        layout_name,
        class_names,
        splits=_converted_splits(content["split"], samples),
        channels=channels,
        metadata={"source": "pyskl", "input": str(path), "compressed": compressed},
        skipped=skipped,
        num_persons=num_person,
    )


def _most_persons(annotations: Sequence[Mapping[str, Any]], compressed: bool) -> int:
    """The default ``M``: the most persons of any plain annotation, at least
    :data:`DEFAULT_K400_PERSONS` when some annotations are compressed, 1 when none has any."""
    plain = [
        a["keypoint"].shape[0]
        for a in annotations
        if isinstance(a.get("keypoint"), np.ndarray) and a["keypoint"].ndim == 4
    ]
    return max(plain + ([DEFAULT_K400_PERSONS] if compressed else []), default=1)


def _convert_annotations(
    path: Path,
    annotations: Sequence[Mapping[str, Any]],
    kpfiles: KpfileCache,
    num_person: int,
    box_threshold: float | None,
) -> tuple[list[Sample], list[SkippedFile], tuple[str, ...] | None, int | None]:
    """Expand and check every annotation: ``(samples, skipped, channels, V)``.

    The samples keep their first ``num_person`` persons; ``V`` is the joint count of the first
    annotation with keypoints and ``channels`` those of the first converted one; an annotation
    that disagrees with them, or cannot be converted, is skipped with its reason (as
    ``FILE at annotations[i]``).
    """
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    channels: tuple[str, ...] | None = None
    num_joints: int | None = None
    for i, raw in enumerate(annotations):
        where = f"{path} at annotations[{i}]"
        try:
            annotation = expand_annotation(raw, kpfiles, num_person, box_threshold)
            if num_joints is None and isinstance(annotation.get("keypoint"), np.ndarray):
                num_joints = annotation["keypoint"].shape[-2]
            name, array, label = _sample_of(annotation, num_joints or 0)
            these = _channels_of(annotation)
            if channels is None:
                channels = these
            elif these != channels:
                raise ValueError(f"channels {these} differ from the first annotation's {channels}")
        except (ValueError, TypeError, IndexError, KeyError, OSError, DatasetFormatError) as error:
            skipped.append(SkippedFile(where, skip_reason(error)))
            continue
        samples.append(Sample(name, array[..., :num_person], label))
    return samples, skipped, channels, num_joints


def _layout_for(path: Path, layout: str | None, num_joints: int | None) -> str:
    """The layout asked for, or the default of ``V`` joints; either must have ``V`` joints."""
    layout_name = layout or DEFAULT_LAYOUTS.get(num_joints)
    if layout_name is None:
        raise SourceFormatError(path, f"no default layout for V={num_joints}; pass layout=")
    if get_layout(layout_name).num_joints != num_joints:
        raise SourceFormatError(path, f"layout {layout_name} does not have V={num_joints} joints")
    return layout_name


def _converted_splits(
    split: Mapping[str, Sequence[str]], samples: Sequence[Sample]
) -> dict[str, list[str]]:
    """The file's splits less the names of samples not converted; the first pair of
    :data:`STANDARD_SPLIT_PAIRS` present is also stored as ``train``/``test``."""
    known = {s.name for s in samples}
    splits = {key: [n for n in names if n in known] for key, names in split.items()}
    for train, test in STANDARD_SPLIT_PAIRS:
        if train in splits and test in splits:
            splits.setdefault("train", splits[train])
            splits.setdefault("test", splits[test])
            break
    return splits


def annotations_from_arrays(
    data: np.ndarray,
    labels: Sequence[int],
    lengths: Sequence[int],
    names: Sequence[str],
    channels: Sequence[str] = ("x", "y", "z"),
    img_shape: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """pyskl annotations of ``(N, C, T, V, M)`` samples (valid for ``lengths[i]`` frames).

    Trailing all-zero persons are dropped (keeping at least one), as pyskl stores single-person
    NTU samples with ``M = 1``.  A last channel named ``score`` becomes ``keypoint_score``.
    ``img_shape`` (height, width), for 2D data, is stored as ``img_shape`` and ``original_shape``.
    """
    channels = tuple(channels)
    has_score = channels[-1] == "score"
    annotations = []
    for i, name in enumerate(names):
        length = int(lengths[i])
        sample = np.asarray(data[i, :, :length], dtype=np.float32).transpose(3, 1, 2, 0)  # M T V C
        present = np.flatnonzero(sample.reshape(len(sample), -1).any(axis=1))
        sample = sample[: int(present[-1]) + 1 if present.size else 1]
        annotation: dict[str, Any] = {"frame_dir": str(name), "label": int(labels[i])}
        if has_score:
            annotation["keypoint"] = np.ascontiguousarray(sample[..., :-1], dtype=KEYPOINT_DTYPE)
            annotation["keypoint_score"] = np.ascontiguousarray(
                sample[..., -1], dtype=KEYPOINT_DTYPE
            )
        else:
            annotation["keypoint"] = np.ascontiguousarray(sample, dtype=KEYPOINT_DTYPE)
        annotation["total_frames"] = length
        if img_shape is not None:
            annotation["img_shape"] = annotation["original_shape"] = tuple(
                int(s) for s in img_shape
            )
        annotations.append(annotation)
    return annotations


def annotations_from_dataset(
    dataset: SkeletonData, img_shape: tuple[int, int] | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """``(annotations, split)`` of a dataset, ready for :func:`write_pyskl`."""
    annotations = annotations_from_arrays(
        dataset.data, dataset.labels, dataset.lengths, dataset.names, dataset.channels, img_shape
    )
    return annotations, {name: list(members) for name, members in dataset.splits.items()}


def _checked_annotation(annotation: Mapping[str, Any], index: int) -> dict[str, Any]:
    where = f"annotations[{index}]"
    result = dict(annotation)
    if not isinstance(result.get("frame_dir"), str):
        raise ValueError(f"{where}: frame_dir must be a str")
    label = _as_int(result.get("label"))
    if label is None or label < 0:
        raise ValueError(f"{where}: label must be a non-negative int")
    keypoint = result.get("keypoint")
    if not isinstance(keypoint, np.ndarray) or keypoint.ndim != 4:
        raise ValueError(f"{where}: keypoint must be an (M, T, V, C) array")
    M, T, V, _ = keypoint.shape
    total = _as_int(result.get("total_frames", T))
    if total != T:
        raise ValueError(
            f"{where}: total_frames={result.get('total_frames')!r} but keypoint has T={T}"
        )
    result["label"], result["total_frames"] = label, T
    result["keypoint"] = np.ascontiguousarray(keypoint, dtype=KEYPOINT_DTYPE)
    if "keypoint_score" in result:
        score = np.asarray(result["keypoint_score"])
        if score.shape != (M, T, V):
            raise ValueError(f"{where}: keypoint_score must be {(M, T, V)}, got {score.shape}")
        result["keypoint_score"] = np.ascontiguousarray(score, dtype=KEYPOINT_DTYPE)
    return result


def write_pyskl(
    annotations: Iterable[Mapping[str, Any]],
    split: Mapping[str, Sequence[str]],
    path: str | os.PathLike,
) -> Path:
    """Write a pyskl annotation pickle (atomically) that pyskl loads like its own files.

    Annotations are checked (``frame_dir`` str, ``label`` int, ``keypoint`` (M, T, V, C),
    ``total_frames == T``, ``keypoint_score`` (M, T, V)); keypoints and scores are stored as
    float16, labels and frame counts as Python ints; other keys are written unchanged.  Every
    name in ``split`` must be a ``frame_dir`` of the annotations.
    """
    path = Path(path)
    checked = [_checked_annotation(a, i) for i, a in enumerate(annotations)]
    names = [a["frame_dir"] for a in checked]
    if len(set(names)) != len(names):
        raise ValueError("frame_dir values are not unique")
    known = set(names)
    split_out = {}
    for key, members in split.items():
        members = [str(m) for m in members]
        unknown = [m for m in members if m not in known]
        if unknown:
            raise ValueError(
                f"split {key!r} names {len(unknown)} unknown samples, e.g. {unknown[:3]}"
            )
        split_out[str(key)] = members
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        pickle.dump({"split": split_out, "annotations": checked}, handle, protocol=PICKLE_PROTOCOL)
    os.replace(tmp, path)
    return path
