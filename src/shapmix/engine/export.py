"""Export a checkpoint with its test-time preprocessing as one module (``shapmix export``).

The exported module maps a raw, zero-padded batch and its valid lengths to class scores::

    skeleton (N, C, T, V, M) float32, lengths (N,) int64  ->  scores (N, classes) float32

and contains everything between: the run's test pipeline (centring, the central crop or
``eval.num_clips`` uniformly spaced windows resized to ``data.window`` frames, the input modality),
the network and the clip average (:func:`~shapmix.engine.evaluate.average_clip_scores`; the
softmax of the scores gives the class probabilities).  A deployment therefore needs neither
shapmix nor the run's config: it reads its skeletons into that array (channels, joint order and
persons as the checkpoint's :class:`~shapmix.engine.predict.InputSpec`) and calls the module.

Formats:

* ``torchscript``: :func:`torch.jit.trace` of the whole module (tracing follows the Python code,
  so every backbone whose forward has no data-dependent Python control flow exports, with no
  backbone-specific code); load with ``torch.jit.load(FILE)``.  Traced on the CPU, for the CPU.
* ``onnx``: the same trace through :func:`torch.onnx.export` (opset :data:`ONNX_OPSET`, dynamic
  batch and frame axes), run with onnxruntime; needs ``pip install 'shapmix[onnx]'``.

Both files carry a JSON description (class names, layout, joint and channel names, persons,
window, clips, the input and output shapes): in the TorchScript file as the extra file
``shapmix.json`` (``torch.jit.load(FILE, _extra_files={"shapmix.json": ""})``), in the ONNX file
as the metadata property ``shapmix`` (``session.get_modelmeta().custom_metadata_map``).
After writing, the exported module is run on a random batch and compared with the checkpoint.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch
from torch import nn

from .evaluate import average_clip_scores
from .predict import Predictor

__all__ = ["EXPORT_FORMATS", "ONNX_OPSET", "METADATA_KEY", "DeployedModel", "ExportResult", "export_checkpoint", "export_predictor"]

ExportFormat = Literal["torchscript", "onnx"]
EXPORT_FORMATS: tuple[str, ...] = ("torchscript", "onnx")
ONNX_OPSET = 17
METADATA_KEY = "shapmix"
"""Name of the JSON description in the exported file (extra file ``shapmix.json`` / metadata key)."""
INPUT_NAMES = ("skeleton", "lengths")
OUTPUT_NAME = "scores"
EXAMPLE_SEED = 0
EXAMPLE_BATCH = 3
EXAMPLE_FRAMES_PER_WINDOW = 2
"""The tracing and check batch has this many times ``data.window`` frames (lengths vary in it)."""


class DeployedModel(nn.Module):
    """The test pipeline, the network and the clip average as one module.

    ``forward(skeleton (N, C, T, V, M), lengths (N,) int64) -> scores (N, classes)``, equal to
    :meth:`Predictor.scores` of the predictor it is built from.
    """

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.network = predictor.model
        self.pipeline = predictor.pipeline
        self.num_clips = predictor.num_clips

    def forward(self, skeleton: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        inputs = self.pipeline(skeleton, lengths)[0]
        return average_clip_scores(self.network(inputs).float(), self.num_clips)


@dataclass
class ExportResult:
    """What was written and how closely it reproduces the checkpoint on a random batch."""

    path: Path
    format: str
    metadata: dict[str, Any]
    max_abs_difference: float


def _metadata(predictor: Predictor) -> dict[str, Any]:
    spec, data = predictor.spec, predictor.config.data
    return {
        "format": "shapmix deployed model",
        "inputs": {
            INPUT_NAMES[0]: f"(N, C={len(spec.channels)}, T, V={spec.layout.num_joints}, M={spec.num_persons}) "
            "float32, zero after each sample's valid frames and for absent persons",
            INPUT_NAMES[1]: "(N,) int64 valid frames per sample, at least 1",
        },
        "output": f"{OUTPUT_NAME}: (N, {len(predictor.class_names)}) float32; softmax gives class probabilities",
        "class_names": predictor.class_names,
        "layout": spec.layout.name,
        "joint_names": list(spec.layout.joint_names),
        "channels": list(spec.channels),
        "num_persons": spec.num_persons,
        "model": predictor.config.model.name,
        "modality": data.modality,
        "window": data.window,
        "test_crop": data.test_crop,
        "num_clips": predictor.num_clips,
    }


def example_batch(predictor: Predictor, batch: int = EXAMPLE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random raw batch ``(batch, C, 2 * window, V, M)`` whose lengths differ (the last
    sample shorter than a window), zero after each length, for tracing and checking."""
    spec = predictor.spec
    frames = EXAMPLE_FRAMES_PER_WINDOW * predictor.config.data.window
    generator = torch.Generator().manual_seed(EXAMPLE_SEED)
    x = torch.randn(batch, len(spec.channels), frames, spec.layout.num_joints, spec.num_persons, generator=generator)
    lengths = torch.linspace(frames, max(2, frames // 3), batch).round().to(torch.int64)
    padding = torch.arange(frames)[None, :] >= lengths[:, None]  # (batch, frames)
    return x.masked_fill(padding[:, None, :, None, None], 0.0), lengths


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence what tracing says about this module: its shape checks and Python constants are
    recorded as constants, as intended, and torch >= 2.9 marks TorchScript as deprecated (still
    the format a plain ``torch.jit.load`` runs everywhere)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _trace(module: DeployedModel, example: tuple[torch.Tensor, torch.Tensor]) -> torch.jit.ScriptModule:
    with _quiet_tracing():
        return torch.jit.trace(module, example, check_trace=False)


def _write_onnx(module: DeployedModel, example: tuple[torch.Tensor, torch.Tensor], path: Path, metadata: dict[str, Any]) -> None:
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs onnx and onnxruntime: pip install 'shapmix[onnx]'") from None
    with _quiet_tracing():
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,  # the tracing exporter: the same trace as TorchScript, no onnxscript needed
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAMES[0]: {0: "batch", 2: "frames"}, INPUT_NAMES[1]: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(model, str(path))


def run_exported(path: str | os.PathLike, export_format: str, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Scores of an exported file on a raw batch, run the way a deployment runs it."""
    if export_format == "torchscript":
        with torch.no_grad(), _quiet_tracing():
            return torch.jit.load(str(path), map_location="cpu")(x, lengths)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {INPUT_NAMES[0]: x.numpy(), INPUT_NAMES[1]: lengths.numpy()}
    return torch.from_numpy(session.run([OUTPUT_NAME], feeds)[0])


def export_predictor(predictor: Predictor, path: str | os.PathLike, export_format: ExportFormat = "torchscript") -> ExportResult:
    """Write a CPU ``predictor`` as a deployable file; see the module docstring."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; use one of {EXPORT_FORMATS}")
    if predictor.device.type != "cpu":
        raise ValueError(f"export traces on the CPU: load the predictor with device='cpu', not {predictor.device}")
    module = DeployedModel(predictor).eval()
    example = example_batch(predictor)
    metadata = _metadata(predictor)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if export_format == "torchscript":
        traced = _trace(module, example)
        with _quiet_tracing():
            torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})
    else:
        _write_onnx(module, example, path, metadata)
    with torch.no_grad():
        expected = predictor.scores(*example)
    exported = run_exported(path, export_format, *example)
    difference = float((exported - expected).abs().max())
    return ExportResult(path, export_format, metadata, difference)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    export_format: ExportFormat = "torchscript",
    num_clips: int | None = None,
    overrides: Sequence[str] = (),
) -> ExportResult:
    """Export a training checkpoint with its test-time preprocessing (see the module docstring).

    Args:
        checkpoint: ``RUN/last.pt`` or ``best.pt``.
        path: the file to write.
        export_format: ``torchscript`` or ``onnx``.
        num_clips: clips per sequence baked into the module (default the checkpoint's).
        overrides: ``KEY=VALUE`` changes of the checkpoint's config.
    """
    predictor = Predictor.from_checkpoint(checkpoint, overrides, "cpu", num_clips)
    return export_predictor(predictor, path, export_format)
