"""Benchmark the NTU RGB+D preprocessing (``shapmix.data.sources.ntu``).

1. Builds a corpus of ``.skeleton`` files from the real raw files in ``../shared/data/ntu``:
   ``--mode rewrite`` parses each source and writes it back with ``write_skeleton``
   (``shapmix.data.sources.ntu.writer``, the package's corpus writer; shifted by
   a small per-file translation so every file differs); ``--mode copy`` copies the bytes under
   new valid sample names.  ``--count`` files (default 200); ``--full`` makes 56,880 (copies).
2. Times the per-file compute (parse + denoise + align, files already in memory) of shapmix's
   parser and pipeline against ``reference_*`` below: a straightforward per-line Python
   implementation of the upstream CTR-GCN scripts, measured side by side in this run.  Both
   are checked to give identical rows.
3. Converts the corpus with 1 and with ``--workers`` processes (files per second) and prints
   the peak resident memory of this process and of its worker processes.

Usage: ``python benchmarks/ntu_prepare.py [--count N | --full] [--workers N] [--mode copy]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from shapmix.data.sources import ntu
from shapmix.data.sources.ntu.writer import write_skeleton

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RAW = REPO_ROOT.parent / "shared" / "data" / "ntu" / "raw"
FULL_NTU60_FILES = 56_880
DEFAULT_COUNT = 200
TIMING_FILES = 60
"""Files of the corpus used for the side-by-side compute timing."""
TIMING_REPEATS = 5
PERTURB_STEP_M = 1e-3
"""Per-file translation of rewritten copies, in metres."""
NAME_FIELDS = (17, 3, 40, 2, 60)
"""Ranges of setup, camera, performer, replication, action used to name corpus files."""


# --------------------------------------------------------------------------------------------
# REFERENCE: the upstream algorithm, per line in plain Python (CTR-GCN's
# get_raw_skes_data.py, get_raw_denoised_data.py, seq_transformation.py for one sample).
# --------------------------------------------------------------------------------------------


def reference_stage1(lines: list[str]) -> dict:
    """get_raw_bodies_data: per-line parsing into a dict of bodies."""
    num_frames = int(lines[0].strip("\r\n"))
    frames_drop = []
    bodies_data: dict = {}
    valid_frames = -1
    current_line = 1
    for f in range(num_frames):
        num_bodies = int(lines[current_line].strip("\r\n"))
        current_line += 1
        if num_bodies == 0:
            frames_drop.append(f)
            continue
        valid_frames += 1
        joints = np.zeros((num_bodies, 25, 3), dtype=np.float32)
        colors = np.zeros((num_bodies, 25, 2), dtype=np.float32)
        for b in range(num_bodies):
            body_id = lines[current_line].strip("\r\n").split()[0]
            current_line += 1
            num_joints = int(lines[current_line].strip("\r\n"))
            current_line += 1
            for j in range(num_joints):
                temp_str = lines[current_line].strip("\r\n").split()
                joints[b, j, :] = np.array(temp_str[:3], dtype=np.float32)
                colors[b, j, :] = np.array(temp_str[5:7], dtype=np.float32)
                current_line += 1
            if body_id not in bodies_data:
                body_data = {
                    "joints": joints[b], "colors": colors[b, np.newaxis],
                    "interval": [valid_frames],
                }
            else:
                body_data = bodies_data[body_id]
                body_data["joints"] = np.vstack((body_data["joints"], joints[b]))
                body_data["colors"] = np.vstack((body_data["colors"], colors[b, np.newaxis]))
                body_data["interval"].append(body_data["interval"][-1] + 1)
            bodies_data[body_id] = body_data
    if len(bodies_data) > 1:
        for body_data in bodies_data.values():
            body_data["motion"] = np.sum(np.var(body_data["joints"], axis=0))
    return {"data": bodies_data, "num_frames": num_frames - len(frames_drop)}


def _reference_one_actor(body_data: dict, num_frames: int) -> np.ndarray:
    joints = np.zeros((num_frames, 75), dtype=np.float32)
    start, end = body_data["interval"][0], body_data["interval"][-1]
    joints[start:end + 1] = body_data["joints"].reshape(-1, 75)
    return joints


def reference_stage2(sample: dict) -> np.ndarray:
    """get_raw_denoised_data for one sample (length, spread, motion order, actors)."""
    bodies_data, num_frames = dict(sample["data"]), sample["num_frames"]
    if len(bodies_data) == 1:
        return _reference_one_actor(next(iter(bodies_data.values())), num_frames)
    for body_id, body_data in list(bodies_data.items()):
        if len(body_data["interval"]) <= 11:
            del bodies_data[body_id]
    if len(bodies_data) != 1:
        for body_id, body_data in list(bodies_data.items()):
            if len(bodies_data) == 1:
                break
            points = body_data["joints"].reshape(-1, 25, 3)
            valid = [
                i for i in range(points.shape[0])
                if (points[i, :, 0].max() - points[i, :, 0].min())
                <= 0.8 * (points[i, :, 1].max() - points[i, :, 1].min())
            ]
            num_noise = len(body_data["interval"]) - len(valid)
            if num_noise == 0:
                continue
            if num_noise / float(len(body_data["interval"])) >= 0.69754:
                del bodies_data[body_id]
            else:
                clean = points[valid]
                body_data["motion"] = min(
                    body_data["motion"], np.sum(np.var(clean.reshape(-1, 3), axis=0))
                )
    ordered = sorted(bodies_data.items(), key=lambda item: item[1]["motion"], reverse=True)
    if len(ordered) == 1:
        joints = _reference_one_actor(ordered[0][1], num_frames)
    else:
        joints = np.zeros((num_frames, 150), dtype=np.float32)
        actor1 = ordered[0][1]
        start1, end1 = actor1["interval"][0], actor1["interval"][-1]
        joints[start1:end1 + 1, :75] = actor1["joints"].reshape(-1, 75)
        start2, end2 = 0, 0
        for _, actor in ordered[1:]:
            start, end = actor["interval"][0], actor["interval"][-1]
            if min(end1, end) - max(start1, start) <= 0:
                joints[start:end + 1, :75] = actor["joints"].reshape(-1, 75)
                start1, end1 = min(start, start1), max(end, end1)
            elif min(end2, end) - max(start2, start) <= 0:
                joints[start:end + 1, 75:] = actor["joints"].reshape(-1, 75)
                start2, end2 = min(start, start2), max(end, end2)
    return joints[np.where(joints.sum(axis=1) != 0)[0]]


def reference_stage3(ske_joints: np.ndarray, max_frames: int = 300) -> np.ndarray:
    """seq_translation + align_frames (NTU60) for one sample."""
    num_frames = ske_joints.shape[0]
    num_bodies = 1 if ske_joints.shape[1] == 75 else 2
    if num_bodies == 2:
        missing_frames_1 = np.where(ske_joints[:, :75].sum(axis=1) == 0)[0]
        missing_frames_2 = np.where(ske_joints[:, 75:].sum(axis=1) == 0)[0]
    i = 0
    while i < num_frames:
        if np.any(ske_joints[i, :75] != 0):
            break
        i += 1
    origin = np.copy(ske_joints[i, 3:6])
    for f in range(num_frames):
        ske_joints[f] -= np.tile(origin, 25 * num_bodies)
    if num_bodies == 2:
        ske_joints[missing_frames_1, :75] = 0
        ske_joints[missing_frames_2, 75:] = 0
    aligned = np.zeros((max_frames, 150), dtype=np.float32)
    if num_bodies == 1:
        aligned[:num_frames] = np.hstack((ske_joints, np.zeros_like(ske_joints)))
    else:
        aligned[:num_frames] = ske_joints
    return aligned


def reference_process(data: bytes) -> np.ndarray:
    """The reference pipeline on a file's bytes (text-mode reading as upstream)."""
    lines = data.decode("ascii").splitlines(keepends=True)
    return reference_stage3(reference_stage2(reference_stage1(lines)))


# --------------------------------------------------------------------------------------------
# Corpus, timing, conversion
# --------------------------------------------------------------------------------------------


def corpus_names(count: int) -> list[str]:
    """``count`` distinct valid NTU60 sample names."""
    setups, cameras, performers, replications, actions = NAME_FIELDS
    names = []
    for index in range(count):
        action = index % actions
        rest = index // actions
        replication = rest % replications
        rest //= replications
        camera = rest % cameras
        rest //= cameras
        performer = rest % performers
        setup = (rest // performers) % setups
        names.append(
            f"S{setup + 1:03d}C{camera + 1:03d}P{performer + 1:03d}"
            f"R{replication + 1:03d}A{action + 1:03d}"
        )
    return names


def rewrite(raw: ntu.RawSkeleton, path: Path, shift: float) -> None:
    """Write a parsed file back with ``write_skeleton``, translated by ``shift`` metres."""
    kept = np.setdiff1d(np.arange(raw.num_frames_in_file), raw.frames_drop)
    frames, bodies = raw.num_frames_in_file, len(raw.bodies)
    joints = np.zeros((frames, bodies, ntu.NUM_JOINTS, 3))
    colors = np.zeros((frames, bodies, ntu.NUM_JOINTS, 2))
    present = np.zeros((frames, bodies), dtype=bool)
    for b, body in enumerate(raw.bodies):
        rows = kept[body.frames]
        joints[rows, b] = body.joints + np.float32(shift)
        colors[rows, b] = body.colors
        present[rows, b] = True
    write_skeleton(path, joints, raw.body_ids, present=present, colors=colors)


def build_corpus(raw_dir: Path, out_dir: Path, count: int, mode: str) -> list[Path]:
    sources = sorted(raw_dir.glob("*.skeleton"))
    if not sources:
        raise SystemExit(f"no .skeleton files in {raw_dir}")
    parsed = [ntu.read_skeleton(path) for path in sources] if mode == "rewrite" else None
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(corpus_names(count)):
        target = out_dir / f"{name}.skeleton"
        source = index % len(sources)
        if mode == "copy":
            shutil.copyfile(sources[source], target)
        else:
            rewrite(parsed[source], target, PERTURB_STEP_M * index)
        paths.append(target)
    return paths


def time_per_file(functions: dict, datas: list[bytes]) -> dict[str, float]:
    """Best-of-repeats mean seconds per file of each function, the functions interleaved in
    every repeat so that a changing machine load affects them alike."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(TIMING_REPEATS):
        for label, function in functions.items():
            started = time.perf_counter()
            for data in datas:
                function(data)
            best[label] = min(best[label], (time.perf_counter() - started) / len(datas))
    return best


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its (waited-for) children."""
    kib = 1024.0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib
    return own, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--full", action="store_true", help=f"{FULL_NTU60_FILES} files")
    parser.add_argument("--mode", choices=("rewrite", "copy"), default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    count = FULL_NTU60_FILES if args.full else args.count
    mode = args.mode or ("copy" if args.full else "rewrite")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ntu_bench_"))
    corpus = workdir / "raw"
    try:
        started = time.perf_counter()
        paths = build_corpus(args.raw, corpus, count, mode)
        print(f"corpus: {len(paths)} files ({mode}) in {time.perf_counter() - started:.1f} s")

        datas = [path.read_bytes() for path in paths[:TIMING_FILES]]
        for data in datas:
            ours = ntu.process_skeleton(data).row
            if not np.array_equal(ours, reference_process(data)):
                raise SystemExit("shapmix and the reference disagree")
        seconds = time_per_file(
            {
                "reference": reference_process,
                "shapmix": ntu.process_skeleton,
                "parse": ntu.parse_skeleton,
            },
            datas,
        )
        reference_s, ours_s, parse_s = (seconds[k] for k in ("reference", "shapmix", "parse"))
        frames = statistics.mean(ntu.parse_skeleton(d).num_frames_in_file for d in datas)
        print(f"compute per file ({len(datas)} files, {frames:.0f} frames on average, 1 core):")
        print(f"  reference (per-line Python, upstream algorithm): {reference_s * 1e3:7.2f} ms")
        print(f"  shapmix (parse + denoise + align):               {ours_s * 1e3:7.2f} ms"
              f"  ({reference_s / ours_s:.1f}x faster)")
        print(f"  shapmix stage 1 alone, colours included:          {parse_s * 1e3:7.2f} ms")

        for workers in sorted({1, max(1, args.workers)}):
            out = workdir / f"out_w{workers}"
            report = ntu.convert_ntu(corpus, out, workers=workers, progress=False)
            print(f"convert, {workers} worker(s): {report.files_per_second:7.1f} "
                  f"files/s ({report.seconds:.1f} s, {len(report.converted)} converted, "
                  f"{len(report.failures)} failed)")
            shutil.rmtree(out)
        own, children = peak_rss_mib()
        print(f"peak memory: this process {own:.0f} MiB, worker processes {children:.0f} MiB")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
