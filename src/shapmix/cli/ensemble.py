"""``shapmix ensemble``: fuse the saved test scores of several runs (multi-stream fusion)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..engine.ensemble import SCORES_FILE, ensemble_runs, format_ensemble_table
from .common import EXIT_OK, add_command, report_user_error

__all__ = ["add_parser", "run"]

EXAMPLES = """\
examples:
  shapmix ensemble runs/joint runs/bone                                  # 2-stream, weights 1, 1
  shapmix ensemble runs/j runs/b runs/jm runs/bm --weights 0.6,0.6,0.4,0.4 --out runs/4s
  shapmix ensemble runs/j runs/b --scores eval/eval_test_scores.npz      # scores of `shapmix eval --out`

fuses the runs' per-sample test logits (weighted sum, aligned by sample name) and prints the
metrics of each run and of the ensemble (overall, top-5, class-mean, Many/Medium/Few); --out
writes metrics.json (with per-class accuracy), the fused test_scores.npz and class_accuracy.png.
"""



def _weights(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights must be comma-separated numbers, got {text!r}") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "ensemble", run, help="fuse runs' test scores (multi-stream)", epilog=EXAMPLES,
        description="Fuse the saved test scores of several runs (e.g. joint and bone streams) and report the metrics.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (two or more)")
    parser.add_argument("--weights", type=_weights, help="one weight per run, comma-separated (default 1 each)")
    parser.add_argument("--out", type=Path, help="write metrics.json, test_scores.npz and class_accuracy.png here")
    parser.add_argument("--scores", default=SCORES_FILE, help=f"scores file inside each run (default {SCORES_FILE})")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        result = ensemble_runs(args.runs, args.weights, args.scores)
    except ValueError as error:  # runs that do not fit together (the message names them)
        return report_user_error("ensemble", error)
    print(format_ensemble_table(result))
    if args.out is not None:
        result.write(args.out)
        print(f"wrote {args.out}")
    return EXIT_OK
