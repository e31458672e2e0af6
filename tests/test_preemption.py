"""Preemption-safe training: mid-epoch checkpoints, SIGTERM / SIGINT, resuming mid-epoch exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.preemption import CheckpointTimer, StopRequest, TrainingInterrupted
from shapmix.engine.trainer import Trainer, train

from helpers import make_tiny_dataset, tiny_config, tiny_overrides

EPOCHS = 3
STEPS_PER_EPOCH = 3  # the tiny split's 28 samples in batches of 8
STOP_AT = 4  # global step 4 = epoch 2, step 2 of 3: the middle of an epoch
SHAPMIX = ["method.name=shapmix", "method.warmup_epochs=1", "method.estimate_fraction=1.0", "data.window=16"]
RUNS = {
    "shapmix": SHAPMIX,
    "class_balanced_sampler": ["data.sampler=class_balanced", "method.name=stmix"],
    "glmc": ["method.name=glmc", "loss.name=ce"],  # its own per-epoch generators and heads
}
STOPS = [
    ("shapmix", signal.SIGTERM),
    ("shapmix", signal.SIGINT),
    ("class_balanced_sampler", signal.SIGTERM),
    ("glmc", signal.SIGTERM),
]
RECORD_KEYS = ("epoch", "loss", "train_top1", "lr")
SUBPROCESS_TIMEOUT_S = 300
CLI_EPOCHS = 8  # the signal is sent when epoch 2 ends: it lands in the middle of training


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def _config(tiny_data, extra, epochs=EPOCHS):
    return tiny_config(tiny_data, epochs=epochs, extra=[*extra, "train.threads=1", "log.plots=false"])


def _signal_at(trainer: Trainer, global_step: int, signum: int) -> None:
    """Deliver ``signum`` to this process while ``global_step`` runs (inside its estimation)."""
    before_step = trainer.method.before_step

    def sending(model, x, y, epoch, step):
        if step == global_step:
            os.kill(os.getpid(), signum)
        return before_step(model, x, y, epoch, step)

    trainer.method.before_step = sending


def _crash_at(trainer: Trainer, global_step: int) -> None:
    """Simulate a process killed without warning while ``global_step`` runs."""
    before_step = trainer.method.before_step

    def crashing(model, x, y, epoch, step):
        if step == global_step:
            raise KeyboardInterrupt("simulated kill")
        return before_step(model, x, y, epoch, step)

    trainer.method.before_step = crashing


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{key: json.loads(line)[key] for key in RECORD_KEYS} for line in lines]


def _assert_same_run(expected: Path, resumed: Path) -> None:
    want, got = load_checkpoint(expected / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert want["epoch"] == got["epoch"] == EPOCHS - 1 and "in_epoch" not in got
    for key, value in want["model"].items():
        assert torch.equal(value, got["model"][key]), key
    assert _records(expected) == _records(resumed)  # the interrupted epoch's totals carried over
    assert json.loads((expected / "metrics.json").read_text())["test"] == json.loads((resumed / "metrics.json").read_text())["test"]


@pytest.mark.slow
@pytest.mark.parametrize(("run", "signum"), STOPS, ids=[f"{run}-{signal.Signals(signum).name}" for run, signum in STOPS])
def test_a_run_stopped_by_a_signal_mid_epoch_resumes_bit_identical(tiny_data, tmp_path, run, signum):
    config = _config(tiny_data, RUNS[run])
    train(config, tmp_path / "full")

    stopped_dir = tmp_path / "stopped"
    trainer = Trainer(config, stopped_dir)
    _signal_at(trainer, STOP_AT, signum)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit()
    trainer.close()
    assert stopped.value.signum == signum and stopped.value.exit_code == 128 + signum
    assert (stopped.value.epoch, stopped.value.step) == (1, 2)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are restored
    state = load_checkpoint(stopped_dir / "last.pt")
    assert state["epoch"] == 0 and state["in_epoch"]["epoch"] == 1 and state["in_epoch"]["step"] == 2
    assert not (stopped_dir / "metrics.json").exists()

    train(config, stopped_dir, resume=True)
    assert "in epoch 2 after step 2" in (stopped_dir / "train.log").read_text()
    _assert_same_run(tmp_path / "full", stopped_dir)


@pytest.mark.slow
def test_scheduled_mid_epoch_checkpoints_survive_a_kill_without_warning(tiny_data, tmp_path):
    config = _config(tiny_data, SHAPMIX + ["checkpoint.every_steps=2"])
    train(config, tmp_path / "full")

    killed = tmp_path / "killed"
    trainer = Trainer(config, killed)
    _crash_at(trainer, STOP_AT + 1)  # global step 5 (epoch 2, step 3): the last checkpoint is after step 4
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    trainer.close()
    state = load_checkpoint(killed / "last.pt")
    assert state["in_epoch"]["epoch"] == 1 and state["in_epoch"]["step"] == 1  # global steps done: 4

    train(config, killed, resume=True)
    _assert_same_run(tmp_path / "full", killed)


def test_a_signal_during_the_epoch_end_stops_after_its_checkpoint(tiny_data, tmp_path):
    trainer = Trainer(_config(tiny_data, []), tmp_path / "run")
    trainer.callbacks.append(lambda trainer, epoch, record: os.kill(os.getpid(), signal.SIGTERM) if epoch == 0 else None)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit()
    trainer.close()
    assert (stopped.value.epoch, stopped.value.step) == (0, STEPS_PER_EPOCH)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 0 and "in_epoch" not in state


def test_a_mid_epoch_checkpoint_needs_the_same_number_of_processes(tiny_data, tmp_path):
    config = _config(tiny_data, ["checkpoint.every_steps=1"], epochs=1)
    trainer = Trainer(config, tmp_path / "run")
    _crash_at(trainer, 1)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    trainer.close()
    path = tmp_path / "run" / "last.pt"
    state = load_checkpoint(path)
    state["in_epoch"]["world_size"] = 2
    torch.save(state, path)
    with pytest.raises(ValueError, match="same number of processes"):
        Trainer(config, tmp_path / "run", resume=True)


def test_stop_request_records_the_first_signal_and_a_second_one_acts():
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C gets Python's default behaviour
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_checkpoint_timer_counts_steps_and_minutes(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    timer = CheckpointTimer(every_steps=3, every_minutes=0.5)
    assert [timer.steps_due(step) for step in range(1, 7)] == [False, False, True, False, False, True]
    assert not timer.time_due()
    clock[0] += 30.0
    assert timer.time_due()
    timer.written()
    assert not timer.time_due()
    never = CheckpointTimer(None, None)
    assert not never.active and not never.steps_due(3) and not never.time_due()


@pytest.mark.slow
def test_cli_train_stopped_by_sigterm_exits_143_and_resumes(tiny_data, tmp_path):
    out = tmp_path / "cli"
    command = [
        sys.executable, "-m", "shapmix", "train", "--out", str(out), *tiny_overrides(tiny_data, epochs=CLI_EPOCHS),
        "train.threads=1", "log.plots=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith("epoch   2/"):  # training is under way: the handlers are installed
                process.send_signal(signal.SIGTERM)
                break
        _, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr and "Traceback" not in stderr
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] >= 0 and len(state["history"]) == state["epoch"] + 1

    resumed = subprocess.run(
        [sys.executable, "-m", "shapmix", "train", "--out", str(out), "--resume"],
        env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert len(_records(out)) == CLI_EPOCHS


def test_resume_into_a_new_directory_starts_afresh_and_saves_its_config(tiny_data, tmp_path):
    # what a cluster job script does on its first submission: always --resume
    trainer = Trainer(_config(tiny_data, [], epochs=1), tmp_path / "new", resume=True)
    trainer.close()
    assert trainer.start_epoch == 0 and trainer.position is None
    assert (tmp_path / "new" / "config.yaml").exists()
