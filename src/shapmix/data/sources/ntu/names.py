"""NTU sample names (``SsssCcccPpppRrrrAaaa``) and the standard benchmarks' train/test splits,
in the order of CTR-GCN's ``seq_transformation.py``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .constants import (
    DATASET_BENCHMARKS,
    NTU60_XSUB_TRAIN_SUBJECTS,
    NTU60_XVIEW_TRAIN_CAMERAS,
    NTU120_XSUB_TRAIN_SUBJECTS,
    SKELETON_SUFFIX,
    XSET_TRAIN_SETUP_PARITY,
)

SAMPLE_NAME_PATTERN = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")


@dataclass(frozen=True)
class SampleInfo:
    """Metadata carried by an NTU sample name ``SsssCcccPpppRrrrAaaa`` (all 1-based)."""

    name: str
    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        """0-based class id."""
        return self.action - 1


def parse_sample_name(name: str | os.PathLike) -> SampleInfo:
    """Parse ``S001C002P003R002A013`` (a path or a ``.skeleton`` suffix is allowed).

    Raises:
        ValueError: the name does not follow the pattern or has a zero id.
    """
    stem = Path(name).name.removesuffix(SKELETON_SUFFIX)
    match = SAMPLE_NAME_PATTERN.match(stem)
    if match is None:
        raise ValueError(f"{name!r} is not an NTU sample name (expected SsssCcccPpppRrrrAaaa)")
    ids = [int(group) for group in match.groups()]
    if min(ids) < 1:
        raise ValueError(f"{name!r}: the ids of an NTU sample name are 1-based")
    return SampleInfo(stem, *ids)


def check_benchmark(dataset: str, benchmark: str) -> None:
    """Raise ``ValueError`` unless ``dataset`` is known and ``benchmark`` is one of its own."""
    if dataset not in DATASET_BENCHMARKS:
        raise ValueError(
            f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_BENCHMARKS)}"
        )
    if benchmark not in DATASET_BENCHMARKS[dataset]:
        raise ValueError(
            f"{dataset} has benchmarks {DATASET_BENCHMARKS[dataset]}, not {benchmark!r}"
        )


def _group_id(info: SampleInfo, benchmark: str) -> int:
    """The id the upstream scripts group rows by (performer, camera or setup)."""
    return {"xsub": info.performer, "xview": info.camera, "xset": info.setup}[benchmark]


def is_train_sample(info: SampleInfo | str, dataset: str, benchmark: str) -> bool:
    """Whether a sample is in the training part of a standard benchmark.

    ``ntu60``: ``xsub`` (the 20 training performers), ``xview`` (cameras 2 and 3);
    ``ntu120``: ``xsub`` (the 53 training performers), ``xset`` (even setups).
    """
    check_benchmark(dataset, benchmark)
    if not isinstance(info, SampleInfo):
        info = parse_sample_name(info)
    if benchmark == "xview":
        return info.camera in NTU60_XVIEW_TRAIN_CAMERAS
    if benchmark == "xset":
        return info.setup % 2 == XSET_TRAIN_SETUP_PARITY
    subjects = NTU60_XSUB_TRAIN_SUBJECTS if dataset == "ntu60" else NTU120_XSUB_TRAIN_SUBJECTS
    return info.performer in subjects


def split_names(
    names: Iterable[str], dataset: str, benchmark: str
) -> tuple[list[str], list[str]]:
    """``(train, test)`` names in the upstream row order.

    Upstream concatenates, for each group id in ascending order (performer, camera or setup),
    the samples of that group in list order: a stable sort by the group id.
    """
    check_benchmark(dataset, benchmark)
    infos = [parse_sample_name(name) for name in names]
    ordered = sorted(infos, key=lambda info: _group_id(info, benchmark))
    train = [info.name for info in ordered if is_train_sample(info, dataset, benchmark)]
    test = [info.name for info in ordered if not is_train_sample(info, dataset, benchmark)]
    return train, test
