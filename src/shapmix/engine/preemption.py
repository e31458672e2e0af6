"""Stopping a run cleanly when it is preempted, and checkpointing in the middle of epochs.

Clusters stop jobs with SIGTERM (SLURM at its time limit or on preemption, ``torchrun`` passes
it on to every worker) and people stop them with Ctrl-C (SIGINT).  While training,
:class:`StopRequest` turns either signal into a flag instead of killing the process in the middle
of an optimisation step; the trainer looks at it after every step, writes a checkpoint of the
exact position (all ranks agree first) and raises :class:`TrainingInterrupted`, which the command
line turns into a message and the exit status ``128 + signal``.  A second signal while the
checkpoint is being written is not ignored: it ends the process the default way.

:class:`CheckpointTimer` says when a mid-epoch checkpoint is due (``checkpoint.every_steps`` /
``checkpoint.every_minutes``), so a job that is killed without warning (SIGKILL, a node failure)
loses at most that much work.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = ["STOP_SIGNALS", "PEER_STOP_SIGNAL", "StopRequest", "TrainingInterrupted", "CheckpointTimer", "ignore_stop_signals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop a run cleanly (preemption and Ctrl-C)."""
PEER_STOP_SIGNAL = signal.SIGTERM
"""What a rank that got no signal itself reports when another rank's signal stopped the run."""
SIGNAL_EXIT_BASE = 128
"""Shells report a process ended by signal ``s`` with the status ``128 + s``."""


class TrainingInterrupted(Exception):
    """The run stopped on a signal after writing a checkpoint it resumes from with ``--resume``."""

    def __init__(self, signum: int, checkpoint: Path, epoch: int, step: int) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} in epoch {epoch + 1} after step {step}; the run's state is in "
            f"{checkpoint}"
        )

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT_BASE + self.signum


class StopRequest:
    """Records SIGTERM and SIGINT while active (a context manager) instead of dying on them.

    ``signum`` is the first signal received (``None`` until then).  A second one restores the
    previous handlers and is delivered again, so a user who presses Ctrl-C twice, or a scheduler
    that insists, still ends the process.  Outside the main thread signals cannot be handled:
    there the request stays inactive and the signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self._restore()
        os.kill(os.getpid(), signum)


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of the data loaders: a worker leaves SIGTERM / SIGINT to the main
    process, which stops them after writing its checkpoint (a worker killed first would make the
    main process fail while it fetches the next batch)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class CheckpointTimer:
    """When a mid-epoch checkpoint is due: every ``every_steps`` optimisation steps of the run
    and/or when ``every_minutes`` have passed since the last checkpoint (``None``: never)."""

    SECONDS_PER_MINUTE = 60.0

    def __init__(self, every_steps: int | None, every_minutes: float | None) -> None:
        self.every_steps = every_steps
        self.every_seconds = None if every_minutes is None else every_minutes * self.SECONDS_PER_MINUTE
        self.last_write = time.monotonic()

    @property
    def active(self) -> bool:
        return self.every_steps is not None or self.every_seconds is not None

    def steps_due(self, global_steps_done: int) -> bool:
        """Whether the step count calls for a checkpoint (the same on every rank)."""
        return self.every_steps is not None and global_steps_done % self.every_steps == 0

    def time_due(self) -> bool:
        """Whether this process's clock calls for one (ranks agree before acting on it)."""
        return self.every_seconds is not None and time.monotonic() - self.last_write >= self.every_seconds

    def written(self) -> None:
        """A checkpoint was written now: the minutes count from here."""
        self.last_write = time.monotonic()
