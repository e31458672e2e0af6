"""The plain and batch-mixing methods: ``none``, ``mixup``, ``cutmix``, ``remix``, ``stmix``,
``skelemix``, ``skelemixclr``."""

from __future__ import annotations

import torch
from torch import nn

from ..mixing import (
    CutMix,
    Mixup,
    Remix,
    SkeleMix,
    SkeleMixCLR,
    STMix,
)
from .base import MethodInputs, MixingMethod, TrainingMethod


class InPlaceMixingMethod(MixingMethod):
    """Train on the mixer's batch alone: the mixer replaces some samples of the batch by mixed
    ones (SkeleMix's 1/16), and the step's loss is that of the ``(N, C, T, V, M)`` mixed batch
    against its ``(N, K)`` soft targets, one forward pass of ``N`` rows, rather than the clean
    batch plus a mixed copy (:class:`MixingMethod`).  A backbone's own objective applies as in
    :meth:`TrainingMethod.training_loss`."""

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
        """No second batch: the mixing happens in :meth:`training_loss`."""

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_mixed, targets = self.mixer(x, y)
        return super().training_loss(network, x_mixed, targets, criterion, epoch)


def build_plain(inputs: MethodInputs) -> TrainingMethod:
    return TrainingMethod()


def build_mixup(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    mixer = Mixup(inputs.num_classes, alpha=config.mixup_alpha, partner=config.partner, seed=inputs.mixer_seed)
    return MixingMethod("mixup", mixer)


def build_cutmix(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    mixer = CutMix(inputs.num_classes, alpha=config.mixup_alpha, partner=config.partner, seed=inputs.mixer_seed)
    return MixingMethod("cutmix", mixer)


def build_remix(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    remix = Remix(
        inputs.num_classes,
        inputs.class_counts,
        alpha=config.remix_alpha,
        kappa=config.remix_kappa,
        tau=config.remix_tau,
        partner=config.partner,
        seed=inputs.mixer_seed,
    )
    return MixingMethod("remix", remix)


def build_stmix(inputs: MethodInputs) -> TrainingMethod:
    return MixingMethod("stmix", STMix(inputs.layout, inputs.num_classes, **inputs.stmix_options()))


def build_skelemix(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    mixer = SkeleMix(
        inputs.layout,
        inputs.num_classes,
        fraction=config.skelemix_fraction,
        partner=config.partner,
        seed=inputs.mixer_seed,
    )
    return InPlaceMixingMethod("skelemix", mixer)


def build_skelemixclr(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    mixer = SkeleMixCLR(
        inputs.layout,
        inputs.num_classes,
        min_parts=config.skelemixclr_min_parts,
        max_parts=config.skelemixclr_max_parts,
        segment_frames=config.skelemixclr_segment_frames,
        clip_fraction=config.skelemixclr_clip_fraction,
        draw=config.skelemixclr_draw,
        partner=config.partner,
        seed=inputs.mixer_seed,
    )
    return MixingMethod("skelemixclr", mixer)
