"""Directory conversion: a folder of ``.skeleton`` files to the project's format, CTR-GCN's npz
or pyskl's annotation pickle (:func:`convert_ntu`), in parallel, resumably and with bounded
memory.

:func:`convert_ntu` processes the files in worker processes (``imap`` in order, in chunks) and
appends every sample's valid rows to its staging area (:mod:`.staging`).  Only then, with the
number of good samples known, the output is written from that staging area one sample at a time
(:mod:`.outputs`): the project's format through :class:`~shapmix.data.format.DatasetWriter`
(``(N, 3, 300, 25, 2)``, lengths = valid frames, splits ``train``/``test``), CTR-GCN's npz
streamed member by member, or pyskl's pickle (whose float16 annotations are assembled in memory,
as pickling needs).  A run that is interrupted resumes from the journal; the staging area is
deleted when the output is complete.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ....errors import DatasetFormatError, NTUFormatError
from ..common import SKIPPED_KEY, SkippedFile
from .constants import (
    ACTOR_COLUMNS,
    DATASET_CLASSES,
    MAX_FRAMES,
    NTU60_MAX_SETUP,
    ROW_COLUMNS,
    SKELETON_SUFFIX,
)
from .names import SampleInfo, check_benchmark, parse_sample_name, split_names
from .outputs import finalize_npz, finalize_pyskl, finalize_shapmix
from .parse import read_skeleton
from .pipeline import process_skeleton
from .pyskl_export import PYSKL_TEST_SUFFIX, PYSKL_TRAIN_SUFFIX, pyskl_keypoint, pyskl_splits
from .staging import (
    STAGING_SUFFIX,
    STAGING_VERSION,
    STATUS_FAILED,
    STATUS_OK,
    StagedResult,
    Staging,
)

FORMATS = ("shapmix", "ctrgcn-npz", "pyskl")
DEFAULT_CHUNKSIZE = 8
"""Files handed to a worker at a time."""
MISSING_REASON = "listed among the samples with missing skeletons"


@dataclass
class ConversionReport:
    """What :func:`convert_ntu` did.

    Attributes:
        output: the dataset directory or npz file written.
        fmt, dataset, benchmark: as requested.
        num_candidates: sample files considered (after the missing-skeleton list).
        converted: names converted, in dataset order.
        num_train, num_test: sizes of the two parts.
        skipped_missing: names skipped because the missing-skeleton list names them.
        failures: ``(name, reason)`` of every other file that was not converted.
        resumed: files found already finished by an interrupted earlier run.
        seconds: wall time of this call.
    """

    output: Path
    fmt: str
    dataset: str
    benchmark: str
    num_candidates: int = 0
    converted: list[str] = field(default_factory=list)
    num_train: int = 0
    num_test: int = 0
    skipped_missing: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0
    seconds: float = 0.0

    @property
    def files_per_second(self) -> float:
        processed = self.num_candidates - self.resumed
        return processed / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        head = (
            f"{self.output}: {len(self.converted)} of {self.num_candidates} samples converted "
            f"({self.num_train} train, {self.num_test} test; {self.benchmark}), "
            f"{len(self.skipped_missing)} skipped as missing skeletons, "
            f"{len(self.failures)} failed, {self.resumed} resumed, {self.seconds:.1f} s"
        )
        lines = [head]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.failures]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    """One file for a worker: its position among the candidates, sample name and path."""

    index: int
    name: str
    path: str


def _guarded(task: _Task, compute: Callable[[], tuple[np.ndarray, str]]) -> StagedResult:
    """Run a worker's ``compute`` (rows and detail); every problem becomes a failed result."""
    try:
        rows, detail = compute()
    except DatasetFormatError as error:
        return StagedResult(task.index, STATUS_FAILED, None, str(error))
    except OSError as error:
        return StagedResult(task.index, STATUS_FAILED, None, f"{task.path}: cannot read ({error})")
    except Exception as error:  # noqa: BLE001 - a broken file must never stop the whole run
        return StagedResult(
            task.index, STATUS_FAILED, None,
            f"{task.path}: unexpected error {type(error).__name__}: {error}",
        )
    return StagedResult(task.index, STATUS_OK, rows, detail)


def _process_task(
    task: _Task, fix_upstream_bugs: bool, duplicate_single_actor: bool, max_frames: int
) -> StagedResult:
    """Worker: one file to its valid rows (CTR-GCN's convention)."""

    def compute() -> tuple[np.ndarray, str]:
        sample = process_skeleton(
            task.path, fix_upstream_bugs=fix_upstream_bugs,
            duplicate_single_actor=duplicate_single_actor, max_frames=max_frames,
        )
        return sample.row[: sample.num_frames], ""

    return _guarded(task, compute)


def _process_pyskl_task(task: _Task) -> StagedResult:
    """Worker for pyskl's convention: the keypoints as ``(T, 150)`` rows (person-major, zero
    columns for a single person) and, as the result's detail, the number of persons ``M``."""

    def compute() -> tuple[np.ndarray, str]:
        keypoint = pyskl_keypoint(read_skeleton(task.path, colors=False))
        persons, frames = keypoint.shape[:2]
        rows = np.zeros((frames, ROW_COLUMNS), dtype=np.float32)
        rows[:, : persons * ACTOR_COLUMNS] = keypoint.transpose(1, 0, 2, 3).reshape(frames, -1)
        return rows, str(persons)

    return _guarded(task, compute)


def _in_dataset(info: SampleInfo, dataset: str, fmt: str) -> bool:
    """Whether a file of the directory belongs to ``dataset``: pyskl's tool keeps every setup
    and selects by action; the CTR-GCN lists of NTU60 are setups 1-17."""
    if fmt == "pyskl":
        return info.action <= DATASET_CLASSES[dataset]
    return dataset != "ntu60" or info.setup <= NTU60_MAX_SETUP


def _list_candidates(
    raw_dir: Path, dataset: str, sample_names: Iterable[str] | None, fmt: str
) -> list[tuple[str, Path]]:
    """``(name, path)`` of the listed samples, or of the dataset's files in ``raw_dir`` (sorted;
    a file whose name is not a sample name is kept, to be reported as a failure)."""
    if sample_names is None:
        found = sorted(raw_dir.glob(f"*{SKELETON_SUFFIX}"))
        names = []
        for path in found:
            stem = path.name.removesuffix(SKELETON_SUFFIX)
            try:
                info = parse_sample_name(stem)
            except ValueError:
                names.append(stem)  # reported as a failure with the reason
                continue
            if _in_dataset(info, dataset, fmt):
                names.append(stem)
    else:
        names = [str(name).strip() for name in sample_names if str(name).strip()]
    return [(name, raw_dir / f"{name}{SKELETON_SUFFIX}") for name in names]


def _read_missing(missing_list: str | os.PathLike | Iterable[str] | None) -> set[str]:
    """The names to skip: a list, or a file with one name per line."""
    if missing_list is None:
        return set()
    if isinstance(missing_list, (str, os.PathLike)):
        text = Path(missing_list).read_text(encoding="utf-8")
        return {line.strip() for line in text.splitlines() if line.strip()}
    return {str(name).strip() for name in missing_list}


def _name_problem(name: str, dataset: str) -> str | None:
    """Why ``name`` cannot be one of ``dataset``'s samples, or ``None`` when it can."""
    try:
        info = parse_sample_name(name)
    except ValueError as error:
        return str(error)
    if info.action > DATASET_CLASSES[dataset]:
        return (
            f"{name}: action {info.action} is not one of the {DATASET_CLASSES[dataset]} "
            f"{dataset} classes"
        )
    return None


def _run_tasks(
    tasks: list[_Task], worker: Callable[[_Task], StagedResult], workers: int, chunksize: int
) -> Iterator[StagedResult]:
    """The workers' results in task order: in this process, or in a pool of ``workers``."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(worker, tasks)
        return
    with multiprocessing.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(worker, tasks, chunksize=chunksize)


def convert_ntu(
    raw_dir: str | os.PathLike,
    out: str | os.PathLike,
    dataset: str = "ntu60",
    benchmark: str = "xsub",
    fmt: str = "shapmix",
    workers: int | None = 1,
    fix_upstream_bugs: bool = False,
    sample_names: Iterable[str] | str | os.PathLike | None = None,
    missing_list: Iterable[str] | str | os.PathLike | None = None,
    progress: bool = True,
    duplicate_single_actor: bool | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> ConversionReport:
    """Convert a directory of raw ``.skeleton`` files.

    Args:
        raw_dir: the directory of ``SsssCcccPpppRrrrAaaa.skeleton`` files.
        out: ``fmt="shapmix"``: a dataset directory of the project's format (``(N, 3, 300,
            25, 2)``, lengths = valid frames, splits ``train`` and ``test``); ``"ctrgcn-npz"``:
            an npz file with CTR-GCN's keys ``x_train`` ``(N, 300, 150)`` float32, one-hot
            ``y_train``, ``x_test``, ``y_test`` (rows in upstream order) plus ``name_train`` and
            ``name_test``; ``"pyskl"``: the annotation pickle pyskl's own NTU tool makes
            (:func:`~.pyskl_export.pyskl_keypoint`: untranslated float16 ``(M, T, 25, 3)``
            keypoints; the splits of both benchmarks, ``xsub_train``/``xsub_val`` and
            ``xview_*`` or ``xset_*``, by :func:`~.pyskl_export.pyskl_splits`).
        dataset: ``"ntu60"`` or ``"ntu120"`` (number of classes; which setups are listed).
        benchmark: ``"xsub"`` or ``"xview"`` (NTU60), ``"xsub"`` or ``"xset"`` (NTU120); for
            ``"pyskl"`` (which holds every benchmark) only the report's train/test counts.
        workers: processes (``<= 1``: in this process; ``None``/``0``: all CPUs).
        fix_upstream_bugs: correct the two documented stage-2 bugs (:mod:`.denoise`); not
            for ``"pyskl"``.
        sample_names: the samples to convert, in order (a list, or a file with one name per
            line such as ``skes_available_name.txt``); default: every ``.skeleton`` file of
            ``raw_dir``, sorted; for NTU60 only setups 1-17, or for ``"pyskl"`` (as pyskl's
            tool selects) every setup and the dataset's actions (1-60 or 1-120).
        missing_list: names to skip (a list or a file such as
            ``samples_with_missing_skeletons.txt``).
        progress: show a tqdm progress bar.
        duplicate_single_actor: one-actor samples also fill actor 2's columns; default: only
            for ``ctrgcn-npz`` of NTU120, as its upstream script does.
        chunksize: files per worker hand-out.

    Every file that cannot be converted is skipped and listed in the report with its reason
    (and, for the project's format, under ``metadata["skipped"]`` of the dataset).
    Finished files are journaled in ``OUT.partial`` (flushed every few seconds); an
    interrupted run called again with the same arguments resumes where it stopped, and the
    staging directory is deleted once the output is complete.
    """
    started = time.perf_counter()
    _check_arguments(raw_dir, dataset, benchmark, fmt, fix_upstream_bugs)
    raw_dir, out = Path(raw_dir), Path(out)
    if workers is None or workers <= 0:
        workers = os.cpu_count() or 1
    if duplicate_single_actor is None:
        duplicate_single_actor = fmt == "ctrgcn-npz" and dataset == "ntu120"
    report = ConversionReport(output=out, fmt=fmt, dataset=dataset, benchmark=benchmark)
    candidates = _select_candidates(raw_dir, dataset, fmt, sample_names, missing_list, report)
    staging = Staging(
        Path(f"{out}{STAGING_SUFFIX}"),
        _staging_settings(candidates, dataset, fmt, fix_upstream_bugs, duplicate_single_actor),
    )
    report.resumed = staging.resumed
    worker = _process_pyskl_task if fmt == "pyskl" else partial(
        _process_task, fix_upstream_bugs=fix_upstream_bugs,
        duplicate_single_actor=duplicate_single_actor, max_frames=MAX_FRAMES,
    )
    _stage(staging, candidates, dataset, worker, workers, chunksize, progress)

    ok, failed = _outcomes(staging, len(candidates))
    report.failures = [(candidates[i][0], staging.entries[i][3]) for i in failed]
    if not ok:
        raise NTUFormatError(
            raw_dir, None,
            f"no sample could be converted ({len(report.failures)} failures, e.g. "
            f"{report.failures[:1]})",
        )
    names = [candidates[i][0] for i in ok]
    train, test, splits = _benchmark_splits(names, dataset, benchmark, fmt)
    report.converted, report.num_train, report.num_test = names, len(train), len(test)
    if fmt == "shapmix":
        skipped = [SkippedFile(str(candidates[i][1]), staging.entries[i][3]) for i in failed]
        skipped += [SkippedFile(name, MISSING_REASON) for name in report.skipped_missing]
        metadata = _shapmix_metadata(
            dataset, benchmark, fix_upstream_bugs, duplicate_single_actor, skipped
        )
        finalize_shapmix(staging, out, ok, names, splits, dataset, metadata)
    elif fmt == "pyskl":
        finalize_pyskl(staging, out, ok, names, splits)
    else:
        finalize_npz(staging, out, dict(zip(names, ok)), train, test, dataset)
    shutil.rmtree(staging.root, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _check_arguments(
    raw_dir: str | os.PathLike, dataset: str, benchmark: str, fmt: str, fix_upstream_bugs: bool
) -> None:
    """Raise ``ValueError`` for an unknown format, dataset or benchmark, or a bug fix asked of
    pyskl's format; ``FileNotFoundError`` when ``raw_dir`` is not a directory."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {FORMATS}")
    if fmt == "pyskl" and fix_upstream_bugs:
        raise ValueError(
            "fix_upstream_bugs corrects the CTR-GCN scripts; the pyskl format reproduces "
            "pyskl's own tool and has no such option"
        )
    check_benchmark(dataset, benchmark)
    if not Path(raw_dir).is_dir():
        raise FileNotFoundError(f"{raw_dir}: no such directory of .skeleton files")


def _select_candidates(
    raw_dir: Path,
    dataset: str,
    fmt: str,
    sample_names: Iterable[str] | str | os.PathLike | None,
    missing_list: Iterable[str] | str | os.PathLike | None,
    report: ConversionReport,
) -> list[tuple[str, Path]]:
    """``(name, path)`` of every sample to convert, in order: the listed (or found) samples
    less those of the missing-skeleton list, which go to ``report.skipped_missing``.

    Raises:
        ValueError: a name is listed twice.
    """
    if isinstance(sample_names, (str, os.PathLike)):
        sample_names = Path(sample_names).read_text(encoding="utf-8").split()
    missing = _read_missing(missing_list)
    candidates = []
    for name, path in _list_candidates(raw_dir, dataset, sample_names, fmt):
        if name in missing:
            report.skipped_missing.append(name)
        else:
            candidates.append((name, path))
    report.num_candidates = len(candidates)
    if len({name for name, _ in candidates}) != len(candidates):
        raise ValueError("the sample names to convert contain duplicates")
    return candidates


def _staging_settings(
    candidates: list[tuple[str, Path]],
    dataset: str,
    fmt: str,
    fix_upstream_bugs: bool,
    duplicate_single_actor: bool,
) -> dict:
    """What a staging area's rows depend on: an earlier run resumes only when they are equal
    (the candidates by a hash of their names and paths)."""
    return {
        "version": STAGING_VERSION,
        "dataset": dataset,
        "fix_upstream_bugs": fix_upstream_bugs,
        "duplicate_single_actor": duplicate_single_actor,
        "max_frames": MAX_FRAMES,
        "convention": "pyskl" if fmt == "pyskl" else "ctrgcn",
        "candidates": hashlib.sha256(
            "\n".join(f"{name}\t{path}" for name, path in candidates).encode()
        ).hexdigest(),
    }


def _stage(
    staging: Staging,
    candidates: list[tuple[str, Path]],
    dataset: str,
    worker: Callable[[_Task], StagedResult],
    workers: int,
    chunksize: int,
    progress: bool,
) -> None:
    """Add a result for every candidate the staging area does not hold yet: a name that is not
    one of ``dataset``'s samples fails at once, every other file goes to ``worker``.  The
    staging area is closed (flushed) even when the run is interrupted."""
    tasks = []
    for index, (name, path) in enumerate(candidates):
        if index in staging.entries:
            continue
        problem = _name_problem(name, dataset)
        if problem is not None:
            staging.add(StagedResult(index, STATUS_FAILED, None, problem))
        else:
            tasks.append(_Task(index, name, str(path)))
    try:
        with tqdm(total=len(tasks), unit="file", disable=not progress, desc="NTU") as bar:
            for result in _run_tasks(tasks, worker, workers, chunksize):
                staging.add(result)
                bar.update()
    finally:
        staging.close()


def _outcomes(staging: Staging, num_candidates: int) -> tuple[list[int], list[int]]:
    """Candidate indices of the converted files and of the failed ones, in candidate order."""
    ok = [i for i in range(num_candidates) if staging.entries[i][0] == STATUS_OK]
    failed = [i for i in range(num_candidates) if staging.entries[i][0] != STATUS_OK]
    return ok, failed


def _benchmark_splits(
    names: list[str], dataset: str, benchmark: str, fmt: str
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """``(train, test, splits)`` of the converted samples: ``benchmark``'s two parts and the
    splits the output stores.  ``"pyskl"``: pyskl's rules, every benchmark of the dataset
    stored (``xsub_train``, ``xsub_val``, ...); otherwise CTR-GCN's lists in upstream order,
    stored as ``train`` and ``test``."""
    if fmt == "pyskl":
        splits = pyskl_splits(names, dataset)
        train = splits[benchmark + PYSKL_TRAIN_SUFFIX]
        return train, splits[benchmark + PYSKL_TEST_SUFFIX], splits
    train, test = split_names(names, dataset, benchmark)
    return train, test, {"train": train, "test": test}


def _shapmix_metadata(
    dataset: str,
    benchmark: str,
    fix_upstream_bugs: bool,
    duplicate_single_actor: bool,
    skipped: list[SkippedFile],
) -> dict:
    """The project-format dataset's metadata: provenance, options and the skipped files."""
    return {
        "source": f"NTU RGB+D {dataset[len('ntu'):]} raw .skeleton files",
        "preprocessing": "CTR-GCN's scripts, reproduced by shapmix.data.sources.ntu",
        "benchmark": benchmark,
        "fix_upstream_bugs": fix_upstream_bugs,
        "duplicate_single_actor": duplicate_single_actor,
        "units": "metres, relative to actor 1's first spine-middle joint",
        SKIPPED_KEY: [entry.as_json() for entry in skipped],
    }
