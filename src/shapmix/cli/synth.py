"""``shapmix synth``: write the built-in synthetic benchmark anywhere."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from ..config import parse_setting
from ..data.synthetic import SynthConfig, generate_synthetic
from ..errors import ConfigError
from .common import EXIT_OK, add_command

__all__ = ["add_parser", "run", "synth_config"]

EXAMPLES = """\
examples:
  shapmix synth --out data/synth                  # the default benchmark of `shapmix train`
  shapmix synth --out data/synth20 num_classes=30 imbalance_factor=50 seed=1
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "synth", run, help="generate the built-in synthetic benchmark", epilog=EXAMPLES,
        description="Write the synthetic long-tailed skeleton dataset in shapmix format.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output dataset directory")
    parser.add_argument(
        "settings", nargs="*", metavar="KEY=VALUE", help="generator settings (see data.synthetic in the config)"
    )
    return parser


def synth_config(settings: Sequence[str]) -> SynthConfig:
    """The generator settings given as ``key=value`` items (the keys of ``data.synthetic``)."""
    raw = dict(parse_setting(item, what="setting", form="key=value") for item in settings)
    try:
        return SynthConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid synthetic settings: {problems}") from None


def run(args: argparse.Namespace) -> int:
    config = synth_config(args.settings)
    started = time.perf_counter()
    dataset = generate_synthetic(config, args.out)
    counts = dataset.class_counts("train")
    print(
        f"wrote {args.out}: {len(dataset)} samples, {dataset.num_classes} classes, "
        f"train {counts.sum()} (per class {counts.max()}..{counts.min()}), "
        f"test {len(dataset.splits.get('test', []))} in {time.perf_counter() - started:.1f}s"
    )
    return EXIT_OK
