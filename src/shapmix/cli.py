"""The ``shapmix`` command.  Each subcommand parses its arguments and delegates."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]

EXAMPLES_TRAIN = """\
examples:
  shapmix train                                   # built-in long-tailed benchmark, defaults
  shapmix train loss.name=balanced_softmax        # any config key can be overridden
  shapmix train --config ntu-lt data.path=data/ntu60_xsub --out runs/ntu-bs
  shapmix train --out runs/ntu-bs --resume        # continue an interrupted run
  torchrun --nproc_per_node 4 -m shapmix train --config ntu-lt   # several GPUs (DDP)
"""

EXAMPLES_EVAL = """\
examples:
  shapmix eval --checkpoint runs/ntu-bs/last.pt
  shapmix eval --checkpoint runs/ntu-bs/last.pt --out runs/ntu-bs/eval data.path=/new/place
  shapmix eval --checkpoint runs/ntu-bs/last.pt eval.num_clips=10   # average 10 temporal clips
"""

EXAMPLES_SYNTH = """\
examples:
  shapmix synth --out data/synth                  # the default benchmark of `shapmix train`
  shapmix synth --out data/synth20 num_classes=30 imbalance_factor=50 seed=1
"""

EXAMPLES_CONFIGS = """\
examples:
  shapmix configs                                 # list packaged configs
  shapmix configs ntu-lt                          # print one, fully resolved
  shapmix configs paper/table12-temperature       # a paper experiment: its base run and its rows
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shapmix",
        description="Long-tailed skeleton action recognition with Shap-Mix.",
        formatter_class=_formatter,
        epilog="Run `shapmix COMMAND --help` for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train a model", epilog=EXAMPLES_TRAIN, formatter_class=_formatter,
        description="Train a model. Without arguments: CTR-GCN on the built-in long-tailed benchmark.",
    )
    train.add_argument("--config", help="YAML file or packaged config name (see `shapmix configs`)")
    train.add_argument("--out", type=Path, help="run directory (default: runs/NAME-DATE-TIME)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.05")
    train.set_defaults(handler=_run_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a checkpoint", epilog=EXAMPLES_EVAL, formatter_class=_formatter,
        description="Score a checkpoint on its run's test split and print the long-tailed metrics.",
    )
    evaluate.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    evaluate.add_argument("--out", type=Path, help="write eval_SPLIT.json and scores here")
    evaluate.add_argument("--split", default="test", choices=("test", "val", "train"))
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.path=...")
    evaluate.set_defaults(handler=_run_eval)

    synth = commands.add_parser(
        "synth", help="generate the built-in synthetic benchmark", epilog=EXAMPLES_SYNTH,
        formatter_class=_formatter,
        description="Write the synthetic long-tailed skeleton dataset in shapmix format.",
    )
    synth.add_argument("--out", required=True, type=Path, help="output dataset directory")
    synth.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="generator settings (see data.synthetic in the config)")
    synth.set_defaults(handler=_run_synth)

    configs = commands.add_parser(
        "configs", help="list or show packaged configs", epilog=EXAMPLES_CONFIGS, formatter_class=_formatter,
    )
    configs.add_argument("name", nargs="?", help="config to print, resolved with defaults")
    configs.set_defaults(handler=_run_configs)

    from .analysis.cli import add_saliency_parser
    from .bench.cli import add_bench_parser
    from .data.prepare import add_prepare_parser
    from .inference_cli import add_ensemble_parser, add_export_parser, add_predict_parser

    add_bench_parser(commands)
    add_prepare_parser(commands)
    add_saliency_parser(commands)
    add_predict_parser(commands)
    add_ensemble_parser(commands)
    add_export_parser(commands)
    return parser


def _run_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine.trainer import train

    if args.resume:
        if args.out is None:
            raise SystemExit("--resume needs --out RUN_DIR (the directory holding last.pt)")
        saved = args.out / "config.yaml"
        if args.config is None and saved.exists():
            args.config = str(saved)
    config = load_config(args.config, args.overrides)
    out = args.out or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    train(config, out, resume=args.resume)
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from .engine.evaluate import evaluate_checkpoint, format_metrics_table

    metrics = evaluate_checkpoint(args.checkpoint, args.out, args.split, args.overrides, args.device)
    print(format_metrics_table(metrics, args.split))
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .config import ConfigError
    from .data.synthetic import SynthConfig, generate_synthetic

    raw: dict = {}
    try:
        apply_overrides_flat(raw, args.settings)
        config = SynthConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid synthetic settings: {problems}") from None
    started = time.perf_counter()
    dataset = generate_synthetic(config, args.out)
    counts = dataset.class_counts("train")
    print(
        f"wrote {args.out}: {len(dataset)} samples, {dataset.num_classes} classes, "
        f"train {counts.sum()} (per class {counts.max()}..{counts.min()}), "
        f"test {len(dataset.splits.get('test', []))} in {time.perf_counter() - started:.1f}s"
    )
    return 0


def apply_overrides_flat(raw: dict, settings: Sequence[str]) -> dict:
    """``key=value`` pairs (values parsed as YAML) into a flat dict."""
    import yaml

    from .config import ConfigError

    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"setting {item!r} must look like key=value")
        raw[key] = yaml.safe_load(text) if text else ""
    return raw


def _run_configs(args: argparse.Namespace) -> int:
    import yaml

    from .config import config_to_dict, load_config, packaged_configs

    if args.name is None:
        for name, path in sorted(packaged_configs().items()):
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
            print(f"{name:<28}{first}")
        return 0
    print(yaml.safe_dump(config_to_dict(load_config(args.name)), sort_keys=False), end="")
    from .bench.experiment import load_experiment, packaged_experiments

    if args.name in packaged_experiments():  # its grid (shapmix bench --experiment NAME), validated
        spec = load_experiment(args.name).spec.model_dump(mode="json", exclude_defaults=True)
        print(yaml.safe_dump({"experiment": spec}, sort_keys=False), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError
    from .data.format import DatasetFormatError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, DatasetFormatError, FileNotFoundError) as error:
        print(f"shapmix {args.command}: error: " + textwrap.indent(str(error), "  ").lstrip(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
