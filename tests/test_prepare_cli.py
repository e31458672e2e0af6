"""``shapmix prepare``: every subcommand on the real sample files, long-tailed splits, errors.

Tests that read ``../shared/data`` (located by ``helpers.shared_data``) skip with the reason
when it is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_content, shared_data

from shapmix.cli import main
from shapmix.data.format import load_dataset, write_dataset
from shapmix.data.longtail import longtail_counts
from shapmix.data.sources import ntu
from shapmix.data.sources.ntu import convert as ntu_convert
from shapmix.data.sources.pyskl import read_pyskl

SUBCOMMANDS = (
    "ntu60", "ntu120", "pyskl", "ctrgcn-npz", "kinetics-skeleton", "nw-ucla", "msr-action3d",
    "utd-mhad", "arrays", "longtail",
)
ERROR_EXIT = 2
MSR_SUBSET = ("a01_s01_e01", "a01_s02_e01", "a05_s03_e02", "a13_s09_e02")  # the last: all zeros
UTD_SUBSET = ("a1_s1_t1", "a1_s2_t1", "a10_s1_t1", "a27_s8_t3")


def prepare(capsys, *argv) -> tuple[int, str, str]:
    """Run ``shapmix prepare ARGV``; returns the exit code, stdout and stderr."""
    code = main(["prepare", *[str(a) for a in argv]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _link_files(target: Path, sources) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:
        os.symlink(source, target / source.name)
    return target


# --------------------------------------------------------------------------------------------
# Help


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_help_has_examples(subcommand, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", subcommand, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"shapmix prepare {subcommand}" in out


def test_prepare_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out
    assert all(subcommand in out for subcommand in SUBCOMMANDS)


# --------------------------------------------------------------------------------------------
# NTU RGB+D


def test_prepare_ntu60_shapmix_with_missing_list_and_lt_list(tmp_path, capsys):
    raw = shared_data("ntu", "raw")
    reference = shared_data("ntu", "reference", "real")
    missing = shared_data("ntu", "statistics", "ntu60", "samples_with_missing_skeletons.txt")
    out = tmp_path / "ntu60"
    train_names, _ = ntu.split_names(
        sorted(p.stem for p in raw.glob("*.skeleton")), "ntu60", "xsub"
    )
    lt_list = tmp_path / "my_lt.txt"
    lt_list.write_text("\n".join(train_names[:2]) + "\n")
    code, out_text, _ = prepare(
        capsys, "ntu60", "--raw", raw, "--out", out, "--workers", 1, "--missing-list", missing,
        "--lt-list", lt_list, "--no-progress",
    )
    assert code == 0 and "8 of 8 samples converted" in out_text
    assert "wrote split 'my_lt'" in out_text
    dataset = load_dataset(out)
    assert len(dataset) == 8 and dataset.splits["my_lt"] == train_names[:2]
    for i, name in enumerate(dataset.names):
        rows = np.load(reference / f"{name}.aligned.npy")
        np.testing.assert_array_equal(dataset.data[i], ntu.row_to_cthw(rows))


def test_prepare_ntu120_npz_then_ctrgcn_npz_subcommand(tmp_path, capsys):
    raw = shared_data("ntu", "raw")
    npz = tmp_path / "NTU120_CSet.npz"
    code, out_text, _ = prepare(
        capsys, "ntu120", "--raw", raw, "--out", npz, "--benchmark", "xset",
        "--format", "ctrgcn-npz", "--workers", 1, "--no-progress",
    )
    assert code == 0 and "xset" in out_text
    code, out_text, _ = prepare(
        capsys, "ctrgcn-npz", "--input", npz, "--out", tmp_path / "ds", "--class-names", "ntu120"
    )
    assert code == 0 and "8 samples, 120 classes" in out_text
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.class_names == list(ntu.NTU_ACTION_NAMES)
    with np.load(npz) as arrays:
        for part in ("train", "test"):
            names = arrays[f"name_{part}"].tolist()
            assert dataset.splits[part] == names
            for row, name in zip(arrays[f"x_{part}"], names):
                i = dataset.names.index(name)
                length = dataset.lengths[i]
                np.testing.assert_array_equal(
                    dataset.data[i, :, :length], ntu.row_to_cthw(row[:length])
                )


def test_prepare_ntu60_pyskl_equals_reference(tmp_path, capsys):
    """pyskl's tool made the reference from the 8 raw files and the 7 edge cases."""
    raw = shared_data("ntu", "raw")
    edge_cases = shared_data("ntu", "reference", "edge_cases")
    reference = shared_data("ntu", "reference", "pyskl", "ntu60_3danno.pkl")
    folder = _link_files(
        tmp_path / "raw", [*raw.glob("*.skeleton"), *edge_cases.glob("*.skeleton")]
    )
    out = tmp_path / "ntu60_3danno.pkl"
    code, out_text, _ = prepare(
        capsys, "ntu60", "--raw", folder, "--out", out, "--format", "pyskl", "--workers", 1,
        "--no-progress",
    )
    assert code == 0 and "15 of 15 samples converted" in out_text
    assert_same_content(read_pyskl(out), read_pyskl(reference))


def test_interrupted_pyskl_conversion_resumes(tmp_path, capsys, monkeypatch):
    """The pyskl format shares the resumable staging: a rerun finishes and still equals the
    reference."""
    raw = shared_data("ntu", "raw")
    edge_cases = shared_data("ntu", "reference", "edge_cases")
    reference = shared_data("ntu", "reference", "pyskl", "ntu60_3danno.pkl")
    folder = _link_files(
        tmp_path / "raw", [*raw.glob("*.skeleton"), *edge_cases.glob("*.skeleton")]
    )
    out = tmp_path / "ntu60_3danno.pkl"
    argv = ("ntu60", "--raw", folder, "--out", out, "--format", "pyskl", "--workers", 1,
            "--no-progress")
    original = ntu_convert._process_pyskl_task
    calls = []

    def interrupted(task):
        calls.append(task.name)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return original(task)

    monkeypatch.setattr(ntu_convert, "_process_pyskl_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(capsys, *argv)
    monkeypatch.setattr(ntu_convert, "_process_pyskl_task", original)
    code, out_text, _ = prepare(capsys, *argv)
    assert code == 0 and "5 resumed" in out_text
    assert_same_content(read_pyskl(out), read_pyskl(reference))


def test_prepare_ntu_lt_list_needs_the_project_format(tmp_path, capsys):
    raw = shared_data("ntu", "raw")
    listed = tmp_path / "lt.txt"
    listed.write_text("S001C001P001R001A001\n")
    code, _, err = prepare(
        capsys, "ntu60", "--raw", raw, "--out", tmp_path / "x.npz", "--format", "ctrgcn-npz",
        "--lt-list", listed,
    )
    assert code == ERROR_EXIT and "--format shapmix" in err


def test_prepare_pyskl_rejects_fix_upstream_bugs(tmp_path, capsys):
    raw = shared_data("ntu", "raw")
    code, _, err = prepare(
        capsys, "ntu60", "--raw", raw, "--out", tmp_path / "x.pkl", "--format", "pyskl",
        "--fix-upstream-bugs",
    )
    assert code == ERROR_EXIT and "fix_upstream_bugs" in err


def test_prepare_ntu_reports_a_missing_directory(tmp_path, capsys):
    code, _, err = prepare(capsys, "ntu60", "--raw", tmp_path / "absent", "--out", tmp_path / "o")
    assert code == ERROR_EXIT and "absent" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# The other formats


def test_prepare_pyskl_subcommand(tmp_path, capsys):
    reference = shared_data("ntu", "reference", "pyskl", "ntu60_3danno.pkl")
    code, out_text, _ = prepare(
        capsys, "pyskl", "--input", reference, "--out", tmp_path / "ds", "--class-names", "ntu60"
    )
    assert code == 0 and "15 samples, 60 classes" in out_text
    dataset = load_dataset(tmp_path / "ds")
    content = read_pyskl(reference)
    assert dataset.splits["train"] == content["split"]["xsub_train"]
    for annotation in content["annotations"]:
        i = dataset.names.index(annotation["frame_dir"])
        keypoint = annotation["keypoint"].astype(np.float32)  # (M, T, V, C)
        persons, frames = keypoint.shape[:2]
        assert dataset.lengths[i] == frames and dataset.labels[i] == annotation["label"]
        np.testing.assert_array_equal(
            dataset.data[i, :, :frames, :, :persons], keypoint.transpose(3, 1, 2, 0)
        )


def test_prepare_nw_ucla(tmp_path, capsys):
    samples = shared_data("nw_ucla", "samples")
    code, out_text, _ = prepare(capsys, "nw-ucla", "--input", samples, "--out", tmp_path / "ds")
    assert code == 0 and "6 samples, 10 classes" in out_text
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.splits["test"] == [n for n in dataset.names if n.endswith("_v03")]


def test_prepare_msr_action3d_lists_the_broken_file(tmp_path, capsys):
    source = shared_data("msr_action3d")
    folder = _link_files(
        tmp_path / "msr", [source / f"{name}_skeleton3D.txt" for name in MSR_SUBSET]
    )
    code, out_text, _ = prepare(
        capsys, "msr-action3d", "--input", folder, "--out", tmp_path / "ds", "--keep-confidence"
    )
    assert code == 0 and "3 samples, 20 classes" in out_text
    assert "skipped 1 file(s)" in out_text and "a13_s09_e02" in out_text
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.channels == ("x", "y", "z", "confidence")
    assert dataset.splits["train"] == ["a01_s01_e01", "a05_s03_e02"]  # odd subjects


def test_prepare_utd_mhad(tmp_path, capsys):
    pytest.importorskip("scipy.io", reason="UTD-MHAD needs scipy (shapmix[formats])")
    source = shared_data("utd_mhad")
    folder = _link_files(
        tmp_path / "utd", [source / f"{name}_skeleton.mat" for name in UTD_SUBSET]
    )
    code, out_text, _ = prepare(capsys, "utd-mhad", "--input", folder, "--out", tmp_path / "ds")
    assert code == 0 and "4 samples, 27 classes" in out_text
    dataset = load_dataset(tmp_path / "ds")
    assert sorted(dataset.splits["test"]) == ["a1_s2_t1", "a27_s8_t3"]


def _write_kinetics(root: Path) -> None:
    """A two-video Kinetics-skeleton tree (one train, one val)."""
    rng = np.random.default_rng(4)
    for phase, video, label in (("train", "vid_a", 0), ("val", "vid_b", 1)):
        (root / f"kinetics_{phase}").mkdir(parents=True)
        data = [
            {"frame_index": t, "skeleton": [{
                "pose": rng.uniform(0, 1, 36).round(3).tolist(),
                "score": rng.uniform(0.1, 1, 18).round(3).tolist(),
            }]}
            for t in range(4)
        ]
        name = f"class {label}"
        (root / f"kinetics_{phase}" / f"{video}.json").write_text(
            json.dumps({"data": data, "label": name, "label_index": label})
        )
        (root / f"kinetics_{phase}_label.json").write_text(json.dumps(
            {video: {"has_skeleton": True, "label": name, "label_index": label}}
        ))


def test_prepare_kinetics_skeleton(tmp_path, capsys):
    _write_kinetics(tmp_path / "kinetics")
    code, out_text, _ = prepare(
        capsys, "kinetics-skeleton", "--input", tmp_path / "kinetics", "--out", tmp_path / "ds",
        "--max-frames", 8, "--num-person-out", 1,
    )
    assert code == 0 and "2 samples, 2 classes" in out_text
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.shape == (2, 3, 8, 18, 1) and dataset.channels == ("x", "y", "score")
    assert dataset.splits == {"train": ["vid_a"], "test": ["vid_b"]}


def test_prepare_arrays_bring_your_own_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 12, 17, 2)).astype(np.float32)  # N T V C
    np.save(tmp_path / "x.npy", data)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1, 0]))
    names = [f"clip{i}" for i in range(5)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.txt").write_text("clip0\nclip1\nclip2\n")
    (splits / "test.txt").write_text("clip3\nclip4\n")
    (tmp_path / "classes.txt").write_text("wave\nclap\njump\n")
    code, out_text, _ = prepare(
        capsys, "arrays", "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
        "--names", tmp_path / "names.txt", "--layout", "coco17", "--axes", "NTVC",
        "--splits-dir", splits, "--class-names", tmp_path / "classes.txt",
        "--out", tmp_path / "ds",
    )
    assert code == 0 and "5 samples, 3 classes" in out_text
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.names == names and dataset.class_names == ["wave", "clap", "jump"]
    assert dataset.splits == {"test": ["clip3", "clip4"], "train": ["clip0", "clip1", "clip2"]}
    np.testing.assert_array_equal(dataset.data[..., 0], data.transpose(0, 3, 1, 2))


def test_prepare_arrays_bad_axes_is_a_clean_error(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4, 17)))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    code, _, err = prepare(
        capsys, "arrays", "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
        "--layout", "coco17", "--axes", "NTXV", "--out", tmp_path / "ds",
    )
    assert code == ERROR_EXIT and "axes" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# Long-tailed splits


NUM_CLASSES = 6
PER_CLASS = 30


@pytest.fixture
def balanced(tmp_path) -> Path:
    """A small balanced dataset: PER_CLASS train and 2 test samples per class."""
    labels = np.repeat(np.arange(NUM_CLASSES), PER_CLASS + 2)
    names = [f"s{i:04d}" for i in range(len(labels))]
    is_test = np.tile(np.arange(PER_CLASS + 2) >= PER_CLASS, NUM_CLASSES)
    data = np.ones((len(labels), 3, 4, 25, 1), dtype=np.float32)
    root = tmp_path / "balanced"
    write_dataset(
        root, data, labels, np.full(len(labels), 4), names, "ntu25",
        [f"c{k}" for k in range(NUM_CLASSES)],
        splits={
            "train": [n for n, t in zip(names, is_test) if not t],
            "test": [n for n, t in zip(names, is_test) if t],
        },
    )
    return root


@pytest.mark.parametrize("profile", ["exponential", "pareto", "step"])
def test_prepare_longtail_counts_follow_the_profile(balanced, profile, capsys):
    argv = ("longtail", "--dataset", balanced, "--split", "train", "--profile", profile,
            "--imbalance-factor", 10, "--n-max", 20, "--seed", 3, "--name", "lt",
            "--step-fraction", 0.5)
    code, out_text, _ = prepare(capsys, *argv)
    assert code == 0
    dataset = load_dataset(balanced)
    expected = longtail_counts(NUM_CLASSES, 20, 10, profile, 0.5)
    np.testing.assert_array_equal(dataset.class_counts("lt"), expected)
    assert set(dataset.splits["lt"]) <= set(dataset.splits["train"])
    assert "groups: Many" in out_text and "Few" in out_text
    for cls, count in enumerate(expected.tolist()):
        assert f"c{cls}" in out_text and str(count) in out_text
    # the same arguments give the same split; an existing split is not replaced silently
    first = dataset.splits["lt"]
    assert prepare(capsys, *argv)[0] == ERROR_EXIT
    assert prepare(capsys, *argv, "--overwrite")[0] == 0
    assert load_dataset(balanced).splits["lt"] == first


def test_prepare_longtail_class_order_file(balanced, tmp_path, capsys):
    order = tmp_path / "order.txt"
    order.write_text("\n".join(f"c{k}" for k in reversed(range(NUM_CLASSES))) + "\n")
    code, _, _ = prepare(
        capsys, "longtail", "--dataset", balanced, "--imbalance-factor", 10, "--n-max", 20,
        "--name", "lt_reversed", "--class-order", order,
    )
    assert code == 0
    expected = longtail_counts(NUM_CLASSES, 20, 10)[::-1]
    np.testing.assert_array_equal(load_dataset(balanced).class_counts("lt_reversed"), expected)


def test_prepare_longtail_too_few_samples_is_an_error(balanced, capsys):
    code, _, err = prepare(
        capsys, "longtail", "--dataset", balanced, "--n-max", PER_CLASS + 1, "--name", "lt"
    )
    assert code == ERROR_EXIT and "too few samples" in err


def test_prepare_longtail_from_list(balanced, tmp_path, capsys):
    dataset = load_dataset(balanced)
    listed = dataset.splits["train"][::3]
    published = tmp_path / "published_lt.txt"
    published.write_text("\n".join(listed) + "\n")
    code, out_text, _ = prepare(
        capsys, "longtail", "--dataset", balanced, "--from-list", published
    )
    assert code == 0 and "published_lt" in out_text
    assert load_dataset(balanced).splits["published_lt"] == listed


@pytest.mark.parametrize(
    ("bad_name", "reason"), [("nobody", "is not in the dataset"), ("s0031", "is not in split")]
)
def test_prepare_longtail_from_list_rejects_a_bad_name(balanced, tmp_path, capsys, bad_name,
                                                       reason):
    """An unknown name (or a test sample) is reported with the list file and its line."""
    published = tmp_path / "published.txt"
    published.write_text(f"s0000\ns0001\n{bad_name}\ns0002\n")
    code, _, err = prepare(capsys, "longtail", "--dataset", balanced, "--from-list", published)
    assert code == ERROR_EXIT
    assert f"{published}:3" in err and bad_name in err and reason in err
    assert "published" not in load_dataset(balanced).splits
