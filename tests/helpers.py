"""Test helpers: the shared real-data folder, small datasets and configs (fast on a CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import pytest

from shapmix.config import load_config
from shapmix.data.format import write_dataset

TINY_CLASSES = 4
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test (with the reason) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (see ../shared/README.md)")
    return path


def make_tiny_dataset(root: Path, per_class_train=(12, 8, 5, 3), per_class_test=4, frames=20, seed=0) -> Path:
    """A learnable toy dataset: each class moves a different joint group with its own frequency."""
    rng = np.random.default_rng(seed)
    samples, labels, lengths, names = [], [], [], []
    train, test = [], []
    for split, counts in (("train", per_class_train), ("test", [per_class_test] * TINY_CLASSES)):
        for cls, count in enumerate(counts):
            for k in range(count):
                t = np.arange(frames)
                x = rng.normal(scale=0.05, size=(3, frames, 25, 2)).astype(np.float32)
                x[:, :, 5 * cls : 5 * cls + 5, 0] += np.sin(t * (cls + 1) * 0.4)[None, :, None]
                x[:, :, :, 1] = 0
                name = f"{split}_c{cls}_{k:03d}"
                samples.append(x)
                labels.append(cls)
                lengths.append(int(rng.integers(frames // 2, frames + 1)))
                names.append(name)
                (train if split == "train" else test).append(name)
    data = np.stack(samples)
    for i, length in enumerate(lengths):
        data[i, :, length:] = 0
    write_dataset(root, data, labels, lengths, names, "ntu25", [f"class{c}" for c in range(TINY_CLASSES)],
                  splits={"train": train, "test": test, "val": test[::2]})
    return root


def tiny_overrides(data_path: Path, epochs: int = 2) -> list[str]:
    return [
        f"data.path={data_path}",
        "data.window=8",
        "data.min_crop_frames=4",
        "model.args={base_channels: 8, num_blocks: 3}",
        f"schedule.epochs={epochs}",
        "schedule.warmup_epochs=1",
        "schedule.kind=multistep",
        "schedule.milestones=[1]",
        "train.batch_size=8",
        "train.eval_batch_size=16",
        "log.progress=false",
        "data.many_threshold=10",
        "data.few_threshold=4",
    ]


def tiny_config(data_path: Path, epochs: int = 2, extra: list[str] | None = None):
    return load_config(None, tiny_overrides(data_path, epochs) + list(extra or []))


class SimulatedInterruption(Exception):
    """Raised from an epoch callback to simulate a run killed after its first epoch."""


def train_interrupted_then_resumed(config, out: Path, after_crash=None) -> None:
    """Train ``config`` in ``out``, crash after epoch 1 (its checkpoint written), then resume.

    ``after_crash()`` runs between the two, e.g. to inspect the interrupted run's checkpoint.
    """
    from shapmix.engine.trainer import train

    def crash_after_first_epoch(trainer, epoch, record):
        if epoch == 0:
            raise SimulatedInterruption

    with pytest.raises(SimulatedInterruption):
        train(config, out, callbacks=[crash_after_first_epoch])
    from shapmix.engine.checkpoint import load_checkpoint

    assert load_checkpoint(out / "last.pt")["epoch"] == 0
    if after_crash is not None:
        after_crash()
    train(config, out, resume=True)


def assert_same_content(a, b) -> None:
    """Deep equality that also requires equal types, dtypes and key order."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_content(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_content(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def make_layout_dataset(
    root: Path, layout: str, persons: int, frames: int = 16, per_class: int = 4, seed: int = 0,
    channels: tuple[str, ...] = ("x", "y", "z"),
) -> Path:
    """A tiny dataset of any layout (3 channels; ``TINY_CLASSES`` classes, each moving its own part)."""
    from shapmix.skeleton.layouts import get_layout

    spec = get_layout(layout)
    rng = np.random.default_rng(seed)
    count = 2 * per_class * TINY_CLASSES
    data = rng.normal(scale=0.05, size=(count, 3, frames, spec.num_joints, persons)).astype(np.float32)
    labels = np.tile(np.arange(TINY_CLASSES), 2 * per_class)
    wave = np.sin(np.arange(frames) * 0.5)
    for row, cls in enumerate(labels):
        data[row, 0, :, list(spec.parts.values())[cls], 0] += wave[None, :]
    names = [f"s{row:03d}" for row in range(count)]
    half = count // 2
    write_dataset(root, data, labels, [frames] * count, names, layout, [f"class{c}" for c in range(TINY_CLASSES)],
                  splits={"train": names[:half], "test": names[half:]}, channels=channels)
    return root


def train_tiny_checkpoint(
    root: Path, layout: str = "ntu25", persons: int = 2, extra: list[str] | None = None,
    channels: tuple[str, ...] = ("x", "y", "z"),
) -> Path:
    """Train one quick epoch (plain cross entropy, no plots) on :func:`make_layout_dataset` data
    of ``layout`` in ``root``; returns the ``last.pt``."""
    from shapmix.engine.trainer import train

    data = make_layout_dataset(root / "data", layout, persons, channels=channels)
    overrides = ["method.name=none", "loss.name=ce", "log.plots=false", "train.threads=1", *list(extra or [])]
    train(tiny_config(data, epochs=1, extra=overrides), root / "run")
    return root / "run" / "last.pt"


def assert_same_state(expected, actual, where: str = "state") -> None:
    """Exact equality of nested state: tensors (dtype and values, compared on the CPU), numbers, lists."""
    assert type(expected) is type(actual), where
    if isinstance(expected, torch.Tensor):
        assert expected.dtype == actual.dtype and torch.equal(expected.cpu(), actual.cpu()), where
    elif isinstance(expected, dict):
        assert list(expected) == list(actual), where
        for key in expected:
            assert_same_state(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), where
        for index, (a, b) in enumerate(zip(expected, actual)):
            assert_same_state(a, b, f"{where}[{index}]")
    else:
        assert expected == actual, where


def assert_resumed_run_matches(config, root: Path) -> tuple[dict, dict, dict]:
    """Train ``config`` uninterrupted in ``root/full`` and interrupted after epoch 1 then resumed
    in ``root/part``; assert both end with the same weights, optimiser and method state, and that
    the epoch after the interruption changed the weights (so the comparison can fail).

    Returns:
        ``(result, expected, interrupted)``: the uninterrupted run's metrics, its last checkpoint
        and the interrupted run's checkpoint at the interruption.
    """
    from shapmix.engine.checkpoint import load_checkpoint
    from shapmix.engine.trainer import train

    full, part = root / "full", root / "part"
    result = train(config, full)
    interrupted: dict = {}
    train_interrupted_then_resumed(config, part, after_crash=lambda: interrupted.update(load_checkpoint(part / "last.pt")))
    expected, resumed = load_checkpoint(full / "last.pt"), load_checkpoint(part / "last.pt")
    for section in ("model", "optimizer", "method"):
        assert_same_state(expected[section], resumed[section], section)
    assert any(
        isinstance(value, torch.Tensor) and not torch.equal(interrupted["model"][key], value)  # not extra state
        for key, value in expected["model"].items()
    )
    return result, expected, interrupted
