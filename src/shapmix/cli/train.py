"""``shapmix train``: train a model (the built-in benchmark without arguments)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..config import load_config
from ..engine.trainer import train
from .common import EXIT_OK, add_command

__all__ = ["add_parser", "run"]

DEFAULT_RUNS_DIR = Path("runs")
RUN_TIME_FORMAT = "%Y%m%d-%H%M%S"
SAVED_CONFIG = "config.yaml"
"""The resolved config a run directory keeps (what ``--resume`` reads)."""

EXAMPLES = """\
examples:
  shapmix train                                   # built-in long-tailed benchmark, defaults
  shapmix train loss.name=balanced_softmax        # any config key can be overridden
  shapmix train --config ntu-lt data.path=data/ntu60_xsub --out runs/ntu-bs
  shapmix train --out runs/ntu-bs --resume        # continue an interrupted run
  torchrun --nproc_per_node 4 -m shapmix train --config ntu-lt   # several GPUs (DDP)
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "train", run, help="train a model", epilog=EXAMPLES,
        description="Train a model. Without arguments: CTR-GCN on the built-in long-tailed benchmark.",
    )
    parser.add_argument("--config", help="YAML file or packaged config name (see `shapmix configs`)")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/NAME-DATE-TIME)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.05")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.resume:
        if args.out is None:
            raise SystemExit("--resume needs --out RUN_DIR (the directory holding last.pt)")
        saved = args.out / SAVED_CONFIG
        if args.config is None and saved.exists():
            args.config = str(saved)
    config = load_config(args.config, args.overrides)
    out = args.out or DEFAULT_RUNS_DIR / f"{config.name}-{time.strftime(RUN_TIME_FORMAT)}"
    train(config, out, resume=args.resume)
    return EXIT_OK
