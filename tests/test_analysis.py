"""Tests for the exact Shapley analysis (``shapmix saliency``) and the saliency pictures."""

from __future__ import annotations

import csv
import json
import math

import matplotlib.image
import numpy as np
import pytest
import torch
from helpers import make_tiny_dataset, tiny_config
from torch import nn

from shapmix.analysis import (
    exact_class_saliency,
    ground_truth_hits,
    rank_agreement,
    spearman_rows,
    top_combinations,
)
from shapmix.cli import main
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.mixing import (
    PartCombinations,
    SaliencyTable,
    coalition_values,
    combination_shapley_values,
    shapley_values,
)
from shapmix.skeleton.layouts import get_layout
from shapmix.viz.saliency import (
    part_scores_from_table,
    pick_classes,
    plot_part_saliency_skeletons,
    plot_saliency_heatmap,
    write_training_saliency_figures,
)

LAYOUT = get_layout("ntu25")
COMBINATIONS = PartCombinations.from_layout(LAYOUT)
NUM_CLASSES = 3
CHANNELS, FRAMES, PERSONS = 3, 6, 1
PER_CLASS = 2
"""Samples per class analysed in the end-to-end test (the tiny test split has 4)."""
TINY_SALIENT_PARTS = {  # the parts holding most of the joints 5c..5c+4 that class c of make_tiny_dataset moves
    "class0": ["torso"],
    "class1": ["left_arm", "right_arm"],
    "class2": ["right_arm", "left_leg"],
    "class3": ["right_leg"],
}
CLOSE = {"rtol": 1e-5, "atol": 1e-6}  # float32 forwards: batch composition changes rounding


class TinyModel(nn.Module):
    """A nonlinear joint-wise model: every part interacts with the others through the hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        joints = LAYOUT.num_joints
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(CHANNELS * FRAMES * joints * PERSONS, 16), nn.Tanh(), nn.Linear(16, NUM_CLASSES)
        )
        self.dropout = nn.Dropout(0.5)  # must be off: the analysis runs in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.net(x)) * 3.0


@pytest.fixture
def tiny_problem():
    generator = torch.Generator().manual_seed(3)
    model = TinyModel()
    x = torch.randn(7, CHANNELS, FRAMES, LAYOUT.num_joints, PERSONS, generator=generator)
    y = torch.tensor([0, 2, 0, 2, 2, 0, 2])  # class 1 has no sample
    baseline = torch.randn(CHANNELS, FRAMES, LAYOUT.num_joints, PERSONS, generator=generator) * 0.1
    return model, x, y, baseline


# --------------------------------------------------------------------------- exact values


def test_exact_class_saliency_equals_brute_force(tiny_problem):
    model, x, y, baseline = tiny_problem
    model.train()
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    exact = exact_class_saliency(model, batches, baseline, LAYOUT, COMBINATIONS, NUM_CLASSES, batch_size=13)
    assert model.training, "the model's mode must be restored"

    parts = torch.zeros(NUM_CLASSES, LAYOUT.num_parts, dtype=torch.float64)
    combos = torch.zeros(NUM_CLASSES, len(COMBINATIONS), dtype=torch.float64)
    for n in range(len(x)):  # one sample at a time, averaged by hand
        worths = coalition_values(model, x[n : n + 1], y[n : n + 1], baseline, LAYOUT).double()
        parts[y[n]] += shapley_values(worths)[0]
        combos[y[n]] += combination_shapley_values(worths, COMBINATIONS)[0] / COMBINATIONS.joint_counts
    counts = torch.bincount(y, minlength=NUM_CLASSES)
    for k in (0, 2):
        torch.testing.assert_close(exact.parts[k], parts[k] / counts[k], **CLOSE)
        torch.testing.assert_close(exact.combinations[k], combos[k] / counts[k], **CLOSE)
    assert exact.counts.tolist() == [3, 0, 4]
    assert exact.parts[1].isnan().all() and exact.combinations[1].isnan().all()
    # Efficiency, per class on average: the part values sum to the mean v(all) - v(empty).
    worths = coalition_values(model, x, y, baseline, LAYOUT).double()
    gain = worths[:, -1] - worths[:, 0]
    torch.testing.assert_close(exact.parts[0].sum(), gain[y == 0].mean(), **CLOSE)


# --------------------------------------------------------------------------- agreement


def test_spearman_perfect_reversed_constant():
    base = torch.arange(20, dtype=torch.float64)
    online = torch.stack([base, base, torch.full((20,), 0.5)])
    exact = torch.stack([base**3 + 1, -base, base])  # monotone transforms keep the ranks
    rho = spearman_rows(online, exact)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0)
    assert math.isnan(rho[2]), "a constant row has no rank correlation"


def test_spearman_averages_ties():
    # ranks (1.5, 1.5, 3, 4) vs (1, 2, 3, 4): Pearson = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    rho = spearman_rows(
        torch.tensor([[1.0, 1.0, 2.0, 3.0], [5.0, 5.0, 7.0, 7.0]]),
        torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]]),
    )
    assert rho.tolist() == pytest.approx([3 / math.sqrt(10), 1.0])


def test_rank_agreement_skips_classes_without_data():
    online = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    exact = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [math.nan] * 3])
    agreement = rank_agreement(online, exact)
    assert agreement.per_class[:2].tolist() == pytest.approx([1.0, -1.0])
    assert math.isnan(agreement.per_class[2])
    assert agreement.mean == pytest.approx(0.0)


def test_ground_truth_hits():
    names = COMBINATIONS.names
    table = torch.zeros(4, len(COMBINATIONS))
    table[0, names.index("left_arm+right_arm")] = 1.0  # hit: contains left_arm
    table[1, names.index("torso+left_leg+right_leg")] = 1.0  # hit: contains both legs
    table[2, names.index("torso+left_arm")] = 1.0  # miss: right_arm is missing
    table[3] = math.nan  # no data: not counted
    salient = {
        "wave": ["left_arm"],
        "jump": ["left_leg", "right_leg"],
        "clap": ["left_arm", "right_arm"],
        "nod": ["torso"],
    }
    classes = ["wave", "jump", "clap", "nod"]
    assert ground_truth_hits(table, COMBINATIONS, salient, classes) == pytest.approx(2 / 3)
    assert top_combinations(table).tolist()[3] == -1
    assert math.isnan(ground_truth_hits(table, COMBINATIONS, {}, classes))


# --------------------------------------------------------------------------- pictures


def _assert_png(path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01, "the picture is blank"


def test_pick_classes_takes_each_group():
    counts = np.array([5, 150, 30, 120, 2, 60, 10, 200])  # Many > 100, Few < 20
    assert pick_classes(counts, per_group=2) == [7, 3, 5, 2, 6, 4]  # most and least frequent of each group
    assert pick_classes(counts, per_group=1) == [7, 5, 6]


def test_plots_write_readable_pngs(tmp_path):
    rng = np.random.default_rng(0)
    counts = np.array([300, 150, 80, 40, 15, 5])
    table = rng.normal(size=(len(counts), len(COMBINATIONS)))
    table[2] = np.nan
    class_names = [f"action {k}" for k in range(len(counts))]
    heatmap = plot_saliency_heatmap(table, counts, class_names, COMBINATIONS.names, tmp_path / "heat.png")
    parts = part_scores_from_table(table, COMBINATIONS.part_membership.numpy())
    assert parts.shape == (len(counts), LAYOUT.num_parts)
    assert np.isnan(parts[2]).all() and np.nanmin(parts) == 0.0 and np.nanmax(parts) == 1.0
    skeletons = plot_part_saliency_skeletons(parts, LAYOUT, pick_classes(counts), class_names, tmp_path / "skel.png")
    for path in (heatmap, skeletons):
        _assert_png(path)
    written = write_training_saliency_figures(
        table, None, counts, class_names, COMBINATIONS.names, "ntu25", tmp_path / "run"
    )
    assert [p.name for p in written] == ["saliency_heatmap.png", "part_saliency.png"]
    probabilities = np.exp(np.nan_to_num(table)) / np.exp(np.nan_to_num(table)).sum(axis=1, keepdims=True)
    with_policy = write_training_saliency_figures(
        table, None, counts, class_names, COMBINATIONS.names, "ntu25", tmp_path / "run", policy=(probabilities, 1.0)
    )
    assert [p.name for p in with_policy] == ["saliency_heatmap.png", "part_saliency.png", "policy_heatmap.png"]
    for path in with_policy:
        _assert_png(path)


# --------------------------------------------------------------------------- end to end


def _read_table(path, key_index: str, key_name: str) -> dict[tuple[int, int], float]:
    with open(path, encoding="utf-8", newline="") as handle:
        return {(int(r["class_index"]), int(r[key_index])): float(r["value"]) for r in csv.DictReader(handle)}


@pytest.mark.slow
def test_analyse_checkpoint_end_to_end(tmp_path, capsys):
    from shapmix.engine.trainer import train

    data = make_tiny_dataset(tmp_path / "data")
    meta = json.loads((data / "meta.json").read_text())
    meta["metadata"] = {"salient_parts": TINY_SALIENT_PARTS}
    (data / "meta.json").write_text(json.dumps(meta))
    run = tmp_path / "run"
    train(tiny_config(data, epochs=2, extra=["method.name=shapmix", "method.warmup_epochs=1", "data.window=16"]), run)
    out = tmp_path / "saliency"
    command = ["saliency", "--checkpoint", str(run / "last.pt"), "--out", str(out), "--device", "cpu"]
    assert main([*command, "--max-samples-per-class", str(PER_CLASS)]) == 0
    assert "mean Spearman" in capsys.readouterr().out

    state = load_checkpoint(run / "last.pt")
    num_classes, num_combinations = state["method"]["table"]["values"].shape
    assert (num_classes, num_combinations) == (4, len(COMBINATIONS))
    parts = _read_table(out / "exact_parts.csv", "part_index", "part")
    assert len(parts) == num_classes * LAYOUT.num_parts and all(math.isfinite(v) for v in parts.values())
    exact = SaliencyTable.from_csv(out / "exact_combinations.csv")
    assert exact.values.shape == (num_classes, num_combinations)
    assert exact.counts[:, 0].tolist() == [PER_CLASS] * num_classes  # 4 test samples per class, limited
    document = json.loads((out / "exact_combinations.json").read_text())
    assert np.allclose(np.array(document["values"]), exact.values.numpy(), rtol=1e-6)
    online = SaliencyTable.from_csv(out / "online_combinations.csv")
    assert torch.equal(online.values, state["method"]["table"]["values"])
    assert torch.equal(online.counts, state["method"]["table"]["counts"])

    agreement = json.loads((out / "agreement.json").read_text())
    assert agreement["samples"] == PER_CLASS * num_classes and agreement["online_table"]
    expected = rank_agreement(online.values, exact.values.double())
    assert agreement["mean_spearman"] == pytest.approx(expected.mean)
    assert [c["exact_top"] for c in agreement["classes"]] == [
        COMBINATIONS.names[i] for i in top_combinations(exact.values)
    ]
    class_names = [record["class"] for record in agreement["classes"]]
    for kind, table in (("exact", exact.values), ("online", online.values)):
        rate = ground_truth_hits(table, COMBINATIONS, TINY_SALIENT_PARTS, class_names)
        assert agreement[f"ground_truth_hit_rate_{kind}"] == pytest.approx(rate)
    for name in (
        "exact_heatmap.png", "exact_part_skeletons.png", "online_heatmap.png", "online_part_skeletons.png",
        "online_policy_heatmap.png",
    ):
        _assert_png(out / name)

    # the policy's sharpness at the run's temperature, per class and on average
    tau = state["config"]["method"]["tau"]
    policy = agreement["policy"]
    assert policy["tau"] == tau and policy["online"]["uniform_probability"] == pytest.approx(1 / num_combinations)
    probabilities = torch.softmax(online.values.double() / tau, dim=1)
    top = probabilities.max(dim=1).values
    entropy = -(probabilities * probabilities.log()).sum(dim=1) / math.log(num_combinations)
    for k, record in enumerate(agreement["classes"]):
        assert record["online_policy_top_probability"] == pytest.approx(float(top[k]))
        assert record["online_policy_entropy"] == pytest.approx(float(entropy[k]))
    assert policy["online"]["mean_top_probability"] == pytest.approx(float(top.mean()))
    exact_top = torch.softmax(exact.values.double() / tau, dim=1).max(dim=1).values
    assert policy["exact"]["mean_top_probability"] == pytest.approx(float(exact_top.mean()))
