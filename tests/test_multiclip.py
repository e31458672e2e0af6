"""eval.num_clips: uniformly spaced test windows, scores averaged as probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import train_tiny_checkpoint
from shapmix.config import load_config
from shapmix.data.format import load_dataset
from shapmix.data.transforms import CropResize, MultiClipCropResize, clip_starts, resample_frames
from shapmix.engine.builders import build_test_pipeline
from shapmix.engine.evaluate import average_clip_scores, evaluate_checkpoint
from shapmix.engine.predict import Predictor


def test_window_starts_on_a_known_length():
    # 20 valid frames, test_crop 0.5: drop floor(0.5 * 20 / 2) = 5 frames at each end -> windows of 10
    clips = MultiClipCropResize(window=8, test_crop=0.5, num_clips=5)
    start, crop = clips.windows(torch.tensor([20]))
    assert start.tolist() == [[0, 2, 5, 7, 10]] and crop.tolist() == [[10] * 5]
    start, _ = MultiClipCropResize(8, 0.5, 3).windows(torch.tensor([20]))
    assert start.tolist() == [[0, 5, 10]]  # the middle window is the central crop (start 5)
    assert MultiClipCropResize(8, 0.5, 1).windows(torch.tensor([20]))[0].tolist() == [[5]]
    assert clip_starts(torch.tensor([9, 100]), torch.tensor([9, 95]), 4).tolist() == [[0, 0, 0, 0], [0, 1, 3, 5]]
    with pytest.raises(ValueError, match="at least 1"):
        MultiClipCropResize(8, 0.5, 0)


def test_the_clips_are_the_windows_resized_sample_major():
    x = torch.randn(2, 3, 30, 25, 2)
    lengths = torch.tensor([30, 21])
    x[1, :, 21:] = 0
    clips, clip_lengths = MultiClipCropResize(window=8, test_crop=0.9, num_clips=4)(x, lengths)
    assert clips.shape == (8, 3, 8, 25, 2) and clip_lengths.tolist() == [8] * 8
    start, crop = MultiClipCropResize(8, 0.9, 4).windows(lengths)
    for sample in range(2):
        for k in range(4):
            expected = resample_frames(x[sample : sample + 1], start[sample, k : k + 1], crop[sample, k : k + 1], 8)
            torch.testing.assert_close(clips[4 * sample + k], expected[0], rtol=0, atol=0)
    # one clip is exactly the central crop
    central = CropResize(8, (0.9, 0.9), random=False)(x, lengths)[0]
    torch.testing.assert_close(MultiClipCropResize(8, 0.9, 1)(x, lengths)[0], central, rtol=0, atol=0)


def test_clip_scores_average_probabilities():
    logits = torch.randn(6, 5)
    torch.testing.assert_close(average_clip_scores(logits, 1), logits)
    averaged = average_clip_scores(logits, 3)
    expected = torch.softmax(logits, 1).reshape(2, 3, 5).mean(1)
    torch.testing.assert_close(torch.softmax(averaged, 1), expected)
    torch.testing.assert_close(averaged.exp().sum(1), torch.ones(2))  # log-probabilities


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_checkpoint(tmp_path_factory.mktemp("clips"), "ntu25", 2, ["data.test_crop=0.6"])


def test_one_clip_is_the_runs_own_test_evaluation(run, tmp_path):
    evaluate_checkpoint(run, tmp_path, overrides=["eval.num_clips=1"])
    with np.load(tmp_path / "eval_test_scores.npz") as again, np.load(run.parent / "test_scores.npz") as trained:
        assert again["names"].tolist() == trained["names"].tolist()
        np.testing.assert_array_equal(again["logits"], trained["logits"])


def test_several_clips_average_the_windows_of_each_sequence(run, tmp_path):
    metrics = evaluate_checkpoint(run, tmp_path, overrides=["eval.num_clips=3"])
    dataset = load_dataset(run.parent.parent / "data")
    predictor = Predictor.from_checkpoint(run)  # one clip: its pipeline centres and crops centrally
    with np.load(tmp_path / "eval_test_scores.npz") as scores:
        names, logits = scores["names"].tolist(), torch.from_numpy(scores["logits"])
    rows = [dataset.names.index(name) for name in names]
    x = torch.from_numpy(np.asarray(dataset.data[rows]))
    lengths = torch.from_numpy(dataset.lengths[rows])
    centred = predictor.pipeline.transforms[0](x, lengths)[0]  # Center
    valid = lengths.to(torch.int64)
    crop = valid - 2 * torch.floor(0.4 * valid.double() / 2).to(torch.int64)  # test_crop 0.6
    probabilities = []
    for k in range(3):  # windows at 0, (valid - crop) / 2 and valid - crop, by hand
        start = torch.div(k * (valid - crop), 2, rounding_mode="floor")
        window = resample_frames(centred, start, crop, predictor.config.data.window)
        with torch.no_grad():
            probabilities.append(torch.softmax(predictor.model(window), 1))
    expected = torch.stack(probabilities).mean(0)
    torch.testing.assert_close(torch.softmax(logits, 1), expected, atol=1e-5, rtol=1e-5)
    assert metrics.num_samples == len(names)
    assert yaml.safe_load((tmp_path / "eval_test.json").read_text())["num_clips"] == 3


def test_a_run_tests_with_its_configured_clips(tmp_path):
    checkpoint = train_tiny_checkpoint(tmp_path, "ntu25", 2, ["eval.num_clips=4"])
    evaluate_checkpoint(checkpoint, tmp_path / "eval")
    with np.load(tmp_path / "eval" / "eval_test_scores.npz") as again, np.load(checkpoint.parent / "test_scores.npz") as trained:
        np.testing.assert_allclose(again["logits"], trained["logits"], atol=1e-6)


def test_the_test_pipeline_grows_the_batch_by_the_clips():
    config = load_config(None, ["data.window=8"])
    pipeline = build_test_pipeline(config, "ntu25", ("x", "y", "z"), num_clips=5)
    out, lengths = pipeline(torch.randn(2, 3, 40, 25, 2), torch.tensor([40, 33]))
    assert out.shape == (10, 3, 8, 25, 2) and lengths.tolist() == [8] * 10


def test_a_bench_run_saved_before_the_eval_section_still_counts_as_the_same_config(tmp_path):
    from shapmix.bench.runner import BenchJob, _check_same_config
    from shapmix.config import config_to_dict

    config = load_config(None, ["schedule.epochs=3"])
    saved = config_to_dict(config)
    del saved["eval"]  # as written by a version without multi-clip testing
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    _check_same_config(BenchJob("old run", tmp_path, config))  # no error
    with pytest.raises(ValueError, match=r"different configuration \(keys \['eval.num_clips'\]\)"):
        _check_same_config(BenchJob("old run", tmp_path, load_config(None, ["schedule.epochs=3", "eval.num_clips=2"])))
