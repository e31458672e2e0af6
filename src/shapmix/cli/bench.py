"""``shapmix bench``: compare long-tailed methods over seeds, run an experiment file, or rebuild
the tables of a grid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..bench.experiment import SAVED_EXPERIMENT, collect_experiment, run_experiment
from ..bench.presets import PRESETS
from ..bench.report import write_results
from ..bench.runner import run_grid
from ..errors import ConfigError
from .common import EXIT_FAILED_RUNS, EXIT_OK, add_command

__all__ = ["DEFAULT_SEEDS", "add_parser", "run"]

DEFAULT_SEEDS = 3
RESULTS_TABLE = "results.md"

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

EXAMPLES = """\
examples:
  shapmix bench --list                                         # the methods and their papers
  shapmix bench --methods ce,bs,shapmix --seeds 3 --out runs/bench
  shapmix bench --config ntu-lt --methods ce,crt,bs_maxnorm --out runs/ntu-bench data.path=data/ntu60_xsub
  shapmix bench --methods ce,crt --out runs/quick schedule.epochs=4 --stage2 schedule.epochs=2
  shapmix bench --collect runs/bench                           # rebuild the tables, no training
  shapmix bench --experiment paper/table12-temperature --out runs/table12 data.path=data/ntu60_xsub
  shapmix bench --experiment paper/table1-ltntu60 --methods ce,shapmix --out runs/table1 data.path=...
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "bench", run, help="compare long-tailed methods over seeds", description=DESCRIPTION,
        epilog=EXAMPLES,
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
    return parser


def run(args: argparse.Namespace) -> int:
    """List the methods, rebuild a grid's tables, or train a grid (status 1 when a run failed)."""
    if args.list:
        _print_methods()
        return EXIT_OK
    if args.collect is not None:
        _collect(args.collect)
        return EXIT_OK
    if args.out is None:
        raise SystemExit("shapmix bench: error: --out DIR is required (or --collect DIR / --list)")
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
        print((args.out / RESULTS_TABLE).read_text(encoding="utf-8"), end="")
    return EXIT_OK if summary.ok else EXIT_FAILED_RUNS


def _print_methods() -> None:
    for preset in PRESETS.values():
        stages = " (two stages)" if preset.two_stage else ""
        print(f"{preset.name:<12}{preset.description}{stages}; {preset.reference}")


def _collect(bench_dir: Path) -> None:
    is_experiment = (bench_dir / SAVED_EXPERIMENT).exists()
    rows = collect_experiment(bench_dir) if is_experiment else write_results(bench_dir)
    print((bench_dir / RESULTS_TABLE).read_text(encoding="utf-8"), end="")
    print(f"rebuilt {bench_dir}/results.csv, results.md and results.png from {len(rows)} run(s)")
