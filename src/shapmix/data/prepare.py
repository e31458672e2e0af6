"""``shapmix prepare``: bring a dataset into the project's format, or derive a long-tailed split.

One subcommand per source format (``ntu60``, ``ntu120``, ``pyskl``, ``ctrgcn-npz``,
``kinetics-skeleton``, ``nw-ucla``, ``msr-action3d``, ``utd-mhad``, ``arrays``); each only
parses its options and delegates to the converter of :mod:`shapmix.data.sources`.  ``longtail``
writes a split (a list of sample names) into an existing dataset: either made by the long-tail
constructor of :mod:`shapmix.data.longtail` (:func:`make_longtail_split_file`) or registered
from a published list after checking every name (:func:`register_split`).

Errors the ``shapmix`` command prints cleanly (without a traceback): a bad option value is a
:class:`~shapmix.config.ConfigError`, a broken input a
:class:`~shapmix.data.format.DatasetFormatError` (naming the file and, for a name list, the
line), a missing input a :class:`FileNotFoundError`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .format import DatasetFormatError, load_dataset, read_name_list, write_split
from .longtail import (
    DEFAULT_FEW_THRESHOLD,
    DEFAULT_MANY_THRESHOLD,
    group_classes,
    longtail_counts,
    make_longtail_split,
)
from .sources.arrays import convert_arrays
from .sources.common import SKIPPED_KEY
from .sources.kinetics import convert_kinetics_skeleton
from .sources.msr import convert_msr_action3d
from .sources.npz import convert_ctrgcn_npz
from .sources.ntu import DATASET_BENCHMARKS as NTU_BENCHMARKS
from .sources.ntu import DATASET_CLASSES, NTU_ACTION_NAMES, convert_ntu
from .sources.ntu import FORMATS as NTU_FORMATS
from .sources.nw_ucla import convert_nw_ucla
from .sources.pyskl import convert_pyskl
from .sources.utd import convert_utd_mhad

__all__ = [
    "SplitSummary",
    "add_prepare_parser",
    "make_longtail_split_file",
    "register_split",
]

PROFILES = ("exponential", "pareto", "step")
NATURAL_ORDER = "natural"
DEFAULT_POOL_SPLIT = "train"
DEFAULT_PROFILE = "exponential"
DEFAULT_IMBALANCE_FACTOR = 100.0
DEFAULT_STEP_FRACTION = 0.5
DEFAULT_SEED = 0
DEFAULT_WORKERS = 0
"""``--workers`` default: 0 means every CPU core."""
LISTED_AT_MOST = 20
"""Skipped files (or short classes) printed at most; the dataset's metadata lists them all."""
GROUP_NAMES = ("Many", "Medium", "Few")

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
# Long-tailed splits of a prepared dataset
# --------------------------------------------------------------------------------------------


@dataclass
class SplitSummary:
    """A split written by ``prepare longtail``.

    Attributes:
        path: the split file.
        name: the split's name.
        counts: ``(num_classes,)`` samples per class.
        groups: ``(num_classes,)`` :class:`~shapmix.data.longtail.Group` of each class.
        class_names: one per class.
    """

    path: Path
    name: str
    counts: np.ndarray
    groups: np.ndarray
    class_names: list[str]

    def format(self) -> str:
        """Per-class counts and the Many/Medium/Few group sizes, as printed by the command."""
        lines = [f"wrote split {self.name!r} ({int(self.counts.sum())} samples): {self.path}"]
        lines.append(f"{'class':>6}  {'count':>6}  {'group':<7} name")
        for cls, (count, group) in enumerate(zip(self.counts.tolist(), self.groups.tolist())):
            lines.append(f"{cls:>6}  {count:>6}  {GROUP_NAMES[group]:<7} {self.class_names[cls]}")
        sizes = np.bincount(self.groups, minlength=len(GROUP_NAMES))
        lines.append(
            f"groups: Many (> {DEFAULT_MANY_THRESHOLD} samples) {sizes[0]}, Medium {sizes[1]}, "
            f"Few (< {DEFAULT_FEW_THRESHOLD}) {sizes[2]} classes"
        )
        return "\n".join(lines)


def _summary(dataset, name: str, path: Path, members: Sequence[str]) -> SplitSummary:
    labels = dataset.labels[dataset.indices_of(members)]
    counts = np.bincount(labels, minlength=dataset.num_classes)
    return SplitSummary(path, name, counts, group_classes(counts), list(dataset.class_names))


def _check_new_split(dataset, name: str, overwrite: bool, protected: Sequence[str]) -> None:
    if name in protected:
        raise ValueError(f"the new split cannot replace split {name!r} it is drawn from")
    if name in dataset.splits and not overwrite:
        raise ValueError(
            f"{dataset.root} already has a split {name!r}; choose another name or pass overwrite"
        )


def _pool_indices(dataset, split: str) -> np.ndarray:
    if split not in dataset.splits:
        raise ValueError(f"{dataset.root} has no split {split!r}; it has {sorted(dataset.splits)}")
    return dataset.split_indices(split)


def make_longtail_split_file(
    dataset_dir: str | os.PathLike,
    name: str,
    split: str = DEFAULT_POOL_SPLIT,
    profile: str = DEFAULT_PROFILE,
    imbalance_factor: float = DEFAULT_IMBALANCE_FACTOR,
    n_max: int | None = None,
    seed: int = DEFAULT_SEED,
    step_fraction: float = DEFAULT_STEP_FRACTION,
    class_order: Sequence[int] | None = None,
    overwrite: bool = False,
) -> SplitSummary:
    """Draw a long-tailed subset of split ``split`` and save it as split ``name``.

    The targets are :func:`~shapmix.data.longtail.longtail_counts` (class ``class_order[0]``
    the head; natural order by default) and the samples of each class are drawn from a seeded
    shuffle by :func:`~shapmix.data.longtail.make_longtail_split`.  ``n_max`` defaults to the
    smallest class of the pool, so every class can meet its target; a class with fewer samples
    than its target is an error (the split would not follow the profile).
    """
    dataset = load_dataset(dataset_dir)
    _check_new_split(dataset, name, overwrite, protected=(split,))
    pool = _pool_indices(dataset, split)
    labels = dataset.labels[pool]
    available = np.bincount(labels, minlength=dataset.num_classes)
    if n_max is None:
        n_max = int(available.min())
        if n_max < 1:
            raise ValueError(
                f"class {int(available.argmin())} has no sample in split {split!r}; give n_max"
            )
    order = np.arange(dataset.num_classes) if class_order is None else np.asarray(class_order)
    if sorted(order.tolist()) != list(range(dataset.num_classes)):
        raise ValueError(
            f"the class order must list each of the {dataset.num_classes} class ids once"
        )
    targets = np.empty(dataset.num_classes, dtype=np.int64)
    targets[order] = longtail_counts(
        dataset.num_classes, n_max, imbalance_factor, profile, step_fraction
    )
    short = np.flatnonzero(available < targets)
    if short.size:
        listed = ", ".join(
            f"{c} ({available[c]} < {targets[c]})" for c in short[:LISTED_AT_MOST].tolist()
        )
        raise ValueError(
            f"split {split!r} has too few samples for the profile in {short.size} classes: "
            f"{listed}; lower n_max"
        )
    chosen = make_longtail_split(
        labels, dataset.num_classes, n_max, imbalance_factor, profile, seed, order, step_fraction
    )
    members = [dataset.names[i] for i in pool[chosen].tolist()]
    path = write_split(dataset.root, name, members)
    return _summary(dataset, name, path, members)


def _line_of(path: Path, name: str) -> int:
    """1-based line of ``name`` in a name list."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip() == name:
                return line_no
    raise ValueError(f"{name!r} is not in {path}")  # pragma: no cover - callers found it there


def register_split(
    dataset_dir: str | os.PathLike,
    list_path: str | os.PathLike,
    name: str | None = None,
    within: str | None = None,
    overwrite: bool = False,
) -> SplitSummary:
    """Save a published name list (one sample name per line) as split ``name`` of a dataset.

    Every name must be a sample of the dataset and, with ``within``, a member of that split
    (e.g. an LT-NTU list must lie in the benchmark's ``train``); the first that is not is a
    :class:`~shapmix.data.format.DatasetFormatError` naming the list file and the line.
    ``name`` defaults to the file's stem.
    """
    list_path = Path(list_path)
    dataset = load_dataset(dataset_dir)
    name = name or list_path.stem
    _check_new_split(dataset, name, overwrite, protected=(within,) if within else ())
    members = read_name_list(list_path)
    if not members:
        raise DatasetFormatError(f"{list_path}: the list holds no sample name")
    known = set(dataset.names)
    allowed = set(dataset.splits[within]) if within and within in dataset.splits else None
    if within and allowed is None:
        raise ValueError(f"{dataset.root} has no split {within!r}; it has {sorted(dataset.splits)}")
    for member in members:
        if member not in known:
            raise DatasetFormatError(
                f"{list_path}:{_line_of(list_path, member)}: sample {member!r} is not in the "
                f"dataset {dataset.root}"
            )
        if allowed is not None and member not in allowed:
            raise DatasetFormatError(
                f"{list_path}:{_line_of(list_path, member)}: sample {member!r} is not in split "
                f"{within!r} of {dataset.root}"
            )
    path = write_split(dataset.root, name, members)
    return _summary(dataset, name, path, members)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Report a converter's plain ``ValueError`` (a bad option value) as a ConfigError; format
    errors (also ValueErrors) and missing files pass through unchanged."""
    from ..config import ConfigError

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


def _describe(dataset, out: Path) -> str:
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


def _run_ntu(args: argparse.Namespace) -> int:
    from ..config import ConfigError

    if args.lt_list is not None and args.format != "shapmix":
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
    return 0


def _run_pyskl(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_pyskl(
            _require(args.input), args.out, layout=args.layout,
            class_names=_class_names(args.class_names), num_person=args.num_person,
            kpfile_root=_require(args.kpfile_root), box_threshold=args.box_threshold,
        )
    print(_describe(dataset, args.out))
    return 0


def _run_ctrgcn_npz(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_ctrgcn_npz(
            _require(args.input), args.out, layout=args.layout,
            class_names=_class_names(args.class_names),
        )
    print(_describe(dataset, args.out))
    return 0


def _run_kinetics(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_kinetics_skeleton(
            _require(args.input), args.out, max_frames=args.max_frames,
            num_person_in=args.num_person_in, num_person_out=args.num_person_out,
            center=not args.no_center, frame_index_base=args.frame_index_base,
        )
    print(_describe(dataset, args.out))
    return 0


def _run_nw_ucla(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_nw_ucla(_require(args.input), args.out, label_base=args.label_base)
    print(_describe(dataset, args.out))
    return 0


def _run_msr(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_msr_action3d(
            _require(args.input), args.out, keep_confidence=args.keep_confidence
        )
    print(_describe(dataset, args.out))
    return 0


def _run_utd(args: argparse.Namespace) -> int:
    with _user_errors():
        dataset = convert_utd_mhad(_require(args.input), args.out)
    print(_describe(dataset, args.out))
    return 0


def _run_arrays(args: argparse.Namespace) -> int:
    from ..config import ConfigError

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
    return 0


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


def _run_longtail(args: argparse.Namespace) -> int:
    from ..config import ConfigError

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
    return 0


def _subcommand(targets, name: str, help_text: str, description: str, examples: str):
    return targets.add_parser(
        name, help=help_text, description=description, epilog=examples,
        formatter_class=_formatter,
    )


def _add_ntu(targets, dataset: str) -> None:
    upper = dataset.upper()
    missing = (
        "samples_with_missing_skeletons.txt" if dataset == "ntu60"
        else "NTU_RGBD120_samples_with_missing_skeletons.txt"
    )
    second = NTU_BENCHMARKS[dataset][1]
    npz = "NTU60_CV.npz" if dataset == "ntu60" else "NTU120_CSet.npz"
    parser = _subcommand(
        targets, dataset, f"NTU RGB+D {upper[3:]} from raw .skeleton files",
        f"Convert raw NTU RGB+D {upper[3:]} .skeleton files.  The default (compatible) mode "
        "reproduces CTR-GCN's preprocessing bit for bit; --format pyskl reproduces pyskl's own "
        "tool.  Files are processed in parallel, interrupted runs resume, and every file that "
        "cannot be converted is listed with its reason.",
        EXAMPLES["ntu"].format(
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
    parser.add_argument("--format", choices=NTU_FORMATS, default="shapmix",
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
    parser.set_defaults(handler=_run_ntu, ntu_dataset=dataset)


def _add_input_output(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--input", required=True, type=Path, metavar="PATH", help=what)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output dataset directory")


def _add_class_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--class-names", metavar="ntu60|ntu120|FILE",
                        help="class names: NTU's, or a file with one per line "
                        "(default class_0, class_1, ...)")


def add_prepare_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``prepare`` (with one subcommand per format, and ``longtail``) to ``subparsers``."""
    prepare = subparsers.add_parser(
        "prepare", help="convert a dataset to shapmix format, or make a long-tailed split",
        description="Convert skeleton data from the formats users already have into the "
        "project's format (or CTR-GCN's npz / pyskl's pickle for NTU), or write a long-tailed "
        "split of a prepared dataset.  See docs/data.md.",
        epilog=EXAMPLES["prepare"], formatter_class=_formatter,
    )
    targets = prepare.add_subparsers(dest="target", metavar="FORMAT", required=True)
    _add_ntu(targets, "ntu60")
    _add_ntu(targets, "ntu120")

    pyskl = _subcommand(
        targets, "pyskl", "pyskl / mmaction2 skeleton pickle",
        "Convert a pyskl annotation pickle ({'split', 'annotations'}; 3D NTU or 2D COCO "
        "keypoints, also Kinetics' compressed variant with separate kpfiles).  The pickle is "
        "read with a restricted unpickler (containers and NumPy arrays only).",
        EXAMPLES["pyskl"],
    )
    _add_input_output(pyskl, "the annotation .pkl")
    pyskl.add_argument("--layout", help="joint layout (default by V: 25 ntu25, 17 coco17)")
    _add_class_names(pyskl)
    pyskl.add_argument("--num-person", type=int, metavar="M", help="persons kept (default: most)")
    pyskl.add_argument("--kpfile-root", type=Path, metavar="DIR",
                       help="where compressed annotations' raw_file kpfiles are")
    pyskl.add_argument("--box-threshold", type=float, metavar="S",
                       help="compressed annotations: keep skeletons with box_score >= S")
    pyskl.set_defaults(handler=_run_pyskl)

    npz = _subcommand(
        targets, "ctrgcn-npz", "CTR-GCN npz (NTU60_CS.npz, ...)",
        "Convert a CTR-GCN npz (x_train/y_train/x_test/y_test, optional name_train/name_test).",
        EXAMPLES["ctrgcn-npz"],
    )
    _add_input_output(npz, "the .npz file")
    npz.add_argument("--layout", default="ntu25", help="joint layout (default ntu25)")
    _add_class_names(npz)
    npz.set_defaults(handler=_run_ctrgcn_npz)

    kinetics = _subcommand(
        targets, "kinetics-skeleton", "ST-GCN's Kinetics-skeleton json",
        "Convert ST-GCN's Kinetics-skeleton release (kinetics_train/, kinetics_val/ and their "
        "label json files; OpenPose-18, top persons by score).",
        EXAMPLES["kinetics-skeleton"],
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
    kinetics.set_defaults(handler=_run_kinetics)

    ucla = _subcommand(
        targets, "nw-ucla", "NW-UCLA json (as CTR-GCN distributes it)",
        "Convert NW-UCLA json files (views 1 and 2 train, view 3 test).", EXAMPLES["nw-ucla"],
    )
    _add_input_output(ucla, "the folder of aAA_sSS_eEE_vVV.json files")
    ucla.add_argument("--label-base", type=int, default=1, metavar="K",
                      help="the json label of the first action (default 1, CTR-GCN's)")
    ucla.set_defaults(handler=_run_nw_ucla)

    msr = _subcommand(
        targets, "msr-action3d", "MSR Action3D text skeletons",
        "Convert MSR Action3D *_skeleton3D.txt files (odd subjects train, even test).",
        EXAMPLES["msr-action3d"],
    )
    _add_input_output(msr, "the folder of aAA_sSS_eEE_skeleton3D.txt files")
    msr.add_argument("--keep-confidence", action="store_true",
                     help="keep the confidence column as a fourth channel")
    msr.set_defaults(handler=_run_msr)

    utd = _subcommand(
        targets, "utd-mhad", "UTD-MHAD .mat skeletons",
        "Convert UTD-MHAD *_skeleton.mat files (d_skel; odd subjects train, even test).",
        EXAMPLES["utd-mhad"],
    )
    _add_input_output(utd, "the folder of aA_sS_tT_skeleton.mat files")
    utd.set_defaults(handler=_run_utd)

    arrays = _subcommand(
        targets, "arrays", "your own arrays (.npy / .npz) plus a layout name",
        "Bring your own data without code: a data array with named axes, integer labels and a "
        "joint layout (see `shapmix.skeleton.layouts`); optional names, lengths and splits.",
        EXAMPLES["arrays"],
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
    arrays.set_defaults(handler=_run_arrays)

    longtail = _subcommand(
        targets, "longtail", "write a long-tailed split of a prepared dataset",
        "Write a long-tailed split (a list of sample names in DIR/splits/NAME.txt) drawn from "
        "split --split by an imbalance profile, or register a published list (--from-list) "
        "after checking every name.  Prints the per-class counts and the Many/Medium/Few "
        "group sizes.",
        EXAMPLES["longtail"],
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
    longtail.set_defaults(handler=_run_longtail)
    return prepare
