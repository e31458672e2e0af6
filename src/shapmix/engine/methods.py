"""Training methods: the two hooks through which a method changes a training step.

The trainer knows nothing about a specific method.  Each step it calls

* ``method.before_step(model, x, y, epoch, step)`` (e.g. saliency estimation, no gradients), then
* ``method.mix(x, y, epoch)``, which returns ``(x_mixed, soft_targets)`` or ``None``.

When a mixed batch is returned the trainer runs one forward pass of ``cat([x, x_mixed])`` and
adds the clean loss and the soft-target loss of the mixed half; otherwise it trains on ``x``.
A method's ``state_dict`` is saved in every checkpoint and restored on resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import MethodConfig
from ..skeleton.layouts import Layout

__all__ = ["TrainingMethod", "build_method"]


class TrainingMethod:
    """Plain training (the ``none`` method): no estimation, no mixing."""

    name = "none"

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> None:
        """Called with the model input ``x`` ``(N, C, T, V, M)`` and labels ``y`` ``(N,)``."""

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return ``(x_mixed (N, C, T, V, M), soft_targets (N, K))`` or ``None``."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} has no state, got keys {sorted(state)}")


def build_method(
    config: MethodConfig, num_classes: int, class_counts: np.ndarray, layout: Layout, seed: int
) -> TrainingMethod:
    """The training method a config names."""
    if config.name == "none":
        return TrainingMethod()
    raise ValueError(f"unknown method {config.name!r}")
