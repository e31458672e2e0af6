"""``shapmix configs``: list the packaged configs, or print one fully resolved."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..bench.experiment import load_experiment, packaged_experiments
from ..config import config_to_dict, load_config, packaged_configs
from .common import EXIT_OK, add_command

__all__ = ["add_parser", "run"]

NAME_WIDTH = 28
"""Column of the one-line descriptions in the list."""

EXAMPLES = """\
examples:
  shapmix configs                                 # list packaged configs
  shapmix configs ntu-lt                          # print one, fully resolved
  shapmix configs paper/table12-temperature       # a paper experiment: its base run and its rows
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "configs", run, help="list or show packaged configs", epilog=EXAMPLES)
    parser.add_argument("name", nargs="?", help="config to print, resolved with defaults")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.name is None:
        for name, path in sorted(packaged_configs().items()):
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
            print(f"{name:<{NAME_WIDTH}}{first}")
        return EXIT_OK
    print(yaml.safe_dump(config_to_dict(load_config(args.name)), sort_keys=False), end="")
    if args.name in packaged_experiments():  # its grid (shapmix bench --experiment NAME), validated
        spec = load_experiment(args.name).spec.model_dump(mode="json", exclude_defaults=True)
        print(yaml.safe_dump({"experiment": spec}, sort_keys=False), end="")
    return EXIT_OK
