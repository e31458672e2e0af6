"""``shapmix bench``: compare long-tailed methods over seeds, or rebuild the tables of a grid.

Register it in the main parser with ``add_bench_parser(subparsers)``; the handler is set with
``set_defaults(handler=...)`` and returns the exit status (1 when a run failed).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .presets import PRESETS

__all__ = ["add_bench_parser", "run_bench", "DEFAULT_SEEDS"]

DEFAULT_SEEDS = 3

DESCRIPTION = """\
Train every METHOD x seed as an ordinary run in OUT/METHOD/seedK (two-stage methods: .../stage1
and .../stage2; crt reuses the ce run of the grid as its first stage), then write
OUT/results.csv (one row per run), OUT/results.md (mean ± std per method, best in bold) and
OUT/results.png.  Rerunning the same command resumes: finished runs are skipped, interrupted
ones continue from their last.pt.  A method's own keys (loss, mixing, sampler, second stage)
win over KEY=VALUE overrides.

--experiment runs an experiment file instead (a base run plus the rows, seeds and columns of
one table, e.g. the paper's: `shapmix configs` lists them as paper/...): rows are its methods
and variants (--methods picks some of them), runs go to OUT[/COLUMN]/ROW/seedK, and the tables
also hold its ensembles.  See docs/paper.md."""

EXAMPLES_BENCH = """\
examples:
  shapmix bench --list                                         # the methods and their papers
  shapmix bench --methods ce,bs,shapmix --seeds 3 --out runs/bench
  shapmix bench --config ntu-lt --methods ce,crt,bs_maxnorm --out runs/ntu-bench data.path=data/ntu60_xsub
  shapmix bench --methods ce,crt --out runs/quick schedule.epochs=4 --stage2 schedule.epochs=2
  shapmix bench --collect runs/bench                           # rebuild the tables, no training
  shapmix bench --experiment paper/table12-temperature --out runs/table12 data.path=data/ntu60_xsub
  shapmix bench --experiment paper/table1-ltntu60 --methods ce,shapmix --out runs/table1 data.path=...
"""


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` command to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    parser = subparsers.add_parser(
        "bench",
        help="compare long-tailed methods over seeds",
        description=DESCRIPTION,
        epilog=EXAMPLES_BENCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="base YAML file or packaged config name (default: the default config)")
    parser.add_argument(
        "--experiment", metavar="FILE|NAME",
        help="experiment file or packaged experiment (e.g. paper/table1-ltntu60): its rows instead of --methods",
    )
    parser.add_argument(
        "--methods",
        help="comma-separated method names (default: all; see --list); with --experiment: only these rows",
    )
    parser.add_argument(
        "--seeds", type=int,
        help=f"seeds 0..N-1 (default {DEFAULT_SEEDS}; with --experiment: the file's)",
    )
    parser.add_argument("--out", type=Path, help="bench directory")
    parser.add_argument(
        "--stage2", action="append", default=[], metavar="KEY=VALUE",
        help="override for second stages only, applied last (repeatable), e.g. schedule.epochs=2",
    )
    parser.add_argument("--collect", type=Path, metavar="DIR", help="only rebuild DIR's tables and plot")
    parser.add_argument("--list", action="store_true", help="list the methods and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    parser.set_defaults(handler=run_bench)
    return parser


def run_bench(args: argparse.Namespace) -> int:
    """Handler of ``shapmix bench``."""
    if args.list:
        for preset in PRESETS.values():
            stages = " (two stages)" if preset.two_stage else ""
            print(f"{preset.name:<12}{preset.description}{stages}; {preset.reference}")
        return 0
    if args.collect is not None:
        from .experiment import SAVED_EXPERIMENT, collect_experiment
        from .report import write_results

        is_experiment = (args.collect / SAVED_EXPERIMENT).exists()
        rows = collect_experiment(args.collect) if is_experiment else write_results(args.collect)
        print((args.collect / "results.md").read_text(encoding="utf-8"), end="")
        print(f"rebuilt {args.collect}/results.csv, results.md and results.png from {len(rows)} run(s)")
        return 0
    if args.out is None:
        raise SystemExit("shapmix bench: error: --out DIR is required (or --collect DIR / --list)")
    from ..config import ConfigError
    from .experiment import run_experiment
    from .runner import run_grid

    try:
        if args.experiment is not None:
            if args.config is not None:
                raise ConfigError("--experiment FILE is its own base config: drop --config (use KEY=VALUE overrides)")
            summary = run_experiment(
                args.experiment, args.out, args.overrides, args.stage2, args.seeds, args.methods
            )
        else:
            methods = args.methods or ",".join(PRESETS)
            seeds = DEFAULT_SEEDS if args.seeds is None else args.seeds
            summary = run_grid(args.config, methods, seeds, args.out, args.overrides, args.stage2)
    except ValueError as error:  # unknown methods or rows, bad --seeds
        raise ConfigError(str(error)) from None
    if summary.rows:
        print((args.out / "results.md").read_text(encoding="utf-8"), end="")
    return 0 if summary.ok else 1
