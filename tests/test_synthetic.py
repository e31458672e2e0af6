"""Tests of the synthetic long-tailed skeleton benchmark (shapmix.data.synthetic)."""

from __future__ import annotations

import re
from itertools import combinations

import numpy as np
import pytest
from pydantic import ValidationError

from shapmix.data.format import load_dataset
from shapmix.data.longtail import longtail_counts
from shapmix.data.synthetic import (
    FK_PARENT,
    KINEMATIC_ROOT,
    REST_POSE,
    SynthConfig,
    generate_synthetic,
    make_class_specs,
    make_subjects,
    primitive_names,
    synthesize_sequences,
)
from shapmix.skeleton.layouts import NTU25

PARTS = NTU25.part_names

# A small benchmark: 6 classes (2 of them interactions), head 24 samples, tail 3.
SMALL = {
    "seed": 3, "num_classes": 6, "n_max": 24, "imbalance_factor": 8.0, "test_per_class": 4,
    "frames": 32, "min_frames": 20, "max_frames": 32, "num_subjects": 8,
    "two_person_fraction": 0.34,
}
# Clean kinematics: no sensor noise, no tracking dropouts.
CLEAN = {"jitter_std": 0.0, "dropout_prob": 0.0}

# Reference joints defining each part's local frame (rigid under that part's own motion), and
# the joints whose motion is measured in it.
ANCHORS = {"torso": (0, 12, 16), "left_arm": (1, 20, 4, 8), "right_arm": (1, 20, 4, 8),
           "left_leg": (0, 12, 16), "right_leg": (0, 12, 16)}
MEASURED = {"torso": (1, 20, 2, 3), "left_arm": (5, 6, 7, 21, 22), "right_arm": (9, 10, 11, 23, 24),
            "left_leg": (13, 14, 15), "right_leg": (17, 18, 19)}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate_synthetic(SynthConfig(**SMALL), tmp_path_factory.mktemp("synth"))


def _clean_batch(config: SynthConfig, per_class: int, seed: int = 0):
    labels = np.repeat(np.arange(config.num_classes), per_class)
    subjects = np.random.default_rng(seed).integers(0, config.num_subjects, size=labels.size)
    data, lengths = synthesize_sequences(config, labels, subjects, np.random.default_rng(seed))
    return labels, subjects, data, lengths


def _local_parts(sequence: np.ndarray):
    """For one ``(T, V, 3)`` sequence: part name -> measured joints ``(T, J, 3)`` in the part's
    anchor frame (per-frame Kabsch alignment of the anchor joints onto the rest pose)."""
    local = {}
    for part in PARTS:
        anchor = list(ANCHORS[part])
        centre = sequence[:, anchor].mean(axis=1, keepdims=True)
        rest = REST_POSE[anchor] - REST_POSE[anchor].mean(axis=0)
        u, _, vt = np.linalg.svd((sequence[:, anchor] - centre).transpose(0, 2, 1) @ rest)
        u[:, :, -1] *= np.sign(np.linalg.det(u @ vt))[:, None]
        local[part] = (sequence[:, list(MEASURED[part])] - centre) @ (u @ vt)
    return local


def _actor_parts(data, lengths):
    for sample, length in zip(data, lengths):
        yield _local_parts(sample[:, :length, :, 0].transpose(1, 2, 0).astype(np.float64))


def _part_energy(data, lengths) -> np.ndarray:
    """``(N, 5)`` mean distance (m) of each part's joints from their mean local position."""
    return np.array([
        [np.linalg.norm(p - p.mean(axis=0), axis=-1).mean() for p in parts.values()]
        for parts in _actor_parts(data, lengths)
    ])


def _pose_features(data, lengths) -> np.ndarray:
    """``(N, F)`` time mean and std of every measured joint's local coordinates."""
    return np.array([
        np.concatenate([np.concatenate([p.mean(axis=0).ravel(), p.std(axis=0).ravel()])
                        for p in parts.values()])
        for parts in _actor_parts(data, lengths)
    ])


def _bone_lengths(data: np.ndarray, person: int = 0) -> np.ndarray:
    """``(N, T, V)`` length of the bone from each joint's kinematic parent (root: 0)."""
    xyz = data[..., person].transpose(0, 2, 3, 1).astype(np.float64)
    return np.linalg.norm(xyz - xyz[:, :, FK_PARENT], axis=-1)


# ---------------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path):
    config = SynthConfig(**SMALL)
    a = generate_synthetic(config, tmp_path / "a")
    b = generate_synthetic(config, tmp_path / "b")
    assert (tmp_path / "a" / "data.npy").read_bytes() == (tmp_path / "b" / "data.npy").read_bytes()
    assert a.names == b.names and a.splits == b.splits and a.metadata == b.metadata
    other = generate_synthetic(config.model_copy(update={"seed": 4}), tmp_path / "c")
    assert other.data.shape[1:] == a.data.shape[1:]
    n = min(len(a), len(other))
    assert not np.array_equal(np.asarray(a.data[:n]), np.asarray(other.data[:n]))
    labels = np.arange(config.num_classes)
    x1, _ = synthesize_sequences(config, labels, labels, np.random.default_rng(7))
    x2, _ = synthesize_sequences(config, labels, labels, np.random.default_rng(7))
    x3, _ = synthesize_sequences(config, labels, labels, np.random.default_rng(8))
    assert x1.tobytes() == x2.tobytes() and not np.array_equal(x1, x3)


def test_shapes_dtypes_names_and_zero_padding(small):
    config = SynthConfig(**SMALL)
    data = np.asarray(small.data)
    assert data.shape == (len(small), 3, config.frames, 25, 2) and data.dtype == np.float32
    assert small.labels.dtype == np.int64 and small.lengths.dtype == np.int64
    assert small.layout.name == "ntu25" and small.num_classes == config.num_classes
    assert small.lengths.min() >= config.min_frames and small.lengths.max() <= config.max_frames
    assert len(np.unique(small.lengths)) > 1, "durations should vary"
    for i, length in enumerate(small.lengths):
        assert not data[i, :, length:].any(), f"sample {i} is not zero after its length"
        assert data[i, :, length - 1, :, 0].any(), f"sample {i} is empty at its last frame"
    labels = np.arange(config.num_classes)
    fresh, lengths = synthesize_sequences(config, labels, labels, np.random.default_rng(0))
    assert fresh.shape == (config.num_classes, 3, config.frames, 25, 2)
    assert fresh.dtype == np.float32
    for sample, length in zip(fresh, lengths):
        assert not sample[:, length:].any() and sample[:, length - 1, :, 0].any()
    for name, label in zip(small.names, small.labels):
        match = re.fullmatch(r"synth_c(\d{3})_s(\d{3})_r(\d{4})", name)
        assert match and int(match.group(1)) == label
        assert int(match.group(2)) == small.metadata["subjects"][name]


def test_second_person_only_in_interaction_classes(small):
    two_person = {small.class_names.index(name) for name in small.metadata["two_person_classes"]}
    assert 1 <= len(two_person) < small.num_classes
    longest_dropout = SynthConfig(**SMALL).dropout_frames[1]
    data = np.asarray(small.data)
    for i, (label, length) in enumerate(zip(small.labels, small.lengths)):
        second = data[i, :, :length, :, 1]
        if label in two_person:
            missing = np.abs(second).sum(axis=(0, 2)) == 0
            assert missing.sum() <= longest_dropout, f"partner of sample {i} is missing"
        else:
            assert not second.any(), f"one-person sample {i} has a second person"


def test_bone_lengths_constant_in_clean_sequences_and_vary_across_subjects():
    config = SynthConfig(**SMALL, **CLEAN)
    labels, subjects, data, lengths = _clean_batch(config, per_class=4)
    expected = make_subjects(config).bone_lengths
    two_person = np.array([spec.two_person for spec in make_class_specs(config)])
    bones = np.arange(NTU25.num_joints) != KINEMATIC_ROOT
    for person in (0, 1):
        lengths_ = _bone_lengths(data, person)
        for i in np.flatnonzero(two_person[labels] if person else np.ones(len(labels), bool)):
            valid = lengths_[i, : lengths[i]][:, bones]
            assert np.ptp(valid, axis=0).max() < 1e-5, f"bone lengths change within sample {i}"
            if person == 0:
                np.testing.assert_allclose(valid[0], expected[subjects[i], bones], atol=1e-5)
    # Subjects differ in body size: the spine (spine base -> spine mid) varies by several cm.
    spine = expected[:, NTU25.joint_names.index("spine_mid")]
    assert np.ptp(spine) > 0.02 and np.ptp(make_subjects(config).scale) > 0.1


def test_jitter_and_dropouts_perturb_the_skeleton():
    base = SynthConfig(**SMALL, **CLEAN)
    labels = np.zeros(20, dtype=np.int64)
    subjects = np.arange(20) % base.num_subjects
    noisy = base.model_copy(update={"jitter_std": 0.004})
    data, lengths = synthesize_sequences(noisy, labels, subjects, np.random.default_rng(0))
    spread = _bone_lengths(data)[:, : lengths.min(), 1:].std(axis=1)
    assert 0.001 < np.median(spread) < 0.01, "jitter should be a few millimetres"
    dropped = base.model_copy(update={"dropout_prob": 1.0})
    data, lengths = synthesize_sequences(dropped, labels, subjects, np.random.default_rng(0))
    clean, _ = synthesize_sequences(base, labels, subjects, np.random.default_rng(0))
    visible = []
    for i, length in enumerate(lengths):
        actor, reference = data[i, :, :length, :, 0], clean[i, :, :length, :, 0]
        changed = np.abs(actor - reference).max(axis=0) > 0.05  # (T, V)
        assert changed.sum(axis=0).max() <= dropped.dropout_frames[1] + 1
        visible.append(changed.any())
    # A frozen joint that was not moving anyway leaves no visible trace; the other kinds do.
    assert np.mean(visible) >= 0.7


def test_splits_long_tailed_train_balanced_test_disjoint(tmp_path, small):
    config = SynthConfig(**SMALL)
    expected = longtail_counts(
        config.num_classes, config.n_max, config.imbalance_factor, config.profile)
    np.testing.assert_array_equal(small.class_counts("train"), expected)
    assert small.metadata["train_counts"] == expected.tolist()
    np.testing.assert_array_equal(small.class_counts("test"), config.test_per_class)
    assert set(small.splits) == {"train", "test"}
    assert not set(small.splits["train"]) & set(small.splits["test"])
    assert len(small) == expected.sum() + config.num_classes * config.test_per_class
    subjects = small.metadata["subjects"]
    performers = {split: {subjects[n] for n in small.splits[split]} for split in ("train", "test")}
    assert not performers["train"] & performers["test"]

    other = SynthConfig(**{**SMALL, "val_per_class": 2, "keep_pool": True, "profile": "step"})
    ds = generate_synthetic(other, tmp_path / "val")
    np.testing.assert_array_equal(
        ds.class_counts("train"), longtail_counts(6, 24, 8.0, "step"))
    np.testing.assert_array_equal(ds.class_counts("val"), 2)
    np.testing.assert_array_equal(ds.class_counts("pool"), other.pool_per_class)
    train, val, test = (set(ds.splits[s]) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val <= set(ds.splits["pool"])
    assert load_dataset(tmp_path / "val").splits == ds.splits


def test_salient_parts_metadata(small):
    salient = small.metadata["salient_parts"]
    assert list(salient) == small.class_names
    for name, parts in salient.items():
        assert 1 <= len(parts) <= 3 and len(set(parts)) == len(parts), name
        assert set(parts) <= set(PARTS), name
    specs = make_class_specs(SynthConfig(**SMALL))
    for spec in specs:
        assert {m.part for m in spec.motions} == set(spec.salient_parts)
        assert all(m.primitive in primitive_names(m.part) for m in spec.motions)
    counts = [len(spec.salient_parts) for spec in make_class_specs(SynthConfig(num_classes=60))]
    assert set(counts) == {1, 2, 3}


def test_classes_combine_shared_part_vocabularies_into_unique_combinations():
    """Every motion comes from its part's vocabulary (identical parameters across the classes
    that use it), no two classes have the same motions, and most motions of multi-part classes
    are shared with another class, so a class is told apart only by its combination."""

    def key(motion):
        return motion.person, motion.part, motion.primitive, motion.amplitude, motion.phase, motion.axis

    config = SynthConfig(num_classes=30)
    specs = make_class_specs(config)
    actor_motions = [{key(m) for m in spec.motions if m.person == 0} for spec in specs]
    for part in PARTS:
        used = {k for motions in actor_motions for k in motions if k[1] == part}
        assert 1 <= len(used) <= config.motions_per_part, part
    signatures = [frozenset((m.person,) + key(m)[1:] for m in spec.motions) for spec in specs]
    # No class's motions contain another's (so none is told apart only by a missing motion).
    assert not any(a <= b for i, a in enumerate(signatures) for j, b in enumerate(signatures) if i != j)
    multi = [c for c, spec in enumerate(specs) if len(spec.salient_parts) > 1]
    shared = [
        any(motion in actor_motions[other] for other in range(len(specs)) if other != c)
        for c in multi for motion in actor_motions[c]
    ]
    assert np.mean(shared) > 0.8
    def arm_primitives(num_classes, motions_per_part):
        wider = make_class_specs(SynthConfig(num_classes=num_classes, motions_per_part=motions_per_part))
        return {m.primitive for spec in wider for m in spec.motions if m.part == "left_arm"}

    assert len(arm_primitives(5, 1)) == 1
    assert len(arm_primitives(30, 5)) > 3
    with pytest.raises(ValueError, match="motions_per_part"):
        make_class_specs(SynthConfig(num_classes=30, motions_per_part=1))


def test_salient_parts_move_more_than_the_others():
    """Motion energy of each part in its own local frame, per class.  Parts differ in how much
    they can move (a nod moves the joints less than an idle arm swing), so each part's energy is
    also compared with its baseline: its mean energy in the classes where it is not salient."""
    config = SynthConfig(seed=1, frames=48, min_frames=40, max_frames=48, **CLEAN)
    specs = make_class_specs(config)
    labels, _, data, lengths = _clean_batch(config, per_class=6)
    energy = _part_energy(data, lengths)
    mean = np.array([energy[labels == c].mean(axis=0) for c in range(config.num_classes)])
    salient = np.array([[part in spec.salient_parts for part in PARTS] for spec in specs])
    assert mean[salient].mean() > 2 * mean[~salient].mean()
    baseline = np.array([mean[~salient[:, k], k].mean() for k in range(len(PARTS))])
    relative = mean / baseline
    # A weak motion (a nod) can move its part less than a strong distractor gesture (a
    # half-amplitude bow) moves it in other classes; allow that for a few classes only.
    weak = set()
    for c, spec in enumerate(specs):
        if not (relative[c, salient[c]] > 1.1).all():
            weak.add(spec.name)
        if not salient[c].all():
            if relative[c, salient[c]].mean() / relative[c, ~salient[c]].mean() <= 1.2:
                weak.add(spec.name)
    assert len(weak) <= 0.1 * len(specs), sorted(weak)


def test_classes_sharing_a_part_are_distinguishable():
    """Pairs of classes with a motion in common are told apart by a nearest-centroid classifier
    on the 10 most discriminative pose statistics (Fisher score on 12 training samples per
    class; evaluated on 12 held-out samples per class)."""
    config = SynthConfig(seed=0, frames=48, min_frames=40, max_frames=48, **CLEAN)
    specs = make_class_specs(config)
    labels, _, data, lengths = _clean_batch(config, per_class=24)
    partner = np.abs(data[..., 1]).sum(axis=(1, 2, 3)) > 0
    features = np.concatenate([_pose_features(data, lengths), partner[:, None]], axis=1)
    accuracies = []
    for a, b in combinations(range(config.num_classes), 2):
        motions = [{(m.part, m.primitive) for m in specs[c].motions if m.person == 0}
                   for c in (a, b)]
        if not motions[0] & motions[1]:
            continue
        fa, fb = features[labels == a], features[labels == b]
        spread = np.sqrt((fa[:12].var(axis=0) + fb[:12].var(axis=0)) / 2) + 1e-3
        top = np.argsort(np.abs(fa[:12].mean(axis=0) - fb[:12].mean(axis=0)) / spread)[-10:]
        centres = np.stack([fa[:12].mean(axis=0), fb[:12].mean(axis=0)])[:, top] / spread[top]
        held_out = np.concatenate([fa[12:], fb[12:]])[:, top] / spread[top]
        predicted = np.linalg.norm(held_out[:, None] - centres[None], axis=-1).argmin(axis=1)
        accuracies.append((predicted == np.repeat([0, 1], 12)).mean())
        assert accuracies[-1] >= 0.75, f"{specs[a].name} vs {specs[b].name}: {accuracies[-1]:.2f}"
    assert len(accuracies) >= 3, "the default classes should include pairs that share a part"
    assert np.mean(accuracies) > 0.9


def test_coordinates_finite_and_metric(small):
    config = SynthConfig(**SMALL)
    data = np.asarray(small.data)
    assert np.isfinite(data).all()
    xyz = data.transpose(0, 4, 2, 3, 1).reshape(-1, 25, 3)  # (N * M * T, V, 3)
    present = xyz[np.abs(xyz).sum(axis=(1, 2)) > 0]
    assert present.size
    x, y, z = present[..., 0], present[..., 1], present[..., 2]
    assert np.abs(x).max() < 2.5 and np.abs(y).max() < 1.8
    assert 1.0 < z.min() and z.max() < 5.5
    pelvis_depth = present[:, 0, 2]
    lo, hi = config.distance_range
    assert lo - 0.9 < np.median(pelvis_depth) < hi + 0.9
    height = present[:, 3, 1] - present[:, [15, 19], 1].min(axis=1)  # head above the feet
    assert 1.0 < np.median(height) < 1.9


def test_config_validation():
    with pytest.raises(ValidationError):
        SynthConfig(unknown_knob=1)
    with pytest.raises(ValidationError):
        SynthConfig(min_frames=50, max_frames=40)
    with pytest.raises(ValidationError):
        SynthConfig(max_frames=80, frames=64)
    with pytest.raises(ValidationError):
        SynthConfig(samples_per_class=100, n_max=200)
    with pytest.raises(ValidationError):
        SynthConfig(jitter_std=-0.001)
    with pytest.raises(ValidationError):
        SynthConfig(body_scale_range=(1.2, 0.9))
    assert SynthConfig(val_per_class=5).pool_per_class == 205
    assert SynthConfig.model_validate(SynthConfig().model_dump()) == SynthConfig()


def test_cache_key_covers_the_settings_and_the_generator_version(monkeypatch):
    from shapmix.config import DataConfig
    from shapmix.engine import builders

    config = DataConfig()
    path = builders.synthetic_dataset_path(config)
    assert builders.synthetic_dataset_path(DataConfig()) == path
    assert builders.synthetic_dataset_path(DataConfig(synthetic=SynthConfig(seed=1))) != path
    monkeypatch.setattr(builders, "GENERATOR_VERSION", builders.GENERATOR_VERSION + 1)
    assert builders.synthetic_dataset_path(config) != path


def test_a_run_that_loses_the_race_to_generate_the_cache_reads_the_winners_dataset(monkeypatch, tmp_path):
    """Two processes starting on the same uncached dataset: the one that finishes second must
    neither fail nor overwrite (and so corrupt, under the other's memory map) the first one's."""
    from shapmix.config import DataConfig
    from shapmix.distributed import DistributedContext
    from shapmix.engine import builders

    monkeypatch.setenv(builders.CACHE_ENV, str(tmp_path))
    config = DataConfig(synthetic=SynthConfig(**SMALL))
    path = builders.synthetic_dataset_path(config)
    real_generate = builders.generate_synthetic
    winners_file = {}

    def generate_while_a_competitor_finishes_first(synth, out_dir):
        real_generate(synth, path.parent / "winner")
        (path.parent / "winner").rename(path)
        stat = (path / "data.npy").stat()
        winners_file.update(inode=stat.st_ino, mtime=stat.st_mtime_ns)
        return real_generate(synth, out_dir)

    monkeypatch.setattr(builders, "generate_synthetic", generate_while_a_competitor_finishes_first)
    dataset = builders._resolve_dataset(config, DistributedContext())
    stat = (path / "data.npy").stat()
    assert (stat.st_ino, stat.st_mtime_ns) == (winners_file["inode"], winners_file["mtime"])
    assert dataset.data.shape[0] == len(dataset.labels) > 0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no staging left behind
    # A later run finds the cache and generates nothing.
    monkeypatch.setattr(builders, "generate_synthetic", lambda *a: pytest.fail("regenerated"))
    builders._resolve_dataset(config, DistributedContext())
    assert (path / "data.npy").stat().st_mtime_ns == winners_file["mtime"]


def test_a_half_written_cache_of_an_older_version_is_replaced(monkeypatch, tmp_path):
    from shapmix.config import DataConfig
    from shapmix.distributed import DistributedContext
    from shapmix.engine import builders

    monkeypatch.setenv(builders.CACHE_ENV, str(tmp_path / "cache"))
    config = DataConfig(synthetic=SynthConfig(**SMALL))
    path = builders.synthetic_dataset_path(config)
    path.mkdir(parents=True)
    (path / "data.npy").write_bytes(b"truncated")  # no meta.json: an interrupted generation
    dataset = builders._resolve_dataset(config, DistributedContext())
    assert (path / "meta.json").exists()
    assert np.array_equal(dataset.data, generate_synthetic(SynthConfig(**SMALL), tmp_path / "fresh").data)
