"""Checkpoints: atomic writes, every RNG state, and safe (``weights_only``) loading.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``: loading never executes code from the file.  A file that
needs arbitrary unpickling (e.g. one holding a pickled model object) is refused with
:class:`UnsafeCheckpointError` rather than loaded unsafely.

Writes go to a temporary file in the same directory, are flushed to disk, then renamed over the
target, so an interrupted write never leaves a truncated ``last.pt``.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "UnsafeCheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]


class UnsafeCheckpointError(RuntimeError):
    """The checkpoint needs arbitrary unpickling, which could run code; it is not loaded."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; refuse anything that needs more."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load: the file contains Python objects that can only be "
            "restored by arbitrary unpickling, which can execute code. shapmix checkpoints hold "
            "only tensors and plain values; if you trust this file, re-save its state_dict "
            f"(torch.save(model.state_dict(), ...)) and load that. Details: {error}"
        ) from None
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    return state


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
