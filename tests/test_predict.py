"""shapmix predict: raw files of every format, the checkpoint's preprocessing, per-file errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import shared_data, train_tiny_checkpoint
from shapmix.cli import main
from shapmix.data.format import load_dataset
from shapmix.engine.evaluate import evaluate_checkpoint
from shapmix.engine.predict import InputSpec, PredictInputError, Predictor, RawSample, fit_to_spec, predict


@pytest.fixture(scope="module")
def ntu_run(tmp_path_factory) -> Path:
    """A tiny CTR-GCN trained on generated ntu25 data (2 persons, x y z)."""
    return train_tiny_checkpoint(tmp_path_factory.mktemp("ntu"), "ntu25", persons=2)


def _probabilities(report, num_classes: int) -> dict[str, np.ndarray]:
    result = {}
    for prediction in report.predictions:
        row = np.zeros(num_classes)
        for index, _, probability in prediction.top:
            row[index] = probability
        result[prediction.name] = row
    return result


def test_predict_on_npy_files_equals_the_evaluation_of_the_same_samples(ntu_run, tmp_path):
    dataset = load_dataset(ntu_run.parent.parent / "data")
    evaluate_checkpoint(ntu_run, tmp_path / "eval")
    with np.load(tmp_path / "eval" / "eval_test_scores.npz") as scores:
        expected = dict(zip(scores["names"].tolist(), torch.softmax(torch.from_numpy(scores["logits"]), 1).numpy()))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    chosen = list(expected)[:5]
    for name in chosen:  # each in another axis order, trimmed to its valid frames
        row = dataset.names.index(name)
        sample = np.asarray(dataset.data[row][:, : dataset.lengths[row]])
        np.save(inputs / f"{name}.npy", sample.transpose(1, 2, 0, 3))  # TVCM
    report = predict(ntu_run, [inputs], top_k=dataset.num_classes, axes="TVCM", batch_size=2)
    assert report.skipped == [] and report.files == len(chosen)
    got = _probabilities(report, dataset.num_classes)
    for name in chosen:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
    top = report.predictions[0].top
    assert [p for _, _, p in top] == sorted((p for _, _, p in top), reverse=True)
    assert top[0][1] == dataset.class_names[top[0][0]]


def test_a_batch_file_with_axes_n_gives_one_prediction_per_sample(ntu_run, tmp_path):
    dataset = load_dataset(ntu_run.parent.parent / "data")
    batch = np.asarray(dataset.data[:3]).transpose(0, 2, 3, 1, 4)  # NTVCM
    np.save(tmp_path / "batch.npy", batch)
    report = predict(ntu_run, [tmp_path / "batch.npy"], top_k=2, axes="NTVCM")
    assert [p.name for p in report.predictions] == ["batch_000000", "batch_000001", "batch_000002"]
    single = predict(ntu_run, [tmp_path / "batch.npy"], top_k=2, axes="NTVCM", batch_size=1)
    for alone, batched in zip(single.predictions, report.predictions):  # eval mode: batching changes nothing
        assert [c for c, _, _ in alone.top] == [c for c, _, _ in batched.top]
        assert [p for _, _, p in alone.top] == pytest.approx([p for _, _, p in batched.top], abs=1e-6)


def _write_ucla(path: Path, frames: int) -> None:
    skeletons = np.random.default_rng(0).normal(size=(frames, 20, 3)).round(4).tolist()
    path.write_text(json.dumps({"file_name": path.stem, "skeletons": skeletons, "label": 1}))


def test_a_folder_with_bad_files_predicts_the_rest_and_names_each_bad_one(ntu_run, tmp_path, capsys):
    dataset = load_dataset(ntu_run.parent.parent / "data")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for row in range(3):
        np.save(folder / f"good{row}.npy", np.asarray(dataset.data[row]))
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY not really")
    np.save(folder / "short.npy", np.asarray(dataset.data[0][:, :5]))  # fewer frames than --min-frames
    _write_ucla(folder / "a01_s01_e01_v01.json", frames=10)  # another layout (kinect_v1)
    np.save(folder / "crowd.npy", np.ones((3, 10, 25, 3), dtype=np.float32))  # 3 persons present
    (folder / "notes.md").write_text("not a skeleton")  # not a skeleton suffix: not read at all
    out = tmp_path / "predictions.json"
    status = main(["predict", "--checkpoint", str(ntu_run), str(folder), "--top-k", "2", "--min-frames", "8", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 1  # some files were skipped, the others predicted
    assert "predicted 3 sample(s) from 3 of 7 file(s); skipped 4" in printed
    report = json.loads(out.read_text())
    assert sorted(p["name"] for p in report["predictions"]) == ["good0", "good1", "good2"]
    reasons = {Path(item["file"]).name: item["reason"] for item in report["skipped"]}
    assert set(reasons) == {"corrupt.npy", "short.npy", "a01_s01_e01_v01.json", "crowd.npy"}
    for name, reason in reasons.items():
        assert str(folder / name) in reason  # every message names its file
        assert f"skipped: {reason}" in printed
    assert "not a readable .npy" in reasons["corrupt.npy"]
    assert "5 frame(s), fewer than the 8 needed" in reasons["short.npy"]
    assert "layout kinect_v1 (20 joints); the checkpoint takes layout ntu25 (25 joints)" in reasons["a01_s01_e01_v01.json"]
    assert "3 persons present" in reasons["crowd.npy"]


def test_csv_output_has_a_row_per_rank_and_one_per_skipped_file(ntu_run, tmp_path):
    dataset = load_dataset(ntu_run.parent.parent / "data")
    np.save(tmp_path / "one.npy", np.asarray(dataset.data[0]))
    np.save(tmp_path / "bad.npy", np.zeros((3, 5, 20, 1), dtype=np.float32))
    out = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", str(ntu_run), str(tmp_path / "one.npy"), str(tmp_path / "bad.npy"),
                 "--top-k", "3", "--out", str(out)]) == 1
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["rank"] for row in rows[:3]] == ["1", "2", "3"] and rows[0]["name"] == "one"
    assert rows[3]["file"].endswith("bad.npy") and "20 joints" in rows[3]["error"]


def test_missing_inputs_and_bad_options_are_errors(ntu_run, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(ntu_run), str(tmp_path / "nothing.skeleton")]) == 2
    assert "nothing.skeleton does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", str(ntu_run), str(tmp_path / "empty")]) == 2
    assert "holds no skeleton file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", str(ntu_run), "x.npy", "--top-k", "0"])


def test_a_pyskl_pickle_gives_one_prediction_per_annotation(ntu_run, tmp_path):
    from shapmix.data.sources.pyskl import annotations_from_dataset, write_pyskl

    dataset = load_dataset(ntu_run.parent.parent / "data")
    annotations, split = annotations_from_dataset(dataset)
    write_pyskl(annotations[:3], {"test": dataset.names[:3]}, tmp_path / "three.pkl")
    report = predict(ntu_run, [tmp_path / "three.pkl"], top_k=4)
    assert [p.name for p in report.predictions] == dataset.names[:3]
    predictor = Predictor.from_checkpoint(ntu_run)
    stored = torch.from_numpy(np.asarray(dataset.data[:3]).astype(np.float16).astype(np.float32))  # pyskl's float16
    expected = torch.softmax(predictor.scores(stored, torch.from_numpy(dataset.lengths[:3])), 1).numpy()
    got = _probabilities(report, 4)
    for row, name in enumerate(dataset.names[:3]):
        np.testing.assert_allclose(got[name], expected[row], atol=1e-5)


def test_a_kinetics_json_needs_an_openpose_checkpoint(ntu_run, tmp_path):
    from shapmix.data.sources.kinetics import read_kinetics_file

    rng = np.random.default_rng(0)
    frames = [
        {"frame_index": t, "skeleton": [{"pose": rng.uniform(0, 1, 36).round(3).tolist(), "score": rng.uniform(0.1, 1, 18).round(3).tolist()}
                                        for _ in range(1 + t % 2)]}
        for t in range(12)
    ]
    video = tmp_path / "video.json"
    video.write_text(json.dumps({"data": frames, "label": "dance", "label_index": 3}))
    refused = predict(ntu_run, [video])
    assert "layout openpose18 (18 joints); the checkpoint takes layout ntu25" in refused.skipped[0].reason
    checkpoint = train_tiny_checkpoint(tmp_path / "k", "openpose18", 2, channels=("x", "y", "score"))
    report = predict(checkpoint, [video], top_k=4)
    data, _ = read_kinetics_file(video)
    predictor = Predictor.from_checkpoint(checkpoint)
    expected = torch.softmax(predictor.scores(torch.from_numpy(data[None]), torch.tensor([data.shape[1]])), 1)[0]
    np.testing.assert_allclose(_probabilities(report, 4)["video"], expected.numpy(), atol=1e-5)


def test_one_frame_is_enough_for_joints_but_not_for_motion(ntu_run, tmp_path):
    dataset = load_dataset(ntu_run.parent.parent / "data")
    np.save(tmp_path / "pose.npy", np.asarray(dataset.data[0][:, :1]))
    assert predict(ntu_run, [tmp_path / "pose.npy"]).skipped == []
    motion = predict(ntu_run, [tmp_path / "pose.npy"], overrides=["data.modality=joint_motion"])
    assert [s.reason for s in motion.skipped] == [f"{tmp_path / 'pose.npy'}: 1 frame(s), fewer than the 2 needed"]


def test_fit_to_spec_pads_persons_and_checks_channels():
    spec = InputSpec.from_dict({"layout": "utd_mhad", "channels": ["x", "y", "z"], "num_persons": 2})
    one_person = RawSample("a", Path("a.mat"), np.ones((3, 5, 20, 1), np.float32), "utd_mhad", ("x", "y", "z"))
    fitted = fit_to_spec(one_person, spec)
    assert fitted.shape == (3, 5, 20, 2) and not fitted[..., 1].any()
    with_confidence = RawSample("b", Path("b.txt"), np.ones((4, 5, 20, 1), np.float32), "utd_mhad", ("x", "y", "z", "c"))
    with pytest.raises(PredictInputError, match=r"b.txt: channels \(x, y, z, c\); the checkpoint takes"):
        fit_to_spec(with_confidence, spec)
    infinite = RawSample("c", Path("c.npy"), np.full((3, 5, 20, 1), np.inf, np.float32), None, None)
    with pytest.raises(PredictInputError, match="c.npy: holds NaN or Inf"):
        fit_to_spec(infinite, spec)


# --------------------------------------------------------------------------- real files

def _convert_ntu(source: Path, out: Path) -> None:
    from shapmix.data.sources.ntu.convert import convert_ntu

    convert_ntu(source, out, workers=1, progress=False)


def _convert_ucla(source: Path, out: Path) -> None:
    from shapmix.data.sources.nw_ucla import convert_nw_ucla

    convert_nw_ucla(source, out)


def _convert_msr(source: Path, out: Path) -> None:
    from shapmix.data.sources.msr import convert_msr_action3d

    convert_msr_action3d(source, out)


def _convert_utd(source: Path, out: Path) -> None:
    from shapmix.data.sources.utd import convert_utd_mhad

    convert_utd_mhad(source, out)


REAL_FORMATS = {
    # name: (shared folder, files used, converter, layout, persons)
    "ntu": (("ntu", "raw"), "*.skeleton", _convert_ntu, "ntu25", 2),
    "nw_ucla": (("nw_ucla", "samples"), "*.json", _convert_ucla, "kinect_v1", 1),
    "msr": (("msr_action3d",), "a0[12]_s01_e01_skeleton3D.txt", _convert_msr, "msr_action3d", 1),
    "utd": (("utd_mhad",), "a1[01]_s1_t1_skeleton.mat", _convert_utd, "utd_mhad", 1),
}


@pytest.mark.parametrize("fmt", sorted(REAL_FORMATS))
def test_real_files_are_read_as_the_converter_reads_them(fmt, tmp_path):
    folder, pattern, convert, layout, persons = REAL_FORMATS[fmt]
    source = shared_data(*folder)
    if fmt == "utd":
        pytest.importorskip("scipy", reason="UTD-MHAD .mat files need SciPy")
    files = sorted(source.glob(pattern))
    assert files, f"no {pattern} in {source}"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in files:
        shutil.copy(path, inputs / path.name)
    checkpoint = train_tiny_checkpoint(tmp_path / "tiny", layout, persons)
    report = predict(checkpoint, [inputs], top_k=4)
    assert report.skipped == [] and len(report.predictions) == len(files)

    # the converter's dataset of the same files, scored by the same model, gives the same result
    convert(inputs, tmp_path / "converted")
    dataset = load_dataset(tmp_path / "converted")
    predictor = Predictor.from_checkpoint(checkpoint)
    got = _probabilities(report, 4)
    for row, name in enumerate(dataset.names):
        length = int(dataset.lengths[row])
        x = torch.from_numpy(np.array(dataset.data[row][None, :, :length, :, :persons]))
        expected = torch.softmax(predictor.scores(x, torch.tensor([length])), 1)[0].numpy()
        np.testing.assert_allclose(got[name], expected, atol=1e-5)
