"""Exact Shapley saliency of a trained model, and how well the online table agrees with it.

With ``P = 5`` body parts there are only ``2**P = 32`` coalitions, so the exact values are cheap:
for every sample the worths ``v(S) = softmax(f(x_S))[y]`` of all 32 coalitions are computed
(:func:`~shapmix.mixing.coalition_values`, masked inputs batched over samples and coalitions, eval
mode, no gradients), then

* the Shapley value of every part (``P`` values summing to ``v(all) - v(empty)``), and
* the Shapley value of every part combination treated as one merged player (Eq. 2 of the
  paper), divided by the combination's number of joints: the quantity the online table
  estimates (its per-joint normalisation, Eq. 3), so the two are on the same scale.

Both are averaged per class (true labels).  ``agreement.json`` also reports, per class, how sharp
the mixing policy ``softmax(table / tau)`` is at the run's temperature, for the online table and
for the exact values (probability of the top combination, entropy against uniform;
:func:`~shapmix.mixing.saliency.policy_sharpness`).  :func:`rank_agreement` compares an online table with
the exact one (per-class Spearman rank correlation), :func:`ground_truth_hits` checks a table
against the built-in benchmark's ground-truth salient parts, and :func:`analyse_checkpoint` does
all of it for a training checkpoint (``shapmix saliency``).

Output files of :func:`analyse_checkpoint` (long CSV format of
:meth:`~shapmix.mixing.SaliencyTable.to_csv`: one row per cell; for exact tables ``count`` is the
number of samples averaged; a class without samples has value ``nan``)::

    exact_parts.csv            class x part exact Shapley values of the parts
    exact_combinations.csv     class x combination exact per-joint values (Eq. 2 / joints)
    exact_combinations.json    the same, with sample counts and joint counts (null = no data)
    online_combinations.csv    the checkpoint's online table (Shap-Mix runs only)
    agreement.json             Spearman per class and mean, ground-truth hit rates, top combinations
    exact_heatmap.png          heatmap of the exact combination values
    exact_part_skeletons.png   skeletons coloured by the exact part values
    online_heatmap.png         heatmap of the online table
    online_policy_heatmap.png  the sampling distribution the online table gives at the run's
                               ``method.tau`` (what the mixing policy actually draws from)
    online_part_skeletons.png  skeletons coloured by relative part scores derived from the online
                               table (:func:`~shapmix.viz.saliency.part_scores_from_table`)

The skeletons are drawn in the layout's built-in template pose
(:func:`~shapmix.viz.saliency.template_pose`), or for a layout without one in the mean first
frame of the training split.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..data.dataset import SkeletonSplit
from ..engine.builders import TrainedRun, eval_loader, mean_input_sequence, open_trained_run
from ..mixing import (
    PartCombinations,
    SaliencyTable,
    coalition_values,
    combination_shapley_values,
    shapley_values,
)
from ..mixing.saliency import policy_sharpness, sampling_distribution
from ..mixing.shapley import DEFAULT_CHUNK_SIZE
from ..skeleton.layouts import Layout, get_layout
from ..viz.saliency import (
    part_scores_from_table,
    pick_classes,
    plot_part_saliency_skeletons,
    plot_policy_heatmap,
    plot_saliency_heatmap,
    template_pose,
)

__all__ = [
    "AGREEMENT_FILE",
    "EXACT_COMBINATIONS_CSV",
    "EXACT_COMBINATIONS_JSON",
    "EXACT_PARTS_CSV",
    "ONLINE_COMBINATIONS_CSV",
    "ExactSaliency",
    "RankAgreement",
    "analyse_checkpoint",
    "exact_class_saliency",
    "format_saliency_summary",
    "ground_truth_hits",
    "rank_agreement",
    "spearman_rows",
    "top_combinations",
]

EXACT_PARTS_CSV = "exact_parts.csv"
EXACT_COMBINATIONS_CSV = "exact_combinations.csv"
EXACT_COMBINATIONS_JSON = "exact_combinations.json"
ONLINE_COMBINATIONS_CSV = "online_combinations.csv"
AGREEMENT_FILE = "agreement.json"
EXACT_HEATMAP_FILE = "exact_heatmap.png"
EXACT_SKELETONS_FILE = "exact_part_skeletons.png"
ONLINE_HEATMAP_FILE = "online_heatmap.png"
ONLINE_POLICY_HEATMAP_FILE = "online_policy_heatmap.png"
ONLINE_SKELETONS_FILE = "online_part_skeletons.png"

MAX_POSE_SAMPLES = 256
"""Training samples averaged for the drawing pose of a layout without a built-in template."""
SALIENT_PARTS_KEY = "salient_parts"
"""``dataset.metadata`` key of the ground-truth salient parts (built-in benchmark)."""
SPLITS = ("test", "val", "train")
SHOWN_CLASSES = 8
"""Classes listed in :func:`format_saliency_summary` (the most frequent first)."""
_PARTS_CSV_FIELDS = ("class_index", "class", "part_index", "part", "value", "count")


# --------------------------------------------------------------------------- exact values


@dataclass(frozen=True)
class ExactSaliency:
    """Per-class means of exact Shapley values (float64, CPU).

    Attributes:
        parts: ``(K, P)`` mean Shapley value of each part; NaN for a class without samples.
        combinations: ``(K, S)`` mean per-joint Shapley value of each combination as one merged
            player (Eq. 2 divided by its joint count); NaN for a class without samples.
        counts: ``(K,)`` int64 number of samples of each class.
    """

    parts: torch.Tensor
    combinations: torch.Tensor
    counts: torch.Tensor

    @property
    def has_data(self) -> torch.Tensor:
        """``(K,)`` bool, the class had at least one sample."""
        return self.counts > 0


def exact_class_saliency(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    baseline: torch.Tensor,
    layout: str | Layout,
    combinations: PartCombinations,
    num_classes: int,
    batch_size: int = DEFAULT_CHUNK_SIZE,
) -> ExactSaliency:
    """Exact per-part and per-combination Shapley values of ``model``, averaged per class.

    Args:
        model: maps ``(B, C, T, V, M)`` to logits ``(B, K)``; evaluated in eval mode without
            gradients (its train/eval flags are restored).
        batches: ``(x, y)`` pairs of model inputs ``(N, C, T, V, M)`` (after the test pipeline,
            on the model's device) and true classes ``(N,)``.
        baseline: ``(C, T, V, M)`` replacement for absent parts, in the model's input space.
        layout: the skeleton layout whose ``P`` parts are the players.
        combinations: the ``S`` combinations to value (same layout).
        num_classes: ``K``.
        batch_size: masked inputs per forward pass (each sample needs ``2**P`` of them).

    Returns:
        :class:`ExactSaliency`; sums are accumulated in float64.
    """
    layout = get_layout(layout)
    if combinations.num_parts != layout.num_parts:
        raise ValueError(f"combinations have {combinations.num_parts} parts, layout {layout.name!r} {layout.num_parts}")
    joints = combinations.joint_counts.to(torch.float64)
    part_sums = torch.zeros(num_classes, layout.num_parts, dtype=torch.float64)
    combination_sums = torch.zeros(num_classes, len(combinations), dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for x, y in batches:
        worths = coalition_values(model, x, y, baseline, layout, batch_size).cpu().to(torch.float64)
        labels = y.cpu().to(torch.int64)
        part_sums.index_add_(0, labels, shapley_values(worths))
        combination_sums.index_add_(0, labels, combination_shapley_values(worths, combinations) / joints)
        counts += torch.bincount(labels, minlength=num_classes)
    divisor = counts.to(torch.float64)[:, None]  # 0 / 0 = NaN for a class without samples
    return ExactSaliency(parts=part_sums / divisor, combinations=combination_sums / divisor, counts=counts)


# --------------------------------------------------------------------------- agreement


class RankAgreement(NamedTuple):
    """Per-class Spearman rank correlations and their mean.

    Attributes:
        per_class: ``(K,)`` float64; NaN where undefined (a class without data in either table,
            or a constant row).
        mean: mean over the classes where it is defined (NaN if there are none).
    """

    per_class: np.ndarray
    mean: float


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """``(K, S)`` 1-based ranks within each row, tied values sharing their average rank."""
    below = (values[:, None, :] < values[:, :, None]).sum(dim=2)
    equal = (values[:, None, :] == values[:, :, None]).sum(dim=2)
    return below.to(torch.float64) + (equal.to(torch.float64) + 1.0) / 2.0


def spearman_rows(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b``.

    Ranks with ties averaged, then the Pearson correlation of the ranks.

    Args:
        a, b: ``(K, S)``.

    Returns:
        ``(K,)`` float64; NaN for a row with a NaN or with constant values in either input.
    """
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (K, S) tables of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ranks_a = _average_ranks(a)
    ranks_b = _average_ranks(b)
    centred_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    centred_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    scale = (centred_a.square().sum(dim=1) * centred_b.square().sum(dim=1)).sqrt()
    correlation = (centred_a * centred_b).sum(dim=1) / scale
    defined = (scale > 0) & ~(a.isnan().any(dim=1) | b.isnan().any(dim=1))
    return torch.where(defined, correlation, torch.nan).numpy()


def rank_agreement(online: torch.Tensor | np.ndarray, exact: torch.Tensor | np.ndarray) -> RankAgreement:
    """Per-class Spearman correlation between an online table and exact values, and the mean.

    Args:
        online: ``(K, S)`` online table.
        exact: ``(K, S)`` exact per-joint combination values (NaN rows: classes without data).
    """
    per_class = spearman_rows(online, exact)
    defined = per_class[np.isfinite(per_class)]
    return RankAgreement(per_class, float(defined.mean()) if defined.size else math.nan)


def top_combinations(table: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(K,)`` int64 index of each class's highest value; -1 for a row without data (NaN)."""
    values = np.asarray(table, dtype=np.float64)
    has_data = np.isfinite(values).any(axis=1)
    best = np.where(np.isfinite(values), values, -np.inf).argmax(axis=1)
    return np.where(has_data, best, -1)


def _ground_truth_hit_mask(
    table: torch.Tensor | np.ndarray,
    combinations: PartCombinations,
    salient_parts: Mapping[str, Sequence[str]],
    class_names: Sequence[str],
) -> dict[int, bool]:
    """Per evaluated class (listed in ``salient_parts`` and with data): does its top combination
    contain all its ground-truth salient parts?"""
    part_index = {name: p for p, name in enumerate(combinations.layout.part_names)}
    tops = top_combinations(table)
    hits: dict[int, bool] = {}
    for k, name in enumerate(class_names):
        if name not in salient_parts or tops[k] < 0:
            continue
        unknown = [part for part in salient_parts[name] if part not in part_index]
        if unknown:
            raise ValueError(
                f"class {name!r}: salient parts {unknown} are not parts of layout {combinations.layout.name!r}"
            )
        wanted = [part_index[part] for part in salient_parts[name]]
        hits[k] = bool(combinations.part_membership[tops[k], wanted].all())
    return hits


def ground_truth_hits(
    table: torch.Tensor | np.ndarray,
    combinations: PartCombinations,
    salient_parts: Mapping[str, Sequence[str]],
    class_names: Sequence[str],
) -> float:
    """Fraction of classes whose top combination contains all of the class's salient parts.

    Args:
        table: ``(K, S)`` saliency table.
        combinations: the table's ``S`` combinations.
        salient_parts: class name -> ground-truth part names (``dataset.metadata["salient_parts"]``).
        class_names: ``K`` names.

    Returns:
        the hit rate over classes that are listed in ``salient_parts`` and have data (NaN if none).
    """
    hits = _ground_truth_hit_mask(table, combinations, salient_parts, class_names)
    return float(np.mean(list(hits.values()))) if hits else math.nan


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_saliency_summary(summary: dict[str, Any], shown: int = SHOWN_CLASSES) -> str:
    """A short text report of :func:`~shapmix.analysis.analyse_checkpoint`'s result."""
    lines = [
        f"{summary['samples']} {summary['split']} samples, {summary['classes_with_data']} classes with data"
        + (f" (none for: {', '.join(summary['classes_without_data'])})" if summary["classes_without_data"] else ""),
    ]
    if summary["online_table"]:
        lines.append(f"mean Spearman rank correlation, online vs exact: {_fmt(summary['mean_spearman'])}")
    else:
        lines.append(f"no online table in this checkpoint (method {summary['method']})")
    if "ground_truth_hit_rate_exact" in summary:
        rates = f"exact {_fmt(summary['ground_truth_hit_rate_exact'], 2)}"
        if "ground_truth_hit_rate_online" in summary:
            rates += f", online {_fmt(summary['ground_truth_hit_rate_online'], 2)}"
        lines.append(f"ground-truth hit rate (top combination holds all salient parts): {rates}")
    classes = sorted(summary["classes"], key=lambda record: -record["train_count"])[:shown]
    width = max(len(record["class"]) for record in classes)
    tops = [record.get(key) or "n/a" for record in classes for key in ("exact_top", "online_top")]
    top_width = max(len(top) for top in tops)
    header = f"{'class':<{width}}  {'train':>5}  {'exact top':<{top_width}}"
    if summary["online_table"]:
        header += f"  {'online top':<{top_width}}  {'rho':>6}"
    lines.append(header)
    for record in classes:
        row = f"{record['class']:<{width}}  {record['train_count']:>5}  {record['exact_top'] or 'n/a':<{top_width}}"
        if summary["online_table"]:
            row += f"  {record['online_top']:<{top_width}}  {_fmt(record['spearman'], 2):>6}"
        lines.append(row)
    return "\n".join(lines)


# --------------------------------------------------------------------------- files


def _write_parts_csv(
    path: Path, values: torch.Tensor, counts: torch.Tensor, class_names: Sequence[str], part_names: Sequence[str]
) -> None:
    """One row per (class, part): indices, names, value (``repr``, ``nan`` without data), count."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_PARTS_CSV_FIELDS)
        for k, class_name in enumerate(class_names):
            for p, part_name in enumerate(part_names):
                writer.writerow([k, class_name, p, part_name, repr(float(values[k, p])), int(counts[k])])


def _exact_table(exact: ExactSaliency, combinations: PartCombinations, class_names: Sequence[str]) -> SaliencyTable:
    """The exact values as a :class:`SaliencyTable` whose counts are the per-class sample counts."""
    table = SaliencyTable.from_combinations(len(class_names), combinations, class_names=class_names)
    table.values = exact.combinations.to(torch.float32)
    table.counts = exact.counts[:, None].expand_as(exact.combinations).clone()
    return table


def _json_values(values: torch.Tensor | np.ndarray) -> list:
    """Nested lists with ``None`` for NaN (strict JSON)."""
    array = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(array), array, None).tolist()


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- checkpoints


def _limit_per_class(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Positions of the first ``limit`` samples of each class (all when ``limit`` is None)."""
    positions = np.arange(labels.size)
    if limit is None:
        return positions
    if limit < 1:
        raise ValueError(f"max_samples_per_class must be positive, got {limit}")
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], labels[order], side="left")
    rank = np.empty_like(positions)
    rank[order] = positions - starts
    return positions[rank < limit]


def _drawing_pose(dataset: Any, rows: np.ndarray) -> np.ndarray | None:
    """``(V, 2)`` pose for the skeleton drawings: the layout's built-in template when it has one
    (a clean, neutral standing pose), else the mean x-y of person 0 in the first frame of
    ``rows``, centred on the layout's centre joint; ``None`` when neither is available."""
    try:
        return template_pose(dataset.layout)
    except ValueError:
        pass
    channels = list(dataset.channels)
    if rows.size == 0 or "x" not in channels or "y" not in channels:
        return None
    xy = np.asarray(dataset.data[np.sort(rows), :, 0, :, 0], dtype=np.float64)[
        :, [channels.index("x"), channels.index("y")]
    ]
    xy = xy - xy[:, :, dataset.layout.center : dataset.layout.center + 1]
    pose = xy.mean(axis=0).T
    return pose if np.ptp(pose[:, 1]) > 0 else None


def analyse_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    split: str = "test",
    overrides: Sequence[str] = (),
    device: str = "auto",
    max_samples_per_class: int | None = None,
) -> dict[str, Any]:
    """Exact Shapley saliency of a checkpoint on a split, compared with its online table.

    Rebuilds the config, data, model and test pipeline from the checkpoint
    (:func:`~shapmix.engine.builders.open_trained_run`; ``overrides`` may e.g. move
    ``data.path``).  The baseline is the checkpoint's Shap-Mix baseline when present, else the
    mean training sequence after the test pipeline.  The combinations are those of the run's
    ``method.min_parts..max_parts``.  Writes the files listed in the module docstring.

    Args:
        checkpoint: a ``last.pt`` or ``best.pt``.
        out_dir: output directory (created).
        split: ``test``, ``val`` or ``train``.
        overrides: ``KEY=VALUE`` config overrides.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        max_samples_per_class: analyse at most this many samples per class (first in split order).

    Returns:
        the content of ``agreement.json`` (summary and per-class results).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    run = open_trained_run(checkpoint, overrides, device)
    config, dataset = run.config, run.data.dataset
    target = run.split(split)
    target = SkeletonSplit(dataset, split, target.indices[_limit_per_class(target.labels, max_samples_per_class)])
    method_state = run.state.get("method", {})
    baseline = _baseline(run, method_state)
    layout = dataset.layout
    combinations = PartCombinations.from_layout(layout, config.method.min_parts, config.method.max_parts)
    class_names = list(run.state.get("class_names", dataset.class_names))
    train_counts = run.train_counts
    batch_size = config.train.eval_batch_size
    batches = (
        (run.prepare(batch.x, batch.length), batch.label.to(run.device))
        for batch in eval_loader(target, batch_size, run.context, config.data.num_workers)
    )
    exact = exact_class_saliency(run.model, batches, baseline, layout, combinations, len(class_names), batch_size)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_exact_files(out, exact, combinations, class_names, str(checkpoint), split)
    online = _online_table(method_state, combinations, class_names)
    if online is not None:
        online.to_csv(out / ONLINE_COMBINATIONS_CSV)

    summary = {
        "checkpoint": str(checkpoint),
        "split": split,
        "method": config.method.name,
        **_agreement_summary(
            exact,
            online,
            combinations,
            class_names,
            train_counts,
            dataset.metadata.get(SALIENT_PARTS_KEY),
            config.method.tau,
        ),
    }
    thresholds = {"many_threshold": config.data.many_threshold, "few_threshold": config.data.few_threshold}
    pose = _drawing_pose(dataset, run.data.train.indices[:MAX_POSE_SAMPLES])
    online_values = None if online is None else online.values.to(torch.float64)
    figures = _write_figures(
        out, exact, online_values, combinations, class_names, train_counts, pose, split, thresholds, config.method.tau
    )
    summary["figures"] = [path.name for path in figures]
    _write_json(out / AGREEMENT_FILE, summary)
    return summary


def _baseline(run: TrainedRun, method_state: Mapping[str, Any]) -> torch.Tensor:
    """The checkpoint's Shap-Mix baseline when it has one, else the mean training sequence after
    the test pipeline (what a Shap-Mix run would have used)."""
    if "baseline" in method_state:
        return method_state["baseline"].to(run.device)
    return mean_input_sequence(
        run.data.train, run.test_pipeline, run.config.train.eval_batch_size, run.device, run.context
    )


def _write_exact_files(
    out: Path,
    exact: ExactSaliency,
    combinations: PartCombinations,
    class_names: Sequence[str],
    checkpoint: str,
    split: str,
) -> None:
    """``exact_parts.csv``, ``exact_combinations.csv`` and ``exact_combinations.json``."""
    _write_parts_csv(out / EXACT_PARTS_CSV, exact.parts, exact.counts, class_names, combinations.layout.part_names)
    _exact_table(exact, combinations, class_names).to_csv(out / EXACT_COMBINATIONS_CSV)
    _write_json(
        out / EXACT_COMBINATIONS_JSON,
        {
            "checkpoint": checkpoint,
            "split": split,
            "classes": list(class_names),
            "combinations": list(combinations.names),
            "joint_counts": combinations.joint_counts.tolist(),
            "samples": exact.counts.tolist(),
            "values": _json_values(exact.combinations),
        },
    )


def _online_table(
    method_state: Mapping[str, Any], combinations: PartCombinations, class_names: Sequence[str]
) -> SaliencyTable | None:
    """The checkpoint's online saliency table (Shap-Mix runs), or ``None``."""
    if "table" not in method_state:
        return None
    online = SaliencyTable.from_combinations(len(class_names), combinations, class_names=class_names)
    online.load_state_dict(method_state["table"])
    return online


def _agreement_summary(
    exact: ExactSaliency,
    online: SaliencyTable | None,
    combinations: PartCombinations,
    class_names: Sequence[str],
    train_counts: np.ndarray,
    salient_parts: Mapping[str, Sequence[str]] | None,
    tau: float,
) -> dict[str, Any]:
    """The JSON-safe comparison of ``agreement.json``: sample counts, mean Spearman correlation
    and ground-truth hit rates, the policy's sharpness at ``tau``, and per class its top
    combinations, correlation, hits and policy sharpness."""
    names = combinations.names
    exact_tops = top_combinations(exact.combinations)
    summary: dict[str, Any] = {
        "samples": int(exact.counts.sum()),
        "classes_with_data": int(exact.has_data.sum()),
        "classes_without_data": [name for k, name in enumerate(class_names) if not exact.has_data[k]],
        "online_table": online is not None,
    }
    per_class: list[dict[str, Any]] = [
        {
            "class": name,
            "train_count": int(train_counts[k]),
            "samples": int(exact.counts[k]),
            "exact_top": names[exact_tops[k]] if exact_tops[k] >= 0 else None,
        }
        for k, name in enumerate(class_names)
    ]
    tables = {"exact": exact.combinations}
    if online is not None:
        tables["online"] = online.values.to(torch.float64)
        agreement = rank_agreement(tables["online"], exact.combinations)
        online_tops = top_combinations(tables["online"])
        summary["mean_spearman"] = _json_float(agreement.mean)
        summary["online_cells_never_updated"] = int((online.counts == 0).sum())
        for k, record in enumerate(per_class):
            record["online_top"] = names[online_tops[k]]
            record["spearman"] = _json_float(agreement.per_class[k])
    summary["policy"] = {"tau": tau}
    for kind, table in tables.items():
        summary["policy"][kind] = _policy_summary(table, tau, per_class, kind)
    if salient_parts is not None:
        for k, record in enumerate(per_class):
            record["salient_parts"] = list(salient_parts.get(class_names[k], []))
        for kind, table in tables.items():
            hits = _ground_truth_hit_mask(table, combinations, salient_parts, class_names)
            summary[f"ground_truth_hit_rate_{kind}"] = float(np.mean(list(hits.values()))) if hits else None
            for k, record in enumerate(per_class):
                record[f"{kind}_hit"] = hits.get(k)
    summary["classes"] = per_class
    return summary


def _policy_summary(table: torch.Tensor, tau: float, per_class: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """How sharp ``softmax(table / tau)`` is: per class (written into ``per_class`` records as
    ``{kind}_policy_top_probability`` / ``{kind}_policy_entropy``; ``None`` for a class without
    data) and the means over classes with data."""
    has_data = torch.isfinite(table).all(dim=1)
    sharpness = policy_sharpness(sampling_distribution(torch.nan_to_num(table), tau))
    for k, record in enumerate(per_class):
        defined = bool(has_data[k])
        record[f"{kind}_policy_top_probability"] = float(sharpness.top_probability[k]) if defined else None
        record[f"{kind}_policy_entropy"] = float(sharpness.normalised_entropy[k]) if defined else None
    rows = has_data.nonzero().squeeze(1)
    return {
        "mean_top_probability": _json_float(float(sharpness.top_probability[rows].mean())) if len(rows) else None,
        "mean_normalised_entropy": _json_float(float(sharpness.normalised_entropy[rows].mean())) if len(rows) else None,
        "uniform_probability": 1.0 / table.shape[1],
    }


def _write_figures(
    out: Path,
    exact: ExactSaliency,
    online: torch.Tensor | None,
    combinations: PartCombinations,
    class_names: Sequence[str],
    train_counts: np.ndarray,
    pose: np.ndarray | None,
    split: str,
    thresholds: Mapping[str, int],
    tau: float,
) -> list[Path]:
    """Heatmaps and skeleton drawings of the exact (and online) values, and the online table's
    policy at ``tau``; the skeletons only when there is a ``(V, 2)`` pose to draw.  The online
    skeletons show :func:`part_scores_from_table`."""
    layout = combinations.layout
    names = combinations.names
    examples = pick_classes(train_counts, **thresholds)
    written = [
        plot_saliency_heatmap(
            exact.combinations.numpy(),
            train_counts,
            class_names,
            names,
            out / EXACT_HEATMAP_FILE,
            title=f"Exact combination saliency ({split})",
            **thresholds,
        )
    ]
    if pose is not None:
        written.append(
            plot_part_saliency_skeletons(
                exact.parts.numpy(),
                layout,
                examples,
                class_names,
                out / EXACT_SKELETONS_FILE,
                pose=pose,
                train_counts=train_counts,
                title=f"Exact Shapley value of each part ({split})",
            )
        )
    if online is not None:
        written.append(
            plot_saliency_heatmap(
                online.numpy(),
                train_counts,
                class_names,
                names,
                out / ONLINE_HEATMAP_FILE,
                title="Online saliency table",
                **thresholds,
            )
        )
        written.append(
            plot_policy_heatmap(
                sampling_distribution(online, tau).numpy(),
                train_counts,
                class_names,
                names,
                out / ONLINE_POLICY_HEATMAP_FILE,
                tau,
                title="Policy of the online table",
                **thresholds,
            )
        )
        if pose is not None:
            written.append(
                plot_part_saliency_skeletons(
                    part_scores_from_table(online.numpy(), combinations.part_membership.numpy()),
                    layout,
                    examples,
                    class_names,
                    out / ONLINE_SKELETONS_FILE,
                    pose=pose,
                    train_counts=train_counts,
                    title="Relative part saliency from the online table",
                    value_label="relative part saliency",
                )
            )
    return written
