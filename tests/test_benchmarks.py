"""The benchmark scripts run end to end on tiny settings (their figures are not checked here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_step_time_reports_every_ratio_and_its_settings(capsys):
    step_time = _load("step_time")
    step_time.main([
        "--batch-size", "4", "--frames", "16", "--rounds", "1", "--warmup-rounds", "0",
        "--base-channels", "8", "--num-blocks", "2", "--threads", "1",
        "--estimate-fraction", "0.5", "--json",
    ])
    result = json.loads(capsys.readouterr().out)
    for key in ("stmix_over_double", "shapmix_iter1_over_stmix", "shapmix_iter5_over_stmix"):
        assert result[key] > 0
    assert result["settings"]["estimate_fraction"] == 0.5
    # the default exact estimator: 2 * 0.5 * 4 = 4 forwards a step buy a row of 32 every 8 steps
    assert result["settings"]["shapley_estimator"] == "exact"
    assert result["settings"]["estimation_cycle_steps"] == 8
    # Estimation happens only in the Shap-Mix variants.
    phases = result["phases_ms"]
    assert phases["stmix"]["estimate"] < 1.0  # a no-op hook: only the clock's own cost
    assert phases["shapmix_iter1"]["estimate"] > 10 * max(phases["stmix"]["estimate"], 0.01)


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
