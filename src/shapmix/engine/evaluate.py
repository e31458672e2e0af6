"""Evaluation: scores over a split and long-tailed metrics.

Metrics (:func:`compute_metrics`): top-1, top-5, class-mean accuracy, per-class accuracy,
Many/Medium/Few class-mean accuracy (groups from *training* counts; a group without classes is
``None``, printed "n/a", never 0) and the confusion matrix (rows: true class, columns: predicted).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.longtail import DEFAULT_FEW_THRESHOLD, DEFAULT_MANY_THRESHOLD, GROUP_LABELS, Group, group_classes
from .builders import build_test_pipeline, eval_loader, open_trained_run, precision_context
from ..distributed import DistributedContext

__all__ = [
    "Metrics",
    "compute_metrics",
    "predict",
    "average_clip_scores",
    "format_metrics_table",
    "save_scores",
    "evaluate_checkpoint",
]

GROUP_NAMES = {group: label.lower() for group, label in GROUP_LABELS.items()}
"""The metrics' keys of the groups: ``many``, ``medium``, ``few``."""


@dataclass
class Metrics:
    """Accuracies in percent; ``None`` where undefined (an empty group)."""

    top1: float
    top5: float
    class_mean: float | None
    many: float | None
    medium: float | None
    few: float | None
    per_class: list[float | None]
    group_sizes: dict[str, int]
    confusion: np.ndarray = field(repr=False)
    num_samples: int = 0

    def summary(self) -> dict[str, Any]:
        """The JSON-safe scalar metrics (no confusion matrix)."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "class_mean": self.class_mean,
            "many": self.many,
            "medium": self.medium,
            "few": self.few,
            "num_samples": self.num_samples,
            "group_sizes": self.group_sizes,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "per_class": self.per_class, "confusion": self.confusion.tolist()}


def compute_metrics(
    logits: np.ndarray,
    labels: np.ndarray,
    train_counts: Sequence[int],
    many_threshold: int = DEFAULT_MANY_THRESHOLD,
    few_threshold: int = DEFAULT_FEW_THRESHOLD,
) -> Metrics:
    """Metrics of ``(N, K)`` scores against ``(N,)`` labels, groups from ``(K,)`` train counts."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = logits.shape[1]
    if len(train_counts) != num_classes:
        raise ValueError(f"{len(train_counts)} train counts for {num_classes} classes")
    predicted = logits.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(axis=1)
    correct = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, 100.0 * correct / np.maximum(support, 1), np.nan)
    k = min(5, num_classes)
    top_k = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    top5 = 100.0 * float((top_k == labels[:, None]).any(axis=1).mean()) if len(labels) else float("nan")
    groups = group_classes(train_counts, many_threshold, few_threshold)

    def mean_over(mask: np.ndarray) -> float | None:
        values = per_class[mask & (support > 0)]
        return float(values.mean()) if values.size else None

    return Metrics(
        top1=100.0 * float((predicted == labels).mean()) if len(labels) else float("nan"),
        top5=top5,
        class_mean=mean_over(np.ones(num_classes, dtype=bool)),
        many=mean_over(groups == Group.MANY),
        medium=mean_over(groups == Group.MEDIUM),
        few=mean_over(groups == Group.FEW),
        per_class=[None if np.isnan(v) else float(v) for v in per_class],
        group_sizes={GROUP_NAMES[g]: int((groups == g).sum()) for g in Group},
        confusion=confusion,
        num_samples=int(len(labels)),
    )


def average_clip_scores(logits: torch.Tensor, num_clips: int) -> torch.Tensor:
    """Fold ``(N * K, classes)`` clip logits (sample-major) into ``(N, classes)`` sample scores.

    ``K = 1`` returns the logits unchanged.  For ``K > 1`` the clips' class probabilities are
    averaged (pyskl's ``average_clips='prob'``) and returned as their logarithm,
    ``log(mean_k softmax(logits_k))``: a logit vector whose softmax is the averaged probability,
    so top-k, metrics and ensembles treat single- and multi-clip scores alike.
    """
    if num_clips == 1:
        return logits
    clips = logits.reshape(-1, num_clips, logits.shape[-1])
    return torch.logsumexp(torch.log_softmax(clips, dim=-1), dim=1) - math.log(num_clips)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    prepare: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    context: DistributedContext,
    num_clips: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eval-mode scores for every sample of ``loader``'s dataset.

    ``prepare(x, lengths)`` turns a raw batch into model input on ``device`` (test pipeline);
    with ``num_clips > 1`` it returns ``num_clips`` clips per sample (sample-major), whose scores
    :func:`average_clip_scores` folds into one row per sample.
    Under DDP every process scores its shard and the results are gathered on all ranks.

    Returns:
        ``(indices (N,), logits (N, K) float32, labels (N,))`` sorted by dataset row index.
    """
    was_training = model.training
    model.eval()
    indices, logits, labels = [], [], []
    for batch in loader:
        x = prepare(batch.x.to(device, non_blocking=True), batch.length.to(device))
        logits.append(average_clip_scores(model(x).float(), num_clips).cpu())
        labels.append(batch.label)
        indices.append(batch.index)
    model.train(was_training)
    local = (
        torch.cat(indices).numpy() if indices else np.zeros(0, dtype=np.int64),
        torch.cat(logits).numpy() if logits else np.zeros((0, 0), dtype=np.float32),
        torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64),
    )
    shards = context.all_gather_object(local)
    all_indices = np.concatenate([s[0] for s in shards])
    all_logits = np.concatenate([s[1] for s in shards if s[1].size])
    all_labels = np.concatenate([s[2] for s in shards])
    # A distributed sampler pads shards by repeating samples: keep each row once.
    unique, first = np.unique(all_indices, return_index=True)
    return unique, all_logits[first], all_labels[first]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_metrics_table(metrics: Metrics, title: str = "test") -> str:
    """A small text table: overall, class-mean and Many/Medium/Few (with class counts)."""
    sizes = metrics.group_sizes
    header = (
        f"{'split':<8}{'top1':>8}{'top5':>8}{'mean':>8}"
        f"{'many(' + str(sizes['many']) + ')':>11}{'med(' + str(sizes['medium']) + ')':>10}"
        f"{'few(' + str(sizes['few']) + ')':>10}"
    )
    row = (
        f"{title:<8}{_fmt(metrics.top1):>8}{_fmt(metrics.top5):>8}{_fmt(metrics.class_mean):>8}"
        f"{_fmt(metrics.many):>11}{_fmt(metrics.medium):>10}{_fmt(metrics.few):>10}"
    )
    return f"{header}\n{row}"


def save_scores(path: Path, names: Sequence[str], logits: np.ndarray, labels: np.ndarray) -> None:
    """Per-sample scores for later ensembling (``names``, ``logits`` (N, K), ``labels``)."""
    np.savez_compressed(path, names=np.asarray(names), logits=logits.astype(np.float32), labels=labels)


def evaluate_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path | None = None,
    split: str = "test",
    overrides: Sequence[str] = (),
    device: str = "auto",
) -> Metrics:
    """Score a training checkpoint on a split of the data it was trained with.

    The run's config is read from the checkpoint (``overrides`` may change e.g. ``data.path``
    when the dataset moved, or ``eval.num_clips`` for multi-clip testing).  Writes
    ``eval_<split>.json`` and ``eval_<split>_scores.npz`` into ``out_dir`` when given.
    """
    run = open_trained_run(checkpoint, overrides, device)
    target = run.split(split)
    num_clips = run.config.eval.num_clips
    dataset = run.data.dataset
    test_pipeline = build_test_pipeline(run.config, dataset.layout, dataset.channels, num_clips)
    loader = eval_loader(
        target, run.config.train.eval_batch_size, run.context, run.config.data.num_workers,
        pin_memory=run.device.type == "cuda",
    )
    with precision_context(run.config.train.precision, run.device):  # as the run was evaluated
        rows, logits, labels = predict(
            run.model, loader, lambda x, lengths: test_pipeline(x, lengths)[0], run.device, run.context, num_clips
        )
    data = run.config.data
    metrics = compute_metrics(logits, labels, run.train_counts, data.many_threshold, data.few_threshold)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"eval_{split}.json").write_text(
            json.dumps(
                {"checkpoint": str(checkpoint), "epoch": int(run.state["epoch"]) + 1, "num_clips": num_clips, **metrics.to_dict()},
                indent=2,
            ) + "\n",
            encoding="utf-8",
        )
        save_scores(out / f"eval_{split}_scores.npz", [run.data.dataset.names[i] for i in rows], logits, labels)
    return metrics
