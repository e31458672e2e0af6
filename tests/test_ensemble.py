"""shapmix ensemble: runs' test scores fused by sample name, with a run's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from shapmix.cli import main
from shapmix.engine.checkpoint import save_checkpoint
from shapmix.engine.ensemble import ensemble_runs
from shapmix.engine.evaluate import compute_metrics, save_scores

NUM_CLASSES = 4
TRAIN_COUNTS = [30, 12, 5, 2]
THRESHOLDS = {"many_threshold": 10, "few_threshold": 4}


def _run(root: Path, names: list[str], logits: np.ndarray, labels: np.ndarray, counts=TRAIN_COUNTS) -> Path:
    """A run directory as training leaves it, as far as an ensemble reads it."""
    root.mkdir(parents=True)
    save_scores(root / "test_scores.npz", names, logits, labels)
    (root / "config.yaml").write_text(yaml.safe_dump({"data": THRESHOLDS}))
    save_checkpoint({"train_counts": list(counts), "class_names": [f"c{i}" for i in range(NUM_CLASSES)]}, root / "last.pt")
    return root


@pytest.fixture
def streams(tmp_path):
    """Two runs scored on the same 40 samples, stored in different orders."""
    rng = np.random.default_rng(0)
    names = [f"sample{i:03d}" for i in range(40)]
    labels = rng.integers(0, NUM_CLASSES, 40)
    joint, bone = rng.normal(size=(2, 40, NUM_CLASSES)).astype(np.float32).astype(np.float64)  # float32-exact
    order = rng.permutation(40)
    a = _run(tmp_path / "joint", names, joint, labels)
    b = _run(tmp_path / "bone", [names[i] for i in order], bone[order], labels[order])
    return a, b, names, joint, bone, labels


def test_fusion_is_the_weighted_sum_of_the_aligned_logits(streams):
    a, b, names, joint, bone, labels = streams
    result = ensemble_runs([a, b], [0.6, 0.4])
    assert result.names.tolist() == sorted(names)  # names are unique and sorted here
    np.testing.assert_allclose(result.logits, 0.6 * joint + 0.4 * bone, rtol=1e-12)
    expected = compute_metrics(0.6 * joint + 0.4 * bone, labels, TRAIN_COUNTS, **THRESHOLDS)
    assert result.metrics.to_dict()["per_class"] == expected.to_dict()["per_class"]
    assert (result.metrics.top1, result.metrics.few) == (expected.top1, expected.few)
    alone = compute_metrics(joint, labels, TRAIN_COUNTS, **THRESHOLDS)
    assert result.member_metrics[0].top1 == alone.top1


def test_the_command_prints_and_writes_a_runs_metrics(streams, tmp_path, capsys):
    a, b, names, joint, bone, labels = streams
    out = tmp_path / "2s"
    assert main(["ensemble", str(a), str(b), "--weights", "1,2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = printed.splitlines()
    assert table[1].split()[:2] == ["joint", "1"] and table[2].split()[:2] == ["bone", "2"]
    assert table[3].startswith("ensemble") and "few(1)" in table[0]
    written = json.loads((out / "metrics.json").read_text())
    assert written["weights"] == [1.0, 2.0] and len(written["test"]["per_class"]) == NUM_CLASSES
    with np.load(out / "test_scores.npz") as fused:
        order = np.argsort(names)
        np.testing.assert_allclose(fused["logits"], (joint + 2.0 * bone)[order], rtol=1e-6)
    assert (out / "class_accuracy.png").exists()


def test_runs_tested_on_other_samples_are_an_error_naming_them(streams, tmp_path, capsys):
    a, _, names, joint, _, labels = streams
    other = _run(tmp_path / "other", names[:-1] + ["stranger"], joint, labels)
    with pytest.raises(ValueError, match=r"runs .*joint and .*other were tested on different samples.*'sample039'.*'stranger'"):
        ensemble_runs([a, other])
    assert main(["ensemble", str(a), str(other)]) == 2
    assert f"{a} and {other}" in capsys.readouterr().err


def test_disagreeing_labels_counts_and_weights_are_errors(streams, tmp_path):
    a, _, names, joint, _, labels = streams
    relabelled = _run(tmp_path / "relabelled", names, joint, (labels + 1) % NUM_CLASSES)
    with pytest.raises(ValueError, match="disagree on the label of sample 'sample000'"):
        ensemble_runs([a, relabelled])
    recounted = _run(tmp_path / "recounted", names, joint, labels, counts=[20, 20, 5, 2])
    with pytest.raises(ValueError, match="different class counts"):
        ensemble_runs([a, recounted])
    with pytest.raises(ValueError, match="one positive weight per run"):
        ensemble_runs([a, relabelled], [1.0])
    with pytest.raises(ValueError, match="at least two runs"):
        ensemble_runs([a])
    with pytest.raises(FileNotFoundError, match="test_scores.npz does not exist"):
        ensemble_runs([a, tmp_path])
