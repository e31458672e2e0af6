import random

import numpy as np
import pytest
import torch

from shapmix.engine.checkpoint import (
    UnsafeCheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


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
