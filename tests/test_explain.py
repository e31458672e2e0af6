"""shapmix predict --explain: exact Shapley values of the predicted class, JSON and pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import train_tiny_checkpoint
from shapmix.analysis.explain import explain_batch
from shapmix.cli import main
from shapmix.config import load_config
from shapmix.engine.predict import InputSpec, PredictionReport, Predictor, iter_predictions
from shapmix.skeleton.layouts import get_layout
from shapmix.viz.explain import animate_explanation, key_frames, plot_explanation_frames
from shapmix.viz.saliency import template_pose

LAYOUT = get_layout("ntu25")
FRAMES = 24
ENERGY_SCALE = 1000.0


class PartMotionEnergy(nn.Module):
    """Logit ``p`` = mean squared frame-to-frame displacement of body part ``p``'s joints."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("membership", torch.nn.functional.one_hot(torch.tensor(LAYOUT.part_of_joint)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, V, M) -> (N, P)
        energy = (x[:, :, 1:] - x[:, :, :-1]).pow(2).sum(dim=(1, 4)).mean(dim=1)  # (N, V)
        return ENERGY_SCALE * energy @ self.membership / self.membership.sum(dim=0)


def _one_part_moves(part: int) -> np.ndarray:
    """``(3, T, 25, 2)``: the template pose standing still, only ``part``'s joints swinging."""
    pose = np.zeros((3, FRAMES, LAYOUT.num_joints, 2), dtype=np.float32)
    pose[:2, :, :, 0] = template_pose(LAYOUT).T[:, None, :]
    moving = list(LAYOUT.parts.values())[part]
    x_track = pose[0]  # (T, V, M) view
    x_track[:, moving, 0] += 0.3 * np.sin(np.linspace(0, 2 * np.pi, FRAMES))[:, None]
    return pose


@pytest.mark.parametrize("num_clips", [1, 3])
def test_the_part_that_moves_is_the_most_salient(tmp_path, num_clips):
    config = load_config(None, [f"eval.num_clips={num_clips}"])
    spec = InputSpec(LAYOUT, ("x", "y", "z"), 2)
    predictor = Predictor(PartMotionEnergy(), config, spec, list(LAYOUT.part_names), torch.device("cpu"))
    files = []
    for part in range(LAYOUT.num_parts):
        files.append(tmp_path / f"moves_{LAYOUT.part_names[part]}.npy")
        np.save(files[-1], _one_part_moves(part))
    report = PredictionReport("hand-built", num_clips)
    (batch,) = iter_predictions(predictor, files, report, top_k=1)
    baseline = torch.zeros(3, config.data.window, LAYOUT.num_joints, 2)  # a still skeleton
    explanations = explain_batch(predictor, batch, baseline)
    for part, explanation in enumerate(explanations):
        assert explanation.predicted == part and explanation.most_salient_part == LAYOUT.part_names[part]
        others = np.delete(explanation.part_values, part)
        assert explanation.part_values[part] > 0.5 and np.abs(others).max() < 1e-6
        # efficiency: the part values share out v(all parts) - v(no part)
        assert explanation.part_values.sum() == pytest.approx(explanation.worths[-1] - explanation.worths[0], abs=1e-9)
        assert explanation.worths[-1] == pytest.approx(explanation.probability, abs=1e-5)
        # a combination holding the moving part is worth as much as the part alone, merged or not
        document = explanation.as_json(num_clips, "zeros")
        for combination in document["combinations"]:
            holds = LAYOUT.part_names[part] in combination["parts"]
            assert combination["shapley"] == pytest.approx(explanation.part_values[part] if holds else 0.0, abs=1e-6)
    assert len(document["coalitions"]) == 32 and len(document["combinations"]) == 31
    if num_clips == 1:  # the pictures of the left arm's swing (looked at while writing the test)
        sequence = batch.x[1].numpy()
        png = plot_explanation_frames(sequence, LAYOUT, spec.channels, explanations[1].part_values, tmp_path / "arm.png", "left arm")
        gif = animate_explanation(sequence, LAYOUT, spec.channels, explanations[1].part_values, tmp_path / "arm.gif", "left arm")
        assert Image.open(png).size[0] > Image.open(png).size[1]
        assert Image.open(gif).n_frames == FRAMES


def test_key_frames_spread_over_the_sequence():
    assert key_frames(24).tolist() == [0, 8, 15, 23]
    assert key_frames(2).tolist() == [0, 1]
    assert key_frames(100, 48)[[0, -1]].tolist() == [0, 99]


def test_drawing_needs_x_and_y(tmp_path):
    with pytest.raises(ValueError, match=r"needs x and y channels, the sequence has \('a', 'b', 'c'\)"):
        plot_explanation_frames(np.zeros((3, 4, 25, 1)), LAYOUT, ("a", "b", "c"), np.zeros(5), tmp_path / "x.png")


def test_predict_explain_writes_the_json_and_both_pictures(tmp_path, capsys):
    checkpoint = train_tiny_checkpoint(tmp_path / "tiny", "ntu25", persons=2)
    sample = tmp_path / "clip.npy"
    np.save(sample, _one_part_moves(1)[:, :10])
    out = tmp_path / "explain"
    assert main(["predict", "--checkpoint", str(checkpoint), str(sample), "--explain", str(out)]) == 0
    assert "wrote 3 explanation file(s)" in capsys.readouterr().out
    document = json.loads((out / "clip.json").read_text())
    assert document["name"] == "clip" and document["file"] == str(sample)
    assert [p["part"] for p in document["parts"]] == list(LAYOUT.part_names)
    assert "mean training sequence" in document["baseline"]  # CE run: its dataset's mean
    total = sum(p["shapley"] for p in document["parts"])
    worths = [c["probability"] for c in document["coalitions"]]
    assert total == pytest.approx(worths[-1] - worths[0], abs=1e-6)
    assert worths[-1] == pytest.approx(document["predicted"]["probability"], abs=1e-5)
    assert Image.open(out / "clip_frames.png").format == "PNG"
    assert Image.open(out / "clip.gif").n_frames == 10
