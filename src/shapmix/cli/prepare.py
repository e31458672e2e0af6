"""``shapmix prepare``: bring a dataset into the project's format, or write a long-tailed split.

One subcommand per source format (``ntu60``, ``ntu120``, ``pyskl``, ``ctrgcn-npz``,
``kinetics-skeleton``, ``nw-ucla``, ``msr-action3d``, ``utd-mhad``, ``arrays``); each only
parses its options and delegates to the converter of :mod:`shapmix.data.sources`.  ``longtail``
writes a split (a list of sample names) into an existing dataset through
:mod:`shapmix.data.split_files`.

Errors the ``shapmix`` command prints cleanly (without a traceback): a bad option value is a
:class:`~shapmix.errors.ConfigError`, a broken input a
:class:`~shapmix.errors.DatasetFormatError` (naming the file and, for a name list, the line), a
missing input a :class:`FileNotFoundError`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..data.format import SkeletonData, load_dataset, read_name_list
from ..data.longtail import PROFILES
from ..data.sources.arrays import convert_arrays
from ..data.sources.common import SKIPPED_KEY
from ..data.sources.kinetics import convert_kinetics_skeleton
from ..data.sources.msr import convert_msr_action3d
from ..data.sources.npz import convert_ctrgcn_npz
from ..data.sources.ntu import DATASET_BENCHMARKS as NTU_BENCHMARKS
from ..data.sources.ntu import DATASET_CLASSES, NTU_ACTION_NAMES, convert_ntu
from ..data.sources.ntu import FORMATS as NTU_FORMATS
from ..data.sources.nw_ucla import convert_nw_ucla
from ..data.sources.pyskl import convert_pyskl
from ..data.sources.utd import convert_utd_mhad
from ..data.split_files import (
    DEFAULT_IMBALANCE_FACTOR,
    DEFAULT_POOL_SPLIT,
    DEFAULT_PROFILE,
    DEFAULT_SEED,
    DEFAULT_STEP_FRACTION,
    LISTED_AT_MOST,
    make_longtail_split_file,
    register_split,
)
from ..errors import ConfigError, DatasetFormatError
from .common import EXIT_OK, add_command, formatter

__all__ = ["add_parser"]

NATURAL_ORDER = "natural"
DEFAULT_WORKERS = 0
"""``--workers`` default: 0 means every CPU core."""
PROJECT_FORMAT = "shapmix"
"""``--format`` of the NTU converters that writes the project's dataset format."""

EXAMPLES = {
    "prepare": """\
examples:
  shapmix prepare ntu60 --raw nturgb+d_skeletons --out data/ntu60_xsub
  shapmix prepare pyskl --input ntu60_3danno.pkl --out data/ntu60_pyskl
  shapmix prepare arrays --data x.npy --labels y.npy --layout ntu25 --axes NTVC --out data/mine
  shapmix prepare longtail --dataset data/ntu60_xsub --imbalance-factor 100 --n-max 600 \\
      --name train_lt_if100
""",
    "ntu": """\
examples:
  shapmix prepare {dataset} --raw nturgb+d_skeletons --out data/{dataset}_xsub \\
      --missing-list {missing} --workers 8
  shapmix prepare {dataset} --raw nturgb+d_skeletons --out {npz} \\
      --benchmark {second} --format ctrgcn-npz      # CTR-GCN's npz, bit for bit
  shapmix prepare {dataset} --raw nturgb+d_skeletons --out {dataset}_3danno.pkl --format pyskl
  shapmix prepare {dataset} --raw nturgb+d_skeletons --out data/{dataset}_xsub_fixed \\
      --fix-upstream-bugs                               # correct the documented upstream bugs
  shapmix prepare {dataset} --raw nturgb+d_skeletons --out data/{dataset}_xsub \\
      --lt-list {lt_list}   # also register LT-{upper}
""",
    "pyskl": """\
examples:
  shapmix prepare pyskl --input ntu60_3danno.pkl --out data/ntu60_pyskl
  shapmix prepare pyskl --input k400_hrnet.pkl --kpfile-root kpfiles --out data/k400 \\
      --box-threshold 0.5
""",
    "ctrgcn-npz": """\
examples:
  shapmix prepare ctrgcn-npz --input NTU60_CS.npz --out data/ntu60_cs --class-names ntu60
  shapmix prepare ctrgcn-npz --input NTU120_CSet.npz --out data/ntu120_cset --class-names ntu120
""",
    "kinetics-skeleton": """\
examples:
  shapmix prepare kinetics-skeleton --input kinetics-skeleton --out data/kinetics
  shapmix prepare kinetics-skeleton --input kinetics-skeleton --out data/kinetics_raw --no-center
""",
    "nw-ucla": """\
examples:
  shapmix prepare nw-ucla --input NW-UCLA/all_sqe --out data/nw_ucla
""",
    "msr-action3d": """\
examples:
  shapmix prepare msr-action3d --input MSRAction3DSkeletonReal3D --out data/msr
  shapmix prepare msr-action3d --input MSRAction3DSkeletonReal3D --out data/msr_c --keep-confidence
""",
    "utd-mhad": """\
examples:
  shapmix prepare utd-mhad --input UTD-MHAD/Skeleton --out data/utd_mhad
""",
    "arrays": """\
examples:
  shapmix prepare arrays --data poses.npz --layout coco17 --axes NMTVC --out data/mine
  shapmix prepare arrays --data x.npy --labels y.npy --names names.txt --layout ntu25 \\
      --axes NTVC --splits-dir splits/ --out data/mine
""",
    "longtail": """\
examples:
  shapmix prepare longtail --dataset data/ntu60_xsub --split train --profile exponential \\
      --imbalance-factor 100 --n-max 600 --seed 0 --name train_lt_if100
  shapmix prepare longtail --dataset data/synth --profile step --step-fraction 0.3 \\
      --imbalance-factor 10 --name train_step10
  shapmix prepare longtail --dataset data/ntu60_xsub --from-list NTU60_xsub_exp_100.txt
""",
}


# --------------------------------------------------------------------------------------------
# Option values
# --------------------------------------------------------------------------------------------


@contextmanager
def _user_errors() -> Iterator[None]:
    """Report a converter's plain ``ValueError`` (a bad option value) as a ConfigError; format
    errors (also ValueErrors) and missing files pass through unchanged."""
    try:
        yield
    except (DatasetFormatError, ConfigError):
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _require(path: Path | None) -> Path | None:
    if path is not None and not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return path


def _class_names(value: str | None) -> list[str] | None:
    """``--class-names``: ``ntu60``, ``ntu120`` or a file with one name per line."""
    if value is None:
        return None
    if value in DATASET_CLASSES:
        return list(NTU_ACTION_NAMES[: DATASET_CLASSES[value]])
    return read_name_list(_require(Path(value)))


def _class_order(value: str, dataset_dir: Path) -> list[int] | None:
    """``--class-order``: ``natural``, or a file listing classes head to tail (ids or names)."""
    if value == NATURAL_ORDER:
        return None
    entries = read_name_list(_require(Path(value)))
    class_names = load_dataset(dataset_dir).class_names
    order = []
    for entry in entries:
        if entry.isdigit():
            order.append(int(entry))
        elif entry in class_names:
            order.append(class_names.index(entry))
        else:
            raise ValueError(f"{value}: {entry!r} is neither a class id nor a class name")
    return order


def _describe(dataset: SkeletonData, out: Path) -> str:
    """What a converter wrote: sizes, splits and the skipped files with their reasons."""
    splits = ", ".join(f"{name} {len(members)}" for name, members in dataset.splits.items())
    head = (
        f"wrote {out}: {len(dataset)} samples, {dataset.num_classes} classes, layout "
        f"{dataset.layout.name}, shape {tuple(dataset.shape)}; splits: {splits or 'none'}"
    )
    lines = [head]
    skipped = dataset.metadata.get(SKIPPED_KEY, [])
    if skipped:
        lines.append(f"skipped {len(skipped)} file(s):")
        lines += [f"  {entry['file']}: {entry['reason']}" for entry in skipped[:LISTED_AT_MOST]]
        if len(skipped) > LISTED_AT_MOST:
            lines.append(f"  ... {len(skipped) - LISTED_AT_MOST} more in {out}/meta.json")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Handlers: each delegates to one converter
# --------------------------------------------------------------------------------------------


def _run_ntu(args: argparse.Namespace) -> int:
    if args.lt_list is not None and args.format != PROJECT_FORMAT:
        raise ConfigError("--lt-list registers a split of the project's format: use --format shapmix")
    _require(args.missing_list)
    _require(args.lt_list)
    with _user_errors():
        report = convert_ntu(
            args.raw, args.out, dataset=args.ntu_dataset, benchmark=args.benchmark,
            fmt=args.format, workers=args.workers, fix_upstream_bugs=args.fix_upstream_bugs,
            missing_list=args.missing_list, progress=not args.no_progress,
        )
    print(report.summary())
    if args.lt_list is not None:
        with _user_errors():
            print(register_split(args.out, args.lt_list, within=DEFAULT_POOL_SPLIT).format())
    return EXIT_OK


def _run_pyskl(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_pyskl(
            _require(args.input), args.out, layout=args.layout,
            class_names=_class_names(args.class_names), num_person=args.num_person,
            kpfile_root=_require(args.kpfile_root), box_threshold=args.box_threshold,
        )
    print(_describe(dataset, args.out))
    return EXIT_OK


def _run_ctrgcn_npz(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_ctrgcn_npz(
            _require(args.input), args.out, layout=args.layout,
            class_names=_class_names(args.class_names),
        )
    print(_describe(dataset, args.out))
    return EXIT_OK


def _run_kinetics(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_kinetics_skeleton(
            _require(args.input), args.out, max_frames=args.max_frames,
            num_person_in=args.num_person_in, num_person_out=args.num_person_out,
            center=not args.no_center, frame_index_base=args.frame_index_base,
        )
    print(_describe(dataset, args.out))
    return EXIT_OK


def _run_nw_ucla(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_nw_ucla(_require(args.input), args.out, label_base=args.label_base)
    print(_describe(dataset, args.out))
    return EXIT_OK


def _run_msr(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_msr_action3d(
            _require(args.input), args.out, keep_confidence=args.keep_confidence
        )
    print(_describe(dataset, args.out))
    return EXIT_OK


def _run_utd(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_utd_mhad(_require(args.input), args.out)
    print(_describe(dataset, args.out))
    return EXIT_OK


def _run_arrays(args: argparse.Namespace) -> int:
    splits = None
    if args.splits_dir is not None:
        splits = {path.stem: path for path in sorted(_require(args.splits_dir).glob("*.txt"))}
        if not splits:
            raise ConfigError(f"--splits-dir {args.splits_dir}: no NAME.txt split file in it")
    channels = args.channels.split(",") if args.channels else None
    with _user_errors():
        dataset = convert_arrays(
            _require(args.data), args.out, args.layout, axes=args.axes,
            labels=_require(args.labels), names=_require(args.names),
            lengths=_require(args.lengths), splits=splits,
            class_names=_class_names(args.class_names), channels=channels,
        )
    print(_describe(dataset, args.out))
    return EXIT_OK


def _run_longtail(args: argparse.Namespace) -> int:
    _require(args.dataset)
    with _user_errors():
        if args.from_list is not None:
            summary = register_split(
                args.dataset, _require(args.from_list), name=args.name, within=args.split,
                overwrite=args.overwrite,
            )
        else:
            if args.name is None:
                raise ConfigError("--name is required (the new split's name), e.g. train_lt_if100")
            summary = make_longtail_split_file(
                args.dataset, args.name, split=args.split, profile=args.profile,
                imbalance_factor=args.imbalance_factor, n_max=args.n_max, seed=args.seed,
                step_fraction=args.step_fraction,
                class_order=_class_order(args.class_order, args.dataset),
                overwrite=args.overwrite,
            )
    print(summary.format())
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Parsers: one function per subcommand
# --------------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``prepare`` (with one subcommand per format, and ``longtail``) to ``subparsers``."""
    prepare = subparsers.add_parser(
        "prepare", help="convert a dataset to shapmix format, or make a long-tailed split",
        description="Convert skeleton data from the formats users already have into the "
        "project's format (or CTR-GCN's npz / pyskl's pickle for NTU), or write a long-tailed "
        "split of a prepared dataset.  See docs/data.md.",
        epilog=EXAMPLES["prepare"], formatter_class=formatter,
    )
    targets = prepare.add_subparsers(dest="target", metavar="FORMAT", required=True)
    _add_ntu(targets, "ntu60")
    _add_ntu(targets, "ntu120")
    for add_target in (_add_pyskl, _add_ctrgcn_npz, _add_kinetics, _add_nw_ucla, _add_msr, _add_utd, _add_arrays,
                       _add_longtail):
        add_target(targets)
    return prepare


def _add_input_output(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--input", required=True, type=Path, metavar="PATH", help=what)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output dataset directory")


def _add_class_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--class-names", metavar="ntu60|ntu120|FILE",
                        help="class names: NTU's, or a file with one per line "
                        "(default class_0, class_1, ...)")


def _add_ntu(targets: Any, dataset: str) -> None:
    upper = dataset.upper()
    missing = (
        "samples_with_missing_skeletons.txt" if dataset == "ntu60"
        else "NTU_RGBD120_samples_with_missing_skeletons.txt"
    )
    second = NTU_BENCHMARKS[dataset][1]
    npz = "NTU60_CV.npz" if dataset == "ntu60" else "NTU120_CSet.npz"
    parser = add_command(
        targets, dataset, _run_ntu, help=f"NTU RGB+D {upper[3:]} from raw .skeleton files",
        description=f"Convert raw NTU RGB+D {upper[3:]} .skeleton files.  The default (compatible) mode "
        "reproduces CTR-GCN's preprocessing bit for bit; --format pyskl reproduces pyskl's own "
        "tool.  Files are processed in parallel, interrupted runs resume, and every file that "
        "cannot be converted is listed with its reason.",
        epilog=EXAMPLES["ntu"].format(
            dataset=dataset, upper=upper, missing=missing, second=second, npz=npz,
            lt_list=f"{upper}_xsub_exp_100.txt",
        ),
    )
    parser.add_argument("--raw", required=True, type=Path, metavar="DIR",
                        help="directory of SsssCcccPpppRrrrAaaa.skeleton files")
    parser.add_argument("--out", required=True, type=Path, metavar="PATH",
                        help="dataset directory (shapmix), .npz file or .pkl file")
    parser.add_argument("--benchmark", choices=NTU_BENCHMARKS[dataset], default="xsub",
                        help="standard split (default xsub; pyskl files hold every benchmark)")
    parser.add_argument("--format", choices=NTU_FORMATS, default=PROJECT_FORMAT,
                        help="shapmix dataset (default), CTR-GCN npz, or pyskl pickle")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, metavar="N",
                        help="processes (default 0: every CPU core; 1: this process)")
    parser.add_argument("--fix-upstream-bugs", action="store_true",
                        help="correct the actor-2 span and packed-frame bugs (see docs/data.md)")
    parser.add_argument("--missing-list", type=Path, metavar="FILE",
                        help="sample names to skip (the dataset's missing-skeleton list)")
    parser.add_argument("--lt-list", type=Path, metavar="FILE",
                        help="also register a published long-tailed list (e.g. LT-NTU) as a "
                        "split named after the file; every name must be in train")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(ntu_dataset=dataset)


def _add_pyskl(targets: Any) -> None:
    pyskl = add_command(
        targets, "pyskl", _run_pyskl, help="pyskl / mmaction2 skeleton pickle",
        description="Convert a pyskl annotation pickle ({'split', 'annotations'}; 3D NTU or 2D COCO "
        "keypoints, also Kinetics' compressed variant with separate kpfiles).  The pickle is "
        "read with a restricted unpickler (containers and NumPy arrays only).",
        epilog=EXAMPLES["pyskl"],
    )
    _add_input_output(pyskl, "the annotation .pkl")
    pyskl.add_argument("--layout", help="joint layout (default by V: 25 ntu25, 17 coco17)")
    _add_class_names(pyskl)
    pyskl.add_argument("--num-person", type=int, metavar="M", help="persons kept (default: most)")
    pyskl.add_argument("--kpfile-root", type=Path, metavar="DIR",
                       help="where compressed annotations' raw_file kpfiles are")
    pyskl.add_argument("--box-threshold", type=float, metavar="S",
                       help="compressed annotations: keep skeletons with box_score >= S")


def _add_ctrgcn_npz(targets: Any) -> None:
    npz = add_command(
        targets, "ctrgcn-npz", _run_ctrgcn_npz, help="CTR-GCN npz (NTU60_CS.npz, ...)",
        description="Convert a CTR-GCN npz (x_train/y_train/x_test/y_test, optional name_train/name_test).",
        epilog=EXAMPLES["ctrgcn-npz"],
    )
    _add_input_output(npz, "the .npz file")
    npz.add_argument("--layout", default="ntu25", help="joint layout (default ntu25)")
    _add_class_names(npz)


def _add_kinetics(targets: Any) -> None:
    kinetics = add_command(
        targets, "kinetics-skeleton", _run_kinetics, help="ST-GCN's Kinetics-skeleton json",
        description="Convert ST-GCN's Kinetics-skeleton release (kinetics_train/, kinetics_val/ and their "
        "label json files; OpenPose-18, top persons by score).",
        epilog=EXAMPLES["kinetics-skeleton"],
    )
    _add_input_output(kinetics, "the root folder")
    kinetics.add_argument("--max-frames", type=int, default=300, metavar="T")
    kinetics.add_argument("--num-person-in", type=int, default=5, metavar="M",
                          help="skeletons read per frame (default 5)")
    kinetics.add_argument("--num-person-out", type=int, default=2, metavar="M",
                          help="persons kept per frame, by score (default 2)")
    kinetics.add_argument("--no-center", action="store_true",
                          help="keep coordinates in [0, 1] (default: x - 0.5, 0.5 - y)")
    kinetics.add_argument("--frame-index-base", type=int, default=0, metavar="K",
                          help="frame_index of the first frame (default 0, as ST-GCN)")


def _add_nw_ucla(targets: Any) -> None:
    ucla = add_command(
        targets, "nw-ucla", _run_nw_ucla, help="NW-UCLA json (as CTR-GCN distributes it)",
        description="Convert NW-UCLA json files (views 1 and 2 train, view 3 test).", epilog=EXAMPLES["nw-ucla"],
    )
    _add_input_output(ucla, "the folder of aAA_sSS_eEE_vVV.json files")
    ucla.add_argument("--label-base", type=int, default=1, metavar="K",
                      help="the json label of the first action (default 1, CTR-GCN's)")


def _add_msr(targets: Any) -> None:
    msr = add_command(
        targets, "msr-action3d", _run_msr, help="MSR Action3D text skeletons",
        description="Convert MSR Action3D *_skeleton3D.txt files (odd subjects train, even test).",
        epilog=EXAMPLES["msr-action3d"],
    )
    _add_input_output(msr, "the folder of aAA_sSS_eEE_skeleton3D.txt files")
    msr.add_argument("--keep-confidence", action="store_true",
                     help="keep the confidence column as a fourth channel")


def _add_utd(targets: Any) -> None:
    utd = add_command(
        targets, "utd-mhad", _run_utd, help="UTD-MHAD .mat skeletons",
        description="Convert UTD-MHAD *_skeleton.mat files (d_skel; odd subjects train, even test).",
        epilog=EXAMPLES["utd-mhad"],
    )
    _add_input_output(utd, "the folder of aA_sS_tT_skeleton.mat files")


def _add_arrays(targets: Any) -> None:
    arrays = add_command(
        targets, "arrays", _run_arrays, help="your own arrays (.npy / .npz) plus a layout name",
        description="Bring your own data without code: a data array with named axes, integer labels and a "
        "joint layout (see `shapmix.skeleton.layouts`); optional names, lengths and splits.",
        epilog=EXAMPLES["arrays"],
    )
    arrays.add_argument("--data", "--input", dest="data", required=True, type=Path,
                        metavar="FILE", help="data .npy, or an .npz with data, labels, ...")
    arrays.add_argument("--labels", type=Path, metavar="FILE",
                        help="(N,) integer .npy (optional when the .npz has 'labels')")
    arrays.add_argument("--layout", required=True, help="joint layout, e.g. ntu25, coco17")
    arrays.add_argument("--axes", default="NCTVM",
                        help="axis letters of data (N C T V, optional M); default NCTVM")
    arrays.add_argument("--names", type=Path, metavar="FILE",
                        help="sample names: .npy of strings or text, one per line")
    arrays.add_argument("--lengths", type=Path, metavar="FILE",
                        help="(N,) valid frames .npy (default: up to the last non-zero frame)")
    arrays.add_argument("--splits-dir", type=Path, metavar="DIR",
                        help="NAME.txt files listing each split's sample names")
    arrays.add_argument("--channels", metavar="C1,C2,...", help="channel names (default x,y[,z])")
    _add_class_names(arrays)
    arrays.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output dataset directory")


def _add_longtail(targets: Any) -> None:
    longtail = add_command(
        targets, "longtail", _run_longtail, help="write a long-tailed split of a prepared dataset",
        description="Write a long-tailed split (a list of sample names in DIR/splits/NAME.txt) drawn from "
        "split --split by an imbalance profile, or register a published list (--from-list) "
        "after checking every name.  Prints the per-class counts and the Many/Medium/Few "
        "group sizes.",
        epilog=EXAMPLES["longtail"],
    )
    longtail.add_argument("--dataset", required=True, type=Path, metavar="DIR",
                          help="a dataset in the project's format")
    longtail.add_argument("--split", default=DEFAULT_POOL_SPLIT,
                          help="the split to draw from (default train)")
    longtail.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE,
                          help="imbalance profile (default exponential, LT-NTU's)")
    longtail.add_argument("--imbalance-factor", type=float, default=DEFAULT_IMBALANCE_FACTOR,
                          metavar="IF", help="head count / tail count (default 100)")
    longtail.add_argument("--n-max", type=int, metavar="N",
                          help="samples of the head class (default: the smallest class of the "
                          "split; LT-NTU uses 600)")
    longtail.add_argument("--seed", type=int, default=DEFAULT_SEED, help="sampling seed")
    longtail.add_argument("--step-fraction", type=float, default=DEFAULT_STEP_FRACTION,
                          metavar="F", help="step profile: fraction of head classes (0.5)")
    longtail.add_argument("--class-order", default=NATURAL_ORDER, metavar="natural|FILE",
                          help="head-to-tail class order: natural, or a file of class ids or "
                          "names, one per line")
    longtail.add_argument("--name", help="the new split's name (default with --from-list: the "
                          "file's stem)")
    longtail.add_argument("--from-list", type=Path, metavar="FILE",
                          help="register this name list instead of drawing one")
    longtail.add_argument("--overwrite", action="store_true",
                          help="replace an existing split of the same name")
