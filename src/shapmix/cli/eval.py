"""``shapmix eval``: score a checkpoint on a split of its run's data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..engine.evaluate import evaluate_checkpoint, format_metrics_table
from .common import EXIT_OK, add_command

__all__ = ["add_parser", "run"]

EXAMPLES = """\
examples:
  shapmix eval --checkpoint runs/ntu-bs/last.pt
  shapmix eval --checkpoint runs/ntu-bs/last.pt --out runs/ntu-bs/eval data.path=/new/place
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "eval", run, help="evaluate a checkpoint", epilog=EXAMPLES,
        description="Score a checkpoint on its run's test split and print the long-tailed metrics.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    parser.add_argument("--out", type=Path, help="write eval_SPLIT.json and scores here")
    parser.add_argument("--split", default="test", choices=("test", "val", "train"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.path=...")
    return parser


def run(args: argparse.Namespace) -> int:
    metrics = evaluate_checkpoint(args.checkpoint, args.out, args.split, args.overrides, args.device)
    print(format_metrics_table(metrics, args.split))
    return EXIT_OK
