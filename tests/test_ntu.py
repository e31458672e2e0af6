"""NTU RGB+D preprocessing: exact reproduction of the upstream arrays, parser errors, splits,
directory conversion with resume, and a fuzz test of the parser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shapmix.data.format import DatasetFormatError, load_dataset
from shapmix.data.sources import ntu
from shapmix.data.sources.ntu import convert, parse
from shapmix.data.sources.ntu.constants import USED_FIELDS
from shapmix.data.sources.ntu.staging import STAGING_JOURNAL, STAGING_ROWS, STAGING_SUFFIX
from shapmix.data.sources.ntu.writer import write_skeleton

from helpers import SHARED_DATA
NTU_DIR = SHARED_DATA / "ntu"
RAW_DIR = NTU_DIR / "raw"
REFERENCE_DIR = NTU_DIR / "reference"
STATISTICS_DIR = NTU_DIR / "statistics"
HAVE_DATA = RAW_DIR.is_dir() and REFERENCE_DIR.is_dir()
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason=f"shared NTU data not found at {NTU_DIR} (../shared/data is absent)"
)


def _reference_cases() -> list[tuple[str, Path, Path]]:
    """``(group, .skeleton file, reference prefix)`` for every file with reference arrays."""
    if not HAVE_DATA:
        return []
    cases = [
        ("real", path, REFERENCE_DIR / "real" / path.name.removesuffix(".skeleton"))
        for path in sorted(RAW_DIR.glob("*.skeleton"))
    ]
    cases += [
        ("edge", path, path.with_name(path.name.removesuffix(".skeleton")))
        for path in sorted((REFERENCE_DIR / "edge_cases").glob("*.skeleton"))
    ]
    return cases


CASES = _reference_cases()
CASE_IDS = [path.name.removesuffix(".skeleton") for _, path, _ in CASES]
if not CASES:
    CASES, CASE_IDS = [pytest.param(None, None, None, marks=needs_data)], ["no-data"]


def _manifest(group: str) -> dict:
    folder = "real" if group == "real" else "edge_cases"
    return json.loads((REFERENCE_DIR / folder / "manifest.json").read_text())["files"]


# --------------------------------------------------------------------------------------------
# The reference arrays, exactly
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group, path, prefix", CASES, ids=CASE_IDS)
def test_stage1_equals_reference(group, path, prefix):
    raw = ntu.read_skeleton(path)
    ref = np.load(f"{prefix}.raw.npz")
    assert raw.num_frames_in_file == int(ref["num_frames_in_file"])
    assert raw.num_frames_valid == int(ref["num_frames_valid"])
    np.testing.assert_array_equal(raw.frames_drop, ref["frames_drop"])
    assert raw.body_ids == list(ref["body_ids"])
    for k, body in enumerate(raw.bodies):
        joints = body.joints.reshape(-1, 3)
        assert joints.dtype == np.float32 and body.colors.dtype == np.float32
        np.testing.assert_array_equal(joints, ref[f"body{k}_joints"])
        np.testing.assert_array_equal(body.colors, ref[f"body{k}_colors"])
        np.testing.assert_array_equal(body.interval, ref[f"body{k}_interval"])
        if f"body{k}_motion" in ref.files:
            assert body.motion.dtype == np.float32
            assert body.motion == ref[f"body{k}_motion"]
        else:
            assert body.motion is None and len(raw.bodies) == 1


@pytest.mark.parametrize("group, path, prefix", CASES, ids=CASE_IDS)
def test_stage2_and_final_row_equal_reference(group, path, prefix):
    sample = ntu.process_skeleton(path)
    denoised = np.load(f"{prefix}.denoised.npy")
    aligned = np.load(f"{prefix}.aligned.npy")
    assert sample.denoised.joints.dtype == np.float32
    assert sample.denoised.joints.shape == denoised.shape
    np.testing.assert_array_equal(sample.denoised.joints, denoised)
    assert sample.row.dtype == np.float32 and sample.row.shape == (ntu.MAX_FRAMES, 150)
    assert np.abs(sample.row - aligned).max() == 0
    info = _manifest(group)[sample.name]
    assert sample.num_frames == info["aligned_valid_frames"]
    assert sample.denoised.actor1_ids == info["actor1_body_ids"]
    assert sample.denoised.actor2_ids == info["actor2_body_ids"]
    assert len(sample.denoised.discarded_ids) == info["num_body_ids_discarded"]
    assert sample.raw.frames_drop.size == info["num_frames_dropped_no_body"]


@needs_data
def test_real_files_take_the_fast_path():
    """The vectorised parser handles every real file itself (no silent slow fallback)."""
    for _, path, _ in _reference_cases():
        assert parse._fast_fields(path.read_bytes(), str(path), USED_FIELDS) is not None


@needs_data
@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_crlf_and_lf_give_identical_results(ending):
    for _, path, prefix in _reference_cases():
        lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
        sample = ntu.process_skeleton(ending.join(lines), name=path.name)
        np.testing.assert_array_equal(sample.row, np.load(f"{prefix}.aligned.npy"))


@needs_data
def test_unusual_whitespace_is_parsed_identically():
    """Tabs, repeated spaces and lone CRs go through the strict parser: same result."""
    path = RAW_DIR / "S001C001P001R001A050.skeleton"
    data = path.read_bytes()
    expected = ntu.read_skeleton(path)
    for variant, fast in (
        (data.replace(b" ", b"\t"), False),
        (data.replace(b" ", b"   "), False),
        (data.replace(b"\n", b"\r"), False),
        (data.replace(b"\n-", b"\n  -"), False),
        (data.replace(b"\n0.", b"\n+0."), True),  # explicit plus signs: still the fast path
    ):
        assert (parse._fast_fields(variant, "x", USED_FIELDS) is not None) == fast
        raw = ntu.parse_skeleton(variant, path.name)
        assert raw.body_ids == expected.body_ids
        for got, want in zip(raw.bodies, expected.bodies):
            np.testing.assert_array_equal(got.joints, want.joints)
            np.testing.assert_array_equal(got.colors, want.colors)
            np.testing.assert_array_equal(got.frames, want.frames)


@needs_data
def test_fix_upstream_bugs_actor2_span():
    """S094: upstream loses the body that continues actor 2 under its old id; fixed: kept."""
    raw = ntu.read_skeleton(REFERENCE_DIR / "edge_cases" / "S094C001P001R001A050.skeleton")
    upstream = ntu.denoise(raw)
    fixed = ntu.denoise(raw, fix_upstream_bugs=True)
    lost = "72057594037932185"
    assert lost in upstream.discarded_ids and lost not in upstream.actor2_ids
    assert fixed.actor2_ids == ["72057594037999004", lost] and not fixed.discarded_ids
    body = next(b for b in raw.bodies if b.body_id == lost)
    # frames 0-39 of actor 2 now hold the lost body (frame 40 is shared and overwritten by it)
    np.testing.assert_array_equal(fixed.joints[:41, 75:], body.joints.reshape(-1, 75))
    assert not upstream.joints[:40, 75:].any()


@needs_data
def test_fix_upstream_bugs_packed_frames():
    """S095: a body absent in frames 30-39 is packed into 0-59 upstream; fixed: real frames."""
    raw = ntu.read_skeleton(REFERENCE_DIR / "edge_cases" / "S095C003P008R002A058.skeleton")
    body = next(b for b in raw.bodies if b.body_id == "72057594037944734")
    np.testing.assert_array_equal(body.frames, np.r_[0:30, 40:70])
    np.testing.assert_array_equal(body.interval, np.arange(60))
    rows = body.joints.reshape(-1, 75)
    upstream = ntu.denoise(raw).joints
    fixed = ntu.denoise(raw, fix_upstream_bugs=True).joints
    np.testing.assert_array_equal(upstream[:60, :75], rows)
    assert not upstream[60:, :75].any()
    np.testing.assert_array_equal(fixed[body.frames, :75], rows)
    assert not fixed[30:40, :75].any()
    np.testing.assert_array_equal(fixed[:, 75:], upstream[:, 75:])


@needs_data
def test_ntu120_duplicates_the_single_actor():
    path = RAW_DIR / "S001C001P001R001A001.skeleton"
    zeros = ntu.process_skeleton(path).row
    copied = ntu.process_skeleton(path, duplicate_single_actor=True).row
    np.testing.assert_array_equal(copied[:, :75], zeros[:, :75])
    np.testing.assert_array_equal(copied[:, 75:], zeros[:, :75])
    assert not zeros[:, 75:].any()


# --------------------------------------------------------------------------------------------
# Sample names and benchmarks
# --------------------------------------------------------------------------------------------


def test_parse_sample_name():
    info = ntu.parse_sample_name("S017C003P020R002A058")
    assert (info.setup, info.camera, info.performer, info.replication, info.action) == (
        17, 3, 20, 2, 58,
    )
    assert info.label == 57 and info.name == "S017C003P020R002A058"
    assert ntu.parse_sample_name("/x/S001C001P001R001A120.skeleton").action == 120
    for bad in ("S1C1P1R1A1", "S001C001P001R001A001x", "S000C001P001R001A001", "foo"):
        with pytest.raises(ValueError, match="NTU sample name|1-based"):
            ntu.parse_sample_name(bad)


def test_benchmark_membership():
    assert len(ntu.NTU120_XSUB_TRAIN_SUBJECTS) == 53
    assert set(ntu.NTU60_XSUB_TRAIN_SUBJECTS) < set(ntu.NTU120_XSUB_TRAIN_SUBJECTS)
    assert ntu.is_train_sample("S001C001P001R001A001", "ntu60", "xsub")
    assert not ntu.is_train_sample("S001C001P003R001A001", "ntu60", "xsub")
    assert not ntu.is_train_sample("S001C001P001R001A001", "ntu60", "xview")
    assert ntu.is_train_sample("S001C002P003R001A001", "ntu60", "xview")
    assert ntu.is_train_sample("S018C001P103R001A001", "ntu120", "xsub")
    assert ntu.is_train_sample("S018C001P003R001A001", "ntu120", "xset")
    assert not ntu.is_train_sample("S019C001P001R001A001", "ntu120", "xset")
    with pytest.raises(ValueError):
        ntu.is_train_sample("S001C001P001R001A001", "ntu60", "xset")


def test_split_order_is_upstream_order():
    names = ["S001C001P003R001A001", "S001C002P001R001A002", "S002C001P002R001A001",
             "S001C003P001R001A001", "S001C001P002R001A003"]
    train, test = ntu.split_names(names, "ntu60", "xsub")
    assert train == ["S001C002P001R001A002", "S001C003P001R001A001", "S002C001P002R001A001",
                     "S001C001P002R001A003"]
    assert test == ["S001C001P003R001A001"]
    train, test = ntu.split_names(names, "ntu60", "xview")
    assert train == ["S001C002P001R001A002", "S001C003P001R001A001"]
    assert test == ["S001C001P003R001A001", "S002C001P002R001A001", "S001C001P002R001A003"]


@pytest.mark.skipif(not STATISTICS_DIR.is_dir(), reason="../shared/data/ntu/statistics absent")
@pytest.mark.parametrize(
    "dataset, protocol, key, train_ids, expected",
    [
        ("ntu60", "xsub", "performer", ntu.NTU60_XSUB_TRAIN_SUBJECTS, (40091, 16487)),
        ("ntu60", "xview", "camera", ntu.NTU60_XVIEW_TRAIN_CAMERAS, (37646, 18932)),
        ("ntu120", "xsub", "performer", ntu.NTU120_XSUB_TRAIN_SUBJECTS, (63026, 50919)),
        ("ntu120", "xset", "setup", tuple(range(2, 33, 2)), (54468, 59477)),
    ],
)
def test_benchmark_sizes_match_the_statistics_files(dataset, protocol, key, train_ids, expected):
    folder = STATISTICS_DIR / dataset
    names = (folder / "skes_available_name.txt").read_text().split()
    missing_file = next(folder.glob("*samples_with_missing_skeletons.txt"))
    assert not set(names) & set(missing_file.read_text().split())
    ids = np.loadtxt(folder / f"{key}.txt", dtype=int)
    assert len(ids) == len(names)
    train, test = ntu.split_names(names, dataset, protocol)
    # independently from the statistics column, as the upstream get_indices does
    in_train = np.isin(ids, train_ids)
    assert (len(train), len(test)) == (int(in_train.sum()), int((~in_train).sum())) == expected
    order = np.argsort(ids[in_train], kind="stable")
    assert train == list(np.asarray(names)[in_train][order])
    labels = np.loadtxt(folder / "label.txt", dtype=int)
    assert [ntu.parse_sample_name(n).label for n in names[:500]] == list(labels[:500] - 1)


# --------------------------------------------------------------------------------------------
# Broken files
# --------------------------------------------------------------------------------------------


def _small_file(tmp_path: Path, frames: int = 3, bodies: int = 1, **kwargs) -> bytes:
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(frames, bodies, 25, 3)).astype(np.float32)
    colors = (rng.random(size=(frames, bodies, 25, 2)) * 1000).astype(np.float32)
    path = write_skeleton(
        tmp_path / "S001C001P001R001A001.skeleton", joints,
        [72057594037931101 + b for b in range(bodies)], colors=colors, **kwargs,
    )
    return path.read_bytes()


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _replace_line(data: bytes, index: int, new: bytes) -> bytes:
    lines = _lines(data)
    lines[index] = new
    return b"\n".join(lines)


def _replace_field(data: bytes, index: int, field: int, new: bytes) -> bytes:
    fields = _lines(data)[index].split(b" ")
    fields[field] = new
    return _replace_line(data, index, b" ".join(fields))


# line indices in _small_file: 0 frames; per frame of 28 lines from 1: bodies, info, joint
# count, 25 joints (frame 0: 1, 2, 3, 4-28; frame 1: 29, 30, 31, 32-56; frame 2: 57...)
BROKEN = {
    "empty file": (lambda d: b"", 1, "empty file"),
    "blank lines only": (lambda d: b"\n \r\n\n", 1, "empty file"),
    "truncated mid-frame": (lambda d: b"\n".join(_lines(d)[:20]), 21, "ends early"),
    "truncated before a body": (lambda d: b"\n".join(_lines(d)[:58]), 59, "ends early"),
    "non-numeric field": (lambda d: _replace_field(d, 7, 1, b"abc"), 8, "non-numeric"),
    "non-numeric colour": (lambda d: _replace_field(d, 9, 6, b"1.2.3"), 10, "field 7"),
    "wrong joint count": (lambda d: _replace_line(d, 3, b"24"), 4, "joint count 25"),
    "joint line too short": (lambda d: _replace_line(d, 5, b"1 2 3"), 6, "12 fields"),
    "more frames declared": (lambda d: _replace_line(d, 0, b"4"), None, "ends early"),
    "fewer frames declared": (lambda d: _replace_line(d, 0, b"2"), 58, "content continues"),
    "bad body count": (lambda d: _replace_line(d, 1, b"two"), 2, "number of bodies"),
    "negative body count": (lambda d: _replace_line(d, 1, b"-1"), 2, "number of bodies"),
    "NaN": (lambda d: _replace_field(d, 4, 0, b"nan"), 5, "NaN/Inf"),
    "Inf": (lambda d: _replace_field(d, 33, 2, b"-inf"), 34, "NaN/Inf"),
    "overflow": (lambda d: _replace_field(d, 12, 0, b"1e999"), 13, "NaN/Inf"),
    "beyond float32": (lambda d: _replace_field(d, 14, 2, b"1e39"), 15, "NaN/Inf"),
    "NaN colour": (lambda d: _replace_field(d, 40, 5, b"NaN"), 41, "NaN/Inf"),
    "zero-body frames only": (lambda d: b"3\n0\n0\n0\n", 1, "all 3 frames have 0 bodies"),
    "zero frames": (lambda d: b"0\n", 1, "declares 0 frames"),
    "duplicate body": (
        lambda d: b"\n".join([b"1", b"2"] + _lines(d)[2:29] * 2), 30, "appears twice"
    ),
    "binary garbage": (lambda d: bytes(range(256)) * 4, 1, "number of frames"),
    "garbage after a valid header": (lambda d: b"1\n1\n\xff\xfe\x00garbage\n25\n", 3, "body id"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_raises_format_error_with_file_and_line(tmp_path, case):
    make, line, words = BROKEN[case]
    data = make(_small_file(tmp_path))
    path = tmp_path / "S001C001P002R001A001.skeleton"
    path.write_bytes(data)
    with pytest.raises(ntu.NTUFormatError) as caught:
        ntu.read_skeleton(path)
    error = caught.value
    assert isinstance(error, DatasetFormatError)
    assert str(path) in str(error) and words in str(error)
    if line is not None:
        assert error.line == line and f"{path}:{line}:" in str(error)
    else:
        assert error.line is not None
    if "colour" in case:  # the pipeline does not read colours (they do not affect it)
        ntu.process_skeleton(path)
    else:
        with pytest.raises(ntu.NTUFormatError) as caught:
            ntu.process_skeleton(path)
        assert str(caught.value) == str(error)


def test_broken_input_on_the_crlf_path_reports_the_same_line(tmp_path):
    data = _replace_field(_small_file(tmp_path), 7, 1, b"abc").replace(b"\n", b"\r\n")
    with pytest.raises(ntu.NTUFormatError) as caught:
        ntu.parse_skeleton(data, "f.skeleton")
    assert caught.value.line == 8


def test_no_body_survives_denoising(tmp_path):
    data = _small_file(tmp_path, frames=5, bodies=2)  # both bodies shorter than 12 frames
    with pytest.raises(ntu.NTUFormatError, match="more than 11 frames"):
        ntu.process_skeleton(data, name="S001C001P001R001A001.skeleton")


def test_format_error_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(ntu.NTUFormatError("a.skeleton", 3, "bad")))
    assert (error.path, error.line, str(error)) == ("a.skeleton", 3, "a.skeleton:3: bad")


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_writer_round_trip_is_exact(tmp_path, ending):
    rng = np.random.default_rng(1)
    frames, bodies = 20, 3
    joints = (rng.normal(size=(frames, bodies, 25, 3)) * 10.0 ** rng.integers(-6, 3)).astype(
        np.float32
    )
    colors = (rng.random(size=(frames, bodies, 25, 2)) * 1920).astype(np.float32)
    present = rng.random((frames, bodies)) < 0.7
    present[4] = False  # a frame without bodies
    ids = [72057594037931101, 5, 72057594037999999]
    path = write_skeleton(tmp_path / "w.skeleton", joints, ids, present=present,
                              colors=colors, line_ending=ending)
    raw = ntu.read_skeleton(path)
    kept = np.flatnonzero(present.any(axis=1))
    np.testing.assert_array_equal(raw.frames_drop, np.flatnonzero(~present.any(axis=1)))
    order = sorted(range(bodies), key=lambda b: np.flatnonzero(present[:, b])[0])
    assert raw.body_ids == [str(ids[b]) for b in order]
    for body, b in zip(raw.bodies, order):
        rows = np.flatnonzero(present[:, b])
        np.testing.assert_array_equal(body.frames, np.searchsorted(kept, rows))
        np.testing.assert_array_equal(body.joints, joints[rows, b])
        np.testing.assert_array_equal(body.colors, colors[rows, b])


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_skeleton(tmp_path / "a", np.zeros((2, 1, 24, 3)), [1])
    with pytest.raises(ValueError):
        write_skeleton(tmp_path / "a", np.zeros((2, 2, 25, 3)), [1])
    with pytest.raises(ValueError):
        write_skeleton(tmp_path / "a", np.full((2, 1, 25, 3), np.nan), [1])


# --------------------------------------------------------------------------------------------
# Directory conversion
# --------------------------------------------------------------------------------------------

BROKEN_NAME = "S001C001P002R001A001"
MISSING_NAME = "S001C002P005R002A008"  # listed in statistics/ntu60/samples_with_missing_...


@pytest.fixture
def raw_copy(tmp_path):
    """The 8 raw files, one broken file and one file named in the missing list."""
    if not HAVE_DATA:
        pytest.skip(f"shared NTU data not found at {NTU_DIR}")
    folder = tmp_path / "raw"
    folder.mkdir()
    for path in RAW_DIR.glob("*.skeleton"):
        shutil.copyfile(path, folder / path.name)
    broken = b"1\n1\n123 0 0\n25\n0.1 0.2\n" + b"0 0 0 0 0 0 0 0 0 0 0 2\n" * 24
    (folder / f"{BROKEN_NAME}.skeleton").write_bytes(broken)
    shutil.copyfile(next(RAW_DIR.glob("*.skeleton")), folder / f"{MISSING_NAME}.skeleton")
    return folder


def _reference_rows() -> dict[str, np.ndarray]:
    return {
        prefix.name: np.load(f"{prefix}.aligned.npy")
        for group, _, prefix in _reference_cases() if group == "real"
    }


def _check_report(report, output):
    assert report.num_candidates == 9
    assert report.skipped_missing == [MISSING_NAME]
    assert [name for name, _ in report.failures] == [BROKEN_NAME]
    reason = report.failures[0][1]
    assert f"{BROKEN_NAME}.skeleton:5:" in reason and "12 fields" in reason
    assert len(report.converted) == 8 and report.output == output
    assert BROKEN_NAME in report.summary()
    assert not Path(f"{output}{STAGING_SUFFIX}").exists()


def test_convert_to_shapmix_format(raw_copy, tmp_path):
    out = tmp_path / "ntu60_xsub"
    report = ntu.convert_ntu(raw_copy, out, missing_list=[MISSING_NAME], progress=False)
    _check_report(report, out)
    dataset = load_dataset(out)
    assert dataset.shape == (8, 3, 300, 25, 2) and dataset.layout.name == "ntu25"
    assert dataset.num_classes == 60
    rows = _reference_rows()
    manifest = _manifest("real")
    assert dataset.names == sorted(rows)
    for i, name in enumerate(dataset.names):
        expected = ntu.row_to_cthw(rows[name])
        np.testing.assert_array_equal(dataset.data[i], expected)
        assert dataset.lengths[i] == manifest[name]["aligned_valid_frames"]
        assert dataset.labels[i] == manifest[name]["label"]
    train, test = ntu.split_names(dataset.names, "ntu60", "xsub")
    assert dataset.splits == {"train": train, "test": test}
    for name in dataset.names:
        part = manifest[name]["npz_row"]["part"]
        assert name in dataset.splits[part]
    assert (report.num_train, report.num_test) == (len(train), len(test))
    skipped = dataset.metadata["skipped"]
    assert [Path(entry["file"]).name for entry in skipped] == [
        f"{BROKEN_NAME}.skeleton", MISSING_NAME,
    ]
    assert dataset.metadata["fix_upstream_bugs"] is False


def test_convert_to_ctrgcn_npz_with_two_workers(raw_copy, tmp_path):
    out = tmp_path / "NTU60_CS.npz"
    missing = STATISTICS_DIR / "ntu60" / "samples_with_missing_skeletons.txt"
    report = ntu.convert_ntu(raw_copy, out, fmt="ctrgcn-npz", workers=2,
                             missing_list=missing, progress=False, chunksize=2)
    _check_report(report, out)
    rows = _reference_rows()
    manifest = _manifest("real")
    with np.load(out) as npz:
        assert set(npz.files) == {"x_train", "y_train", "x_test", "y_test",
                                  "name_train", "name_test"}
        for part in ("train", "test"):
            names = list(npz[f"name_{part}"])
            x, y = npz[f"x_{part}"], npz[f"y_{part}"]
            assert x.dtype == np.float32 and x.shape == (len(names), 300, 150)
            assert y.dtype == np.float64 and y.shape == (len(names), 60)
            assert (y.sum(axis=1) == 1).all()
            for i, name in enumerate(names):
                assert manifest[name]["npz_row"]["part"] == part
                np.testing.assert_array_equal(x[i], rows[name])
                assert y[i].argmax() == manifest[name]["label"]
        expected = ntu.split_names(sorted(rows), "ntu60", "xsub")
        assert (list(npz["name_train"]), list(npz["name_test"])) == expected


def test_convert_ntu120_from_a_name_list(raw_copy, tmp_path):
    """NTU120 x-set from a name list: a listed name without a file is reported; the npz
    copies the single actor into actor 2's columns as the NTU120 script does."""
    names = sorted(p.name.removesuffix(".skeleton") for p in RAW_DIR.glob("*.skeleton"))
    listed = tmp_path / "names.txt"
    listed.write_text("\n".join(names + ["S018C001P001R001A061"]) + "\n")
    out = tmp_path / "NTU120_CSet.npz"
    report = ntu.convert_ntu(raw_copy, out, dataset="ntu120", benchmark="xset",
                             fmt="ctrgcn-npz", sample_names=listed, progress=False)
    assert report.converted == names
    assert [name for name, _ in report.failures] == ["S018C001P001R001A061"]
    assert "cannot read" in report.failures[0][1]
    rows = _reference_rows()
    with np.load(out) as npz:
        assert npz["y_train"].shape[1] == 120
        assert all(ntu.parse_sample_name(n).setup % 2 == 0 for n in npz["name_train"])
        assert all(ntu.parse_sample_name(n).setup % 2 == 1 for n in npz["name_test"])
        for part in ("train", "test"):
            for x, name in zip(npz[f"x_{part}"], npz[f"name_{part}"]):
                single = not rows[name][:, 75:].any()
                expected = rows[name].copy()
                if single:
                    expected[:, 75:] = expected[:, :75]
                np.testing.assert_array_equal(x, expected)


def test_interrupted_conversion_resumes(raw_copy, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    ntu.convert_ntu(raw_copy, clean, missing_list=[MISSING_NAME], progress=False)
    out = tmp_path / "resumed"
    original = convert._process_task
    calls = []

    def interrupted(task, **kwargs):
        calls.append(task.name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(task, **kwargs)

    monkeypatch.setattr(convert, "_process_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ntu.convert_ntu(raw_copy, out, missing_list=[MISSING_NAME], progress=False)
    monkeypatch.setattr(convert, "_process_task", original)
    staging = Path(f"{out}{STAGING_SUFFIX}")
    journal = staging / STAGING_JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    assert len(lines) == 4 and not (out / "meta.json").exists()
    # lose part of the progress: the last journal line, half a line, and a half-written row
    journal.write_text("".join(lines[:3]) + lines[3][:4])
    with open(staging / STAGING_ROWS, "ab") as handle:
        handle.write(b"\x00" * 1000)

    report = ntu.convert_ntu(raw_copy, out, missing_list=[MISSING_NAME], progress=False)
    assert report.resumed == 3 and len(report.converted) == 8
    assert not staging.exists()
    done, again = load_dataset(clean), load_dataset(out)
    assert done.names == again.names and done.splits == again.splits
    np.testing.assert_array_equal(np.asarray(done.data), np.asarray(again.data))
    np.testing.assert_array_equal(done.lengths, again.lengths)
    np.testing.assert_array_equal(done.labels, again.labels)


def test_changed_settings_restart_instead_of_resuming(raw_copy, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original = convert._process_task

    def interrupted(task, **kwargs):
        if task.name.endswith("A050"):
            raise KeyboardInterrupt
        return original(task, **kwargs)

    monkeypatch.setattr(convert, "_process_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ntu.convert_ntu(raw_copy, out, progress=False)
    monkeypatch.setattr(convert, "_process_task", original)
    report = ntu.convert_ntu(raw_copy, out, progress=False, fix_upstream_bugs=True)
    assert report.resumed == 0 and len(report.converted) == 9  # no missing list given
    assert load_dataset(out).metadata["fix_upstream_bugs"] is True


def test_convert_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="benchmark"):
        ntu.convert_ntu(tmp_path, tmp_path / "o", dataset="ntu60", benchmark="xset")
    with pytest.raises(ValueError, match="format"):
        ntu.convert_ntu(tmp_path, tmp_path / "o", fmt="hdf5")
    with pytest.raises(FileNotFoundError):
        ntu.convert_ntu(tmp_path / "absent", tmp_path / "o")


# --------------------------------------------------------------------------------------------
# A generated corpus: runs everywhere (no ../shared), values computed here independently
# --------------------------------------------------------------------------------------------

SPINE_MIDDLE = 1  # stage 3's origin joint (Kinect v2 joint 2)
CORPUS_FRAMES = 300  # rows of a converted sample


def _person(rng: np.random.Generator, frames: int, height: float, sway: float) -> np.ndarray:
    """``(frames, 25, 3)`` float32 joints of a standing body: taller (y) than wide (x), so no
    frame is spread-noisy; ``sway`` sets how much it moves (its motion)."""
    rest = np.stack([rng.uniform(-0.25, 0.25, 25), rng.uniform(-height, height, 25),
                     rng.uniform(2.9, 3.1, 25)], axis=-1)
    return (rest + sway * rng.normal(size=(frames, 25, 3))).astype(np.float32)


def _clutter(rng: np.random.Generator, frames: int, width: float, height: float) -> np.ndarray:
    """``(frames, 25, 3)`` float32 joints of a noise body with far more motion than the
    persons (kept by mistake, it would become actor 1); wider than 0.8 times its height, every
    frame of it is spread-noisy."""
    rest = np.stack([rng.uniform(-width, width, 25), rng.uniform(-height, height, 25),
                     rng.uniform(2.0, 4.0, 25)], axis=-1)
    return (rest + 0.3 * rng.normal(size=(frames, 25, 3))).astype(np.float32)


def _expected_sample(actor1: np.ndarray, actor2: np.ndarray | None = None,
                     actor2_start: int = 0) -> np.ndarray:
    """The project-format ``(3, 300, 25, 2)`` sample of one or two actors (``(T, 25, 3)``
    joints; actor 2 from row ``actor2_start``), computed directly: every coordinate minus
    actor 1's spine middle in its first frame, absent frames zero."""
    origin = actor1[0, SPINE_MIDDLE]
    sample = np.zeros((3, CORPUS_FRAMES, 25, 2), dtype=np.float32)
    sample[:, : len(actor1), :, 0] = (actor1 - origin).transpose(2, 0, 1)
    if actor2 is not None:
        rows = slice(actor2_start, actor2_start + len(actor2))
        sample[:, rows, :, 1] = (actor2 - origin).transpose(2, 0, 1)
    return sample


def _write_corpus(folder: Path) -> dict[str, tuple[np.ndarray, int]]:
    """Three ``.skeleton`` files and the ``(sample, length)`` each must convert to.

    * ``S001C001P001R001A001``: one body, 21 frames, frame 7 empty (dropped: 20 rows);
    * ``S001C002P002R001A002``: one person, absent in frames 10-11, and a 5-frame noise body
      over frames 9-13 (at most 11 frames: dropped; the rows where nobody is left go);
    * ``S001C001P003R001A050``: two persons (the second from frame 3 on, zero before), a
      5-frame noise body and a 15-frame spread-noisy body (x-range > 0.8 y-range: dropped).

    Each noise body fails one test only (length or spread), so each test is checked.
    """
    folder.mkdir()
    rng = np.random.default_rng(7)
    expected = {}

    single = _person(rng, 21, height=0.8, sway=0.02)
    present = np.ones((21, 1), dtype=bool)
    present[7] = False
    write_skeleton(folder / "S001C001P001R001A001.skeleton", single[:, None], [11], present)
    expected["S001C001P001R001A001"] = (_expected_sample(np.delete(single, 7, axis=0)), 20)

    person = _person(rng, 25, height=0.8, sway=0.02)
    noise = _clutter(rng, 25, width=0.5, height=3.0)  # not spread-noisy: only too short
    present = np.zeros((25, 2), dtype=bool)
    present[:, 0] = True
    present[10:12, 0] = False
    present[9:14, 1] = True
    write_skeleton(folder / "S001C002P002R001A002.skeleton", np.stack([person, noise], axis=1),
                   [21, 22], present)
    kept = np.flatnonzero(present[:, 0])
    expected["S001C002P002R001A002"] = (_expected_sample(person[kept]), kept.size)

    frames = 30
    first = _person(rng, frames, height=0.9, sway=0.05)  # more motion: actor 1
    second = _person(rng, frames, height=0.7, sway=0.01)
    short_noise = _clutter(rng, frames, width=0.5, height=3.0)
    spread_noise = _clutter(rng, frames, width=1.5, height=0.2)
    present = np.zeros((frames, 4), dtype=bool)
    present[:, 0] = True
    present[3:, 1] = True
    present[12:17, 2] = True
    present[10:25, 3] = True
    write_skeleton(folder / "S001C001P003R001A050.skeleton",
                   np.stack([first, second, short_noise, spread_noise], axis=1),
                   [101, 102, 103, 104], present)
    expected["S001C001P003R001A050"] = (_expected_sample(first, second[3:], 3), frames)
    return expected


def test_generated_corpus_converts_to_independently_computed_arrays(tmp_path):
    """Denoising drops the noise bodies (too short, or spread-noisy), actor 1 is the body
    with the most motion, stage 3 translates by actor 1's first spine middle and keeps an absent
    actor zero; the dataset holds exactly those arrays, lengths, labels and xsub splits."""
    expected = _write_corpus(tmp_path / "raw")
    out = tmp_path / "ntu60"
    report = ntu.convert_ntu(tmp_path / "raw", out, progress=False)
    assert report.failures == [] and report.converted == sorted(expected)
    dataset = load_dataset(out)
    assert dataset.names == sorted(expected) and dataset.shape == (3, 3, CORPUS_FRAMES, 25, 2)
    for i, name in enumerate(dataset.names):
        sample, length = expected[name]
        np.testing.assert_array_equal(dataset.data[i], sample, err_msg=name)
        assert dataset.lengths[i] == length
        assert dataset.labels[i] == int(name[-3:]) - 1
    assert dataset.splits == {
        "train": ["S001C001P001R001A001", "S001C002P002R001A002"],
        "test": ["S001C001P003R001A050"],
    }
    two = ntu.process_skeleton(tmp_path / "raw" / "S001C001P003R001A050.skeleton")
    assert (two.denoised.actor1_ids, two.denoised.actor2_ids) == (["101"], ["102"])
    assert sorted(two.denoised.discarded_ids) == ["103", "104"]


# --------------------------------------------------------------------------------------------
# Fuzzing
# --------------------------------------------------------------------------------------------


def _seed_file() -> bytes:
    rng = np.random.default_rng(2)
    frames, bodies = 14, 2
    joints = rng.normal(size=(frames, bodies, 25, 3)).astype(np.float32)
    present = np.ones((frames, bodies), dtype=bool)
    present[3, 1] = False
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as folder:
        path = write_skeleton(Path(folder) / "f.skeleton", joints, [7, 8], present=present,
                                  digits=4)
        return path.read_bytes()


SEED = _seed_file()
MUTATION_BYTES = st.sampled_from(
    [b" ", b"  ", b"\n", b"\r\n", b"\r", b"\t", b"-", b".", b"e", b"E-5", b"0", b"25", b"1",
     b"nan", b"inf", b"x", b"\x00", b"\xff", b"1e999", b"999999999999"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SEED)), st.integers(0, 8), MUTATION_BYTES),
        min_size=1, max_size=4,
    ),
    truncate=st.one_of(st.none(), st.integers(0, len(SEED))),
)
def test_fuzz_parser_raises_only_format_errors(edits, truncate):
    data = SEED
    for position, deleted, inserted in edits:
        data = data[:position] + inserted + data[position + deleted:]
    if truncate is not None:
        data = data[:truncate]
    try:
        fast = parse._fast_fields(data, "fuzz", USED_FIELDS)
    except ntu.NTUFormatError:
        fast = None
    try:
        strict = parse._strict_fields(parse._normalise_line_endings(data), "fuzz", USED_FIELDS)
    except ntu.NTUFormatError:
        strict = None
    if fast is not None:  # the fast path never accepts what the strict parser rejects
        assert strict is not None and fast[0] == strict[0]
        np.testing.assert_array_equal(fast[1], strict[1])
    try:
        ntu.process_skeleton(data, name="fuzz.skeleton")
    except ntu.NTUFormatError as error:
        assert str(error).startswith("fuzz.skeleton")


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    try:
        ntu.process_skeleton(data, name="r.skeleton")
    except ntu.NTUFormatError:
        pass
