"""``shapmix export``: a checkpoint's model and test-time preprocessing as one TorchScript or
ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..engine.export import EXPORT_FORMATS, export_checkpoint
from .common import EXIT_OK, add_command, positive_int, report_user_error

__all__ = ["add_parser", "run"]

EXAMPLES = """\
examples:
  shapmix export --checkpoint runs/ntu/last.pt --format torchscript --out ntu.pt
  shapmix export --checkpoint runs/ntu/last.pt --format onnx --out ntu.onnx --num-clips 10

the file maps skeleton (N, C, T, V, M) float32 and lengths (N,) int64 to scores (N, classes),
with the test-time preprocessing inside: a deployment needs neither shapmix nor the config.
Load it with torch.jit.load(FILE) or onnxruntime.InferenceSession(FILE) (ONNX needs
pip install 'shapmix[onnx]').  Class names and the input description are stored in the file.
"""




def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "export", run, help="export a model with its preprocessing (TorchScript, ONNX)", epilog=EXAMPLES,
        description="Write a checkpoint's model and test-time preprocessing as one TorchScript or ONNX file.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    parser.add_argument("--format", dest="export_format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="the file to write")
    parser.add_argument("--num-clips", type=positive_int, help="clips per sequence (default: the checkpoint's eval.num_clips)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the checkpoint's config (repeatable)")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        result = export_checkpoint(args.checkpoint, args.out, args.export_format, args.num_clips, args.overrides)
    except (ValueError, ImportError) as error:  # e.g. ONNX without its optional packages
        return report_user_error("export", error)
    meta = result.metadata
    print(f"wrote {result.path} ({result.format}): {meta['model']}, {len(meta['class_names'])} classes, "
          f"layout {meta['layout']}, channels {','.join(meta['channels'])}, {meta['num_persons']} person(s), "
          f"{meta['num_clips']} clip(s) of {meta['window']} frames")
    print(f"max |exported - checkpoint| on a random batch: {result.max_abs_difference:.2e}")
    return EXIT_OK
