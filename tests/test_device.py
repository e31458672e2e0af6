"""Device tests: exact resume, mixing, Shapley estimation and DDP on the ``--device`` device.

They run on the CPU by default and on a GPU with ``python -m pytest --device cuda -m cuda``
(tests/conftest.py).  What each checks on the device:

* the global random state (Python, NumPy, torch's CPU and device generators) survives a
  checkpoint file;
* a training method's estimation and mixing (the objects the trainer uses) give results on the
  device and continue identically after a round trip of their state through a checkpoint file;
* exact Shapley rows and the naive estimate computed on the device equal the CPU's to float32
  rounding;
* a training run interrupted after its first epoch and resumed from ``last.pt`` ends with the
  weights, optimiser and method state of the uninterrupted run, bit for bit, and its checkpoint
  scores the same on evaluation;
* two DDP processes train on two GPUs (NCCL needs one GPU per process).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shapmix.config import MethodConfig
from shapmix.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from shapmix.engine.evaluate import evaluate_checkpoint
from shapmix.methods import build_method
from shapmix.mixing import PartCombinations, estimate_combination_shapley, exact_combination_rows, mean_sequence
from shapmix.models.ctrgcn import CTRGCN
from shapmix.skeleton.layouts import get_layout

from helpers import assert_resumed_run_matches, assert_same_state, make_tiny_dataset, tiny_config, tiny_overrides

LAYOUT = get_layout("ntu25")
COUNTS = np.array([300, 120, 40, 9, 2])  # head to tail
NUM_CLASSES = len(COUNTS)
BATCH = 8
FRAMES = 16
SEED, OTHER_SEED = 0, 7
STEPS_BEFORE_SAVE = STEPS_AFTER_SAVE = 2
FLOAT32_ATOL = 1e-5
"""Probabilities (in [0, 1]) of the same float32 network on two devices differ by rounding only
(~1e-7 per operation; TF32 is switched off for the comparison)."""
DDP_PROCESSES = 2
DDP_TIMEOUT_S = 300

# Shap-Mix estimating from the first step, on every sample of the batch: the exact estimator
# buys half a row of 32 coalitions a step (a whole row every second step).
SHAPMIX = {"warmup_epochs": 0, "estimate_fraction": 1.0}
METHODS = {
    "mixup": {},
    "cutmix": {},
    "stmix": {},
    "shapmix-exact": {**SHAPMIX, "shapley_estimator": "exact"},
    "shapmix-sampled": {**SHAPMIX, "shapley_estimator": "sampled"},
}


def small_model(device: torch.device) -> CTRGCN:
    torch.manual_seed(SEED)
    return CTRGCN(num_classes=NUM_CLASSES, layout=LAYOUT, num_persons=1, base_channels=8, num_blocks=2).to(device)


def small_batch(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, 3, FRAMES, LAYOUT.num_joints, 1, generator=generator)
    y = torch.tensor([0, 0, 1, 3, 0, 4, 2, 1])
    return x.to(device), y.to(device)


# --------------------------------------------------------------------------- random state


def test_global_random_state_round_trips_through_a_checkpoint_on_the_device(device, tmp_path):
    def draws() -> tuple[float, float, torch.Tensor, torch.Tensor]:
        return random.random(), np.random.rand(), torch.rand(3), torch.rand(3, device=device)

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)  # seeds torch's generator of every device
    path = save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = draws()
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    assert not torch.equal(draws()[3], expected[3])  # other seeds, other draws on the device
    restore_rng_state(load_checkpoint(path)["rng"])
    python, numpy, cpu, on_device = draws()
    assert (python, numpy) == expected[:2] and torch.equal(cpu, expected[2])
    assert on_device.device == expected[3].device and torch.equal(on_device, expected[3])


# --------------------------------------------------------------------------- methods: estimation and mixing


@pytest.mark.parametrize("name", list(METHODS))
def test_method_estimates_and_mixes_on_the_device_and_resumes_from_its_state(device, deterministic, tmp_path, name):
    model = small_model(device)
    x, y = small_batch(device)
    config = MethodConfig(name=name.split("-")[0], **METHODS[name])

    def make(seed: int):
        return build_method(config, NUM_CLASSES, COUNTS, LAYOUT, seed, baseline=mean_sequence(x))

    def steps(method, first: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        mixed = []
        for step in range(first, first + STEPS_AFTER_SAVE):
            method.before_step(model, x, y, epoch=0, step=step)
            mixed.append(method.mix(x, y, epoch=0))
        return mixed

    method = make(SEED)
    steps(method, 0)
    # through a checkpoint file, loaded on the CPU as a resume loads it
    path = save_checkpoint({"method": method.state_dict()}, tmp_path / "method.pt")
    expected = steps(method, STEPS_BEFORE_SAVE)

    resumed = make(OTHER_SEED)  # every random stream comes from the saved state, not the seed
    resumed.load_state_dict(load_checkpoint(path)["method"])
    actual = steps(resumed, STEPS_BEFORE_SAVE)

    for (x_expected, targets_expected), (x_actual, targets_actual) in zip(expected, actual):
        assert x_actual.device == x.device and targets_actual.device == x.device
        assert x_actual.shape == x.shape and targets_actual.shape == (BATCH, NUM_CLASSES)
        torch.testing.assert_close(targets_actual.sum(dim=1), torch.ones(BATCH, device=device))
        assert torch.equal(x_actual, x_expected) and torch.equal(targets_actual, targets_expected)
    assert_same_state(method.state_dict(), resumed.state_dict(), name)
    if name.startswith("shapmix"):
        assert method.table.counts.sum() > 0  # the steps estimated on the device
    # another seed draws other mixes, so the comparison above can fail
    assert not torch.equal(steps(make(OTHER_SEED), 0)[0][0], steps(make(SEED), 0)[0][0])


# --------------------------------------------------------------------------- Shapley estimation


def test_shapley_estimates_on_the_device_equal_the_cpu(device):
    combinations = PartCombinations.from_layout(LAYOUT)
    x, y = small_batch(torch.device("cpu"))
    baseline = mean_sequence(x)
    fixed = torch.arange(BATCH) % len(combinations)
    # the same network on both devices, in full float32 (no TF32 convolutions or matmuls on a
    # GPU, whatever an earlier test or the trainer chose)
    matmul_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            results = {}
            for where in (torch.device("cpu"), device):
                model = small_model(where)
                on = (x.to(where), y.to(where), baseline.to(where), combinations)
                rows = exact_combination_rows(model, *on, clip=False)
                naive = estimate_combination_shapley(model, *on, combination=fixed, naive=True)
                assert rows.device == naive.values.device == on[0].device
                results[where.type] = (rows.cpu(), naive.values.cpu())
    finally:
        torch.set_float32_matmul_precision(matmul_precision)
    (rows_cpu, naive_cpu), (rows_device, naive_device) = results["cpu"], results[device.type]
    assert rows_cpu.shape == (BATCH, len(combinations)) and rows_cpu.abs().sum() > 0
    torch.testing.assert_close(rows_device, rows_cpu, rtol=0, atol=FLOAT32_ATOL)
    torch.testing.assert_close(naive_device, naive_cpu, rtol=0, atol=FLOAT32_ATOL)


# --------------------------------------------------------------------------- training: exact resume


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("device") / "data")


# cuDNN's autotuning may pick other kernels in another run: exactness is asked of the state
# the run saves and restores, with deterministic kernels (the `deterministic` fixture)
RUN_EXTRA = [
    "method.name=shapmix", "method.warmup_epochs=1", "data.window=16", "train.threads=1", "log.plots=false",
    "train.cudnn_benchmark=false",
]


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["exact", "sampled"])
def test_interrupted_and_resumed_run_on_the_device_ends_identical(device, deterministic, tiny_data, tmp_path, estimator):
    config = tiny_config(
        tiny_data, epochs=2, extra=[*RUN_EXTRA, f"method.shapley_estimator={estimator}", f"train.device={device.type}"]
    )
    result, expected, _ = assert_resumed_run_matches(config, tmp_path)
    full = tmp_path / "full"
    assert f"on {device.type}" in (tmp_path / "full" / "train.log").read_text()  # the run used the device
    assert expected["method"]["table"]["counts"].sum() > 0

    metrics = evaluate_checkpoint(full / "last.pt", device=device.type)
    assert metrics.top1 == pytest.approx(result["test"]["top1"])


# --------------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_two_process_ddp_run_on_the_device(device, tiny_data, tmp_path):
    if device.type != "cuda":
        pytest.skip(
            "on the CPU the 2-process gloo runs are tests/test_ddp_runs.py and tests/test_multinode.py"
        )
    if torch.cuda.device_count() < DDP_PROCESSES:
        pytest.skip(f"NCCL needs one GPU per process: {DDP_PROCESSES} processes, {torch.cuda.device_count()} GPU(s)")
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(DDP_PROCESSES),
        "-m", "shapmix", "train", "--out", str(out), *tiny_overrides(tiny_data, epochs=2), *RUN_EXTRA,
        "train.device=cuda",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=DDP_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
    log = Path(out / "train.log").read_text()
    assert f"on cuda:0, {DDP_PROCESSES} process(es)" in log
    assert load_checkpoint(out / "last.pt")["method"]["table"]["counts"].sum() > 0
