"""``shapmix predict``, ``shapmix ensemble`` and ``shapmix export``: using a trained model.

Register them in the main parser with ``add_predict_parser(subparsers)``,
``add_ensemble_parser(subparsers)`` and ``add_export_parser(subparsers)``; each only parses its
arguments and delegates (to :mod:`shapmix.engine.predict` with :mod:`shapmix.analysis.explain`,
:mod:`shapmix.engine.ensemble` and :mod:`shapmix.engine.export`).  Handlers return the exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_predict_parser", "add_ensemble_parser", "add_export_parser", "EXIT_SKIPPED"]

EXIT_SKIPPED = 1
"""``shapmix predict``'s status when some files were skipped (the others were predicted)."""
EXIT_ERROR = 2
"""The status of every command after an error (the message says what and where)."""

EXAMPLES_PREDICT = """\
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

EXAMPLES_ENSEMBLE = """\
examples:
  shapmix ensemble runs/joint runs/bone                                  # 2-stream, weights 1, 1
  shapmix ensemble runs/j runs/b runs/jm runs/bm --weights 0.6,0.6,0.4,0.4 --out runs/4s
  shapmix ensemble runs/j runs/b --scores eval/eval_test_scores.npz      # scores of `shapmix eval --out`

fuses the runs' per-sample test logits (weighted sum, aligned by sample name) and prints the
metrics of each run and of the ensemble (overall, top-5, class-mean, Many/Medium/Few); --out
writes metrics.json (with per-class accuracy), the fused test_scores.npz and class_accuracy.png.
"""

EXAMPLES_EXPORT = """\
examples:
  shapmix export --checkpoint runs/ntu/last.pt --format torchscript --out ntu.pt
  shapmix export --checkpoint runs/ntu/last.pt --format onnx --out ntu.onnx --num-clips 10

the file maps skeleton (N, C, T, V, M) float32 and lengths (N,) int64 to scores (N, classes),
with the test-time preprocessing inside: a deployment needs neither shapmix nor the config.
Load it with torch.jit.load(FILE) or onnxruntime.InferenceSession(FILE) (ONNX needs
pip install 'shapmix[onnx]').  Class names and the input description are stored in the file.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _error(command: str, error: Exception) -> int:
    print(f"shapmix {command}: error: {error}", file=sys.stderr)
    return EXIT_ERROR


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# --------------------------------------------------------------------------- predict


def add_predict_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``predict`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    from .engine.predict import DEFAULT_AXES, DEFAULT_TOP_K, MOTION_MIN_FRAMES

    parser = subparsers.add_parser(
        "predict", help="predict actions in raw skeleton files", epilog=EXAMPLES_PREDICT, formatter_class=_formatter,
        description="Predict the action of every sequence in skeleton files or folders with a trained checkpoint.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="skeleton files or folders of them")
    parser.add_argument("--top-k", type=_positive_int, default=DEFAULT_TOP_K, help=f"classes per sample (default {DEFAULT_TOP_K})")
    parser.add_argument("--out", type=Path, help="write the predictions to FILE.json or FILE.csv")
    parser.add_argument("--explain", type=Path, metavar="DIR", help="write a Shapley explanation of every input here")
    parser.add_argument("--num-clips", type=_positive_int, help="clips per sequence (default: the checkpoint's eval.num_clips)")
    parser.add_argument("--batch-size", type=_positive_int, help="samples per forward pass (default: the run's eval batch)")
    parser.add_argument("--min-frames", type=_positive_int,
                        help=f"refuse shorter sequences (default: {MOTION_MIN_FRAMES} for a motion modality, else 1)")
    parser.add_argument("--axes", default=DEFAULT_AXES, help=f".npy axes, letters of NCTVM (default {DEFAULT_AXES})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the checkpoint's config, e.g. data.path=... (repeatable)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar over the files (default: when stderr is a terminal)")
    parser.set_defaults(handler=_run_predict)
    return parser


def _run_predict(args: argparse.Namespace) -> int:
    from .engine.predict import predict

    explainer = None
    if args.explain is not None:
        from .analysis.explain import Explainer

        explainer = Explainer(args.checkpoint, args.explain)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        report = predict(
            args.checkpoint, args.inputs, args.top_k, args.num_clips, args.batch_size, args.device,
            args.overrides, args.min_frames, args.axes, progress, on_batch=explainer,
        )
    except ValueError as error:  # a config or argument problem (the message names it)
        return _error("predict", error)
    for prediction in report.predictions:
        ranked = ", ".join(f"{name} ({probability:.3f})" for _, name, probability in prediction.top)
        print(f"{prediction.name}: {ranked}")
    print(report.summary())
    if args.out is not None:
        print(f"wrote {report.write(args.out)}")
    if explainer is not None:
        print(f"wrote {len(explainer.written)} explanation file(s) to {args.explain}")
    return EXIT_SKIPPED if report.skipped else 0


# --------------------------------------------------------------------------- ensemble


def _weights(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights must be comma-separated numbers, got {text!r}") from None


def add_ensemble_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ensemble`` to ``subparsers``."""
    from .engine.ensemble import SCORES_FILE

    parser = subparsers.add_parser(
        "ensemble", help="fuse runs' test scores (multi-stream)", epilog=EXAMPLES_ENSEMBLE, formatter_class=_formatter,
        description="Fuse the saved test scores of several runs (e.g. joint and bone streams) and report the metrics.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (two or more)")
    parser.add_argument("--weights", type=_weights, help="one weight per run, comma-separated (default 1 each)")
    parser.add_argument("--out", type=Path, help="write metrics.json, test_scores.npz and class_accuracy.png here")
    parser.add_argument("--scores", default=SCORES_FILE, help=f"scores file inside each run (default {SCORES_FILE})")
    parser.set_defaults(handler=_run_ensemble)
    return parser


def _run_ensemble(args: argparse.Namespace) -> int:
    from .engine.ensemble import ensemble_runs, format_ensemble_table

    try:
        result = ensemble_runs(args.runs, args.weights, args.scores)
    except ValueError as error:
        return _error("ensemble", error)
    print(format_ensemble_table(result))
    if args.out is not None:
        result.write(args.out)
        print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- export


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``export`` to ``subparsers``."""
    from .engine.export import EXPORT_FORMATS

    parser = subparsers.add_parser(
        "export", help="export a model with its preprocessing (TorchScript, ONNX)", epilog=EXAMPLES_EXPORT,
        formatter_class=_formatter,
        description="Write a checkpoint's model and test-time preprocessing as one TorchScript or ONNX file.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a last.pt or best.pt")
    parser.add_argument("--format", dest="export_format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="the file to write")
    parser.add_argument("--num-clips", type=_positive_int, help="clips per sequence (default: the checkpoint's eval.num_clips)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the checkpoint's config (repeatable)")
    parser.set_defaults(handler=_run_export)
    return parser


def _run_export(args: argparse.Namespace) -> int:
    from .engine.export import export_checkpoint

    try:
        result = export_checkpoint(args.checkpoint, args.out, args.export_format, args.num_clips, args.overrides)
    except (ValueError, ImportError) as error:
        return _error("export", error)
    meta = result.metadata
    print(f"wrote {result.path} ({result.format}): {meta['model']}, {len(meta['class_names'])} classes, "
          f"layout {meta['layout']}, channels {','.join(meta['channels'])}, {meta['num_persons']} person(s), "
          f"{meta['num_clips']} clip(s) of {meta['window']} frames")
    print(f"max |exported - checkpoint| on a random batch: {result.max_abs_difference:.2e}")
    return 0
