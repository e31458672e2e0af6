"""The benchmark scripts compute what they claim; their clocks are replaced, so nothing is timed.

``benchmarks/step_time.py`` is checked for the work each variant does per timed step (which
training steps run, how many exact Shapley rows the Shap-Mix variants estimate per cycle, none
in the other variants), for its estimation cycle, and for the arithmetic of its report (per-step
times of a cycle, ratios) under a fake clock that advances one tick per reading.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from shapmix.config import MethodConfig
from shapmix.methods import shapmix as shapmix_method

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TICK_S = 1e-3
"""Seconds the fake clock advances at every reading."""
CLOCK_READINGS_PER_STEP = 4
"""A timed step reads the clock before estimation, after it, after mixing and after the update."""
NUM_PARTS = 5


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def step_time():
    return _load("step_time")


def test_estimation_cycle_is_the_steps_until_the_row_credit_is_whole(step_time):
    def exact(fraction: float) -> MethodConfig:
        return MethodConfig(name="shapmix", estimate_fraction=fraction, shapley_estimator="exact")

    # 2 f N forwards per step buy 2 f N / 32 rows of 2**5 coalitions
    assert step_time.estimation_cycle(exact(0.25), 16, NUM_PARTS) == 4  # 1/4 row a step
    assert step_time.estimation_cycle(exact(0.5), 4, NUM_PARTS) == 8  # 1/8
    assert step_time.estimation_cycle(exact(0.75), 16, NUM_PARTS) == 4  # 3/4: 3 rows in 4 steps
    assert step_time.estimation_cycle(exact(1.0), 16, NUM_PARTS) == 1  # a whole row every step
    sampled = MethodConfig(name="shapmix", estimate_fraction=0.25, shapley_estimator="sampled")
    assert step_time.estimation_cycle(sampled, 16, NUM_PARTS) == 1


def _variant(method) -> str:
    """The benchmark variant a method object belongs to."""
    if method.name == "shapmix":
        return f"shapmix_iter{method.interval}"
    return method.name


def test_step_time_runs_each_variants_work_and_reports_per_step_times(step_time, monkeypatch, capsys):
    steps: dict[str, list[int]] = defaultdict(list)  # variant -> global steps, in order
    order: list[str] = []  # variants in the order they ran
    rows: Counter = Counter()  # variant -> exact Shapley rows estimated
    running: list[str] = []
    ticks = itertools.count()
    original_step = step_time.Bench.step
    original_rows = shapmix_method.exact_combination_rows

    def recording_step(self, method, global_step):
        variant = _variant(method)
        steps[variant].append(global_step)
        if not order or order[-1] != variant:
            order.append(variant)
        running[:] = [variant]
        return original_step(self, method, global_step)

    def counting_rows(model, x, y, *args, **kwargs):
        rows[running[0]] += len(y)
        return original_rows(model, x, y, *args, **kwargs)

    monkeypatch.setattr(step_time.Bench, "step", recording_step)
    monkeypatch.setattr(step_time.Bench, "clock", lambda self: next(ticks) * TICK_S)
    monkeypatch.setattr(shapmix_method, "exact_combination_rows", counting_rows)
    rounds, warmup = 2, 1
    step_time.main([
        "--batch-size", "4", "--frames", "16", "--rounds", str(rounds), "--warmup-rounds", str(warmup),
        "--base-channels", "8", "--num-blocks", "2", "--threads", "1",
        "--estimate-fraction", "1.0", "--json",
    ])
    result = json.loads(capsys.readouterr().out)
    settings = result["settings"]
    assert (settings["estimate_fraction"], settings["shapley_estimator"]) == (1.0, "exact")
    # the default exact estimator: 2 * 1.0 * 4 = 8 forwards a step buy a row of 32 every 4 steps
    cycle = settings["estimation_cycle_steps"]
    assert cycle == 4
    total = rounds + warmup
    # every round runs every variant once, rotated by one each round
    variants = list(step_time.VARIANTS)
    assert order == [name for r in range(total) for name in variants[r % len(variants):] + variants[: r % len(variants)]]
    # one step of the plain variants, a whole estimation cycle of the Shap-Mix ones
    for name in ("none", "double", "stmix"):
        assert steps[name] == list(range(total))
    assert steps["shapmix_iter1"] == list(range(total * cycle))
    assert steps["shapmix_iter5"] == list(range(total * cycle * step_time.SPARSE_INTERVAL))
    # a cycle buys whole rows: one for iter-1 (4 steps), one for iter-5 (estimating every 5th of 20)
    assert rows == {"shapmix_iter1": total, "shapmix_iter5": total}

    # every step reads the clock 4 times, one tick per phase: a cycle's time divided by its steps
    # is one step's, so every variant costs the same and every ratio is 1
    step_ms = (CLOCK_READINGS_PER_STEP - 1) * TICK_S * 1e3
    assert result["ms"] == pytest.approx({name: step_ms for name in variants})
    for name in variants:
        assert result["phases_ms"][name] == pytest.approx({phase: TICK_S * 1e3 for phase in step_time.PHASES})
    for ratio, (top, bottom) in step_time.RATIOS.items():
        assert result[ratio] == pytest.approx(result["ms"][top] / result["ms"][bottom]) == pytest.approx(1.0)
        assert result["paired_ratios"][ratio] == pytest.approx(1.0)


def test_backbones_reports_step_time_and_memory_of_a_tiny_model(capsys, tmp_path):
    backbones = _load("backbones")
    backbones.main([
        "--models", "agcn", "--batch-size", "2", "--frames", "8", "--repeats", "1", "--warmup", "0",
        "--threads", "1", "--model-arg", "base_channels=8", "--model-arg", "num_blocks=2", "--json",
    ])
    result = json.loads(capsys.readouterr().out)
    ours = result["models"]["agcn"]["ours"]
    assert ours["step_ms"] > 0 and ours["peak_mib"] >= 0
    assert 0 < ours["parameters"] < 100_000  # the tiny width reached the worker process
    assert result["settings"]["model_args"] == {"base_channels": 8, "num_blocks": 2}
    assert "original" not in result["models"]["agcn"]
    with pytest.raises(SystemExit, match="no original builder"):
        backbones.main(["--models", "agcn", "--original-dir", f"nosuchnet={tmp_path}"])


@pytest.mark.slow
def test_gpu_check_quick_cpu_mode_runs_every_phase_and_prints_one_summary(capsys):
    gpu_check = _load("gpu_check")
    status = gpu_check.main(["--device", "cpu", "--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1  # one JSON object on stdout, progress on stderr
    summary = json.loads(lines[0])
    assert status == 0 and summary["all_phases_ok"], json.dumps(summary["phases"], indent=1)[-3000:]
    assert {"device", "device_name", "torch", "cuda", "cudnn", "sizes", "elapsed_s", "phases", "targets"} <= summary.keys()
    assert summary["device"] == "cpu" and summary["quick"] is True
    phases = summary["phases"]
    assert list(phases) == list(gpu_check.PHASE_BUDGETS_S)
    assert all(phase["status"] == "ok" and phase["seconds"] <= phase["budget_s"] for phase in phases.values())

    device_tests = phases["tests"]["result"]["runs"]["device_tests"]
    assert device_tests["passed"] == device_tests["tests"] == 1  # the selected device test ran on the CPU
    for estimator in ("exact", "sampled"):
        step_time = phases[f"step_time_{estimator}"]["result"]
        assert step_time["settings"]["shapley_estimator"] == estimator
        assert step_time["settings"]["batch_size"] == gpu_check.QUICK.batch_size
    throughput = phases["throughput"]["result"]
    assert set(throughput["samples_per_s"]) == {"bare", "plain", "stmix", "shapmix"}
    assert all(value > 0 for value in throughput["samples_per_s"].values())
    assert throughput["relative_to_bare"]["bare"] == pytest.approx(1.0)
    assert set(throughput["shapmix_phases_ms"]) == {"pipeline", "estimate", "mix", "train"}
    assert 0 < throughput["pipeline_and_mixing_share"] < 1
    precision = phases["precision"]["result"]
    assert precision["bf16_over_fp32"] == pytest.approx(
        precision["bf16"]["samples_per_s"] / precision["fp32"]["samples_per_s"]
    )

    # every target of the issue, judged from its phase's figure
    assert set(summary["targets"]) == set(gpu_check.TARGETS)
    for name, verdict in summary["targets"].items():
        target = gpu_check.TARGETS[name]
        assert verdict["value"] == phases[target.source]["result"][target.figure]
        assert verdict["met"] == (verdict["value"] <= target.limit if target.at_most else verdict["value"] >= target.limit)


def test_gpu_check_reports_a_failing_phase_without_stopping(monkeypatch):
    gpu_check = _load("gpu_check")

    def failing_tests(args, budget):
        raise RuntimeError("a broken phase")

    def fake_child(args, budget, phase):
        return {"bf16_over_fp32": 2.0} if phase == "precision" else {"pipeline_and_mixing_share": 0.5}

    def fake_step_time(args, budget, estimator):
        raise gpu_check.PhaseTimeout("ran out of its time")

    monkeypatch.setattr(gpu_check, "run_tests", failing_tests)
    monkeypatch.setattr(gpu_check, "run_in_child", fake_child)
    monkeypatch.setattr(gpu_check, "run_step_time", fake_step_time)
    args = gpu_check.argparse.Namespace(device="cpu", quick=True, budget_s=gpu_check.TOTAL_BUDGET_S)
    summary = gpu_check.run_check(args)
    phases = summary["phases"]
    assert phases["tests"]["status"] == "failed" and "a broken phase" in phases["tests"]["error"]
    assert phases["step_time_exact"]["status"] == phases["step_time_sampled"]["status"] == "timeout"
    assert phases["throughput"]["status"] == phases["precision"]["status"] == "ok"
    assert not summary["all_phases_ok"] and summary["all_targets_met"] is None
    targets = summary["targets"]
    assert targets["stmix_over_double"]["value"] is None and targets["stmix_over_double"]["met"] is None
    assert targets["bf16_over_fp32"]["met"] is True and targets["pipeline_and_mixing_share"]["met"] is False


@pytest.mark.parametrize("path", sorted((BENCHMARKS / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_benchmark_config_files_validate_and_name_only_registered_backbones(path):
    """Each file is a run config or an experiment (with an ``experiment:`` block) that loads."""
    import yaml

    from shapmix.bench.experiment import load_experiment
    from shapmix.config import load_config
    from shapmix.models import available_models

    config = load_config(path)
    names = {config.model.name}
    if "experiment" in yaml.safe_load(path.read_text()):
        experiment = load_experiment(path)
        assert experiment.rows, f"{path.name} has no rows"
        names |= {item.split("=", 1)[1] for row in experiment.rows for stage in row.stages for item in stage
                  if item.startswith("model.name=")}
    assert names <= set(available_models()), f"{path.name} names unknown backbone(s) {names - set(available_models())}"
