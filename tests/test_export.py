"""shapmix export: the model with its test-time preprocessing reproduces the checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from helpers import train_tiny_checkpoint
from shapmix.cli import main
from shapmix.engine.export import METADATA_KEY, export_checkpoint, run_exported
from shapmix.engine.predict import Predictor

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def bone_motion_run(tmp_path_factory) -> Path:
    """CTR-GCN on bone motion: the export must carry the centring, crop and modality."""
    return train_tiny_checkpoint(tmp_path_factory.mktemp("export"), "ntu25", 2, ["data.modality=bone_motion"])


def _raw_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Another batch size and length than the export traced with, zero after each length."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 37, 25, 2, generator=generator)
    lengths = torch.tensor([37, 30, 9, 2, 17])
    return x.masked_fill((torch.arange(37)[None] >= lengths[:, None])[:, None, :, None, None], 0.0), lengths


@pytest.mark.parametrize("num_clips", [1, 3])
def test_torchscript_reproduces_the_checkpoint_on_raw_input(bone_motion_run, tmp_path, num_clips):
    result = export_checkpoint(bone_motion_run, tmp_path / "model.pt", "torchscript", num_clips)
    assert result.max_abs_difference <= TOLERANCE  # on the batch it was traced with
    x, lengths = _raw_batch()
    expected = Predictor.from_checkpoint(bone_motion_run, device="cpu", num_clips=num_clips).scores(x, lengths)
    extra = {f"{METADATA_KEY}.json": ""}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        exported = torch.jit.load(str(result.path), _extra_files=extra)(x, lengths)
    assert float((exported - expected).abs().max()) <= TOLERANCE
    metadata = json.loads(extra[f"{METADATA_KEY}.json"])
    assert metadata["class_names"] == [f"class{c}" for c in range(4)]
    assert (metadata["layout"], metadata["modality"], metadata["num_clips"]) == ("ntu25", "bone_motion", num_clips)


@pytest.mark.slow  # a fresh interpreter imports torch
def test_the_exported_file_runs_without_shapmix(bone_motion_run, tmp_path):
    path = export_checkpoint(bone_motion_run, tmp_path / "model.pt").path
    x, lengths = _raw_batch()
    torch.save({"x": x, "lengths": lengths}, tmp_path / "batch.pt")
    code = (
        "import sys, warnings; sys.modules['shapmix'] = None  # importing shapmix now fails\n"
        "warnings.simplefilter('ignore')\n"
        "import torch\n"
        f"batch = torch.load({str(tmp_path / 'batch.pt')!r})\n"
        "with torch.no_grad():\n"
        f"    scores = torch.jit.load({str(path)!r})(batch['x'], batch['lengths'])\n"
        f"torch.save(scores, {str(tmp_path / 'scores.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    expected = Predictor.from_checkpoint(bone_motion_run, device="cpu").scores(x, lengths)
    assert float((torch.load(tmp_path / "scores.pt") - expected).abs().max()) <= TOLERANCE


def test_onnx_reproduces_the_checkpoint_through_onnxruntime(bone_motion_run, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra: pip install 'shapmix[onnx]'")
    onnxruntime = pytest.importorskip("onnxruntime", reason="running ONNX needs the onnx extra: pip install 'shapmix[onnx]'")
    result = export_checkpoint(bone_motion_run, tmp_path / "model.onnx", "onnx", num_clips=2)
    assert result.max_abs_difference <= TOLERANCE
    x, lengths = _raw_batch()
    expected = Predictor.from_checkpoint(bone_motion_run, device="cpu", num_clips=2).scores(x, lengths)
    assert float((run_exported(result.path, "onnx", x, lengths) - expected).abs().max()) <= TOLERANCE
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    metadata = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert metadata["channels"] == ["x", "y", "z"] and metadata["num_persons"] == 2


def test_export_command(bone_motion_run, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", "--checkpoint", str(bone_motion_run), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (torchscript): ctrgcn, 4 classes, layout ntu25" in printed and "max |exported" in printed
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", str(bone_motion_run), "--format", "tflite", "--out", str(out)])


@pytest.mark.parametrize("backbone", ["stgcnpp", "agcn", "infogcn", "hdgcn"])
def test_every_backbone_exports_and_reproduces_its_checkpoint(backbone, tmp_path):
    # CTR-GCN is the run above; each other backbone at a tiny width, on the joint stream
    run = train_tiny_checkpoint(tmp_path, "ntu25", 2, [f"model.name={backbone}"])
    result = export_checkpoint(run, tmp_path / "model.pt", "torchscript", 1)
    assert result.max_abs_difference <= TOLERANCE
    x, lengths = _raw_batch()
    expected = Predictor.from_checkpoint(run, device="cpu").scores(x, lengths)
    assert float((run_exported(result.path, "torchscript", x, lengths) - expected).abs().max()) <= TOLERANCE
