"""Benchmark tables and plot, rebuilt from the finished runs of a bench directory.

Layout read (written by :mod:`shapmix.bench.runner`)::

    DIR/<method>/seed<k>/            one-stage method: an ordinary run directory
    DIR/<method>/seed<k>/stage2/     two-stage method: the second stage's run directory; its
                                     config.yaml names the first stage's last.pt

A run counts once its ``metrics.json`` exists.  Its train time is the sum of the per-epoch
training seconds in ``metrics.jsonl`` (evaluation excluded); a two-stage method's time adds its
first stage's, wherever that run lives (possibly the ``ce`` run it reuses).

Files written: ``results.csv`` (one row per run), ``results.md`` (mean and sample standard
deviation per method, the best mean per column in bold: highest accuracy, shortest time) and
``results.png`` (per-group accuracy by method).
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..viz.plots import pyplot
from .presets import PRESETS, Preset

__all__ = [
    "ResultRow",
    "collect_rows",
    "run_result_dir",
    "train_seconds",
    "write_results",
    "write_tables",
    "format_markdown",
    "ACCURACY_COLUMNS",
]

# (attribute, column title) of the accuracy columns, in table order.
ACCURACY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("overall", "overall"),
    ("many", "Many"),
    ("medium", "Medium"),
    ("few", "Few"),
    ("class_mean", "class-mean"),
)
TIME_COLUMN = ("train_seconds", "train time (s)")
SEED_DIR = re.compile(r"^seed(\d+)$")
# Groups drawn in the plot (class-mean is close to overall on balanced test sets).
PLOTTED_GROUPS = ACCURACY_COLUMNS[:4]


@dataclass
class ResultRow:
    """One finished run: accuracies in percent (``None`` for an empty group), time in seconds."""

    method: str
    seed: int
    overall: float
    many: float | None
    medium: float | None
    few: float | None
    class_mean: float | None
    train_seconds: float


def run_result_dir(bench_dir: Path, preset: Preset, seed: int) -> Path:
    """The run directory holding the final metrics of ``preset`` with ``seed``."""
    seed_dir = Path(bench_dir) / preset.name / f"seed{seed}"
    return seed_dir / "stage2" if preset.two_stage else seed_dir


def train_seconds(run_dir: Path) -> float:
    """Training seconds of a run: per-epoch ``seconds`` of ``metrics.jsonl``.

    A run resumed after a crash may have logged an epoch twice (the crash came after the log
    line, before the checkpoint); the last record of each epoch counts.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: cannot read the run's training time")
    per_epoch: dict[int, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            per_epoch[int(record["epoch"])] = float(record["seconds"])
    return sum(per_epoch.values())


def _first_stage_dir(stage2_dir: Path) -> Path:
    config = yaml.safe_load((stage2_dir / "config.yaml").read_text(encoding="utf-8"))
    checkpoint = (config.get("finetune") or {}).get("checkpoint")
    if not checkpoint:
        raise ValueError(f"{stage2_dir}/config.yaml names no finetune.checkpoint: not a second stage")
    return Path(checkpoint).parent


def collect_rows(bench_dir: str | Path, specs: Sequence[Preset] | None = None) -> list[ResultRow]:
    """Rows of every finished run under ``bench_dir``, seeds ascending.

    ``specs``: the grid's rows (methods and experiment variants) in table order; ``None`` = every
    method preset.
    """
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"bench directory {bench_dir} does not exist")
    rows: list[ResultRow] = []
    for preset in PRESETS.values() if specs is None else specs:
        method_dir = bench_dir / preset.name
        if not method_dir.is_dir():
            continue
        seeds = sorted(
            int(match.group(1))
            for entry in method_dir.iterdir()
            if entry.is_dir() and (match := SEED_DIR.match(entry.name))
        )
        for seed in seeds:
            run_dir = run_result_dir(bench_dir, preset, seed)
            metrics_path = run_dir / "metrics.json"
            if not metrics_path.exists():
                continue
            test = json.loads(metrics_path.read_text(encoding="utf-8"))["test"]
            seconds = train_seconds(run_dir)
            if preset.two_stage:
                seconds += train_seconds(_first_stage_dir(run_dir))
            rows.append(
                ResultRow(
                    method=preset.name,
                    seed=seed,
                    overall=test["top1"],
                    many=test["many"],
                    medium=test["medium"],
                    few=test["few"],
                    class_mean=test["class_mean"],
                    train_seconds=seconds,
                )
            )
    return rows


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    present = [value for value in values if value is not None]
    if not present:
        return None, None
    spread = statistics.stdev(present) if len(present) > 1 else None
    return statistics.fmean(present), spread


def _summaries(rows: Sequence[ResultRow]) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """method -> column -> (mean, sample std), methods in row order."""
    by_method: dict[str, list[ResultRow]] = {}
    for row in rows:
        by_method.setdefault(row.method, []).append(row)
    columns = [name for name, _ in ACCURACY_COLUMNS] + [TIME_COLUMN[0]]
    return {
        method: {column: _mean_std([getattr(row, column) for row in runs]) for column in columns}
        for method, runs in by_method.items()
    }


def format_markdown(rows: Sequence[ResultRow], specs: Sequence[Any] | None = None) -> str:
    """Mean ± sample std per method (or experiment row); the best mean of each column in bold."""
    described = PRESETS if specs is None else {spec.name: spec for spec in specs}
    summaries = _summaries(rows)
    counts = {method: sum(row.method == method for row in rows) for method in summaries}
    columns = [*ACCURACY_COLUMNS, TIME_COLUMN]
    best: dict[str, float] = {}
    for column, _ in columns:
        means = [summary[column][0] for summary in summaries.values() if summary[column][0] is not None]
        if means:
            best[column] = min(means) if column == TIME_COLUMN[0] else max(means)

    def cell(column: str, mean: float | None, spread: float | None) -> str:
        if mean is None:
            return "n/a"
        text = f"{mean:.1f}" if spread is None else f"{mean:.1f} ± {spread:.1f}"
        # Compare the printed values so that ties at the shown precision are all marked.
        return f"**{text}**" if f"{mean:.1f}" == f"{best[column]:.1f}" else text

    header = ["method", "runs", *(title for _, title in columns)]
    lines = [
        (
            "Test accuracy (%), mean ± sample standard deviation over seeds; best mean per column in "
            "bold (highest accuracy, shortest train time)."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for method, summary in summaries.items():
        cells = [cell(column, *summary[column]) for column, _ in columns]
        lines.append(f"| {method} | {counts[method]} | " + " | ".join(cells) + " |")
    lines += ["", "Methods:", ""]
    lines += [f"- `{method}`: {described[method].description} ({described[method].reference})" for method in summaries]
    return "\n".join(lines) + "\n"


def _write_csv(rows: Sequence[ResultRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        names = [item.name for item in fields(ResultRow)]
        writer.writerow(names)
        for row in rows:
            values = asdict(row)
            writer.writerow(["" if values[name] is None else values[name] for name in names])


def _plot(rows: Sequence[ResultRow], path: Path) -> None:
    summaries = _summaries(rows)
    methods = list(summaries)
    width = 0.8 / len(PLOTTED_GROUPS)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(methods) + 2), 4.2))
    for index, (column, title) in enumerate(PLOTTED_GROUPS):
        means = [summaries[m][column][0] for m in methods]
        spreads = [summaries[m][column][1] for m in methods]
        positions = [i + (index - (len(PLOTTED_GROUPS) - 1) / 2) * width for i in range(len(methods))]
        ax.bar(
            positions,
            [math.nan if mean is None else mean for mean in means],
            width,
            yerr=[0.0 if spread is None else spread for spread in spreads],
            capsize=2,
            label=title,
        )
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy by method and class group (mean ± std over seeds)")
    ax.legend(fontsize=8, ncols=len(PLOTTED_GROUPS))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(bench_dir: str | Path, specs: Sequence[Preset] | None = None) -> list[ResultRow]:
    """Write ``results.csv``, ``results.md`` and ``results.png`` from the finished runs.

    ``specs``: the rows of the grid, as for :func:`collect_rows`.
    """
    bench_dir = Path(bench_dir)
    rows = collect_rows(bench_dir, specs)
    if not rows:
        raise FileNotFoundError(f"no finished runs (DIR/METHOD/seedK/metrics.json) under {bench_dir}")
    write_tables(bench_dir, rows, specs)
    return rows


def write_tables(bench_dir: Path, rows: Sequence[ResultRow], specs: Sequence[Any] | None = None) -> None:
    """``results.csv``, ``results.md`` and ``results.png`` of ``rows`` in ``bench_dir``.

    ``specs``: objects with ``name``, ``description`` and ``reference`` describing every row's
    method (presets, experiment variants and ensembles); ``None`` = the method presets.
    """
    _write_csv(rows, bench_dir / "results.csv")
    (bench_dir / "results.md").write_text(format_markdown(rows, specs), encoding="utf-8")
    _plot(rows, bench_dir / "results.png")
