import logging
import random

import numpy as np
import pytest
import torch

from shapmix.engine.checkpoint import (
    UnsafeCheckpointError,
    capture_rng_state,
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    restore_rng_state,
    save_checkpoint,
)
from shapmix.errors import CheckpointError


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    random.seed(1); np.random.seed(2); torch.manual_seed(3)
    path = save_checkpoint({"rng": capture_rng_state()}, tmp_path / "a.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9); np.random.seed(9); torch.manual_seed(9)
    restore_rng_state(load_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_checkpoint({"a": torch.ones(3)}, tmp_path / "last.pt")
    save_checkpoint({"a": torch.zeros(3)}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["a"].sum() == 0


class _Custom:
    pass


def test_arbitrary_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Custom()}, path)
    with pytest.raises(UnsafeCheckpointError, match="arbitrary unpickling"):
        load_checkpoint(path)


def _damaged_files(tmp_path):
    """Files that are not readable checkpoints: a truncated one, random bytes, empty, text."""
    good = save_checkpoint({"a": torch.arange(1000.0)}, tmp_path / "good.pt")
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "random": np.random.default_rng(0).bytes(500),
        "empty": b"",
        "text": b"hello, this is not a checkpoint\n",
    }
    for name, content in files.items():
        (tmp_path / f"{name}.pt").write_bytes(content)
    return [tmp_path / f"{name}.pt" for name in files]


def test_an_unreadable_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    for path in _damaged_files(tmp_path):
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: not a readable checkpoint") and "\n" not in message, message
        assert not isinstance(caught.value, UnsafeCheckpointError)  # damage is not a security refusal


def test_keep_previous_keeps_the_replaced_checkpoint(tmp_path):
    last = tmp_path / "last.pt"
    save_checkpoint({"epoch": 0}, last, keep_previous=True)
    assert not previous_path(last).exists()  # nothing replaced yet
    save_checkpoint({"epoch": 1}, last, keep_previous=True)
    assert previous_path(last) == tmp_path / "last.previous.pt"
    assert load_checkpoint(last)["epoch"] == 1 and load_checkpoint(previous_path(last))["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.previous.pt", "last.pt"]


def test_the_latest_readable_checkpoint_is_loaded_and_the_fallback_is_said(tmp_path, caplog):
    logger = logging.getLogger("test-checkpoint")
    last = tmp_path / "last.pt"
    assert load_latest_checkpoint(last, logger) is None
    save_checkpoint({"epoch": 0}, last, keep_previous=True)
    save_checkpoint({"epoch": 1}, last, keep_previous=True)
    assert load_latest_checkpoint(last, logger)[0]["epoch"] == 1
    last.write_bytes(last.read_bytes()[:40])  # a damaged newest checkpoint
    with caplog.at_level(logging.WARNING, logger="test-checkpoint"):
        state, used = load_latest_checkpoint(last, logger)
    assert (state["epoch"], used) == (0, previous_path(last))
    assert "not a readable checkpoint" in caplog.text and "resuming from the previous checkpoint" in caplog.text
    previous_path(last).write_bytes(b"")
    with pytest.raises(CheckpointError, match="no readable checkpoint to resume from") as caught:
        load_latest_checkpoint(last, logger)
    assert str(last) in str(caught.value) and str(previous_path(last)) in str(caught.value)
