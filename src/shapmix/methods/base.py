"""The training-method interface: the hooks through which a method changes a training step.

The trainer knows nothing about a specific method.  Each step it calls

* ``method.before_step(model, x, y, epoch, step)`` (e.g. saliency estimation, no gradients), then
* ``method.training_loss(network, x, y, criterion, epoch)``, which returns the step's loss and
  the logits its training accuracy is counted on.

The default ``training_loss`` asks ``method.mix(x, y, epoch)`` for ``(x_mixed, soft_targets)``
or ``None``.  When a mixed batch is returned it runs one forward pass of ``cat([x, x_mixed])``
and adds the clean loss and the soft-target loss of the mixed half (the joint clean + mixed
training of Shap-Mix, Section 3.4); otherwise it trains on ``x``.  A method with its own loss
(GLMC) overrides ``training_loss``; one with its own trainable modules exposes them as
``heads``, which the trainer trains, wraps for DDP together with the model
(:class:`TrainingNetwork`) and checkpoints through the method's ``state_dict``.  A method's
``state_dict`` is saved in every checkpoint and restored on resume.

A backbone may bring its own training objective (InfoGCN's information bottleneck), which the
default ``training_loss`` applies to whatever the method mixes, with no method or trainer
knowing the backbone:

* ``label_smoothing`` (float attribute): the targets of the classification loss, hard or soft,
  become ``(1 - s) t + s / K`` (:func:`~shapmix.losses.smooth_targets`);
* ``auxiliary_loss(latent, targets)``: added to the loss; the step's forward pass is then
  ``network(inputs, return_latent=True)``, returning ``(logits, latent)``, and ``targets`` are
  the ``(B,)`` labels or, with a mixed batch, the ``(B, K)`` unsmoothed distributions of all
  ``B`` rows (clean rows one-hot).

Methods with their own step apply it through :class:`BackboneObjective`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import MethodConfig
from ..data.dataset import SkeletonSplit
from ..data.transforms import Compose
from ..distributed import DistributedContext
from ..losses import smooth_targets, target_distribution
from ..mixing.stmix import BatchMixer
from ..seeds import MIXER
from ..skeleton.layouts import Layout

__all__ = [
    "BackboneObjective",
    "MethodBuilder",
    "MethodInputs",
    "MixingMethod",
    "TrainingMethod",
    "TrainingNetwork",
    "backbone_of",
]


class TrainingNetwork(nn.Module):
    """The backbone and a method's trainable ``heads`` as one module, so that one optimiser and
    one DDP wrapper cover both.  ``forward(x)`` is the backbone's logits; ``forward(x,
    with_heads=True)`` returns ``heads(backbone, x)``.  The trainer uses it only for methods with
    heads; the others train the bare backbone as before."""

    def __init__(self, backbone: nn.Module, heads: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def forward(self, x: torch.Tensor, with_heads: bool = False) -> Any:
        if with_heads:
            return self.heads(self.backbone, x)
        return self.backbone(x)


def backbone_of(network: nn.Module) -> nn.Module:
    """The backbone a step trains, whether ``network`` is the bare backbone, a
    :class:`TrainingNetwork` or either wrapped for DDP."""
    module = network.module if isinstance(network, DistributedDataParallel) else network
    return module.backbone if isinstance(module, TrainingNetwork) else module


@dataclass(frozen=True)
class BackboneObjective:
    """A backbone's own training objective (module docstring): what every method's loss applies
    to whatever it trains on, without knowing the backbone.

    Attributes:
        label_smoothing: ``s``; classification targets become ``(1 - s) t + s / K``.
        auxiliary_loss: ``(latent, targets) -> loss`` added to the step's loss, or ``None``.
    """

    label_smoothing: float = 0.0
    auxiliary_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def of(cls, network: nn.Module) -> BackboneObjective:
        """The objective of the backbone inside ``network`` (see :func:`backbone_of`)."""
        backbone = backbone_of(network)
        return cls(getattr(backbone, "label_smoothing", 0.0), getattr(backbone, "auxiliary_loss", None))

    def forward(self, network: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits (N, K), latent)`` of ``inputs``; ``latent`` is ``None`` unless the
        auxiliary loss needs it."""
        if self.auxiliary_loss is None:
            return network(inputs), None
        return network(inputs, return_latent=True)

    def targets(self, targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The classification loss's targets: ``(N,)`` labels or ``(N, K)`` distributions,
        smoothed (then always ``(N, K)``) when the backbone smooths labels."""
        return smooth_targets(targets, logits, self.label_smoothing) if self.label_smoothing else targets

    def add_auxiliary(self, loss: torch.Tensor, latent: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the auxiliary loss of ``latent`` against the unsmoothed ``targets``."""
        return loss if self.auxiliary_loss is None else loss + self.auxiliary_loss(latent, targets)


class TrainingMethod:
    """Plain training (the ``none`` method): no estimation, no mixing."""

    name = "none"
    heads: nn.Module | None = None
    """The method's own trainable modules, or ``None`` (see :class:`TrainingNetwork`)."""

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> None:
        """Called with the model input ``x`` ``(N, C, T, V, M)`` and labels ``y`` ``(N,)``."""

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return ``(x_mixed (N, C, T, V, M), soft_targets (N, K))`` or ``None``."""
        return None

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's loss and the ``(N, K)`` logits its training accuracy is counted on.

        ``network`` maps ``(N, C, T, V, M)`` to logits (the model, DDP-wrapped under DDP); ``x``
        is the augmented batch, ``y`` its ``(N,)`` labels.  Clean loss, plus the soft-target
        loss of the mixed batch when :meth:`mix` returns one (one forward pass of both).  A
        backbone's own objective (module docstring) smooths the targets of both losses and adds
        its auxiliary loss over the whole forward pass (clean and mixed rows).
        """
        mixed = self.mix(x, y, epoch)
        inputs, targets = (x, [y]) if mixed is None else (torch.cat([x, mixed[0]]), [y, mixed[1]])
        objective = BackboneObjective.of(network)
        all_logits, latent = objective.forward(network, inputs)
        parts = all_logits.split(len(x))  # clean rows, then mixed rows
        loss = sum(criterion(part, objective.targets(target, part)) for part, target in zip(parts, targets))
        if objective.auxiliary_loss is not None:
            all_targets = y if mixed is None else torch.cat([target_distribution(y, parts[0]), mixed[1]])
            loss = objective.add_auxiliary(loss, latent, all_targets)
        return loss, parts[0]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} has no state, got keys {sorted(state)}")

    def write_artifacts(self, out_dir: Path, train_counts: np.ndarray, groups: tuple[int, int], plots: bool) -> list[Path]:
        """Write the method's own outputs into the run directory at the end of training.

        ``groups`` is ``(many_threshold, few_threshold)``.  Returns the files written.
        """
        return []


class MixingMethod(TrainingMethod):
    """Train on clean and mixed data with a batch mixer (Mixup, CutMix, ST-Mix, Remix)."""

    def __init__(self, name: str, mixer: BatchMixer) -> None:
        self.name = name
        self.mixer = mixer

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mixer(x, y)

    def state_dict(self) -> dict[str, Any]:
        return {"mixer": self.mixer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_state_dict(state["mixer"])


@dataclass(frozen=True)
class MethodInputs:
    """What a method builder may need besides the method's config section (see
    :func:`build_method` for which method needs what)."""

    config: MethodConfig
    num_classes: int
    class_counts: np.ndarray
    layout: Layout
    seed: int
    baseline: torch.Tensor | None
    context: DistributedContext
    class_names: Sequence[str] | None
    model: nn.Module | None
    train_split: SkeletonSplit | None
    train_pipeline: Compose | None
    total_epochs: int | None

    @property
    def mixer_seed(self) -> int:
        """The seed of the batch mixer's generator (the ``mixer`` stream of the run seed)."""
        return MIXER.derive(self.seed)

    def stmix_options(self) -> dict[str, Any]:
        """The keyword arguments :class:`STMix` and :class:`ShapMix` share."""
        config = self.config
        return dict(
            p_mixup=config.p_mixup,
            mixup_alpha=config.mixup_alpha,
            min_parts=config.min_parts,
            max_parts=config.max_parts,
            segment_frames=config.segment_frames,
            window_fraction=config.window_fraction,
            draw=config.draw,
            donor_resize=config.donor_resize,
            partner=config.partner,
            seed=self.mixer_seed,
        )


MethodBuilder = Callable[[MethodInputs], TrainingMethod]
