"""The paper's experiments (``configs/paper/``): every file loads, every row validates, builds and trains.

Each experiment's rows are built (model, data pipeline, loss, method, sampler: the whole
:class:`Trainer`) on a tiny generated dataset with the experiment's classes, layout and
persons.  Rows that differ only in hyper-parameter values share one real training run: every
distinct method, loss (with or without deferred re-weighting), sampler, guidance, modality and
second stage trains one step and is evaluated (two-stage rows: stage 1, then stage 2 from its
``last.pt``).  Only sizes shrink (channels, blocks, window, batch, epochs); the rows' method,
loss, sampler and fine-tuning settings stay as the files state them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from shapmix.bench.experiment import (
    load_experiment,
    packaged_experiments,
    plan_experiment,
    row_configs,
    run_experiment,
)
from shapmix.config import Config, ConfigError, config_to_dict, load_config
from shapmix.mixing.saliency import AUTHORS_TAU
from shapmix.data.format import write_dataset
from shapmix.engine.trainer import Trainer, train
from shapmix.skeleton.layouts import get_layout

EXPERIMENTS = sorted(packaged_experiments())
# The paper's tables, each reproduced by at least one experiment file.
PAPER_TABLES = {
    "paper/table1-ltntu60", "paper/table1-ltntu120", "paper/table3-imbalance",
    "paper/table4-ntu60-xsub", "paper/table4-ntu60-xview", "paper/table4-ntu120-xsub",
    "paper/table4-ntu120-xset", "paper/table7-mixing", "paper/table8-guidance", "paper/table10-parts",
    "paper/table11-frames", "paper/table12-temperature", "paper/table13-cost", "paper/table2-kinetics",
    "paper/table9-backbones-ltntu60", "paper/table9-backbones-ntu120-xsub", "paper/table9-backbones-ntu120-xset",
}
# The backbone tables: appendix B.2 (long-tailed) and Table 9 (balanced, with FR Head rows).
BACKBONE_TABLES = {
    "paper/table9-backbones-ltntu60": (("ctrgcn", "stgcnpp", "infogcn", "hdgcn"), ("ce", "shapmix")),
    "paper/table9-backbones-ntu120-xsub": (("agcn", "ctrgcn", "infogcn", "hdgcn"), ("none", "stmix", "frhead")),
    "paper/table9-backbones-ntu120-xset": (("agcn", "ctrgcn", "infogcn", "hdgcn"), ("none", "stmix", "frhead")),
}
# Shap-Mix's mixing settings (Section 3.2, appendix A.3).
PAPER_PARTS = (2, 3)
PAPER_WINDOW_FRACTION = (0.4, 0.7)
# The rows of the paper's Table 1 in its order, and what each trains per stage on the LT recipe
# (100 epochs): (loss, deferred re-weighting epoch, mixing method, sampler, second stage,
# classifier).  Re-weighting starts at 80% of the epochs (Cao et al.), IB at half (Park et al.).
_PLAIN = ("ce", None, "none", "random", "none", None)
TABLE1_ROWS = {
    "ce": [_PLAIN],
    "mixup": [("ce", None, "mixup", "random", "none", None)],
    "remix_drw": [("ce", 80, "remix", "random", "none", None)],
    "fsa": [_PLAIN, ("ce", None, "fsa", "random", "classifier", None)],
    "glmc": [("ce", None, "glmc", "random", "none", None)],
    "brl": [("ce", None, "brl", "random", "none", None)],
    "ros": [("ce", None, "none", "ros", "none", None)],
    "focal": [("focal", None, "none", "random", "none", None)],
    "cb": [("class_balanced", None, "none", "random", "none", None)],
    "ldam_drw": [("ldam", 80, "none", "random", "none", "cosine")],
    "bs": [("balanced_softmax", None, "none", "random", "none", None)],
    "ib": [("influence_balanced", 50, "none", "random", "none", None)],
    "bs_maxnorm": [_PLAIN, ("balanced_softmax", None, "none", "random", "maxnorm", None)],
    "cbs": [("ce", None, "none", "class_balanced", "none", None)],
    "crt": [_PLAIN, ("ce", None, "none", "class_balanced", "crt", None)],
    "paco": [("ce", None, "paco", "random", "none", None)],
    "bcl": [("ce", None, "bcl", "random", "none", "cosine")],
    "ride": [("ldam", 80, "ride", "random", "none", "cosine"), ("ce", None, "ride", "class_balanced", "ride_router", "cosine")],
    "cutmix": [("ce", None, "cutmix", "random", "none", None)],
    "stmix": [("balanced_softmax", None, "stmix", "random", "none", None)],
    "shapmix": [("balanced_softmax", None, "shapmix", "random", "none", None)],
}
FRAMES = 20
PERSONS = 2
CHANNELS = 3
TEST_PER_CLASS = 1


def shrink(data_path: Path, batch: int) -> list[str]:
    """Sizes only: a narrow network, short clips, one epoch of one step, no saliency warm-up."""
    return [
        f"data.path={data_path}",
        "data.window=16",
        "data.min_crop_frames=4",
        "data.num_workers=0",
        "model.args={base_channels: 8, num_blocks: 2}",
        # two blocks make two stages, so FR Head refines three levels (first block of each stage, last)
        "method.frhead_level_weights=[0.2, 0.5, 1.0]",
        "model.ride_shared_stages=1",  # ... and RIDE's experts own the second
        "schedule.epochs=1",
        "schedule.warmup_epochs=0",
        # Guided mixing (and the estimates feeding it) from the first step.
        "method.warmup_epochs=0",
        f"train.batch_size={batch}",
        f"train.eval_batch_size={batch}",
        "train.threads=1",
        "log.progress=false",
        "log.plots=false",
    ]


STAGE2_SHRINK = ["schedule.epochs=1"]


def make_dataset(root: Path, num_classes: int, layout: str, train_splits: set[str]) -> Path:
    """One training sample per class (every named split holds them all) and one test sample per class."""
    rng = np.random.default_rng(num_classes)
    count = 2 * num_classes
    joints = get_layout(layout).num_joints
    data = rng.normal(scale=0.3, size=(count, CHANNELS, FRAMES, joints, PERSONS)).astype(np.float32)
    labels = np.concatenate([np.arange(num_classes), np.arange(num_classes)])
    names = [f"train{i:03d}" for i in range(num_classes)] + [f"test{i:03d}" for i in range(num_classes)]
    lengths = rng.integers(FRAMES // 2, FRAMES + 1, size=count)
    splits = {split: names[:num_classes] for split in train_splits}
    splits["test"] = names[num_classes:]
    write_dataset(root, data, labels, lengths, names, layout, [f"action{c}" for c in range(num_classes)], splits)
    return root


def training_of(config: Config) -> tuple:
    """What a stage trains: loss, its re-weighting or IB start epoch, mixing, sampler, second
    stage, classifier."""
    loss = config.loss
    start = loss.drw_epoch if loss.drw_epoch is not None else (
        loss.ib_start_epoch if loss.name == "influence_balanced" else None
    )
    return (
        loss.name, start, config.method.name, config.data.sampler, config.finetune.kind,
        config.model.args.get("classifier"),
    )


def structure(config: Config) -> tuple:
    """What makes a row a different kind of training (hyper-parameter values aside)."""
    method = config.method
    return (
        config.model.name,
        config.loss.name,
        config.loss.drw_epoch is not None,
        method.name,
        method.guidance if method.name == "shapmix" else None,
        config.data.sampler,
        config.data.modality,
        config.finetune.kind,
        config.model.args.get("classifier"),
    )


@pytest.fixture(scope="module")
def experiments():
    return {name: load_experiment(name) for name in EXPERIMENTS}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, experiments):
    """A tiny dataset per class count and layout, holding every training split the experiments name."""
    splits: dict[tuple[int, str], set[str]] = {}
    for experiment in experiments.values():
        key = (experiment.spec.num_classes, experiment.spec.layout)
        for stages in row_configs(experiment).values():
            splits.setdefault(key, set()).add(stages[0].data.train_split)
        for column in experiment.spec.columns.values():
            splits[key] |= {item.split("=", 1)[1] for item in column if item.startswith("data.train_split=")}
    root = tmp_path_factory.mktemp("paper_data")
    return {
        (classes, layout): make_dataset(root / f"{layout}_{classes}", classes, layout, names)
        for (classes, layout), names in splits.items()
    }


def test_every_table_of_the_paper_has_an_experiment_file():
    assert PAPER_TABLES <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_reproduces_the_paper_settings(name, experiments):
    experiment = experiments[name]
    if name == "paper/table2-kinetics":
        # appendix A.2 / A.3 and the authors' Kinetics config: 100 frames, cosine, 70 epochs, batch 80
        assert (experiment.spec.num_classes, experiment.spec.layout) == (400, "coco17")
        assert experiment.spec.methods == ["ce", "brl", "glmc", "shapmix"]
        for row, stages in row_configs(experiment).items():
            first = stages[0]
            assert (first.schedule.kind, first.schedule.epochs, first.schedule.warmup_epochs) == ("cosine", 70, 5), row
            assert (first.optim.lr, first.optim.weight_decay, first.train.batch_size) == (0.1, 5e-4, 80), row
            assert (first.data.window, first.data.rotation, first.data.test_split) == (100, 0.0, "test"), row
        shapmix = row_configs(experiment)["shapmix"][0].method
        assert (shapmix.estimate_fraction, shapmix.shapley_estimator, shapmix.warmup_epochs) == (1.0, "sampled", 5)
        assert shapmix.tau == AUTHORS_TAU
        return
    assert experiment.spec.num_classes in (60, 120) and experiment.spec.layout == "ntu25"
    configs = row_configs(experiment)  # every row's every stage validates
    long_tailed = "exp_" in configs[experiment.rows[0].name][0].data.train_split
    for row, stages in configs.items():
        first = stages[0]
        schedule = first.schedule
        # Section 4.2 / appendix A.3: 100 epochs, steps 60/80 long-tailed; 65, steps 35/55 balanced
        expected = (100, [60, 80]) if long_tailed else (65, [35, 55])
        assert (schedule.epochs, schedule.milestones, schedule.warmup_epochs) == (*expected, 5), row
        assert (first.optim.lr, first.train.batch_size, first.data.window) == (0.1, 64, 64), row
        if first.method.name == "shapmix":
            # the paper estimates every sample (the library's default is a quarter of a batch)
            assert first.method.estimate_fraction == 1.0, row
            assert first.method.shapley_estimator == "sampled", row
            assert (first.method.momentum, first.method.warmup_epochs) == (0.9, 5), row
            if name != "paper/table12-temperature":  # the authors' sharpness, not the library default
                assert first.method.tau == AUTHORS_TAU, row
        if first.method.name in ("shapmix", "stmix"):
            # Section 3.2 / appendix A.3: combinations of 2-3 parts, a window of 40-70% of the
            # segments (Tables 10 and 11 vary exactly these, checked below)
            if name != "paper/table10-parts":
                assert (first.method.min_parts, first.method.max_parts) == PAPER_PARTS, row
            if name != "paper/table11-frames":
                assert first.method.window_fraction == PAPER_WINDOW_FRACTION, row
        if not long_tailed:
            assert first.loss.name == "ce" and first.data.sampler == "random", row
    if name == "paper/table12-temperature":
        # the paper's 0.1 .. 0.5 on the authors' x10 table
        assert [stages[0].method.tau for stages in configs.values()] == [0.01, 0.02, 0.03, 0.04, 0.05]
    if name in BACKBONE_TABLES:
        backbones, kinds = BACKBONE_TABLES[name]
        rows = [(stages[0].model.name, stages[0].method.name, stages[0].loss.name) for stages in configs.values()]
        # every backbone at its original size, without and with the paper's mixing (Shap-Mix with
        # Balanced Softmax long-tailed, ST-Mix with cross entropy balanced), and with FR Head (balanced)
        expected_rows = {"ce": ("none", "ce"), "shapmix": ("shapmix", "balanced_softmax"),
                         "none": ("none", "ce"), "stmix": ("stmix", "ce"), "frhead": ("frhead", "ce")}
        assert rows == [(backbone, *expected_rows[kind]) for backbone in backbones for kind in kinds]
        assert all(not stages[0].model.args for stages in configs.values())
    if name == "paper/table13-cost":
        assert [configs[f"iter-{n}"][0].method.interval for n in (1, 2, 5)] == [1, 2, 5]
    if name == "paper/table8-guidance":
        for guidance in ("random", "gradcam", "shapley"):
            resampled, reweighted = configs[f"{guidance}-RS"][0], configs[f"{guidance}-RW"][0]
            assert (resampled.method.guidance, resampled.loss.name, resampled.data.sampler) == (guidance, "ce", "class_balanced")
            assert (reweighted.method.guidance, reweighted.loss.name, reweighted.data.sampler) == (guidance, "balanced_softmax", "random")
    if name.startswith("paper/table1-"):
        # the 16 rows of the paper's Table 1, in its order, each training what its method is
        assert [row.name for row in experiment.rows] == list(TABLE1_ROWS)
        for row, stages in configs.items():
            assert [training_of(stage) for stage in stages] == TABLE1_ROWS[row], row
    if name == "paper/table10-parts":
        assert [(c[0].method.min_parts, c[0].method.max_parts) for c in configs.values()] == [
            (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)
        ]
    if name == "paper/table11-frames":
        assert [c[0].method.window_fraction for c in configs.values()] == [
            (0.3, 0.6), (0.3, 0.7), (0.4, 0.7), (0.4, 0.8), (0.5, 0.8)
        ]
    if name == "paper/table3-imbalance":
        jobs = plan_experiment(experiment, Path("/tmp/never-written"))
        assert {job.config.data.train_split for job in jobs} == {f"NTU120_xsub_exp_{f}" for f in (10, 50, 100)}
    if name.startswith("paper/table4-"):
        assert [stages[0].data.modality for stages in configs.values()] == ["joint", "bone", "joint_motion", "bone_motion"]
        assert {stages[0].method.name for stages in configs.values()} == {"stmix"}


def test_a_dataset_with_other_classes_is_refused_before_training(tmp_path, datasets):
    with pytest.raises(ConfigError, match="expects a dataset with 120 classes"):
        run_experiment("paper/table1-ltntu120", tmp_path / "out", [f"data.path={datasets[60, 'ntu25']}"], echo=False)
    assert not (tmp_path / "out" / "ce").exists()


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """``section.key`` -> value of a nested config dict."""
    leaves: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_file_is_its_base_run_and_each_variant_changes_only_its_keys(name, experiments):
    base = load_config(name)  # shapmix train --config paper/... trains the base run
    assert base.name == Path(name).name
    experiment = experiments[name]
    base_leaves = _leaves(config_to_dict(base))
    first_column = next(iter(experiment.spec.columns.values()), [])
    column_keys = {item.split("=", 1)[0] for item in first_column}
    configs = row_configs(experiment)
    for label, overrides in experiment.spec.variants.items():
        changed = {
            key for key, value in _leaves(config_to_dict(configs[label][0])).items() if base_leaves.get(key) != value
        }
        assert changed <= {item.split("=", 1)[0] for item in overrides} | column_keys, label
    for method in experiment.spec.methods:  # a method row inherits no mixing, loss or sampler of the base run
        first = configs[method][0]
        assert training_of(first)[:4] == TABLE1_ROWS[method][0][:4], method


def test_every_row_builds_and_every_kind_of_row_trains_a_step(tmp_path, experiments, datasets):
    started = time.perf_counter()
    kinds: dict[tuple, tuple[str, str]] = {}
    trained: set[Path] = set()
    for name, experiment in experiments.items():
        classes = experiment.spec.num_classes
        dataset = datasets[classes, experiment.spec.layout]
        jobs = plan_experiment(experiment, tmp_path / name, shrink(dataset, classes), STAGE2_SHRINK)
        first_column = next(iter(experiment.spec.columns), None)
        if first_column is not None:  # columns repeat the same rows on another split
            jobs = [job for job in jobs if (tmp_path / name / first_column) in job.out_dir.parents]
        assert all(job.error is None for job in jobs), [job.error for job in jobs if job.error]
        # a kind trains once per layout; the other class counts of that kind build their trainer
        chosen = {
            job.out_dir
            for job in jobs
            if kinds.setdefault((experiment.spec.layout, *structure(job.config)), (name, job.label)) == (name, job.label)
        }
        chosen |= {job.requires for job in jobs if job.out_dir in chosen and job.requires is not None}
        for job in jobs:
            if job.out_dir in chosen:
                result = train(job.config, job.out_dir)
                first_epoch = json.loads((job.out_dir / "metrics.jsonl").read_text().splitlines()[0])
                assert np.isfinite(first_epoch["loss"]), job.label
                assert result["test"]["num_samples"] == classes * TEST_PER_CLASS, job.label
                trained.add(job.out_dir)
            elif job.requires is None:
                # the same kind of training as a row that trained: build its whole trainer only
                Trainer(job.config, job.out_dir).close()
    structures = [kind[2:] for kind in kinds]
    assert {kind[1] for kind in kinds} == {"ctrgcn", "stgcnpp", "agcn", "infogcn", "hdgcn"}  # every backbone trained
    # every loss, sampler, mixing method, guidance, modality and second stage of the files trained
    assert {kind[0] for kind in structures} == {"ce", "balanced_softmax", "focal", "class_balanced", "ldam", "influence_balanced"}
    assert {kind[2] for kind in structures} == {
        "none", "mixup", "cutmix", "stmix", "shapmix", "remix", "glmc", "skelemix", "skelemixclr", "paco", "bcl",
        "brl", "frhead", "fsa", "ride",
    }
    assert {kind[3] for kind in structures} == {None, "shapley", "random", "gradcam"}
    assert {kind[4] for kind in structures} == {"random", "ros", "class_balanced"}
    assert {kind[5] for kind in structures} == {"joint", "bone", "joint_motion", "bone_motion"}
    assert {kind[6] for kind in structures} == {"none", "crt", "maxnorm", "classifier", "ride_router"}
    print(f"{len(trained)} runs of {len(kinds)} kinds trained in {time.perf_counter() - started:.1f}s")
