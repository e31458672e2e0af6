"""Predict actions in raw skeleton files with a trained checkpoint (``shapmix predict``).

A :class:`Predictor` is a checkpoint ready for inference: the model in eval mode, the run's test
pipeline rebuilt from the checkpoint's saved config (centring, the central test crop or
``eval.num_clips`` uniformly spaced windows, the input modality), the class names and what input
the model takes (:class:`InputSpec`: layout, channel names, persons).  No dataset and no labels
are needed.

:func:`read_input_file` reads one file in any format the library reads, with the readers of
:mod:`shapmix.data.sources`, as the converters read it:

=====================  ==========================================  ========================
suffix                 format                                      layout
=====================  ==========================================  ========================
``.skeleton``          NTU RGB+D (CTR-GCN's preprocessing)         ``ntu25``
``.json``              NW-UCLA (``skeletons``) or Kinetics-        ``kinect_v1`` /
                       skeleton (``data``), told apart by content  ``openpose18``
``.txt``               MSR Action3D (``x y z c`` lines)            ``msr_action3d``
``.mat``               UTD-MHAD (``d_skel``; needs SciPy)          ``utd_mhad``
``.pkl``, ``.pickle``  pyskl annotations (one sample each)         the checkpoint's (by V)
``.npy``               one array, axes ``CTVM`` by default         the checkpoint's (by V)
=====================  ==========================================  ========================

In a folder, ``.txt`` files are taken only when named like MSR Action3D's
(``*_skeleton3D.txt``), so a README or a notes file is not mistaken for a skeleton.

:func:`predict` reads files in batches, fits every sample to the checkpoint's input (fewer
persons are zero-padded; a wrong layout, joint count, channel set, too many persons or too few
frames is a :class:`PredictInputError` naming the file), scores them on the device and returns a
:class:`PredictionReport`: the top-k classes with probabilities for every sample, and every file
that could not be predicted with its reason.  One bad file never stops the others.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..config import Config, apply_overrides, build_config
from ..data.format import DatasetFormatError, SkeletonData
from ..data.sources import kinetics, msr, nw_ucla, utd
from ..data.sources.arrays import TARGET_AXES, parse_axes
from ..data.sources.common import SkippedFile, SourceFormatError, load_json, valid_length
from ..data.sources.ntu.align import row_to_cthw
from ..data.sources.ntu.pipeline import process_skeleton
from ..data.sources.pyskl import read_pyskl
from ..data.transforms import Compose
from ..skeleton.layouts import Layout, get_layout
from .builders import build_configured_model, build_test_pipeline, open_run_data
from .checkpoint import load_checkpoint
from ..distributed import resolve_device
from .evaluate import average_clip_scores

__all__ = [
    "DEFAULT_TOP_K",
    "INPUT_SPEC_KEY",
    "MOTION_MIN_FRAMES",
    "InputSpec",
    "PredictInputError",
    "Predictor",
    "RawSample",
    "Prediction",
    "PredictedBatch",
    "PredictionReport",
    "collect_input_files",
    "read_input_file",
    "fit_to_spec",
    "predict",
]

INPUT_SPEC_KEY = "input_spec"
"""Checkpoint key describing the model's input (:meth:`InputSpec.to_dict`)."""
DEFAULT_TOP_K = 5
MOTION_MIN_FRAMES = 2
"""Shortest sequence a motion modality sees anything in (one frame difference); the joint and
bone modalities take a single frame (NW-UCLA has one-frame samples, trained on as they are)."""
DEFAULT_AXES = "CTVM"
"""Axes of a ``.npy`` input: one sample in the project's order (``M`` optional, ``N`` allowed)."""
MSR_SUFFIX = "_skeleton3D.txt"
UTD_SUFFIX = "_skeleton.mat"
PICKLE_SUFFIXES = (".pkl", ".pickle")
FOLDER_SUFFIXES = (".skeleton", ".json", ".mat", ".npy", *PICKLE_SUFFIXES)
"""Suffixes read from a folder (plus MSR's ``*_skeleton3D.txt``)."""
COORDINATES = ("x", "y", "z")


class PredictInputError(SourceFormatError):
    """An input file the checkpoint cannot take; the message names the file and the reason."""


# --------------------------------------------------------------------------- the model's input


@dataclass(frozen=True)
class InputSpec:
    """What a model takes: the skeleton layout, the channel names (in order) and ``M`` persons."""

    layout: Layout
    channels: tuple[str, ...]
    num_persons: int

    @classmethod
    def from_dataset(cls, dataset: SkeletonData) -> "InputSpec":
        return cls(dataset.layout, tuple(dataset.channels), int(dataset.shape[4]))

    def to_dict(self) -> dict[str, Any]:
        """Plain values, safe in a ``weights_only`` checkpoint."""
        return {"layout": self.layout.name, "channels": list(self.channels), "num_persons": self.num_persons}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "InputSpec":
        return cls(get_layout(values["layout"]), tuple(values["channels"]), int(values["num_persons"]))

    def describe(self) -> str:
        return (
            f"layout {self.layout.name} ({self.layout.num_joints} joints), channels "
            f"({', '.join(self.channels)}), {self.num_persons} person(s)"
        )


def checkpoint_input_spec(state: Mapping[str, Any], config: Config, checkpoint: str | os.PathLike) -> InputSpec:
    """The checkpoint's :class:`InputSpec`; a checkpoint written before it was saved opens its
    run's dataset to learn it (``data.path`` may be overridden when the dataset moved)."""
    if INPUT_SPEC_KEY in state:
        return InputSpec.from_dict(state[INPUT_SPEC_KEY])
    try:
        return InputSpec.from_dataset(open_run_data(config).dataset)
    except (OSError, DatasetFormatError) as error:
        raise DatasetFormatError(
            f"{checkpoint} does not record its input layout and channels (an older checkpoint), and "
            f"its dataset cannot be opened to learn them ({error}); point to the dataset with the "
            "override data.path=DIR"
        ) from None


class Predictor:
    """A trained model with its test-time preprocessing, ready to score raw sequences.

    Args:
        model: the network, ``(B, C, window, V, M)`` -> logits ``(B, classes)``.
        config: the run's config (its ``data`` section defines the test pipeline).
        spec: the input the model takes.
        class_names: one name per output.
        device: where batches are scored.

    ``config.eval.num_clips`` clips are scored per sequence and averaged
    (:func:`~shapmix.engine.evaluate.average_clip_scores`).  ``min_frames`` is the shortest
    sequence the input modality carries information in (:data:`MOTION_MIN_FRAMES` for motion).
    """

    def __init__(
        self, model: nn.Module, config: Config, spec: InputSpec, class_names: Sequence[str], device: torch.device
    ) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.spec = spec
        self.class_names = list(class_names)
        self.device = device
        self.num_clips = config.eval.num_clips
        self.min_frames = MOTION_MIN_FRAMES if config.data.modality.endswith("motion") else 1
        self.pipeline: Compose = build_test_pipeline(config, spec.layout, spec.channels, self.num_clips)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike,
        overrides: Sequence[str] = (),
        device: str = "auto",
        num_clips: int | None = None,
    ) -> "Predictor":
        """Load a training checkpoint (``last.pt``, ``best.pt``); ``overrides`` are ``KEY=VALUE``
        config changes, ``num_clips`` sets ``eval.num_clips``."""
        state = load_checkpoint(checkpoint)
        changes = [*overrides, *([f"eval.num_clips={num_clips}"] if num_clips is not None else [])]
        config = build_config(apply_overrides(state["config"], changes), f"{checkpoint} with overrides {changes}")
        spec = checkpoint_input_spec(state, config, checkpoint)
        class_names = list(state["class_names"])
        model = build_configured_model(config.model, len(class_names), spec.layout, spec.num_persons, len(spec.channels))
        model.load_state_dict(state["model"])
        return cls(model, config, spec, class_names, resolve_device(device))

    def prepare(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Raw ``(N, C, T, V, M)`` with ``(N,)`` valid lengths -> model input
        ``(N * num_clips, C', window, V, M)`` on the device (clips sample-major)."""
        return self.pipeline(x.to(self.device), lengths.to(self.device))[0]

    @torch.no_grad()
    def scores(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(N, classes)`` float32 scores of raw sequences: logits, or for several clips the log
        of the clip-averaged probabilities; softmax gives class probabilities either way."""
        return average_clip_scores(self.model(self.prepare(x, lengths)).float(), self.num_clips)


# --------------------------------------------------------------------------- reading files


@dataclass
class RawSample:
    """One sequence read from a file.

    Attributes:
        name: sample name (the file's stem, or the name the file states).
        source: the file it came from.
        data: ``(C, T, V, M)`` float32, ``T`` = valid frames.
        layout: the layout the format implies, or ``None`` when the format does not say (then
            only the joint count is checked).
        channels: channel names, or ``None`` when the format does not say.
        where: its place in a file of several samples (``annotations[3]``), else ``None``.
    """

    name: str
    source: Path
    data: np.ndarray
    layout: str | None
    channels: tuple[str, ...] | None
    where: str | None = None


def _read_ntu(path: Path, spec: InputSpec, axes: str) -> list[RawSample]:
    sample = process_skeleton(path)
    return [RawSample(sample.name, path, row_to_cthw(sample.row[: sample.num_frames]), "ntu25", COORDINATES)]


def _read_json(path: Path, spec: InputSpec, axes: str) -> list[RawSample]:
    content = load_json(path)
    if isinstance(content, dict) and "skeletons" in content:
        name, skeleton, _ = nw_ucla.read_nw_ucla_file(path)
        return [RawSample(name, path, skeleton.transpose(2, 0, 1)[..., None], nw_ucla.LAYOUT, COORDINATES)]
    if isinstance(content, dict) and "data" in content:
        data, _ = kinetics.read_kinetics_file(path)
        return [RawSample(path.stem, path, data, kinetics.LAYOUT, ("x", "y", "score"))]
    raise PredictInputError(
        path, "a json input must be NW-UCLA ({file_name, skeletons, label}) or Kinetics-skeleton ({data: [...]})"
    )


def _read_msr(path: Path, spec: InputSpec, axes: str) -> list[RawSample]:
    keep_confidence = "confidence" in spec.channels
    skeleton = msr.read_msr_file(path, keep_confidence)
    channels = (*COORDINATES, "confidence") if keep_confidence else COORDINATES
    name = path.name.removesuffix(MSR_SUFFIX) if path.name.endswith(MSR_SUFFIX) else path.stem
    return [RawSample(name, path, skeleton.transpose(2, 0, 1)[..., None], msr.LAYOUT, channels)]


def _read_utd(path: Path, spec: InputSpec, axes: str) -> list[RawSample]:
    name = path.name.removesuffix(UTD_SUFFIX) if path.name.endswith(UTD_SUFFIX) else path.stem
    return [RawSample(name, path, utd.read_utd_file(path).transpose(2, 0, 1)[..., None], utd.LAYOUT, COORDINATES)]


def _read_pyskl(path: Path, spec: InputSpec, axes: str) -> list[RawSample]:
    samples = []
    for index, annotation in enumerate(read_pyskl(path)["annotations"]):
        where = f"annotations[{index}]"
        keypoint = annotation.get("keypoint")
        if not isinstance(keypoint, np.ndarray) or keypoint.ndim != 4:
            raise PredictInputError(
                path, "expected an (M, T, V, C) keypoint array (compressed Kinetics annotations: "
                "convert them with shapmix prepare pyskl --kpfile-root)", where=where,
            )
        persons, frames, joints, dims = keypoint.shape
        array = keypoint.astype(np.float32)
        channels = COORDINATES[:dims] if dims <= len(COORDINATES) else None
        score = annotation.get("keypoint_score")
        if score is not None:
            if not isinstance(score, np.ndarray) or score.shape != (persons, frames, joints):
                raise PredictInputError(path, f"keypoint_score must be {(persons, frames, joints)}", where=where)
            array = np.concatenate([array, score.astype(np.float32)[..., None]], axis=-1)
            channels = None if channels is None else (*channels, "score")
        name = str(annotation.get("frame_dir", f"{path.stem}_{index:06d}"))
        samples.append(RawSample(name, path, array.transpose(3, 1, 2, 0), None, channels, where))
    return samples


def _read_npy(path: Path, spec: InputSpec, axes: str) -> list[RawSample]:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise PredictInputError(path, f"not a readable .npy array ({error})") from None
    if not np.issubdtype(array.dtype, np.number):
        raise PredictInputError(path, f"the array is not numeric ({array.dtype})")
    several = "N" in axes.upper()
    try:
        letters = parse_axes(axes if several else "N" + axes)
    except ValueError as error:
        raise PredictInputError(path, str(error)) from None
    batch = array if several else array[None]
    if batch.ndim != len(letters):
        raise PredictInputError(path, f"axes {axes!r} do not fit an array of shape {array.shape}")
    if "M" not in letters:
        batch, letters = batch[..., None], letters + "M"
    batch = batch.transpose([letters.index(axis) for axis in TARGET_AXES]).astype(np.float32)
    return [
        RawSample(
            f"{path.stem}_{row:06d}" if several else path.stem, path, sample[:, : valid_length(sample)],
            None, None, f"sample {row}" if several else None,
        )
        for row, sample in enumerate(batch)
    ]


_READERS: dict[str, Callable[[Path, InputSpec, str], list[RawSample]]] = {
    ".skeleton": _read_ntu,
    ".json": _read_json,
    ".txt": _read_msr,
    ".mat": _read_utd,
    ".npy": _read_npy,
    **{suffix: _read_pyskl for suffix in PICKLE_SUFFIXES},
}


def read_input_file(path: str | os.PathLike, spec: InputSpec, axes: str = DEFAULT_AXES) -> list[RawSample]:
    """Read every sequence of one input file (see the module docstring for the formats).

    Raises:
        DatasetFormatError: the file is not readable in its format (the message names it).
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise PredictInputError(path, f"unknown input format {path.suffix!r}; readable: {', '.join(sorted(_READERS))}")
    return reader(path, spec, axes)


def collect_input_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The files to predict: each given file, and the readable files of each given folder
    (not recursive, sorted by name).  A missing input, or a folder without any, is an error
    naming it."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                child for child in path.iterdir()
                if child.is_file() and (child.suffix.lower() in FOLDER_SUFFIXES or child.name.endswith(MSR_SUFFIX))
            )
            if not found:
                raise FileNotFoundError(
                    f"folder {path} holds no skeleton file (*{', *'.join(FOLDER_SUFFIXES)}, *{MSR_SUFFIX})"
                )
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    return files


def fit_to_spec(sample: RawSample, spec: InputSpec, min_frames: int = 1) -> np.ndarray:
    """``sample.data`` as the model's ``(C, T, V, M)`` input, or a :class:`PredictInputError`.

    Checks the layout (when the format states one), the joint count, the channels (by name when
    the format names them, else by count), the frame count (at least ``min_frames``) and finite
    values; pads missing persons with zeros and drops extra persons only when they are absent
    (all zeros).
    """
    where = sample.where
    channels, frames, joints, persons = sample.data.shape

    def refuse(what: str) -> PredictInputError:
        return PredictInputError(sample.source, f"{what}; the checkpoint takes {spec.describe()}", where=where)

    if sample.layout is not None and sample.layout != spec.layout.name:
        raise refuse(f"layout {sample.layout} ({get_layout(sample.layout).num_joints} joints)")
    if joints != spec.layout.num_joints:
        raise refuse(f"{joints} joints")
    if sample.channels is not None and tuple(sample.channels) != spec.channels:
        raise refuse(f"channels ({', '.join(sample.channels)})")
    if channels != len(spec.channels):
        raise refuse(f"{channels} channels")
    if frames < min_frames:
        raise PredictInputError(
            sample.source, f"{frames} frame(s), fewer than the {min_frames} needed", where=where
        )
    if not np.isfinite(sample.data).all():
        raise PredictInputError(sample.source, "holds NaN or Inf values", where=where)
    if persons > spec.num_persons:
        if sample.data[..., spec.num_persons:].any():
            raise refuse(f"{persons} persons present")
        return sample.data[..., : spec.num_persons]
    padding = np.zeros((channels, frames, joints, spec.num_persons - persons), dtype=np.float32)
    return np.concatenate([sample.data, padding], axis=3) if persons < spec.num_persons else sample.data


# --------------------------------------------------------------------------- predicting


@dataclass
class Prediction:
    """The top classes of one sample: ``(class index, class name, probability)``, best first."""

    name: str
    source: str
    top: list[tuple[int, str, float]]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.source,
            "top": [{"index": i, "class": c, "probability": p} for i, c, p in self.top],
        }


@dataclass
class PredictedBatch:
    """One scored batch: its samples, their padded input and the model's scores.

    Attributes:
        samples: the ``N`` samples.
        x: ``(N, C, T, V, M)`` float32 raw input (zero after each sample's length), CPU.
        lengths: ``(N,)`` int64 valid frames.
        scores: ``(N, classes)`` float32 scores (:meth:`Predictor.scores`), CPU.
        predictions: the top-k of each sample.
    """

    samples: list[RawSample]
    x: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor
    predictions: list[Prediction]


@dataclass
class PredictionReport:
    """Everything :func:`predict` found: predictions, skipped files and how many were read."""

    checkpoint: str
    num_clips: int
    files: int = 0
    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def summary(self) -> str:
        """Counts, then each skipped file's reason (which names the file)."""
        lines = [
            f"predicted {len(self.predictions)} sample(s) from {self.files - len(self.skipped)} of "
            f"{self.files} file(s); skipped {len(self.skipped)}"
        ]
        lines += [f"  skipped: {item.reason}" for item in self.skipped]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "num_clips": self.num_clips,
            "files": self.files,
            "predictions": [p.as_json() for p in self.predictions],
            "skipped": [s.as_json() for s in self.skipped],
        }

    def write(self, path: str | os.PathLike) -> Path:
        """``.json`` (the whole report) or ``.csv`` (one row per sample and rank; a skipped file
        is a row with its ``error``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
            return path
        if path.suffix.lower() != ".csv":
            raise ValueError(f"--out {path}: write .json or .csv")
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "name", "rank", "class_index", "class", "probability", "error"])
            for prediction in self.predictions:
                for rank, (index, name, probability) in enumerate(prediction.top, start=1):
                    writer.writerow([prediction.source, prediction.name, rank, index, name, f"{probability:.6f}", ""])
            for item in self.skipped:
                writer.writerow([item.path, "", "", "", "", "", item.reason])
        return path


def _pad_batch(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, T_i, V, M)`` arrays -> zero-padded ``(N, C, max T_i, V, M)`` and ``(N,)`` lengths."""
    lengths = torch.tensor([array.shape[1] for array in arrays], dtype=torch.int64)
    channels, _, joints, persons = arrays[0].shape
    x = torch.zeros(len(arrays), channels, int(lengths.max()), joints, persons)
    for row, array in enumerate(arrays):  # a copy per sample while batching, as a collate
        x[row, :, : array.shape[1]] = torch.from_numpy(array)
    return x, lengths


def _top_k(scores: torch.Tensor, k: int, class_names: Sequence[str]) -> list[list[tuple[int, str, float]]]:
    probabilities = torch.softmax(scores, dim=1)
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return [
        [(int(i), class_names[int(i)], float(p)) for i, p in zip(row_indices, row_values)]
        for row_indices, row_values in zip(indices.tolist(), values.tolist())
    ]


def iter_predictions(
    predictor: Predictor,
    files: Sequence[Path],
    report: PredictionReport,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int | None = None,
    min_frames: int | None = None,
    axes: str = DEFAULT_AXES,
    progress: bool = False,
) -> Iterator[PredictedBatch]:
    """Read ``files``, score them ``batch_size`` samples at a time and yield each batch; every
    file that cannot be read or fitted is appended to ``report.skipped`` and the rest go on.
    ``min_frames`` defaults to the predictor's."""
    batch_size = batch_size or predictor.config.train.eval_batch_size
    min_frames = predictor.min_frames if min_frames is None else min_frames
    pending: list[tuple[RawSample, np.ndarray]] = []

    def score(chunk: list[tuple[RawSample, np.ndarray]]) -> PredictedBatch:
        x, lengths = _pad_batch([array for _, array in chunk])
        scores = predictor.scores(x, lengths).cpu()
        tops = _top_k(scores, top_k, predictor.class_names)
        predictions = [Prediction(sample.name, str(sample.source), top) for (sample, _), top in zip(chunk, tops)]
        report.predictions += predictions
        return PredictedBatch([sample for sample, _ in chunk], x, lengths, scores, predictions)

    for path in tqdm(files, desc="predict", unit="file", disable=not progress, file=sys.stderr):
        report.files += 1
        try:
            samples = read_input_file(path, predictor.spec, axes)
            fitted = [(sample, fit_to_spec(sample, predictor.spec, min_frames)) for sample in samples]
        except (DatasetFormatError, ImportError) as error:  # the message names the file
            report.skipped.append(SkippedFile(str(path), str(error)))
            continue
        except OSError as error:
            report.skipped.append(SkippedFile(str(path), f"{path}: cannot read ({error})"))
            continue
        except Exception as error:  # noqa: BLE001 - a broken file must never stop the others
            report.skipped.append(SkippedFile(str(path), f"{path}: unexpected error {type(error).__name__}: {error}"))
            continue
        pending += fitted
        while len(pending) >= batch_size:
            yield score(pending[:batch_size])
            pending = pending[batch_size:]
    if pending:
        yield score(pending)


def predict(
    checkpoint: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    top_k: int = DEFAULT_TOP_K,
    num_clips: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    overrides: Sequence[str] = (),
    min_frames: int | None = None,
    axes: str = DEFAULT_AXES,
    progress: bool = False,
    on_batch: Callable[[Predictor, PredictedBatch], None] | None = None,
) -> PredictionReport:
    """Predict the action of every sequence in ``inputs`` (files and folders of them).

    Args:
        checkpoint: a training checkpoint (``RUN/last.pt``).
        inputs: files in any supported format, or folders of them.
        top_k: classes reported per sample.
        num_clips: clips per sequence (``eval.num_clips``); ``None`` keeps the checkpoint's.
        batch_size: samples per forward pass (default the run's ``train.eval_batch_size``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        overrides: ``KEY=VALUE`` changes of the checkpoint's config.
        min_frames: shorter sequences are refused (default: 2 for a motion modality, else 1).
        axes: axes of ``.npy`` inputs (``CTVM``; ``N`` for several samples per file).
        progress: show a progress bar over the files.
        on_batch: called with every scored batch (e.g. to explain it).

    Returns:
        the predictions and the skipped files with their reasons.
    """
    predictor = Predictor.from_checkpoint(checkpoint, overrides, device, num_clips)
    files = collect_input_files(inputs)
    report = PredictionReport(str(checkpoint), predictor.num_clips)
    for batch in iter_predictions(predictor, files, report, top_k, batch_size, min_frames, axes, progress):
        if on_batch is not None:
            on_batch(predictor, batch)
    return report
