"""LT-NTU: the long-tail constructor on the NTU statistics reproduces the 12 published lists.

The published lists (``../shared/data/ntu/lt_splits/``, BRL / Shap-Mix) keep, per class, the
exponential profile's count of the benchmark's training samples: ``n_max = 600`` (400 for NTU120
cross-setup, whose classes have at most 468 training samples), IF from the file name.
Skipped, with the reason, when ``../shared/data`` is absent.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA

from shapmix.data.longtail import (
    Group,
    group_classes,
    longtail_counts,
    make_longtail_split,
)
from shapmix.data.sources.ntu import (
    DATASET_CLASSES,
    NTU60_XSUB_TRAIN_SUBJECTS,
    NTU60_XVIEW_TRAIN_CAMERAS,
    NTU120_XSUB_TRAIN_SUBJECTS,
    split_names,
)

NTU_DIR = SHARED_DATA / "ntu"
LT_DIR = NTU_DIR / "lt_splits"
STATISTICS_DIR = NTU_DIR / "statistics"
MISSING_LISTS = {
    "ntu60": "samples_with_missing_skeletons.txt",
    "ntu120": "NTU_RGBD120_samples_with_missing_skeletons.txt",
}
LIST_PATTERN = re.compile(r"NTU(?P<classes>60|120)_(?P<benchmark>xsub|xview|xset)_exp_(?P<IF>\d+)")
N_MAX = 600
N_MAX_NTU120_XSET = 400
PUBLISHED = sorted(p.relative_to(LT_DIR).as_posix() for p in LT_DIR.glob("*/*.txt")) if (
    LT_DIR.is_dir()
) else []
NUM_PUBLISHED = 12
LT_NTU60_XSUB_IF100_GROUPS = (23, 21, 16)  # Many / Medium / Few classes
SEED = 0

pytestmark = pytest.mark.skipif(
    not (LT_DIR.is_dir() and STATISTICS_DIR.is_dir()),
    reason=f"real data not available: {LT_DIR} or {STATISTICS_DIR} is missing "
    "(see ../shared/README.md)",
)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split()


@cache
def _statistics(dataset: str) -> dict[str, np.ndarray]:
    """Names and the aligned per-sample columns (0-based label), as arrays."""
    folder = STATISTICS_DIR / dataset
    columns = {
        key: np.array(_lines(folder / f"{key}.txt"), dtype=np.int64)
        for key in ("label", "performer", "camera", "setup")
    }
    columns["label"] -= 1
    columns["name"] = np.array(_lines(folder / "skes_available_name.txt"))
    return columns


@cache
def _training_pool(dataset: str, benchmark: str) -> tuple[np.ndarray, np.ndarray]:
    """``(names, labels)`` of the benchmark's training samples, missing skeletons excluded."""
    stats = _statistics(dataset)
    missing = np.array(_lines(STATISTICS_DIR / dataset / MISSING_LISTS[dataset]))
    available = ~np.isin(stats["name"], missing)
    train, _ = split_names(stats["name"][available].tolist(), dataset, benchmark)
    in_pool = available & np.isin(stats["name"], train)
    return stats["name"][in_pool], stats["label"][in_pool]


def _spec(relative: str) -> tuple[str, str, float, int]:
    fields = LIST_PATTERN.search(relative).groupdict()
    dataset = f"ntu{fields['classes']}"
    n_max = N_MAX_NTU120_XSET if (dataset, fields["benchmark"]) == ("ntu120", "xset") else N_MAX
    return dataset, fields["benchmark"], float(fields["IF"]), n_max


def _published_counts(relative: str, dataset: str) -> tuple[list[str], np.ndarray]:
    names = _lines(LT_DIR / relative)
    stats = _statistics(dataset)
    label_of = dict(zip(stats["name"].tolist(), stats["label"].tolist()))
    labels = np.array([label_of[name] for name in names if name in label_of])
    return names, np.bincount(labels, minlength=DATASET_CLASSES[dataset])


def test_all_twelve_published_lists_are_present():
    assert len(PUBLISHED) == NUM_PUBLISHED


@pytest.mark.parametrize("dataset", sorted(MISSING_LISTS))
def test_statistics_agree_with_the_benchmark_rules(dataset):
    """split_names (from the sample names) equals the rules applied to the statistics columns,
    and the available names already exclude the missing-skeleton samples."""
    stats = _statistics(dataset)
    missing = _lines(STATISTICS_DIR / dataset / MISSING_LISTS[dataset])
    assert not np.isin(stats["name"], missing).any()
    rules = {
        "xsub": np.isin(
            stats["performer"],
            NTU60_XSUB_TRAIN_SUBJECTS if dataset == "ntu60" else NTU120_XSUB_TRAIN_SUBJECTS,
        ),
        "xview": np.isin(stats["camera"], NTU60_XVIEW_TRAIN_CAMERAS),
        "xset": stats["setup"] % 2 == 0,
    }
    benchmarks = ("xsub", "xview") if dataset == "ntu60" else ("xsub", "xset")
    for benchmark in benchmarks:
        names, _ = _training_pool(dataset, benchmark)
        assert set(names.tolist()) == set(stats["name"][rules[benchmark]].tolist())


@pytest.mark.parametrize("relative", PUBLISHED)
def test_constructor_reproduces_published_counts(relative):
    dataset, benchmark, imbalance_factor, n_max = _spec(relative)
    num_classes = DATASET_CLASSES[dataset]
    pool_names, pool_labels = _training_pool(dataset, benchmark)
    names, published = _published_counts(relative, dataset)

    # every published name is a distinct training sample of the right benchmark
    assert len(set(names)) == len(names)
    assert np.isin(names, pool_names).all(), f"{relative} names samples outside {benchmark} train"
    assert published.sum() == len(names)

    expected = longtail_counts(num_classes, n_max, imbalance_factor, "exponential")
    assert (np.bincount(pool_labels, minlength=num_classes) >= expected).all()
    chosen = make_longtail_split(pool_labels, num_classes, n_max, imbalance_factor, seed=SEED)
    constructed = np.bincount(pool_labels[chosen], minlength=num_classes)
    np.testing.assert_array_equal(constructed, published)
    np.testing.assert_array_equal(expected, published)
    assert published.max() == n_max


def test_lt_ntu60_xsub_if100_groups():
    _, counts = _published_counts("NTU60_LT/NTU60_xsub_exp_100.txt", "ntu60")
    groups = group_classes(counts)
    sizes = tuple(int((groups == group).sum()) for group in (Group.MANY, Group.MEDIUM, Group.FEW))
    assert sizes == LT_NTU60_XSUB_IF100_GROUPS
