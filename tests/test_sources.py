"""Every source reader on real files (../shared/data, skipped when absent) and on generated ones."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from shapmix.data.format import load_dataset
from shapmix.data.sources.arrays import convert_arrays
from shapmix.data.sources.common import SourceFormatError
from shapmix.data.sources.kinetics import convert_kinetics_skeleton, read_kinetics_file
from shapmix.data.sources.msr import MSR_CLASS_NAMES, convert_msr_action3d, read_msr_file
from shapmix.data.sources.npz import convert_ctrgcn_npz, read_ctrgcn_npz, write_ctrgcn_npz
from shapmix.data.sources.nw_ucla import UCLA_ACTION_IDS, convert_nw_ucla, read_nw_ucla_file
from shapmix.data.sources.pyskl import (
    annotations_from_arrays,
    annotations_from_dataset,
    convert_pyskl,
    decompress_pose,
    read_pyskl,
    write_pyskl,
)

from helpers import assert_same_content, shared_data


# --------------------------------------------------------------------------------------------
# MSR Action3D (567 text files)


def test_msr_action3d_real_directory(tmp_path):
    src = shared_data("msr_action3d")
    files = sorted(src.glob("*_skeleton3D.txt"))
    assert len(files) == 567
    ds = convert_msr_action3d(src, tmp_path / "msr")
    assert len(ds) == 566 and ds.num_classes == 20 and ds.class_names == list(MSR_CLASS_NAMES)
    assert ds.layout.name == "msr_action3d" and ds.channels == ("x", "y", "z")
    assert ds.metadata["skipped"] == [
        {"file": str(src / "a13_s09_e02_skeleton3D.txt"), "reason": "all-zero skeleton"}
    ]
    usable = [f.name[:11] for f in files if not f.name.startswith("a13_s09_e02")]
    assert ds.names == usable
    odd = [n for n in usable if int(n[5:7]) % 2 == 1]
    assert ds.splits["train"] == odd
    assert ds.splits["test"] == [n for n in usable if n not in set(odd)]
    assert (len(ds.splits["train"]), len(ds.splits["test"])) == (291, 275)
    assert ds.labels.tolist() == [int(n[1:3]) - 1 for n in usable]
    assert ds.class_counts().min() >= 20 and ds.class_counts().sum() == 566
    # frames = lines / 20, and values equal a plain line-by-line parse
    first = files[0]
    table = np.array([[float(v) for v in line.split()] for line in first.read_text().splitlines()])
    frames = len(table) // 20
    assert ds.lengths[0] == frames and ds.lengths.max() == 936 and ds.lengths.min() == 13
    np.testing.assert_allclose(
        ds.data[0, :, :frames, :, 0],
        table.reshape(frames, 20, 4)[..., :3].transpose(2, 0, 1).astype(np.float32),
    )
    assert not ds.data[0, :, frames:].any()
    with_confidence = read_msr_file(first, keep_confidence=True)
    np.testing.assert_allclose(
        with_confidence[..., 3], table[:, 3].reshape(frames, 20).astype(np.float32)
    )


# --------------------------------------------------------------------------------------------
# UTD-MHAD (861 .mat files)


def test_utd_mhad_real_directory(tmp_path):
    scipy_io = pytest.importorskip("scipy.io", reason="UTD-MHAD needs scipy (shapmix[formats])")
    from shapmix.data.sources.utd import UTD_CLASS_NAMES, convert_utd_mhad

    src = shared_data("utd_mhad")
    files = sorted(src.glob("*_skeleton.mat"))
    assert len(files) == 861
    ds = convert_utd_mhad(src, tmp_path / "utd")
    assert len(ds) == 861 and ds.num_classes == 27 and ds.class_names == list(UTD_CLASS_NAMES)
    assert ds.metadata["skipped"] == [] and ds.layout.name == "utd_mhad"
    fields = {
        n: tuple(int(x) for x in re.fullmatch(r"a(\d+)_s(\d+)_t(\d+)", n).groups())
        for n in ds.names
    }
    assert sorted(ds.names) == sorted(f.name[: -len("_skeleton.mat")] for f in files)
    assert ds.labels.tolist() == [fields[n][0] - 1 for n in ds.names]
    assert set(ds.splits["train"]) == {n for n in ds.names if fields[n][1] % 2 == 1}
    assert set(ds.splits["test"]) == {n for n in ds.names if fields[n][1] % 2 == 0}
    assert len(ds.splits["train"]) + len(ds.splits["test"]) == 861
    assert ds.class_counts().tolist().count(32) == 24  # 3 classes miss one recording
    i = ds.names.index("a10_s1_t1")
    skel = scipy_io.loadmat(src / "a10_s1_t1_skeleton.mat")["d_skel"]
    assert ds.lengths[i] == skel.shape[2]
    np.testing.assert_allclose(
        ds.data[i, :, : skel.shape[2], :, 0], skel.transpose(1, 2, 0).astype(np.float32)
    )


# --------------------------------------------------------------------------------------------
# NW-UCLA (6 json samples)


def test_nw_ucla_real_samples(tmp_path):
    src = shared_data("nw_ucla", "samples")
    ds = convert_nw_ucla(src, tmp_path / "ucla")
    assert len(ds) == 6 and ds.num_classes == 10 and ds.layout.name == "kinect_v1"
    for name, label in zip(ds.names, ds.labels):
        action = int(name[1:3])
        assert label == UCLA_ACTION_IDS.index(action)
        assert json.loads((src / f"{name}.json").read_text())["label"] == label + 1  # 1-based
    i = ds.names.index("a02_s09_e04_v03")
    assert ds.lengths[i] == 1
    assert ds.splits["test"] == [n for n in ds.names if n.endswith("_v03")]
    assert ds.splits["train"] == [n for n in ds.names if not n.endswith("_v03")]
    name, skeleton, label = read_nw_ucla_file(src / "a08_s02_e01_v03.json")
    raw = np.array(
        json.loads((src / "a08_s02_e01_v03.json").read_text())["skeletons"], dtype=np.float32
    )
    np.testing.assert_array_equal(skeleton, raw)
    # kinect_v1 order: hip centre < spine < shoulder centre < head, upwards
    assert np.all(np.diff(skeleton[:, :4, 1].mean(axis=0)) > 0)


# --------------------------------------------------------------------------------------------
# pyskl


def test_pyskl_reference_pickle_loads_exactly_and_round_trips(tmp_path):
    path = shared_data("ntu", "reference", "pyskl", "ntu60_3danno.pkl")
    content = read_pyskl(path)
    with open(path, "rb") as handle:  # the reference file is trusted: compare with plain pickle
        assert_same_content(content, pickle.load(handle))
    annotations = content["annotations"]
    assert len(annotations) == 15
    assert set(content["split"]) == {"xsub_train", "xsub_val", "xview_train", "xview_val"}
    assert sum(len(v) for k, v in content["split"].items() if k.startswith("xsub")) == 15
    for annotation in annotations:
        assert list(annotation) == ["frame_dir", "label", "keypoint", "total_frames"]
        keypoint = annotation["keypoint"]
        assert keypoint.dtype == np.float16 and keypoint.ndim == 4
        assert keypoint.shape[0] in (1, 2) and keypoint.shape[2:] == (25, 3)
        assert keypoint.shape[1] == annotation["total_frames"]
        assert annotation["label"] == int(annotation["frame_dir"][-3:]) - 1
    labels = [a["label"] for a in annotations]
    assert 0 <= min(labels) and max(labels) <= 59

    out = write_pyskl(annotations, content["split"], tmp_path / "copy.pkl")
    assert_same_content(read_pyskl(out), content)

    ds = convert_pyskl(path, tmp_path / "ntu")
    assert ds.shape == (15, 3, 103, 25, 2) and ds.layout.name == "ntu25"
    assert ds.splits["train"] == content["split"]["xsub_train"]
    assert ds.splits["test"] == content["split"]["xsub_val"]
    assert ds.splits["xview_val"] == content["split"]["xview_val"]
    for i, annotation in enumerate(annotations):
        keypoint = annotation["keypoint"]
        M, T = keypoint.shape[:2]
        assert ds.lengths[i] == T and ds.labels[i] == annotation["label"]
        np.testing.assert_array_equal(
            ds.data[i, :, :T, :, :M], keypoint.astype(np.float32).transpose(3, 1, 2, 0)
        )
        assert not ds.data[i, :, :, :, M:].any()
    # back to pyskl: the same annotations (float16 -> float32 -> float16 is exact)
    back, split = annotations_from_dataset(ds)
    assert_same_content(back, annotations)
    assert split["xsub_train"] == content["split"]["xsub_train"]


def _coco_annotations(rng, count=4):
    annotations = []
    for i in range(count):
        M, T = int(rng.integers(1, 3)), int(rng.integers(3, 9))
        annotations.append(
            {
                "frame_dir": f"video_{i}",
                "label": int(rng.integers(0, 5)),
                "img_shape": (480, 640),
                "original_shape": (480, 640),
                "total_frames": T,
                "keypoint": rng.uniform(1, 600, size=(M, T, 17, 2)).astype(np.float16),
                "keypoint_score": rng.uniform(0.05, 1, size=(M, T, 17)).astype(np.float16),
            }
        )
    return annotations


def test_pyskl_coco_2d_with_scores_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    annotations = _coco_annotations(rng)
    split = {"train": ["video_0", "video_2"], "test": ["video_1", "video_3"]}
    path = write_pyskl(annotations, split, tmp_path / "coco.pkl")
    content = read_pyskl(path)
    assert_same_content(content, {"split": split, "annotations": annotations})

    ds = convert_pyskl(path, tmp_path / "coco", class_names=list("abcde"))
    assert ds.layout.name == "coco17" and ds.channels == ("x", "y", "score")
    assert ds.data.shape[4] == 2 and ds.splits["train"] == split["train"]
    for i, annotation in enumerate(annotations):
        M, T = annotation["keypoint"].shape[:2]
        np.testing.assert_array_equal(
            ds.data[i, :2, :T, :, :M],
            annotation["keypoint"].astype(np.float32).transpose(3, 1, 2, 0),
        )
        np.testing.assert_array_equal(
            ds.data[i, 2, :T, :, :M],
            annotation["keypoint_score"].astype(np.float32).transpose(1, 2, 0),
        )
    back, back_split = annotations_from_dataset(ds, img_shape=(480, 640))
    assert back_split == split
    for original, again in zip(annotations, back):
        assert set(again) == set(original)
        for key in original:
            assert_same_content(again[key], original[key])


def test_pyskl_annotations_from_arrays_drop_absent_persons():
    data = np.zeros((2, 3, 6, 25, 2), dtype=np.float32)
    data[0, :, :4, :, 0] = 1.0
    data[1, :, :6, :, :] = 2.0
    annotations = annotations_from_arrays(data, [3, 4], [4, 6], ["a", "b"])
    assert [a["keypoint"].shape for a in annotations] == [(1, 4, 25, 3), (2, 6, 25, 3)]
    assert all(a["keypoint"].dtype == np.float16 for a in annotations)
    assert [a["total_frames"] for a in annotations] == [4, 6] and annotations[1]["label"] == 4


def test_decompress_pose_matches_pyskl_semantics():
    V = 17
    # frames 0 (two skeletons), 3 (three skeletons), 7 (one); frame gaps are squeezed out
    frame_inds = np.array([0, 0, 3, 3, 3, 7])
    scores = np.array([0.2, 0.9, 0.5, 0.1, 0.8, 0.7])
    keypoint = np.zeros((6, V, 3), dtype=np.float32)
    keypoint[:, :, 0] = np.arange(6)[:, None]  # x = skeleton id
    keypoint[:, :, 2] = scores[:, None]
    kp, score = decompress_pose(frame_inds, keypoint, max_person=10)
    assert kp.shape == (3, 3, V, 2) and kp.dtype == np.float16
    assert kp[:, :, 0, 0].tolist() == [[0, 2, 5], [1, 3, 0], [0, 4, 0]]  # file order kept
    kp, score = decompress_pose(frame_inds, keypoint, max_person=2)
    assert kp.shape == (2, 3, V, 2)
    assert kp[:, :, 0, 0].tolist() == [[1, 4, 5], [0, 2, 0]]  # by descending score
    np.testing.assert_allclose(
        score[:, :, 0].astype(np.float32), [[0.9, 0.8, 0.7], [0.2, 0.5, 0]], atol=1e-3
    )


def test_pyskl_kinetics_compressed_annotations(tmp_path):
    rng = np.random.default_rng(5)
    kpdir = tmp_path / "kpfiles"
    kpdir.mkdir()
    annotations, kpfile = [], {}
    for i, (frames, per_frame) in enumerate([(4, 1), (3, 3)]):
        frame_inds = np.repeat(np.arange(frames) * 2, per_frame)
        n = len(frame_inds)
        kp = rng.uniform(0, 1, size=(n, 17, 3)).astype(np.float16)
        kpfile[f"vid{i}"] = {"keypoint": kp}
        annotations.append(
            {
                "frame_dir": f"vid{i}",
                "label": i,
                "img_shape": (340, 256),
                "original_shape": (340, 256),
                "total_frames": 2 * frames,
                "raw_file": "data/k400/kpfiles/part_0.pkl",
                "frame_inds": frame_inds,
                "box_score": np.linspace(1, 0.5, n).astype(np.float16),
            }
        )
    (kpdir / "part_0.pkl").write_bytes(pickle.dumps(kpfile))
    (tmp_path / "k400_hrnet.pkl").write_bytes(
        pickle.dumps({"split": {"train": ["vid0"], "val": ["vid1"]}, "annotations": annotations})
    )
    ds = convert_pyskl(tmp_path / "k400_hrnet.pkl", tmp_path / "out", kpfile_root=kpdir)
    assert ds.channels == ("x", "y", "score") and ds.shape[4] == 2
    assert ds.lengths.tolist() == [4, 3]  # frames without skeletons squeezed out
    assert ds.splits["train"] == ["vid0"] and ds.splits["test"] == ["vid1"]
    kp0 = kpfile["vid0"]["keypoint"].astype(np.float32)
    np.testing.assert_array_equal(ds.data[0, :, :4, :, 0], kp0.transpose(2, 0, 1))
    assert not ds.data[0, :, :, :, 1].any()
    kp1 = kpfile["vid1"]["keypoint"].astype(np.float32).reshape(3, 3, 17, 3)  # (T, per frame, V, C)
    best = np.argsort(-kp1[..., 2].sum(axis=2), axis=1, kind="stable")[:, :2]
    expected = np.take_along_axis(kp1, best[:, :, None, None], axis=1)  # (T, 2, V, C)
    np.testing.assert_array_equal(ds.data[1, :, :3], expected.transpose(3, 0, 2, 1))
    missing = tmp_path / "elsewhere"
    missing.mkdir()
    with pytest.raises(SourceFormatError, match="no convertible annotation .*kpfile .* not found"):
        convert_pyskl(tmp_path / "k400_hrnet.pkl", tmp_path / "out2", kpfile_root=missing)


# --------------------------------------------------------------------------------------------
# CTR-GCN npz


def _generated_splits(rng, n_train=7, n_test=5, T=12, M=2):
    def make(n, prefix):
        data = rng.normal(size=(n, 3, T, 25, M)).astype(np.float32)
        lengths = rng.integers(1, T + 1, size=n)
        for i in range(n):
            data[i, :, lengths[i] :] = 0
        data[0, ..., 1:] = 0  # a single-person sample
        return data, lengths, rng.integers(0, 6, size=n), [f"{prefix}{i:03d}" for i in range(n)]

    return make(n_train, "tr"), make(n_test, "te")


@pytest.mark.parametrize("one_hot", [True, False])
def test_ctrgcn_npz_round_trip(tmp_path, one_hot):
    rng = np.random.default_rng(11)
    train, test = _generated_splits(rng)
    path = write_ctrgcn_npz(
        tmp_path / "ntu.npz", train[::2] + (train[3],), test[::2] + (test[3],), 6, one_hot=one_hot
    )
    with np.load(path) as archive:
        assert archive["x_train"].shape == (7, 12, 150)
        assert archive["y_train"].shape == ((7, 6) if one_hot else (7,))
    ds = convert_ctrgcn_npz(path, tmp_path / "out")
    assert ds.names == train[3] + test[3] and ds.layout.name == "ntu25"
    assert ds.splits == {"train": train[3], "test": test[3]} and ds.num_classes == 6
    data = np.concatenate([train[0], test[0]])
    np.testing.assert_array_equal(ds.lengths, np.concatenate([train[1], test[1]]))
    np.testing.assert_array_equal(ds.labels, np.concatenate([train[2], test[2]]))
    np.testing.assert_array_equal(np.asarray(ds.data), data)


def test_ctrgcn_npz_without_names_and_with_empty_samples(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5, 150)).astype(np.float32)
    x[1] = 0  # all zero: skipped
    x[2, 3:] = 0
    path = tmp_path / "plain.npz"
    np.savez(path, x_train=x, y_train=np.eye(4)[[0, 1, 3]], x_test=x[:1], y_test=np.eye(4)[[2]])
    parts = read_ctrgcn_npz(path)
    np.testing.assert_array_equal(
        parts["train"].data[2, :, :, :, 1], x[2].reshape(5, 2, 25, 3)[:, 1].transpose(2, 0, 1)
    )
    ds = convert_ctrgcn_npz(path, tmp_path / "out")
    assert ds.names == ["train_000000", "train_000002", "test_000000"]
    assert ds.lengths.tolist() == [5, 3, 5] and ds.labels.tolist() == [0, 3, 2]
    assert ds.metadata["skipped"] == [
        {"file": f"{path} at x_train[1]", "reason": "all-zero sample"}
    ]


# --------------------------------------------------------------------------------------------
# Kinetics-skeleton json (ST-GCN): generated fixture


def make_kinetics_fixture(root: Path, rng: np.random.Generator) -> dict:
    """Write a small Kinetics-skeleton tree; returns what each video holds, for checking."""
    truth = {}
    labels = {"train": {}, "val": {}}
    classes = ["abseiling", "air drumming", "answering questions"]
    plan = {
        "train": [("vid_a", 6, 3, 0), ("vid_b", 4, 1, 2), ("empty", 0, 0, 1)],
        "val": [("vid_c", 5, 6, 1)],
    }
    for phase, videos in plan.items():
        (root / f"kinetics_{phase}").mkdir(parents=True)
        for video, frames, persons, label in videos:
            labels[phase][video] = {
                "has_skeleton": frames > 0,
                "label": classes[label],
                "label_index": label,
            }
            if not frames:  # listed with has_skeleton false, its file holds no frame
                content = {"data": [], "label": classes[label], "label_index": label}
                (root / f"kinetics_{phase}" / f"{video}.json").write_text(json.dumps(content))
                continue
            pose = rng.uniform(0, 1, size=(frames, persons, 18, 2)).round(3)
            score = rng.uniform(0.05, 1, size=(frames, persons, 18)).round(3)
            score[0, 0, 4] = 0.0  # an undetected joint: its coordinates are zeroed
            data = [
                {
                    "frame_index": t,
                    "skeleton": [
                        {"pose": pose[t, m].reshape(-1).tolist(), "score": score[t, m].tolist()}
                        for m in range(persons)
                    ],
                }
                for t in range(frames)
            ]
            content = {"data": data, "label": classes[label], "label_index": label}
            (root / f"kinetics_{phase}" / f"{video}.json").write_text(json.dumps(content))
            truth[video] = (pose, score, label)
        (root / f"kinetics_{phase}_label.json").write_text(json.dumps(labels[phase]))
    return truth


def _stgcn_expected(pose, score, persons_in=5, persons_out=2):
    """ST-GCN's feeder, written out plainly (per frame, per person)."""
    frames = pose.shape[0]
    out = np.zeros((3, frames, 18, persons_out), dtype=np.float32)
    for t in range(frames):
        people = []
        for m in range(min(pose.shape[1], persons_in)):
            s = score[t, m]
            x = np.where(s == 0, 0, pose[t, m, :, 0] - 0.5)
            y = np.where(s == 0, 0, 0.5 - pose[t, m, :, 1])
            people.append((-s.sum(), m, np.stack([x, y, s])))
        people.sort(key=lambda p: (p[0], p[1]))
        for rank, (_, _, array) in enumerate(people[:persons_out]):
            out[:, t, :, rank] = array
    return out


def test_kinetics_skeleton_conversion(tmp_path):
    truth = make_kinetics_fixture(tmp_path / "kinetics", np.random.default_rng(9))
    ds = convert_kinetics_skeleton(tmp_path / "kinetics", tmp_path / "out")
    assert ds.shape == (3, 3, 300, 18, 2) and ds.layout.name == "openpose18"
    assert ds.channels == ("x", "y", "score")
    assert ds.class_names == ["abseiling", "air drumming", "answering questions"]
    assert ds.splits == {"train": ["vid_a", "vid_b"], "test": ["vid_c"]}
    assert [s["reason"] for s in ds.metadata["skipped"]] == [
        "has_skeleton is false in kinetics_train_label.json"
    ]
    for i, name in enumerate(ds.names):
        pose, score, label = truth[name]
        expected = _stgcn_expected(pose, score)
        assert ds.labels[i] == label and ds.lengths[i] == pose.shape[0]
        np.testing.assert_allclose(ds.data[i, :, : pose.shape[0]], expected, atol=1e-6)
        assert not ds.data[i, :, pose.shape[0] :].any()
    # vid_c has 6 persons a frame: only the 5 first are read, then the best 2 kept
    pose, score, _ = truth["vid_c"]
    top = np.argsort(-score[:, :5].sum(axis=2), axis=1, kind="stable")[:, 0]
    np.testing.assert_allclose(ds.data[2, 2, :5, :, 0], score[np.arange(5), top], atol=1e-6)


def test_kinetics_max_frames_and_raw_coordinates(tmp_path):
    path = tmp_path / "v.json"
    data = [
        {"frame_index": t, "skeleton": [{"pose": [0.25] * 36, "score": [1.0] * 18}]}
        for t in range(8)
    ]
    path.write_text(json.dumps({"data": data, "label": "x", "label_index": 3}))
    array, label = read_kinetics_file(path, max_frames=5, center=False, num_person_out=1)
    assert array.shape == (3, 5, 18, 1) and label == 3 and np.all(array[:2] == 0.25)
    array, _ = read_kinetics_file(path, frame_index_base=0)
    assert (
        array.shape == (3, 8, 18, 2)
        and np.all(array[0, :, :, 0] == -0.25)
        and np.all(array[1, :, :, 0] == 0.25)
    )


# --------------------------------------------------------------------------------------------
# bring your own arrays


def test_convert_arrays_npz_and_npy_inputs(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.normal(size=(4, 9, 25, 3)).astype(np.float32)  # N T V C
    data[1, 6:] = 0
    labels = np.array([2, 0, 1, 2])
    np.save(tmp_path / "data.npy", data)
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "names.txt").write_text("w\nx\ny\nz\n")
    (tmp_path / "train.txt").write_text("w\ny\n")
    ds = convert_arrays(
        tmp_path / "data.npy",
        tmp_path / "a",
        "ntu25",
        axes="NTVC",
        labels=tmp_path / "labels.npy",
        names=tmp_path / "names.txt",
        splits={"train": tmp_path / "train.txt", "test": ["x", "z"]},
        class_names=["a", "b", "c"],
    )
    assert ds.names == ["w", "x", "y", "z"] and ds.lengths.tolist() == [9, 6, 9, 9]
    assert ds.splits == {"test": ["x", "z"], "train": ["w", "y"]} and ds.data.shape == (
        4,
        3,
        9,
        25,
        1,
    )
    np.testing.assert_array_equal(ds.data[..., 0], data.transpose(0, 3, 1, 2))
    assert load_dataset(tmp_path / "a").metadata["axes"] == "NTVC"

    five = rng.normal(size=(2, 2, 7, 17, 3)).astype(np.float32)  # N M T V C
    np.savez(
        tmp_path / "b.npz",
        data=five,
        labels=np.array([0, 1]),
        lengths=np.array([7, 4]),
        names=np.array(["p", "q"]),
        split_train=np.array([1]),
    )
    ds = convert_arrays(
        tmp_path / "b.npz", tmp_path / "b", "coco17", axes="nmtvc", channels=("x", "y", "score")
    )
    assert (
        ds.shape == (2, 3, 7, 17, 2)
        and ds.lengths.tolist() == [7, 4]
        and ds.splits == {"train": ["q"]}
    )
    np.testing.assert_array_equal(ds.data[0], five[0].transpose(3, 1, 2, 0))
    np.testing.assert_array_equal(ds.data[1, :, :4], five[1, :, :4].transpose(3, 1, 2, 0))
