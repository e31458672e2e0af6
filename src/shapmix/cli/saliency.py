"""``shapmix saliency``: exact Shapley saliency of a checkpoint against its online table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.saliency import analyse_checkpoint, format_saliency_summary
from .common import EXIT_OK, add_command

__all__ = ["add_parser", "run"]

DESCRIPTION = """\
Compute exact per-part and per-combination Shapley values (all 2**P coalitions of body parts)
of a checkpoint on a split, compare them with the checkpoint's online saliency table (Spearman
rank correlation per class), and draw them."""

EXAMPLES = """\
examples:
  shapmix saliency --checkpoint runs/default/last.pt --out runs/default/saliency
  shapmix saliency --checkpoint runs/ntu/last.pt --out saliency-val --split val --max-samples-per-class 20
  shapmix saliency --checkpoint runs/ntu/last.pt --out saliency data.path=/new/place/ntu60_xsub

writes exact_parts.csv, exact_combinations.csv/.json, online_combinations.csv (Shap-Mix runs),
agreement.json (Spearman rank correlation of online vs exact per class, ground-truth hit rate on
the built-in benchmark, top combination per class) and heatmap / skeleton PNGs into OUT.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "saliency", run, help="exact Shapley saliency of a checkpoint vs its online table",
        description=DESCRIPTION, epilog=EXAMPLES,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--split", default="test", choices=("test", "val", "train"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--max-samples-per-class", type=int, default=None, metavar="N",
        help="analyse at most N samples of each class (default: all)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.path=...")
    return parser


def run(args: argparse.Namespace) -> int:
    summary = analyse_checkpoint(
        args.checkpoint, args.out, args.split, args.overrides, args.device, args.max_samples_per_class
    )
    print(format_saliency_summary(summary))
    print(f"wrote {args.out}")
    return EXIT_OK
