"""The plain and batch-mixing methods: ``none``, ``mixup``, ``cutmix``, ``remix``, ``stmix``."""

from __future__ import annotations

from ..mixing import (
    CutMix,
    Mixup,
    Remix,
    STMix,
)
from .base import MethodInputs, MixingMethod, TrainingMethod


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
