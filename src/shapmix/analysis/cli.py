"""``shapmix saliency``: exact Shapley saliency of a checkpoint against its online table.

Register it in the main parser with ``add_saliency_parser(subparsers)``; the handler is set with
``set_defaults(handler=...)`` and returns the exit status.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

__all__ = ["add_saliency_parser", "format_saliency_summary", "run_saliency"]

DESCRIPTION = """\
Compute exact per-part and per-combination Shapley values (all 2**P coalitions of body parts)
of a checkpoint on a split, compare them with the checkpoint's online saliency table (Spearman
rank correlation per class), and draw them."""

EXAMPLES_SALIENCY = """\
examples:
  shapmix saliency --checkpoint runs/default/last.pt --out runs/default/saliency
  shapmix saliency --checkpoint runs/ntu/last.pt --out saliency-val --split val --max-samples-per-class 20
  shapmix saliency --checkpoint runs/ntu/last.pt --out saliency data.path=/new/place/ntu60_xsub

writes exact_parts.csv, exact_combinations.csv/.json, online_combinations.csv (Shap-Mix runs),
agreement.json (Spearman rank correlation of online vs exact per class, ground-truth hit rate on
the built-in benchmark, top combination per class) and heatmap / skeleton PNGs into OUT.
"""

SHOWN_CLASSES = 8
"""Classes listed in the printed summary (the most frequent first)."""


def add_saliency_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``saliency`` command to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    parser = subparsers.add_parser(
        "saliency",
        help="exact Shapley saliency of a checkpoint vs its online table",
        description=DESCRIPTION,
        epilog=EXAMPLES_SALIENCY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--split", default="test", choices=("test", "val", "train"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--max-samples-per-class",
        type=int,
        default=None,
        metavar="N",
        help="analyse at most N samples of each class (default: all)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.path=...")
    parser.set_defaults(handler=run_saliency)
    return parser


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


def run_saliency(args: argparse.Namespace) -> int:
    """Handler of ``shapmix saliency``: analyse, print the summary, return 0."""
    from .saliency import analyse_checkpoint

    summary = analyse_checkpoint(
        args.checkpoint, args.out, args.split, args.overrides, args.device, args.max_samples_per_class
    )
    print(format_saliency_summary(summary))
    print(f"wrote {args.out}")
    return 0
