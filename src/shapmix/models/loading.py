"""Load weights saved by a backbone's original code into the model here.

:func:`load_original_checkpoint` takes a checkpoint as the original code saved it and:

1. unwraps a ``"state_dict"`` entry (the reference files, mmcv/pyskl checkpoints);
2. strips the ``"module."`` prefix that ``nn.DataParallel`` / DDP put on every key;
3. if the model defines ``convert_original_state_dict(state) -> dict``, applies it: that is where
   a backbone whose parameter names differ from the original's (ST-GCN++: pyskl's
   ``backbone.*`` / ``cls_head.fc_cls.*``) maps them to its own; a model without it uses the
   original names;
4. compares the result with the model's own state dict and raises a :class:`ValueError` naming
   the first missing / unexpected keys and shape mismatches when the checkpoint does not fit
   (another backbone, layout, class count or width), before anything is loaded;
5. loads it with ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike

import torch
from torch import Tensor, nn

__all__ = ["load_original_checkpoint", "check_state_dict_fits", "DDP_PREFIX"]

DDP_PREFIX = "module."
"""Prefix ``nn.DataParallel`` and ``DistributedDataParallel`` put on every parameter name."""

_SHOWN = 5
"""How many keys of each kind of mismatch an error message lists."""


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "")


def check_state_dict_fits(
    model: nn.Module, state: Mapping[str, Tensor], strict: bool = True, source: str = "checkpoint"
) -> None:
    """Raise a readable :class:`ValueError` if ``state`` does not fit ``model``.

    Shape mismatches are always an error (``load_state_dict`` cannot load them); missing and
    unexpected keys only when ``strict``.

    Args:
        model: the target model.
        state: parameter/buffer name -> tensor, in the model's names.
        strict: require exactly the model's keys.
        source: how to name the checkpoint in the message (e.g. its path).
    """
    expected = model.state_dict()
    problems = []
    if strict:
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        if missing:
            problems.append(f"missing keys: {_first(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_first(unexpected)}")
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
        for key, value in state.items()
        if key in expected and tuple(value.shape) != tuple(expected[key].shape)
    ]
    if mismatched:
        problems.append(f"shape mismatches: {_first(mismatched)}")
    if problems:
        raise ValueError(
            f"{source} does not fit {type(model).__name__} (built for another backbone, layout, class count "
            f"or width?): " + "; ".join(problems)
        )


def load_original_checkpoint(
    model: nn.Module,
    checkpoint: str | PathLike | Mapping[str, Tensor],
    strict: bool = True,
):
    """Load weights saved by the original code of ``model``'s backbone (module docstring).

    Args:
        model: the target model, built with the checkpoint's layout, persons, classes and width.
        checkpoint: a path (loaded with ``torch.load(..., weights_only=True)`` on CPU), a state
            dict, or a dict holding one under ``"state_dict"``.
        strict: require that the checkpoint has exactly the model's keys.

    Returns:
        the ``load_state_dict`` result (missing and unexpected keys; empty when ``strict``).

    Raises:
        TypeError: ``checkpoint`` holds no state dict.
        ValueError: the checkpoint does not fit the model; the message names the first missing
            and unexpected keys and shape mismatches (``key: checkpoint shape vs model shape``).
    """
    source = "checkpoint"
    if isinstance(checkpoint, (str, PathLike)):
        source = f"checkpoint {str(checkpoint)!r}"
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(state, Mapping):
        raise TypeError(f"{source} must be a state dict or a dict with a 'state_dict' entry, got {type(state).__name__}")
    state = {(key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key): value for key, value in state.items()}
    convert = getattr(model, "convert_original_state_dict", None)
    if callable(convert):
        state = convert(state)
    check_state_dict_fits(model, state, strict=strict, source=source)
    return model.load_state_dict(state, strict=strict)
