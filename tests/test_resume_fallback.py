"""A run whose newest checkpoint is damaged resumes from the one before, exactly; the command
line reports an unreadable checkpoint in one line naming it."""

from __future__ import annotations

import pytest
import torch

from helpers import SimulatedInterruption, make_tiny_dataset, tiny_config
from shapmix.cli import main
from shapmix.engine.checkpoint import load_checkpoint, previous_path
from shapmix.engine.trainer import train

EPOCHS = 3
EXTRA = ["method.name=stmix", "train.threads=1", "log.plots=false"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("fallback") / "data")


def crash_after_second_epoch(trainer, epoch, record):
    if epoch == 1:
        raise SimulatedInterruption


@pytest.mark.slow
def test_damaged_last_checkpoint_falls_back_to_the_previous_and_ends_identical(device, deterministic, tiny_data, tmp_path):
    on_device = [f"train.device={device.type}", "train.cudnn_benchmark=false"]  # deterministic kernels on a GPU
    config = tiny_config(tiny_data, epochs=EPOCHS, extra=[*EXTRA, *on_device])
    train(config, tmp_path / "full")

    run = tmp_path / "part"
    with pytest.raises(SimulatedInterruption):
        train(config, run, callbacks=[crash_after_second_epoch])
    last = run / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1 and load_checkpoint(previous_path(last))["epoch"] == 0
    last.write_bytes(last.read_bytes()[:1000])  # the newest checkpoint is damaged
    train(config, run, resume=True)  # resumes after epoch 0, so epochs 1 and 2 run again

    log = (run / "train.log").read_text()
    assert "not a readable checkpoint" in log and "resuming from the previous checkpoint" in log
    expected, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(last)
    assert resumed["epoch"] == EPOCHS - 1
    for key, value in expected["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert torch.equal(expected["method"]["mixer"]["generator"], resumed["method"]["mixer"]["generator"])


def test_commands_report_an_unreadable_checkpoint_in_one_line(tmp_path, capsys):
    damaged = tmp_path / "last.pt"
    damaged.write_bytes(b"PK\x03\x04 not really a zip archive")
    assert main(["eval", "--checkpoint", str(damaged), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"shapmix eval: error: {damaged}: not a readable checkpoint") and "\n" not in error
    assert main(["saliency", "--checkpoint", str(damaged), "--out", str(tmp_path / "s"), "--device", "cpu"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
