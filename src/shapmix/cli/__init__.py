"""The ``shapmix`` command: one module per subcommand, each only parsing and delegating.

============  ==========================================  ====================================
command       module                                      delegates to
============  ==========================================  ====================================
``train``     :mod:`shapmix.cli.train`                    :func:`shapmix.engine.trainer.train`
``eval``      :mod:`shapmix.cli.eval`                     :func:`shapmix.engine.evaluate.evaluate_checkpoint`
``synth``     :mod:`shapmix.cli.synth`                    :func:`shapmix.data.synthetic.generate_synthetic`
``configs``   :mod:`shapmix.cli.configs`                  :mod:`shapmix.config`, :mod:`shapmix.bench.experiment`
``bench``     :mod:`shapmix.cli.bench`                    :mod:`shapmix.bench`
``prepare``   :mod:`shapmix.cli.prepare`                  :mod:`shapmix.data.sources`, :mod:`shapmix.data.split_files`
``saliency``  :mod:`shapmix.cli.saliency`                 :func:`shapmix.analysis.analyse_checkpoint`
``predict``   :mod:`shapmix.cli.predict`                  :func:`shapmix.engine.predict.predict`, :class:`shapmix.analysis.explain.Explainer`
``ensemble``  :mod:`shapmix.cli.ensemble`                 :func:`shapmix.engine.ensemble.ensemble_runs`
``export``    :mod:`shapmix.cli.export`                   :func:`shapmix.engine.export.export_checkpoint`
============  ==========================================  ====================================

What they share (the help layout, the exit statuses, the errors reported without a traceback)
is in :mod:`shapmix.cli.common`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..engine.preemption import TrainingInterrupted
from . import bench, configs, ensemble, export, predict, prepare, saliency, synth, train
from . import eval as evaluate
from .common import USER_ERRORS, formatter, report_user_error

__all__ = ["main", "build_parser", "parse_arguments"]

SUBCOMMANDS = (train, evaluate, synth, configs, bench, prepare, saliency, predict, ensemble, export)
"""In the order ``shapmix --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shapmix",
        description="Long-tailed skeleton action recognition with Shap-Mix.",
        formatter_class=formatter,
        epilog="Run `shapmix COMMAND --help` for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(commands)
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that a command's ``KEY=VALUE`` overrides may also come
    after its options (``shapmix bench --methods ce --seeds 3 schedule.epochs=2``): argparse
    stops collecting a positional list at the first option, and a subcommand parser cannot
    parse intermixed arguments."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        is_override = all("=" in item and not item.startswith("-") for item in extras)
        if not (is_override and isinstance(getattr(args, "overrides", None), list)):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides.extend(extras)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``shapmix ARGV`` and return the exit status (2 for an error of the user's making,
    printed as ``shapmix COMMAND: error: ...`` without a traceback)."""
    parser = build_parser()
    args = parse_arguments(parser, argv)
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        return report_user_error(args.command, error)
    except TrainingInterrupted as stopped:
        # a grid resumes by rerunning its command; a single run with --resume
        how = "rerun the same command" if args.command == "bench" else "continue it with --resume"
        print(f"shapmix {args.command}: {stopped}: {how}", file=sys.stderr)
        return stopped.exit_code
