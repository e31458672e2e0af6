"""LT-NTU: the long-tail constructor on the NTU statistics reproduces the 12 published lists.

The published lists (``../shared/data/ntu/lt_splits/``, BRL / Shap-Mix) keep, per class, the
exponential profile's count of the benchmark's training samples: ``n_max = 600`` (400 for NTU120
cross-setup, whose classes have at most 468 training samples), IF from the file name.
The tests of the real lists skip, with the reason, when ``../shared/data`` is absent; the same
path (statistics files -> benchmark training pool -> seeded constructor -> name list) also runs
on a small generated statistics folder, everywhere.
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

needs_data = pytest.mark.skipif(
    not (LT_DIR.is_dir() and STATISTICS_DIR.is_dir()),
    reason=f"real data not available: {LT_DIR} or {STATISTICS_DIR} is missing "
    "(see ../shared/README.md)",
)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split()


STATISTICS_COLUMNS = ("label", "performer", "camera", "setup")
NAMES_FILE = "skes_available_name.txt"


@cache
def _statistics(folder: Path) -> dict[str, np.ndarray]:
    """Names and the aligned per-sample columns (0-based label) of a statistics folder."""
    columns = {
        key: np.array(_lines(folder / f"{key}.txt"), dtype=np.int64)
        for key in STATISTICS_COLUMNS
    }
    columns["label"] -= 1
    columns["name"] = np.array(_lines(folder / NAMES_FILE))
    return columns


@cache
def _training_pool(
    dataset: str, benchmark: str, folder: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(names, labels)`` of the benchmark's training samples, missing skeletons excluded
    (statistics from ``folder``, by default the shared folder of ``dataset``)."""
    folder = STATISTICS_DIR / dataset if folder is None else folder
    stats = _statistics(folder)
    missing = np.array(_lines(folder / MISSING_LISTS[dataset]))
    available = ~np.isin(stats["name"], missing)
    train, _ = split_names(stats["name"][available].tolist(), dataset, benchmark)
    in_pool = available & np.isin(stats["name"], train)
    return stats["name"][in_pool], stats["label"][in_pool]


def _spec(relative: str) -> tuple[str, str, float, int]:
    fields = LIST_PATTERN.search(relative).groupdict()
    dataset = f"ntu{fields['classes']}"
    n_max = N_MAX_NTU120_XSET if (dataset, fields["benchmark"]) == ("ntu120", "xset") else N_MAX
    return dataset, fields["benchmark"], float(fields["IF"]), n_max


def _list_counts(path: Path, dataset: str, folder: Path) -> tuple[list[str], np.ndarray]:
    """The names of a list file and its per-class counts (labels from the statistics)."""
    names = _lines(path)
    stats = _statistics(folder)
    label_of = dict(zip(stats["name"].tolist(), stats["label"].tolist()))
    labels = np.array([label_of[name] for name in names if name in label_of])
    return names, np.bincount(labels, minlength=DATASET_CLASSES[dataset])


def _published_counts(relative: str, dataset: str) -> tuple[list[str], np.ndarray]:
    return _list_counts(LT_DIR / relative, dataset, STATISTICS_DIR / dataset)


@needs_data
def test_all_twelve_published_lists_are_present():
    assert len(PUBLISHED) == NUM_PUBLISHED


@needs_data
@pytest.mark.parametrize("dataset", sorted(MISSING_LISTS))
def test_statistics_agree_with_the_benchmark_rules(dataset):
    """split_names (from the sample names) equals the rules applied to the statistics columns,
    and the available names already exclude the missing-skeleton samples."""
    stats = _statistics(STATISTICS_DIR / dataset)
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


@needs_data
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


@needs_data
def test_lt_ntu60_xsub_if100_groups():
    _, counts = _published_counts("NTU60_LT/NTU60_xsub_exp_100.txt", "ntu60")
    groups = group_classes(counts)
    sizes = tuple(int((groups == group).sum()) for group in (Group.MANY, Group.MEDIUM, Group.FEW))
    assert sizes == LT_NTU60_XSUB_IF100_GROUPS


# --------------------------------------------------------------------------------------------
# The same path on a small generated statistics folder: runs everywhere
# --------------------------------------------------------------------------------------------

SMALL_CLASSES = 6
SMALL_PERFORMERS = 8  # 1, 2, 4, 5, 8 are NTU60 cross-subject training performers
SMALL_CAMERAS = 3
SMALL_REPLICATIONS = 2
SMALL_N_MAX = 24
SMALL_IF = 8.0
SMALL_MISSING = ("S001C001P001R001A001", "S001C002P003R002A003")  # train, test


def _write_small_statistics(folder: Path) -> None:
    """A statistics folder in the shared layout: one name per line in
    ``skes_available_name.txt`` (missing skeletons left out, as NTU's own lists do), the aligned
    1-based ``label``/``performer``/``camera``/``setup`` columns, and the missing list."""
    folder.mkdir(parents=True)
    rows = [
        (f"S001C{camera:03d}P{performer:03d}R{replication:03d}A{action:03d}",
         action, performer, camera, 1)
        for action in range(1, SMALL_CLASSES + 1)
        for performer in range(1, SMALL_PERFORMERS + 1)
        for camera in range(1, SMALL_CAMERAS + 1)
        for replication in range(1, SMALL_REPLICATIONS + 1)
    ]
    rows = [row for row in rows if row[0] not in SMALL_MISSING]
    (folder / NAMES_FILE).write_text("\n".join(row[0] for row in rows) + "\n")
    for column, key in enumerate(STATISTICS_COLUMNS, start=1):
        (folder / f"{key}.txt").write_text("\n".join(str(row[column]) for row in rows) + "\n")
    (folder / MISSING_LISTS["ntu60"]).write_text("\n".join(SMALL_MISSING) + "\n")


def test_constructor_on_a_small_statistics_list(tmp_path):
    """The exponential constructor keeps int(n_max * IF ** (-c / (C - 1))) training samples of
    class c, all from the benchmark's training pool, and the same seed gives the same list."""
    folder = tmp_path / "statistics" / "ntu60"
    _write_small_statistics(folder)
    pool_names, pool_labels = _training_pool("ntu60", "xsub", folder)
    train_performers = [p for p in range(1, SMALL_PERFORMERS + 1)
                        if p in NTU60_XSUB_TRAIN_SUBJECTS]
    per_class = len(train_performers) * SMALL_CAMERAS * SMALL_REPLICATIONS
    assert len(pool_names) == SMALL_CLASSES * per_class - 1  # one training sample is missing

    chosen = make_longtail_split(pool_labels, SMALL_CLASSES, SMALL_N_MAX, SMALL_IF, seed=SEED)
    listed = tmp_path / "NTU60_xsub_exp_8.txt"
    listed.write_text("\n".join(pool_names[chosen]) + "\n")
    names, counts = _list_counts(listed, "ntu60", folder)
    formula = [int(SMALL_N_MAX * SMALL_IF ** (-c / (SMALL_CLASSES - 1)))
               for c in range(SMALL_CLASSES)]
    assert counts[:SMALL_CLASSES].tolist() == formula
    assert not counts[SMALL_CLASSES:].any()
    assert len(set(names)) == len(names) and not set(names) & set(SMALL_MISSING)
    assert {int(name[9:12]) for name in names} <= set(train_performers)

    again = make_longtail_split(pool_labels, SMALL_CLASSES, SMALL_N_MAX, SMALL_IF, seed=SEED)
    other = make_longtail_split(pool_labels, SMALL_CLASSES, SMALL_N_MAX, SMALL_IF, seed=SEED + 1)
    np.testing.assert_array_equal(again, chosen)
    assert not np.array_equal(other, chosen)
    assert np.bincount(pool_labels[other], minlength=SMALL_CLASSES).tolist() == formula
