"""``shapmix predict``: predict the actions of raw skeleton files with a trained checkpoint, and
explain them (exact Shapley values of the body parts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..analysis.explain import Explainer
from ..engine.predict import DEFAULT_AXES, DEFAULT_TOP_K, MOTION_MIN_FRAMES, predict
from .common import EXIT_FAILED_RUNS, EXIT_OK, add_command, positive_int, report_user_error

__all__ = ["add_parser", "run"]

EXAMPLES = """\
examples:
  shapmix predict --checkpoint runs/ntu/last.pt S001C001P001R001A001.skeleton
  shapmix predict --checkpoint runs/ntu/last.pt nturgb+d_skeletons/ --top-k 3 --out predictions.csv
  shapmix predict --checkpoint runs/utd/last.pt a1_s1_t1_skeleton.mat --explain explain/
  shapmix predict --checkpoint runs/ntu/last.pt clip.npy --axes TVC --num-clips 10 --out p.json
  shapmix predict --checkpoint old/last.pt file.skeleton --set data.path=/data/ntu60_xsub

inputs: NTU .skeleton, NW-UCLA or Kinetics-skeleton .json, MSR Action3D .txt, UTD-MHAD .mat,
pyskl .pkl (every annotation), .npy arrays (--axes), or folders of them (not recursive; in a
folder, .txt files only when named *_skeleton3D.txt).  The checkpoint's saved config gives the
preprocessing; no labels are needed.  A file the checkpoint cannot take (wrong layout, joints,
channels, too many persons, too few frames, unreadable) is skipped with its reason and the
others are predicted.  --explain DIR writes per input NAME.json (exact Shapley value of every
body part and part combination for the predicted class, from all 32 coalitions), NAME_frames.png
(key frames, parts coloured by saliency) and NAME.gif.

exit status: 0 every file predicted; 1 some skipped (listed in the summary); 2 error.
"""



def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "predict", run, help="predict actions in raw skeleton files", epilog=EXAMPLES,
        description="Predict the action of every sequence in skeleton files or folders with a trained checkpoint.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="skeleton files or folders of them")
    parser.add_argument("--top-k", type=positive_int, default=DEFAULT_TOP_K, help=f"classes per sample (default {DEFAULT_TOP_K})")
    parser.add_argument("--out", type=Path, help="write the predictions to FILE.json or FILE.csv")
    parser.add_argument("--explain", type=Path, metavar="DIR", help="write a Shapley explanation of every input here")
    parser.add_argument("--num-clips", type=positive_int, help="clips per sequence (default: the checkpoint's eval.num_clips)")
    parser.add_argument("--batch-size", type=positive_int, help="samples per forward pass (default: the run's eval batch)")
    parser.add_argument("--min-frames", type=positive_int,
                        help=f"refuse shorter sequences (default: {MOTION_MIN_FRAMES} for a motion modality, else 1)")
    parser.add_argument("--axes", default=DEFAULT_AXES, help=f".npy axes, letters of NCTVM (default {DEFAULT_AXES})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the checkpoint's config, e.g. data.path=... (repeatable)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar over the files (default: when stderr is a terminal)")
    return parser


def run(args: argparse.Namespace) -> int:
    explainer = None if args.explain is None else Explainer(args.checkpoint, args.explain)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        report = predict(
            args.checkpoint, args.inputs, args.top_k, args.num_clips, args.batch_size, args.device,
            args.overrides, args.min_frames, args.axes, progress, on_batch=explainer,
        )
    except ValueError as error:  # a config or argument problem (the message names it)
        return report_user_error("predict", error)
    for prediction in report.predictions:
        ranked = ", ".join(f"{name} ({probability:.3f})" for _, name, probability in prediction.top)
        print(f"{prediction.name}: {ranked}")
    print(report.summary())
    if args.out is not None:
        print(f"wrote {report.write(args.out)}")
    if explainer is not None:
        print(f"wrote {len(explainer.written)} explanation file(s) to {args.explain}")
    return EXIT_FAILED_RUNS if report.skipped else EXIT_OK
