"""The method registry: ``method.name`` -> the builder of that training method.

A new method is a module of this package with a :class:`~shapmix.methods.base.TrainingMethod`
subclass and a builder ``(MethodInputs) -> TrainingMethod``, registered in
:data:`METHOD_BUILDERS` below (and, to be benchmarked, a preset in :mod:`shapmix.bench.presets`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..config import MethodConfig
from ..data.dataset import SkeletonSplit
from ..data.transforms import Compose
from ..distributed import DistributedContext
from ..skeleton.layouts import Layout
from . import bcl, brl, frhead, fsa, glmc, mixers, paco, ride, shapmix
from .base import MethodBuilder, MethodInputs, TrainingMethod

__all__ = ["BASELINE_METHODS", "METHOD_BUILDERS", "build_method"]


METHOD_BUILDERS: dict[str, MethodBuilder] = {
    "none": mixers.build_plain,
    "mixup": mixers.build_mixup,
    "cutmix": mixers.build_cutmix,
    "stmix": mixers.build_stmix,
    "shapmix": shapmix.build,
    "remix": mixers.build_remix,
    "glmc": glmc.build,
    "skelemix": mixers.build_skelemix,
    "skelemixclr": mixers.build_skelemixclr,
    "paco": paco.build,
    "bcl": bcl.build,
    "brl": brl.build,
    "frhead": frhead.build,
    "fsa": fsa.build,
    "ride": ride.build,
}
"""``method.name`` -> the function that builds that training method."""
BASELINE_METHODS = frozenset({"shapmix"})
"""Methods whose builder needs the mean training sequence (:func:`build_method`'s ``baseline``)."""


def build_method(
    config: MethodConfig,
    num_classes: int,
    class_counts: np.ndarray,
    layout: Layout,
    seed: int,
    baseline: torch.Tensor | None = None,
    context: DistributedContext | None = None,
    class_names: Sequence[str] | None = None,
    model: nn.Module | None = None,
    train_split: SkeletonSplit | None = None,
    train_pipeline: Compose | None = None,
    total_epochs: int | None = None,
) -> TrainingMethod:
    """The training method a config names (:data:`METHOD_BUILDERS`).

    ``seed`` is the run seed (the method's generators are derived from it, :mod:`shapmix.seeds`).
    ``baseline`` (the mean training sequence in model-input space) is required for ``shapmix``;
    ``model`` (to size the heads), ``train_split``, ``train_pipeline`` and ``total_epochs`` for
    ``glmc``; ``model`` (RIDE's experts) for ``ride``.
    """
    builder = METHOD_BUILDERS.get(config.name)
    if builder is None:
        raise ValueError(f"unknown method {config.name!r}; known: {sorted(METHOD_BUILDERS)}")
    inputs = MethodInputs(
        config=config,
        num_classes=num_classes,
        class_counts=class_counts,
        layout=layout,
        seed=seed,
        baseline=baseline,
        context=context or DistributedContext(),
        class_names=class_names,
        model=model,
        train_split=train_split,
        train_pipeline=train_pipeline,
        total_epochs=total_epochs,
    )
    return builder(inputs)
