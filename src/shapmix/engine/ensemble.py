"""Fuse the test scores of several runs (``shapmix ensemble``): multi-stream fusion.

Skeleton papers report the 2-stream (joint + bone) and 4-stream (+ joint motion + bone motion)
ensembles of separately trained models: the per-sample test logits of the streams, summed with
weights (CTR-GCN's 4-stream weights are 0.6, 0.6, 0.4, 0.4).  Every run directory holds its
per-sample scores (``test_scores.npz``: names, logits, labels; or another scores file of the
same form, e.g. the ``eval_test_scores.npz`` of ``shapmix eval --out``).

:func:`ensemble_runs` aligns the runs' scores by sample name (each file may list the samples in
any order; runs tested on different samples, with different labels or with different training
class counts are an error naming the runs), sums them with the weights and computes the same
metrics as a run (:func:`~shapmix.engine.evaluate.compute_metrics`: overall, top-5, class-mean,
Many / Medium / Few, per class), with the Many/Few thresholds of the first run's config and the
training class counts of its checkpoint.  :meth:`EnsembleResult.write` writes ``metrics.json``,
the fused ``test_scores.npz`` and ``class_accuracy.png``.  The experiment files' ensemble rows
(:mod:`shapmix.bench.experiment`) use the same function.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from ..data.longtail import group_classes
from ..viz.plots import plot_class_accuracy
from .checkpoint import load_checkpoint
from .evaluate import Metrics, compute_metrics, save_scores

__all__ = [
    "SCORES_FILE",
    "RunScores",
    "EnsembleResult",
    "load_run_scores",
    "ensemble_runs",
    "format_ensemble_table",
    "short_labels",
]

SCORES_FILE = "test_scores.npz"
CHECKPOINT_FILES = ("last.pt", "best.pt")
"""Where a run's training class counts and class names are read (the first that exists)."""
SHOWN_NAMES = 3
"""Differing sample names quoted in an alignment error."""


@dataclass
class RunScores:
    """One run's per-sample scores, sorted by sample name.

    Attributes:
        run: the run directory.
        names: ``(N,)`` sample names, sorted.
        logits: ``(N, K)`` float64.
        labels: ``(N,)`` int64.
        train_counts: ``(K,)`` training samples per class.
        class_names: ``K`` names.
        thresholds: ``(many, few)`` of the run's config.
    """

    run: Path
    names: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    train_counts: np.ndarray
    class_names: list[str]
    thresholds: tuple[int, int]


def load_run_scores(run_dir: str | os.PathLike, scores_file: str = SCORES_FILE) -> RunScores:
    """Read ``run_dir/scores_file`` and the run's class counts (``last.pt``) and thresholds
    (``config.yaml``); a missing file is an error naming it."""
    run = Path(run_dir)
    path = run / scores_file
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run} a finished run directory?")
    checkpoint = next((run / name for name in CHECKPOINT_FILES if (run / name).exists()), None)
    if checkpoint is None or not (run / "config.yaml").exists():
        raise FileNotFoundError(f"{run} has no config.yaml and last.pt: not a run directory")
    with np.load(path) as scores:
        order = np.argsort(scores["names"], kind="stable")
        names, logits, labels = scores["names"][order], scores["logits"][order], scores["labels"][order]
    state = load_checkpoint(checkpoint)
    data = (yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}).get("data", {})
    return RunScores(
        run=run,
        names=names,
        logits=logits.astype(np.float64),
        labels=labels.astype(np.int64),
        train_counts=np.asarray(state["train_counts"]),
        class_names=list(state["class_names"]),
        thresholds=(int(data.get("many_threshold", 100)), int(data.get("few_threshold", 20))),
    )


def _check_aligned(first: RunScores, other: RunScores) -> None:
    if not np.array_equal(first.names, other.names):
        only_first = np.setdiff1d(first.names, other.names)[:SHOWN_NAMES].tolist()
        only_other = np.setdiff1d(other.names, first.names)[:SHOWN_NAMES].tolist()
        raise ValueError(
            f"runs {first.run} and {other.run} were tested on different samples "
            f"({len(first.names)} and {len(other.names)}; only in the first: {only_first}, only in the "
            f"second: {only_other}): fuse runs of the same test split"
        )
    if not np.array_equal(first.labels, other.labels):
        name = str(first.names[np.flatnonzero(first.labels != other.labels)[0]])
        raise ValueError(f"runs {first.run} and {other.run} disagree on the label of sample {name!r}")
    if not np.array_equal(first.train_counts, other.train_counts):
        raise ValueError(
            f"runs {first.run} and {other.run} were trained on different class counts: "
            "fuse streams of the same dataset and training split"
        )


@dataclass
class EnsembleResult:
    """Fused scores and their metrics, with each member's own metrics for comparison."""

    runs: list[Path]
    weights: list[float]
    names: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    metrics: Metrics
    member_metrics: list[Metrics]
    train_counts: np.ndarray
    class_names: list[str]
    thresholds: tuple[int, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": [str(run) for run in self.runs],
            "weights": self.weights,
            "test": self.metrics.to_dict(),
            "members": [{"run": str(run), **m.summary()} for run, m in zip(self.runs, self.member_metrics)],
        }

    def write(self, out_dir: str | os.PathLike, plots: bool = True) -> list[Path]:
        """``metrics.json``, the fused ``test_scores.npz`` and (``plots``) ``class_accuracy.png``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "metrics.json", out / SCORES_FILE]
        written[0].write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        save_scores(written[1], self.names.tolist(), self.logits, self.labels)
        if plots:
            groups = group_classes(self.train_counts, *self.thresholds)
            written.append(
                plot_class_accuracy(self.metrics.per_class, self.train_counts, groups, self.class_names, out / "class_accuracy.png")
            )
        return written


def ensemble_runs(
    run_dirs: Sequence[str | os.PathLike], weights: Sequence[float] | None = None, scores_file: str = SCORES_FILE
) -> EnsembleResult:
    """Fuse runs' scores: ``sum_i weights[i] * logits_i`` per sample, aligned by sample name.

    Args:
        run_dirs: two or more run directories.
        weights: one positive weight per run (default 1 each).
        scores_file: the scores file inside each run directory.

    Raises:
        ValueError: fewer than two runs, a weight count or value that does not fit, or runs that
            were tested on different samples or trained on different class counts.
    """
    if len(run_dirs) < 2:
        raise ValueError(f"an ensemble fuses at least two runs, got {len(run_dirs)}")
    weights = [1.0] * len(run_dirs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(run_dirs) or not all(np.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"give one positive weight per run: {len(run_dirs)} runs, weights {weights}")
    members = [load_run_scores(run, scores_file) for run in run_dirs]
    first = members[0]
    for other in members[1:]:
        _check_aligned(first, other)
    fused = sum(weight * member.logits for weight, member in zip(weights, members))
    metrics = [compute_metrics(m.logits, m.labels, first.train_counts, *first.thresholds) for m in members]
    return EnsembleResult(
        runs=[m.run for m in members],
        weights=weights,
        names=first.names,
        logits=fused,
        labels=first.labels,
        metrics=compute_metrics(fused, first.labels, first.train_counts, *first.thresholds),
        member_metrics=metrics,
        train_counts=first.train_counts,
        class_names=first.class_names,
        thresholds=first.thresholds,
    )


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def short_labels(paths: Sequence[Path]) -> list[str]:
    """The shortest trailing parts that tell the paths apart (``joint/seed0``, ``bone/seed0``)."""
    parts = [Path(path).resolve().parts for path in paths]
    for count in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-count:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(path) for path in paths]


def format_ensemble_table(result: EnsembleResult) -> str:
    """Each member and the ensemble: weight, overall, top-5, class-mean, Many / Medium / Few."""
    sizes = result.metrics.group_sizes
    labels = short_labels(result.runs)
    width = max(len("ensemble"), *(len(label) for label in labels)) + 2
    header = (
        f"{'run':<{width}}{'weight':>8}{'top1':>8}{'top5':>8}{'mean':>8}"
        f"{'many(' + str(sizes['many']) + ')':>11}{'med(' + str(sizes['medium']) + ')':>10}{'few(' + str(sizes['few']) + ')':>10}"
    )
    rows = [(label, f"{weight:g}", m) for label, weight, m in zip(labels, result.weights, result.member_metrics)]
    rows.append(("ensemble", "", result.metrics))
    lines = [header]
    for label, weight, m in rows:
        lines.append(
            f"{label:<{width}}{weight:>8}{_cell(m.top1):>8}{_cell(m.top5):>8}{_cell(m.class_mean):>8}"
            f"{_cell(m.many):>11}{_cell(m.medium):>10}{_cell(m.few):>10}"
        )
    return "\n".join(lines)
