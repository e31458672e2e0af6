"""benchmarks/paired_differences.py: seed-paired differences and their t intervals."""

from __future__ import annotations

import csv
import importlib.util
import math
from dataclasses import astuple, fields
from pathlib import Path

import pytest

from shapmix.bench.report import ResultRow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_paired_differences", BENCHMARKS / "paired_differences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(method: str, seed: int, overall: float, few: float | None) -> ResultRow:
    return ResultRow(method, seed, overall, None, None, few, overall, 1.0)


def test_differences_are_paired_by_seed_with_a_t_interval(tmp_path):
    pytest.importorskip("scipy")
    script = load_script()
    # B beats A by exactly 1, 2, 3 points on seeds 0-2; seed 3 exists for A only (not paired)
    rows = [row("a", s, 50.0 + 10 * s, 20.0) for s in range(4)]
    rows += [row("b", s, 50.0 + 10 * s + d, None) for s, d in zip(range(3), (1.0, 2.0, 3.0))]
    with open(tmp_path / "results.csv", "w", newline="", encoding="utf-8") as handle:  # as the bench writes it
        writer = csv.writer(handle)
        writer.writerow([item.name for item in fields(ResultRow)])
        writer.writerows(["" if value is None else value for value in astuple(r)] for r in rows)
    results = script.read_results(tmp_path)
    mean, half_width, seeds = script.paired_difference(results["b"], results["a"], "overall")
    assert seeds == 3 and mean == pytest.approx(2.0)
    # sd of (1, 2, 3) is 1; t(0.975, 2) = 4.303
    assert half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    # an unpaired comparison would have been dominated by the 10-point seed effect
    few_mean, few_width, few_seeds = script.paired_difference(results["b"], results["a"], "few")
    assert few_seeds == 0 and math.isnan(few_mean) and math.isnan(few_width)
    table = script.table(results, "a", ["overall"])
    assert "| b | 3 | +2.0 [-0.5, +4.5] |" in table
    per_seed = script.per_seed_table(results, ["overall", "few"]).splitlines()
    assert per_seed[0] == "| row | seed 0 | seed 1 | seed 2 | seed 3 |"
    assert per_seed[2] == "| a | 50.0 / 20.0 | 60.0 / 20.0 | 70.0 / 20.0 | 80.0 / 20.0 |"
    assert per_seed[3] == "| b | 51.0 / - | 62.0 / - | 73.0 / - | - |"  # no Few value; seed 3 not run
