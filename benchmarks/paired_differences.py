"""Paired differences between the rows of a bench grid, with 95% confidence intervals.

Every row of a ``shapmix bench`` grid runs with the same seeds, and a seed fixes the model's
initialisation, the data order and the augmentation of every row (only the method differs), so
row A and row B are compared seed by seed: the mean of ``A(seed) - B(seed)`` over the seeds both
finished, with a Student-t 95% interval (``mean +- t(0.975, n - 1) * sd / sqrt(n)``).  An
interval that excludes 0 is a difference the seeds support; one that contains 0 is not.

    python benchmarks/paired_differences.py runs/tau-utd --against stmix,bs
    python benchmarks/paired_differences.py runs/tau-synth --against stmix,bs --metrics overall,few --per-seed

Reads the grid's ``results.csv`` (``shapmix bench --collect DIR`` rewrites it from the finished
runs) and prints a Markdown table per reference row.  Needs SciPy for the t quantile
(``pip install 'shapmix[test]'``).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
METRICS = ("overall", "many", "medium", "few", "class_mean")


def read_results(bench_dir: Path) -> dict[str, dict[int, dict[str, float]]]:
    """``row -> seed -> metric -> value`` from ``bench_dir/results.csv`` (empty groups skipped)."""
    path = bench_dir / "results.csv"
    if not path.exists():
        raise SystemExit(f"{path} does not exist: run `shapmix bench --collect {bench_dir}` first")
    results: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    with open(path, encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            values = {key: float(record[key]) for key in METRICS if record.get(key) not in (None, "")}
            results[record["method"]][int(record["seed"])] = values
    return results


def paired_difference(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], metric: str) -> tuple[float, float, int]:
    """Mean of ``a - b`` over the seeds both have, the half-width of its interval, and ``n``."""
    seeds = sorted(seed for seed in a.keys() & b.keys() if metric in a[seed] and metric in b[seed])
    differences = np.array([a[seed][metric] - b[seed][metric] for seed in seeds])
    if len(differences) < 2:
        return (float(differences.mean()) if len(differences) else math.nan), math.nan, len(differences)
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, len(differences) - 1) * differences.std(ddof=1) / math.sqrt(len(differences))
    return float(differences.mean()), float(half_width), len(differences)


def table(results: dict[str, dict[int, dict[str, float]]], reference: str, metrics: list[str]) -> str:
    if reference not in results:
        raise SystemExit(f"no row {reference!r}; rows: {sorted(results)}")
    header = "| row | seeds | " + " | ".join(f"{metric} - {reference}" for metric in metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 2)]
    for row in results:
        if row == reference:
            continue
        cells = []
        seeds = 0
        for metric in metrics:
            mean, half_width, seeds = paired_difference(results[row], results[reference], metric)
            cells.append(f"{mean:+.1f} [{mean - half_width:+.1f}, {mean + half_width:+.1f}]")
        lines.append(f"| {row} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed_table(results: dict[str, dict[int, dict[str, float]]], metrics: list[str]) -> str:
    """Every row's values per seed, ``metric1 / metric2 / ...`` in a cell, ``-`` where a seed
    has not finished."""
    seeds = sorted({seed for by_seed in results.values() for seed in by_seed})
    lines = [
        "| row | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
        "|" + "---|" * (len(seeds) + 1),
    ]
    for row, by_seed in results.items():
        cells = [
            " / ".join(f"{by_seed[seed][metric]:.1f}" if metric in by_seed[seed] else "-" for metric in metrics)
            if seed in by_seed
            else "-"
            for seed in seeds
        ]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench_dir", type=Path, help="a shapmix bench output directory")
    parser.add_argument("--against", default="stmix,bs", help="comma-separated reference rows")
    parser.add_argument("--metrics", default="overall,few", help=f"comma-separated, from {', '.join(METRICS)}")
    parser.add_argument("--per-seed", action="store_true", help="first print every row's values per seed")
    args = parser.parse_args()
    metrics = [metric.strip() for metric in args.metrics.split(",") if metric.strip()]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise SystemExit(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    results = read_results(args.bench_dir)
    if args.per_seed:
        print(f"Test accuracy per seed (%, {' / '.join(metrics)}):\n\n{per_seed_table(results, metrics)}")
    for reference in (name.strip() for name in args.against.split(",") if name.strip()):
        print(f"\nPaired differences against {reference} (mean [{CONFIDENCE:.0%} interval], points):\n")
        print(table(results, reference, metrics))


if __name__ == "__main__":
    main()
