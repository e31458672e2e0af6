"""Figures written into a run directory (matplotlib, no display needed)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from ..data.longtail import GROUP_LABELS, Group

__all__ = ["plot_class_accuracy", "plot_training_curves", "pyplot"]

GROUP_COLOURS = {Group.MANY: "#1f77b4", Group.MEDIUM: "#ff7f0e", Group.FEW: "#d62728"}
MAX_LABELLED_CLASSES = 60
MAX_TICK_LABEL_CHARS = 16
NON_INTERACTIVE_BACKEND = "Agg"
"""Figures are only written to files: no display is needed (or wanted, on a server)."""


@cache
def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` with the non-interactive backend selected, imported on first use."""
    # Delayed import: matplotlib is heavy and only drawing needs it, so importing the engine
    # (or the command line) does not pay for it.
    import matplotlib

    matplotlib.use(NON_INTERACTIVE_BACKEND)
    import matplotlib.pyplot

    return matplotlib.pyplot


def plot_class_accuracy(
    per_class: Sequence[float | None],
    train_counts: Sequence[int],
    groups: Sequence[int],
    class_names: Sequence[str],
    path: str | Path,
) -> Path:
    """Bars of per-class test accuracy (%), classes ordered by training count (head first),
    coloured by Many/Medium/Few, with the training count on a second axis."""
    counts = np.asarray(train_counts)
    order = np.argsort(-counts, kind="stable")
    accuracy = np.array([np.nan if per_class[i] is None else per_class[i] for i in order], dtype=float)
    colours = [GROUP_COLOURS[Group(groups[i])] for i in order]
    width = max(6.0, 0.18 * len(order) + 2)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(width, 4.2))
    positions = np.arange(len(order))
    ax.bar(positions, np.nan_to_num(accuracy), color=colours)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlabel("classes (id), most frequent in training first")
    if len(order) <= MAX_LABELLED_CLASSES:
        # Long names would squash the plot: fall back to class ids.
        short = max(len(name) for name in class_names) <= MAX_TICK_LABEL_CHARS
        labels = [class_names[i] if short else str(i) for i in order]
        ax.set_xticks(positions, labels, rotation=90 if short else 0, fontsize=7)
    else:
        ax.set_xticks([])
    counts_axis = ax.twinx()
    counts_axis.plot(positions, counts[order], color="black", linewidth=1.2, label="training samples")
    counts_axis.set_yscale("log")
    counts_axis.set_ylabel("training samples (log)")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=GROUP_COLOURS[g]) for g in Group if (np.asarray(groups) == g).any()
    ]
    labels = [GROUP_LABELS[g] for g in Group if (np.asarray(groups) == g).any()]
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    ax.set_title("Per-class accuracy by training frequency")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss, accuracy (train, and validation when present) and learning rate per epoch."""
    epochs = [record["epoch"] for record in history]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(epochs, [r["loss"] for r in history], marker=".")
    axes[0].set_title("training loss")
    axes[1].plot(epochs, [r["train_top1"] for r in history], marker=".", label="train (clean)")
    if any("val" in r for r in history):
        val_epochs = [r["epoch"] for r in history if "val" in r]
        axes[1].plot(val_epochs, [r["val"]["top1"] for r in history if "val" in r], marker=".", label="val")
    axes[1].set_title("top-1 accuracy (%)")
    axes[1].legend(fontsize=8)
    axes[2].plot(epochs, [r["lr"] for r in history], marker=".")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
