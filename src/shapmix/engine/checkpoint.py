"""Checkpoints: atomic writes, every RNG state, and safe (``weights_only``) loading.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``: loading never executes code from the file.  A file that
needs arbitrary unpickling (e.g. one holding a pickled model object) is refused with
:class:`UnsafeCheckpointError` rather than loaded unsafely; a file that cannot be read at all
(truncated, corrupt, not a checkpoint) raises :class:`~shapmix.errors.CheckpointError` naming
it, never a raw reader traceback.

Writes go to a temporary file in the same directory, are flushed to disk, then renamed over the
target, so an interrupted write never leaves a truncated ``last.pt``.  With ``keep_previous``
the checkpoint being replaced is first renamed to :func:`previous_path` (``last.previous.pt``),
so a run whose newest checkpoint is damaged anyway (a disk fault, a copy cut short) can resume
from the one before (:func:`load_latest_checkpoint`).
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError

__all__ = [
    "UnsafeCheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_latest_checkpoint",
    "previous_path",
    "capture_rng_state",
    "restore_rng_state",
]

PREVIOUS_SUFFIX = ".previous"
"""``last.pt`` -> ``last.previous.pt``: where :func:`save_checkpoint` keeps the replaced checkpoint."""
_UNSAFE_MARKER = "global"
"""torch's weights-only refusal of a pickled object names the disallowed "global"."""


class UnsafeCheckpointError(CheckpointError, RuntimeError):
    """The checkpoint needs arbitrary unpickling, which could run code; it is not loaded."""


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint ``path`` replaced is kept: ``DIR/last.pt`` -> ``DIR/last.previous.pt``."""
    path = Path(path)
    return path.with_name(path.stem + PREVIOUS_SUFFIX + path.suffix)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, keep_previous: bool = False) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename); with
    ``keep_previous``, an existing ``path`` is first renamed to :func:`previous_path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if keep_previous and path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; refuse anything that needs more.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeCheckpointError: the file holds pickled objects (arbitrary code on loading).
        CheckpointError: the file cannot be read as a checkpoint (truncated, corrupt, not one).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if zipfile.is_zipfile(path) and _UNSAFE_MARKER in str(error):
            raise UnsafeCheckpointError(
                f"{path}: refusing to load: the file contains Python objects that can only be "
                "restored by arbitrary unpickling, which can execute code. shapmix checkpoints hold "
                "only tensors and plain values; if you trust this file, re-save its state_dict "
                f"(torch.save(model.state_dict(), ...)) and load that. Details: {error}"
            ) from None
        raise _unreadable(path, error) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
        raise _unreadable(path, error) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    return state


def _unreadable(path: Path, error: BaseException) -> CheckpointError:
    size = path.stat().st_size
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointError(
        f"{path}: not a readable checkpoint ({size} bytes; truncated, corrupt or not written by "
        f"torch.save): {reason}"
    )


def load_latest_checkpoint(
    path: str | os.PathLike, logger: logging.Logger | None = None
) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint at ``path``, or the one it replaced (:func:`previous_path`) when ``path``
    is missing or unreadable (saying so through ``logger``); ``None`` when neither exists.

    Raises:
        CheckpointError: neither file can be read (the message names both).
    """
    path = Path(path)
    previous = previous_path(path)
    problems: list[str] = []
    for candidate in (path, previous):
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if problems and logger is not None:
            logger.warning(f"{problems[0]}; resuming from the previous checkpoint {candidate} instead")
        elif candidate == previous and logger is not None:
            logger.warning(f"{path} is missing; resuming from the previous checkpoint {candidate}")
        return state, candidate
    if problems:
        raise CheckpointError("no readable checkpoint to resume from: " + "; ".join(problems))
    return None


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as weights-only-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_safe(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_from_safe(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_safe(value: Any) -> Any:
    # Python's random state is nested tuples of ints; tuples survive weights_only as lists.
    if isinstance(value, tuple):
        return {"tuple": [_to_safe(item) for item in value]}
    return value


def _from_safe(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_from_safe(item) for item in value["tuple"])
    return value
