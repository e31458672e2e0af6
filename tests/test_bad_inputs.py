"""Broken inputs for every source reader: each fails with the project's error, naming the file and
the line (text) or json path, and a directory conversion goes on past a broken file, listing it."""

from __future__ import annotations

import json
import os
import pickle
import re
import sys

import numpy as np
import pytest

from shapmix.data.format import DatasetFormatError
from shapmix.data.sources.arrays import ArrayInputError, convert_arrays, parse_axes
from shapmix.data.sources.common import SourceFormatError
from shapmix.data.sources.kinetics import convert_kinetics_skeleton, read_kinetics_file
from shapmix.data.sources.msr import convert_msr_action3d, read_msr_file
from shapmix.data.sources.npz import read_ctrgcn_npz
from shapmix.data.sources.nw_ucla import convert_nw_ucla, read_nw_ucla_file
from shapmix.data.sources.pyskl import UnsafePickleError, convert_pyskl, read_pyskl, write_pyskl

BINARY_GARBAGE = bytes(range(256)) * 4


def _located(error: SourceFormatError, path, line=None, where=None) -> None:
    """The error is the project's, and its message starts with the file and the place."""
    assert isinstance(error, DatasetFormatError)
    assert error.path == path
    message = str(error)
    assert message.startswith(str(path)), message
    if line is not None:
        assert error.line == line and message.startswith(f"{path}:{line}: "), message
    if where is not None:
        assert error.where == where and f" at {where}: " in message, message


# --------------------------------------------------------------------------------------------
# MSR Action3D text


def _msr_text(frames: int = 2, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    rows = rng.uniform(-1, 3, size=(frames * 20, 4))
    return "".join(f"{x:.6f} {y:.6f} {z:.6f} {c:.6f}\n" for x, y, z, c in rows)


def _replace_line(text: str, number: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[number - 1] = new + "\n"
    return "".join(lines)


MSR_GOOD = _msr_text()
MSR_CASES = {
    # name: (content, expected line or None, words in the message)
    "empty": (b"", None, "empty file"),
    "blank": (b"\n\n  \n", None, "empty file"),
    "truncated_mid_frame": (
        "".join(MSR_GOOD.splitlines(keepends=True)[:27]).encode(),
        27,
        "mid-frame",
    ),
    "truncated_mid_line": (
        (
            "".join(MSR_GOOD.splitlines(keepends=True)[:26])
            + " ".join(MSR_GOOD.splitlines()[26].split()[:2])
        ).encode(),
        27,
        "expected 4 numbers, found 2",
    ),
    "non_numeric": (
        _replace_line(MSR_GOOD, 7, "0.1 abc 0.3 1.0").encode(),
        7,
        "'abc' is not a number",
    ),
    "too_few_columns": (
        _replace_line(MSR_GOOD, 3, "0.1 0.2 0.3").encode(),
        3,
        "expected 4 numbers, found 3",
    ),
    "too_many_columns": (_replace_line(MSR_GOOD, 12, "1 2 3 4 5").encode(), 12, "found 5"),
    "blank_line_inside": (_replace_line(MSR_GOOD, 10, "").encode(), 10, "found 0"),
    "wrong_joint_count": (
        "".join(MSR_GOOD.splitlines(keepends=True)[:39]).encode(),
        39,
        "multiple of 20",
    ),
    "nan": (_replace_line(MSR_GOOD, 5, "nan 0.2 0.3 1.0").encode(), 5, "NaN or Inf"),
    "inf": (_replace_line(MSR_GOOD, 33, "0.1 inf 0.3 1.0").encode(), 33, "NaN or Inf"),
    "binary_garbage": (BINARY_GARBAGE, 1, "not a text file"),
    "all_zero": (
        ("0.000000 0.000000 0.000000 0.000000\n" * 40).encode(),
        None,
        "all-zero skeleton",
    ),
}


@pytest.mark.parametrize("case", sorted(MSR_CASES))
def test_msr_broken_files_are_located(tmp_path, case):
    content, line, words = MSR_CASES[case]
    path = tmp_path / "a01_s01_e01_skeleton3D.txt"
    path.write_bytes(content)
    with pytest.raises(SourceFormatError) as info:
        read_msr_file(path)
    _located(info.value, path, line=line)
    assert words in str(info.value)


def test_msr_crlf_and_trailing_blank_lines_are_fine(tmp_path):
    path = tmp_path / "a01_s01_e01_skeleton3D.txt"
    path.write_bytes((MSR_GOOD.replace("\n", "\r\n") + "\r\n\r\n").encode())
    assert read_msr_file(path).shape == (2, 20, 3)


def test_msr_directory_conversion_lists_broken_files_and_goes_on(tmp_path):
    src = tmp_path / "msr"
    src.mkdir()
    (src / "a01_s01_e01_skeleton3D.txt").write_text(_msr_text(3, 1))
    (src / "a02_s02_e01_skeleton3D.txt").write_text(_msr_text(5, 2))
    broken = src / "a03_s03_e01_skeleton3D.txt"
    broken.write_text(_replace_line(_msr_text(2, 3), 4, "1 2 x 4"))
    badly_named = src / "a99_s01_e01_skeleton3D.txt"
    badly_named.write_text(_msr_text(2, 4))
    ds = convert_msr_action3d(src, tmp_path / "out")
    assert ds.names == ["a01_s01_e01", "a02_s02_e01"]
    assert ds.lengths.tolist() == [3, 5]
    skipped = {item["file"]: item["reason"] for item in ds.metadata["skipped"]}
    assert skipped == {
        str(broken): "'x' is not a number",
        str(badly_named): "action 99 outside 1..20",
    }
    assert ds.splits == {"train": ["a01_s01_e01"], "test": ["a02_s02_e01"]}


# --------------------------------------------------------------------------------------------
# NW-UCLA json


def _ucla(frames: int = 3, label: int = 1, name: str = "a01_s01_e01_v01") -> dict:
    rng = np.random.default_rng(frames)
    return {
        "file_name": name,
        "skeletons": rng.normal(size=(frames, 20, 3)).round(4).tolist(),
        "label": label,
    }


def _with(mutate) -> bytes:
    content = _ucla()
    mutate(content)
    return json.dumps(content).encode()


UCLA_GOOD = json.dumps(_ucla()).encode()
UCLA_CASES = {
    # name: (content, line, json path, words)
    "empty": (b"", None, None, "empty file"),
    "truncated": (UCLA_GOOD[: len(UCLA_GOOD) // 2], 1, None, "invalid json"),
    "binary_garbage": (BINARY_GARBAGE, 1, None, "not a text file"),
    "not_an_object": (b"[1, 2, 3]", None, "$", "expected a json object"),
    "missing_skeletons": (
        _with(lambda c: c.pop("skeletons")),
        None,
        "$",
        "missing key 'skeletons'",
    ),
    "skeletons_not_a_list": (
        _with(lambda c: c.update(skeletons=5)),
        None,
        "skeletons",
        "non-empty list",
    ),
    "no_frames": (_with(lambda c: c.update(skeletons=[])), None, "skeletons", "non-empty list"),
    "non_numeric": (
        _with(lambda c: c["skeletons"][0][3].__setitem__(1, "abc")),
        None,
        "skeletons[0][3][1]",
        "expected a finite number, found 'abc'",
    ),
    "wrong_joint_count": (
        _with(lambda c: c["skeletons"][1].pop()),
        None,
        "skeletons[1]",
        "expected a list of 20 joints, found 19 joints",
    ),
    "wrong_coordinate_count": (
        _with(lambda c: c["skeletons"][2][5].append(1.0)),
        None,
        "skeletons[2][5]",
        "expected [x, y, z], found 4 values",
    ),
    # json.dumps writes the NaN token, which Python's json reads back as a float
    "nan": (
        _with(lambda c: c["skeletons"][2][4].__setitem__(0, float("nan"))),
        None,
        "skeletons[2]",
        "NaN or Inf",
    ),
    "label_disagrees": (
        _with(lambda c: c.update(label=4)),
        None,
        "label",
        "disagrees with action a01",
    ),
    "label_not_int": (_with(lambda c: c.update(label="1")), None, "label", "disagrees"),
    "bad_name": (_with(lambda c: c.update(file_name="walking_01")), None, None, "does not match"),
    "unknown_action": (
        _with(lambda c: c.update(file_name="a07_s01_e01_v01")),
        None,
        "file_name",
        "action 7 is not one of",
    ),
}


@pytest.mark.parametrize("case", sorted(UCLA_CASES))
def test_nw_ucla_broken_files_are_located(tmp_path, case):
    content, line, where, words = UCLA_CASES[case]
    path = tmp_path / "a01_s01_e01_v01.json"
    path.write_bytes(content)
    with pytest.raises(SourceFormatError) as info:
        read_nw_ucla_file(path)
    _located(info.value, path, line=line, where=where)
    assert words in str(info.value)


def test_nw_ucla_directory_conversion_goes_on(tmp_path):
    src = tmp_path / "ucla"
    src.mkdir()
    (src / "a01_s01_e01_v01.json").write_text(json.dumps(_ucla(4, 1, "a01_s01_e01_v01")))
    (src / "a12_s02_e01_v03.json").write_text(json.dumps(_ucla(2, 10, "a12_s02_e01_v03")))
    (src / "a02_s01_e01_v02.json").write_bytes(UCLA_GOOD[:40])
    ds = convert_nw_ucla(src, tmp_path / "out")
    assert ds.names == ["a01_s01_e01_v01", "a12_s02_e01_v03"] and ds.labels.tolist() == [0, 9]
    assert [s["file"] for s in ds.metadata["skipped"]] == [str(src / "a02_s01_e01_v02.json")]
    assert "invalid json" in ds.metadata["skipped"][0]["reason"]


# --------------------------------------------------------------------------------------------
# Kinetics-skeleton json


def _kinetics(frames: int = 3) -> dict:
    rng = np.random.default_rng(frames)
    return {
        "data": [
            {
                "frame_index": t,
                "skeleton": [
                    {
                        "pose": rng.uniform(0, 1, 36).round(3).tolist(),
                        "score": rng.uniform(0.1, 1, 18).round(3).tolist(),
                    }
                ],
            }
            for t in range(frames)
        ],
        "label": "abseiling",
        "label_index": 0,
    }


def _kin_with(mutate) -> bytes:
    content = _kinetics()
    mutate(content)
    return json.dumps(content).encode()


KIN_GOOD = json.dumps(_kinetics()).encode()


def _kin_nan(content):
    content["data"][1]["skeleton"][0]["pose"][7] = float("inf")


KINETICS_CASES = {
    "empty": (b"", None, None, "empty file"),
    "truncated": (KIN_GOOD[:-30], 1, None, "invalid json"),
    "binary_garbage": (BINARY_GARBAGE, 1, None, "not a text file"),
    "not_an_object": (b'"video"', None, "$", "expected a json object"),
    "data_missing": (_kin_with(lambda c: c.pop("data")), None, "data", "expected a list of frames"),
    "frame_without_index": (
        _kin_with(lambda c: c["data"][1].pop("frame_index")),
        None,
        "data[1]",
        "expected {frame_index, skeleton}",
    ),
    "non_numeric": (
        _kin_with(lambda c: c["data"][2]["skeleton"][0]["pose"].__setitem__(5, "x")),
        None,
        "data[2].skeleton[0].pose[5]",
        "found 'x'",
    ),
    "wrong_joint_count": (
        _kin_with(lambda c: c["data"][0]["skeleton"][0]["pose"].pop()),
        None,
        "data[0].skeleton[0].pose",
        "expected a list of 36 numbers, found 35",
    ),
    "wrong_score_count": (
        _kin_with(lambda c: c["data"][1]["skeleton"][0]["score"].append(1)),
        None,
        "data[1].skeleton[0].score",
        "expected a list of 18 numbers, found 19",
    ),
    "inf": (_kin_with(_kin_nan), None, "data[1].skeleton[0].pose[7]", "finite number"),
    "repeated_frame_index": (
        _kin_with(lambda c: c["data"][2].update(frame_index=0)),
        None,
        "data[2].frame_index",
        "frame_index 0 repeats data[0]",
    ),
    "negative_frame_index": (
        _kin_with(lambda c: c["data"][1].update(frame_index=-1)),
        None,
        "data[1].frame_index",
        "expected an integer >= 0",
    ),
    "skeleton_not_a_list": (
        _kin_with(lambda c: c["data"][0].update(skeleton={})),
        None,
        "data[0].skeleton",
        "expected a list of skeletons",
    ),
    "bad_label_index": (
        _kin_with(lambda c: c.update(label_index="3")),
        None,
        "label_index",
        "non-negative integer",
    ),
    "no_skeleton_at_all": (
        _kin_with(lambda c: [f.update(skeleton=[]) for f in c["data"]]),
        None,
        "data",
        "no skeleton",
    ),
}


@pytest.mark.parametrize("case", sorted(KINETICS_CASES))
def test_kinetics_broken_files_are_located(tmp_path, case):
    content, line, where, words = KINETICS_CASES[case]
    path = tmp_path / "video.json"
    path.write_bytes(content)
    with pytest.raises(SourceFormatError) as info:
        read_kinetics_file(path)
    _located(info.value, path, line=line, where=where)
    assert words in str(info.value)


def test_kinetics_directory_conversion_goes_on(tmp_path):
    root = tmp_path / "kinetics"
    for phase in ("train", "val"):
        (root / f"kinetics_{phase}").mkdir(parents=True)
    labels = {
        "good": {"has_skeleton": True, "label": "abseiling", "label_index": 0},
        "broken": {"has_skeleton": True, "label": "abseiling", "label_index": 0},
        "mislabelled": {"has_skeleton": True, "label": "air drumming", "label_index": 1},
    }
    (root / "kinetics_train_label.json").write_text(json.dumps(labels))
    (root / "kinetics_val_label.json").write_text(json.dumps({"v": labels["good"]}))
    (root / "kinetics_train" / "good.json").write_bytes(KIN_GOOD)
    (root / "kinetics_train" / "broken.json").write_bytes(KINETICS_CASES["wrong_joint_count"][0])
    (root / "kinetics_train" / "mislabelled.json").write_bytes(KIN_GOOD)
    (root / "kinetics_train" / "unlisted.json").write_bytes(KIN_GOOD)
    (root / "kinetics_val" / "v.json").write_bytes(KIN_GOOD)
    ds = convert_kinetics_skeleton(root, tmp_path / "out")
    assert ds.names == ["good", "v"] and ds.splits == {"train": ["good"], "test": ["v"]}
    reasons = {os.path.basename(s["file"]): s["reason"] for s in ds.metadata["skipped"]}
    assert set(reasons) == {"broken.json", "mislabelled.json", "unlisted.json"}
    assert "expected a list of 36 numbers" in reasons["broken.json"]
    assert "disagrees" in reasons["mislabelled.json"]
    assert "not in kinetics_train_label.json" in reasons["unlisted.json"]


def test_kinetics_label_file_errors_name_the_entry(tmp_path):
    root = tmp_path / "k"
    for phase in ("train", "val"):
        (root / f"kinetics_{phase}").mkdir(parents=True)
        (root / f"kinetics_{phase}_label.json").write_text(
            json.dumps({"vid": {"has_skeleton": "yes", "label": "a", "label_index": 0}})
        )
    with pytest.raises(SourceFormatError) as info:
        convert_kinetics_skeleton(root, tmp_path / "out")
    _located(info.value, root / "kinetics_train_label.json", where="['vid'].has_skeleton")


# --------------------------------------------------------------------------------------------
# pickles, npz, arrays


class _Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_with_os_system_is_refused_without_running(tmp_path, capfd):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(
        pickle.dumps(
            {"split": {}, "annotations": [_Exploit("echo pwned"), _Exploit(f"touch {marker}")]}
        )
    )
    with pytest.raises(UnsafePickleError) as info:
        read_pyskl(path)
    assert str(path) in str(info.value) and "system" in str(info.value)
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out
    with pytest.raises(UnsafePickleError):
        convert_pyskl(path, tmp_path / "out")


def test_pickle_other_globals_and_garbage_are_refused(tmp_path):
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps({"split": {}, "annotations": [], "x": np.random.default_rng}))
    with pytest.raises(UnsafePickleError, match=r"numpy\.random"):
        read_pyskl(path)
    path.write_bytes(BINARY_GARBAGE)
    with pytest.raises(SourceFormatError, match="not a readable pickle"):
        read_pyskl(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(SourceFormatError, match="expected a dict"):
        read_pyskl(path)


def test_pyskl_conversion_skips_inconsistent_annotations(tmp_path):
    keypoint = np.ones((1, 5, 25, 3), dtype=np.float16)
    good = {"frame_dir": "ok", "label": 0, "keypoint": keypoint, "total_frames": 5}
    path = tmp_path / "a.pkl"
    path.write_bytes(
        pickle.dumps(
            {
                "split": {"train": ["ok", "bad"]},
                "annotations": [
                    good,
                    {"frame_dir": "bad", "label": 1, "keypoint": keypoint, "total_frames": 7},
                    {"frame_dir": "nokp", "label": 1},
                ],
            }
        )
    )
    ds = convert_pyskl(path, tmp_path / "out")
    assert ds.names == ["ok"] and ds.splits["train"] == ["ok"]
    reasons = [s["reason"] for s in ds.metadata["skipped"]]
    assert reasons[0] == "total_frames=7 but keypoint has T=5"
    assert ds.metadata["skipped"][0]["file"] == f"{path} at annotations[1]"
    assert "keypoint must be" in reasons[1]
    with pytest.raises(ValueError, match="total_frames"):
        write_pyskl([{**good, "total_frames": 4}], {}, tmp_path / "w.pkl")
    with pytest.raises(ValueError, match="unknown samples"):
        write_pyskl([good], {"train": ["missing"]}, tmp_path / "w.pkl")


def test_ctrgcn_npz_errors(tmp_path):
    path = tmp_path / "x.npz"
    x = np.zeros((2, 4, 150), dtype=np.float32)
    np.savez(path, x_train=x, y_train=np.array([[1, 0], [1, 1]]), x_test=x, y_test=np.eye(2))
    with pytest.raises(SourceFormatError, match="row 1 is not one-hot") as info:
        read_ctrgcn_npz(path)
    _located(info.value, path, where="y_train")
    bad = x.copy()
    bad[1, 2, 7] = np.nan
    np.savez(path, x_train=bad, y_train=np.eye(2), x_test=x, y_test=np.eye(2))
    with pytest.raises(SourceFormatError, match="sample 1 holds NaN"):
        read_ctrgcn_npz(path)
    np.savez(path, x_train=x[:, :, :149], y_train=np.eye(2), x_test=x, y_test=np.eye(2))
    with pytest.raises(SourceFormatError, match=r"M\*25\*3"):
        read_ctrgcn_npz(path)
    np.savez(path, x_train=x, y_train=np.eye(2))
    with pytest.raises(SourceFormatError, match="missing array 'x_test'"):
        read_ctrgcn_npz(path)
    path.write_bytes(BINARY_GARBAGE)
    with pytest.raises(SourceFormatError, match="not a readable .npz"):
        read_ctrgcn_npz(path)


def test_array_inputs_are_validated(tmp_path):
    data = np.random.default_rng(0).normal(size=(3, 8, 20, 3)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, data=data, labels=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="repeats"):
        parse_axes("NTTV")
    with pytest.raises(ValueError, match="missing V"):
        parse_axes("NCT")
    with pytest.raises(ArrayInputError, match="name 5 axes but data is 4-d"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NCTVM")
    with pytest.raises(ArrayInputError, match="V=8 joints"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NVTC")
    with pytest.raises(ArrayInputError, match="2 class names but labels reach 2"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NTVC", class_names=["a", "b"])
    np.savez(path, data=data, labels=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ArrayInputError, match="labels must be"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NTVC")
    nan = data.copy()
    nan[2, 0, 0, 0] = np.inf
    np.savez(path, data=nan, labels=np.arange(3))
    with pytest.raises(ArrayInputError, match="sample 2 holds NaN or Inf"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NTVC")
    np.savez(path, data=data, labels=np.arange(3), names=np.array(["a", "b", "a"]))
    with pytest.raises(ArrayInputError, match="not unique"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NTVC")
    np.savez(path, data=data, labels=np.arange(3), split_train=np.array(["nope"]))
    with pytest.raises(ArrayInputError, match="unknown sample names") as info:
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NTVC")
    _located(info.value, path, where="split_train")
    np.savez(path, data=data, labels=np.arange(3), lengths=np.array([8, 9, 1]))
    with pytest.raises(ArrayInputError, match=r"lengths must lie in 1\.\.8"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NTVC")
    zero = data.copy()
    zero[1] = 0
    np.savez(path, data=zero, labels=np.arange(3))
    with pytest.raises(ArrayInputError, match="sample 1 .* is all zeros"):
        convert_arrays(path, tmp_path / "o", "kinect_v1", axes="NTVC")


# --------------------------------------------------------------------------------------------
# UTD-MHAD .mat


def test_utd_broken_mat_files(tmp_path):
    scipy_io = pytest.importorskip("scipy.io", reason="UTD-MHAD needs scipy (shapmix[formats])")
    from shapmix.data.sources.utd import convert_utd_mhad, read_utd_file

    src = tmp_path / "utd"
    src.mkdir()
    good = np.random.default_rng(0).normal(size=(20, 3, 6))
    scipy_io.savemat(src / "a1_s1_t1_skeleton.mat", {"d_skel": good})
    cases = {
        "a2_s1_t1": (BINARY_GARBAGE, "not a readable MATLAB file", None),
        "a3_s1_t1": ({"skeleton": good}, "no variable 'd_skel'", None),
        "a4_s1_t1": ({"d_skel": good[:19]}, "d_skel must be (20, 3, T), got (19, 3, 6)", "d_skel"),
        "a5_s1_t1": (
            {"d_skel": np.where(np.arange(6) == 4, np.nan, good)},
            "NaN or Inf",
            "d_skel[:, :, 4] (frame 5)",
        ),
        "a6_s1_t1": ({"d_skel": np.zeros((20, 3, 6))}, "all-zero skeleton", None),
    }
    for name, (content, words, where) in cases.items():
        path = src / f"{name}_skeleton.mat"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            scipy_io.savemat(path, content)
        with pytest.raises(SourceFormatError, match=re.escape(words)) as info:
            read_utd_file(path)
        _located(info.value, path, where=where)
    ds = convert_utd_mhad(src, tmp_path / "out")
    assert ds.names == ["a1_s1_t1"] and ds.lengths.tolist() == [6]
    assert len(ds.metadata["skipped"]) == len(cases)


def test_utd_without_scipy_says_what_to_install(tmp_path, monkeypatch):
    from shapmix.data.sources.utd import read_utd_file

    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `from scipy.io import ...` fail
    with pytest.raises(ImportError, match=re.escape("pip install 'shapmix[formats]'")):
        read_utd_file(tmp_path / "a1_s1_t1_skeleton.mat")
