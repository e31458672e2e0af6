"""Two-process (gloo) training of every method and stage whose state crosses ranks.

All runs share one ``torchrun ... shapmix bench`` launch: each launch pays for starting the
launcher and two workers, importing torch in each and the rendezvous (most of a tiny run's
time), and a grid under torchrun is itself what a user runs on a cluster.  The rows: the
two-stage presets (cRT, weight balancing with MaxNorm, RIDE's experts then router) and the
single-stage runs whose state crosses ranks (a plain run's sharded test, Shap-Mix's pooled
saliency table and synchronised batch norm, GLMC's heads, class-balanced sampling, BRL's
re-weighting switch, PaCo's gathered queue).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import TINY_CLASSES, make_tiny_dataset, tiny_overrides

from shapmix.engine.checkpoint import load_checkpoint

TWO_STAGE_PRESETS = ["crt", "bs_maxnorm", "ride"]
VARIANTS = {  # labels may not be preset names
    "plain": ["schedule.epochs=2"],
    # the exact estimator on the whole budget of each batch: the 3-step epochs update the table
    "shapmix-exact": [
        "method.name=shapmix", "method.warmup_epochs=1", "method.estimate_fraction=1.0", "data.window=16",
        "schedule.epochs=2",
    ],
    "glmc-ce": ["method.name=glmc", "loss.name=ce"],
    "sampler-cb": ["data.sampler=class_balanced"],
    # each rank draws its own scales, flips and mixed samples; the action-aware weights from epoch 1
    "brl-reweighted": [
        "method.name=brl", "loss.name=ce", "method.brl_mix_fraction=0.5", "method.brl_reweight_epoch=1",
        "schedule.epochs=2",
    ],
    "paco-queue64": ["method.name=paco", "loss.name=ce", "method.paco_queue_size=64"],
}
PROCESSES = 2
PER_RANK_BATCH = 4  # train.batch_size=8 of tiny_overrides over two ranks
LAUNCH_TIMEOUT_S = 900
TINY_TEST_PER_CLASS = 4  # make_tiny_dataset's default
NUM_COMBINATIONS = 20  # of the five NTU body parts, 2 or 3 at a time


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, str]:
    """``(bench directory, stdout)`` of one two-process grid over every row, one seed."""
    root = tmp_path_factory.mktemp("ddp")
    data = make_tiny_dataset(root / "data")
    experiment = root / "ddp.yaml"
    experiment.write_text(yaml.safe_dump({
        "name": "ddp-runs",
        "experiment": {"title": "two-process runs", "seeds": 1, "methods": TWO_STAGE_PRESETS, "variants": VARIANTS},
    }, sort_keys=False))
    out = root / "bench"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES),
        "-m", "shapmix", "bench", "--experiment", str(experiment), "--out", str(out),
        *tiny_overrides(data, epochs=1), "train.device=cpu", "train.threads=1", "log.plots=false",
        "checkpoint.every_steps=2", "--stage2", "schedule.epochs=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return out, completed.stdout


def _checkpoint(bench: tuple[Path, str], run: str, name: str = "last.pt") -> dict:
    return load_checkpoint(bench[0] / run / name)


def test_every_run_trains_on_two_processes_and_only_the_main_one_reports(bench):
    out, stdout = bench
    runs = [f"{row}/seed0/stage{stage}" for row in TWO_STAGE_PRESETS for stage in (1, 2)]
    runs += [f"{row}/seed0" for row in VARIANTS]
    for run in runs:
        assert f"{PROCESSES} process(es)" in (out / run / "train.log").read_text(), run
    assert stdout.count("[bench] summary:") == 1
    with open(out / "results.csv", newline="") as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == [*TWO_STAGE_PRESETS, *VARIANTS]


def test_a_plain_run_scores_every_test_sample_once_and_saves_unwrapped_weights(bench):
    out = bench[0] / "plain/seed0"
    assert json.loads((out / "metrics.json").read_text())["test"]["num_samples"] == TINY_CLASSES * TINY_TEST_PER_CLASS
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[0]["samples_per_s"] > 0
    assert not any(key.startswith("module.") for key in _checkpoint(bench, "plain/seed0")["model"])


def test_shapmix_synchronises_batch_norm_and_updates_the_table(bench):
    assert "batch norm synchronised" in (bench[0] / "shapmix-exact/seed0/train.log").read_text()  # on by default
    table = _checkpoint(bench, "shapmix-exact/seed0")["method"]["table"]
    assert table["values"].shape == (TINY_CLASSES, NUM_COMBINATIONS)
    assert table["counts"].sum() > 0


def test_glmc_checkpoints_the_heads_ddp_trained_with_the_backbone(bench):
    # DDP wraps backbone and heads in one module: the heads' gradients are averaged across ranks
    assert set(_checkpoint(bench, "glmc-ce/seed0")["method"]["heads"]) >= {"projector.weight", "predictor.weight"}


def test_class_balanced_sampling_shards_across_ranks(bench):
    assert _checkpoint(bench, "sampler-cb/seed0")["config"]["data"]["sampler"] == "class_balanced"


def test_brl_switches_to_the_action_aware_weights_on_every_rank(bench):
    state = _checkpoint(bench, "brl-reweighted/seed0")
    assert state["method"]["mixer"]["epoch"] == 1 and all(np.isfinite(record["loss"]) for record in state["history"])


def test_paco_gathers_the_keys_of_both_ranks_into_one_queue(bench):
    # the mid-epoch checkpoint after step 2 (replaced by the epoch's end) holds every rank's state
    mid_epoch = _checkpoint(bench, "paco-queue64/seed0", "last.previous.pt")["in_epoch"]
    assert mid_epoch["step"] == 2
    first, second = (rank["method"]["queue"] for rank in mid_epoch["ranks"])
    global_batch = PROCESSES * PER_RANK_BATCH
    assert int(first["pointer"]) == 2 * global_batch  # each step pushed the keys of the global batch
    for key in ("keys", "labels", "pointer"):
        assert torch.equal(first[key], second[key]), key
    keys = first["keys"][: 2 * global_batch]
    assert torch.allclose(keys.norm(dim=1), torch.ones(len(keys)))  # written keys, not the short starting ones
    assert int(_checkpoint(bench, "paco-queue64/seed0")["method"]["queue"]["pointer"]) == 3 * global_batch


def test_crt_retrains_only_the_classifier(bench):
    first, second = (_checkpoint(bench, run)["model"] for run in ("crt/seed0/stage1", "crt/seed0/stage2"))
    _assert_only_the_classifier_changed(first, second)


def test_maxnorm_keeps_the_backbone_and_holds_the_classifier_norms_within_the_radius(bench):
    first, stage2 = _checkpoint(bench, "bs_maxnorm/seed0/stage1")["model"], _checkpoint(bench, "bs_maxnorm/seed0/stage2")
    second = stage2["model"]
    _assert_only_the_classifier_changed(first, second)
    norms = first["fc.weight"].norm(dim=1)
    threshold = stage2["config"]["finetune"]["maxnorm_threshold"]
    radius = float(norms.min() + threshold * (norms.max() - norms.min()))
    assert float(second["fc.weight"].norm(dim=1).max()) <= radius * (1 + 1e-6)


def test_ride_router_stage_trains_only_the_router(bench):
    first, second = (_checkpoint(bench, run)["model"] for run in ("ride/seed0/stage1", "ride/seed0/stage2"))
    assert second["_extra_state"] == {"routed": True}
    assert all(torch.equal(first[key], second[key]) for key in first if key.startswith(("trunk.", "experts.")))
    assert any(not torch.equal(first[key], second[key]) for key in first if key.startswith("router."))


def _assert_only_the_classifier_changed(first: dict, second: dict) -> None:
    """Every parameter and buffer (BN statistics included) but ``fc.*`` is bit-identical; the
    classifier trained."""
    assert first.keys() == second.keys()
    for key, value in first.items():
        if not key.startswith("fc."):
            assert torch.equal(value, second[key]), f"{key} changed in the second stage"
    assert not torch.equal(first["fc.weight"], second["fc.weight"])
