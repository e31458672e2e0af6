"""GLMC (Du et al., CVPR 2023) as a training method: its own heads and step loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.dataset import SkeletonSplit
from ..data.transforms import Compose
from ..losses import one_hot
from ..mixing.glmc import (
    GLMCHeads,
    cumulative_weight,
    global_local_mix,
    label_weights,
    mixture_consistency,
    resampling_weights,
    weighted_soft_cross_entropy,
)
from ..seeds import GLMC, GLMC_EPOCH
from .base import MethodInputs, TrainingMethod

__all__ = ["GLMCMethod"]


class GLMCMethod(TrainingMethod):
    """GLMC (Du et al., CVPR 2023): global and local mixture consistency with cumulative
    head-tail re-weighting; the losses, heads and mixing are in :mod:`shapmix.mixing.glmc`.

    The re-sampled batch: every step draws as many samples as the ordinary batch from the
    training split, with replacement and weights ``n_c^-q`` (as the reference code's weighted
    sampler), reads them and augments them with the training pipeline.  The index draws come
    from a CPU generator (the samples are read on the host), the augmentation and mixing draws
    from a generator on the batch's device; both are derived from ``(seed, epoch, rank)`` at the
    first step of every epoch, so a resumed run repeats them exactly and DDP ranks draw
    different batches.  On a CPU the two are one generator.  The reference augments every image twice and mixes the two views; a
    skeleton batch here is augmented once, and the global and local mixes of the same pair
    still differ.  GLMC defines its own losses (soft cross entropy on both classifiers), so
    the configured ``criterion`` is not used (the config requires ``loss.name=ce``).  The
    training accuracy is counted on the re-balanced logits of the global mix against the
    ordinary batch's labels (there is no clean forward pass).

    Args:
        heads: the projector, predictor and conventional classifier.
        split: the training split the re-sampled batch is read from.
        pipeline: the training input pipeline.
        class_counts: ``(K,)`` training samples per class.
        total_epochs: ``E`` of the cumulative schedule.
        alpha: Beta parameter of the mixing ratio.
        resample_power: ``q`` of the sampling weights ``n_c^-q`` (1 = class-balanced).
        label_power: ``p`` of the label weights ``n_c^-p``.
        consistency_weight: weight of the mixture consistency loss.
        seed, rank: where the per-epoch generator comes from.
    """

    name = "glmc"

    def __init__(
        self,
        heads: GLMCHeads,
        split: SkeletonSplit,
        pipeline: Compose,
        class_counts: np.ndarray,
        total_epochs: int,
        alpha: float,
        resample_power: float,
        label_power: float,
        consistency_weight: float,
        seed: int,
        rank: int = 0,
    ) -> None:
        self.heads = heads
        self.split = split
        self.pipeline = pipeline
        self.total_epochs = total_epochs
        self.alpha = alpha
        self.consistency_weight = consistency_weight
        self.sample_weights = resampling_weights(split.labels, class_counts, resample_power)
        self.label_weights = label_weights(class_counts, label_power)
        self.seed = seed
        self.rank = rank
        self._epoch: int | None = None
        self._generator = torch.Generator()
        self._device_generator: torch.Generator | None = None
        self._device_epoch: int | None = None
        self._saved_device_state: dict[str, Any] | None = None

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """The CPU generator of this rank's index draws, re-seeded from ``(seed, epoch, rank)``
        when a new epoch starts."""
        if epoch != self._epoch:
            self._generator.manual_seed(GLMC_EPOCH.derive(self.seed, epoch, self.rank))
            self._epoch = epoch
        return self._generator

    def draw_generator(self, epoch: int, device: torch.device) -> torch.Generator:
        """The generator of this rank's augmentation and mixing draws on ``device``: on a CPU
        :meth:`epoch_generator` itself, elsewhere a generator there seeded alike."""
        if device.type == "cpu":
            return self.epoch_generator(epoch)
        generator = self._device_generator
        if generator is None or epoch != self._device_epoch or generator.device != device:
            generator = torch.Generator(device=device).manual_seed(GLMC_EPOCH.derive(self.seed, epoch, self.rank))
            saved = self._saved_device_state
            if saved is not None and saved["epoch"] == epoch and saved["device"] == device.type:
                generator.set_state(saved["state"])  # resumed in the middle of this epoch
            self._device_generator, self._device_epoch = generator, epoch
        self._saved_device_state = None
        return generator

    def resampled_batch(
        self, size: int, device: torch.device, generator: torch.Generator, draws: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` samples drawn with weights ``n_c^-q`` from the CPU ``generator``, read on the
        host and augmented with ``draws`` (default: ``generator``): ``(x (size, C, T, V, M), y
        (size,))`` on ``device``.

        The indices are drawn and the samples read (one gather) on the host, as a data loader
        does; on a GPU the batch is copied from pinned memory, so the copy is queued behind the
        step's work instead of waiting for it.
        """
        picked = torch.multinomial(self.sample_weights, size, replacement=True, generator=generator)
        batch = self.split.batch(picked.numpy())
        host = (batch.x, batch.length, batch.label)
        if device.type == "cuda":
            host = tuple(tensor.pin_memory() for tensor in host)
        x, length, label = (tensor.to(device, non_blocking=True) for tensor in host)
        augment = generator if draws is None else draws
        x, _ = self.pipeline(x, length, augment)
        return x, label

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self.epoch_generator(epoch)
        draws = self.draw_generator(epoch, x.device)
        n = len(y)
        resampled, resampled_y = self.resampled_batch(n, x.device, generator, draws)
        mix = global_local_mix(x, resampled, self.alpha, draws)
        rebalanced, conventional, projection, prediction = network(
            torch.cat([mix.global_x, mix.local_x]), with_heads=True
        )
        num_classes = rebalanced.shape[1]
        own = torch.cat([mix.global_own, mix.local_own]).to(device=x.device, dtype=rebalanced.dtype)[:, None]
        own_onehot = one_hot(torch.cat([y, y]), num_classes, rebalanced.dtype)
        other_onehot = one_hot(torch.cat([resampled_y, resampled_y]), num_classes, rebalanced.dtype)
        targets = own * own_onehot + (1 - own) * other_onehot
        # re-weighting each one-hot part by its class weight is scaling every column by it
        weighted = targets * self.label_weights.to(device=x.device, dtype=rebalanced.dtype)
        halves = (slice(0, n), slice(n, 2 * n))  # global mix, local mix
        conventional_loss = sum(weighted_soft_cross_entropy(conventional[h], targets[h]) for h in halves)
        rebalanced_loss = sum(weighted_soft_cross_entropy(rebalanced[h], weighted[h]) for h in halves)
        consistency = mixture_consistency(prediction[:n], projection[n:]) + mixture_consistency(
            prediction[n:], projection[:n]
        )
        cumulative = cumulative_weight(epoch, self.total_epochs)
        loss = cumulative * conventional_loss + (1 - cumulative) * rebalanced_loss + self.consistency_weight * consistency
        return loss, rebalanced[:n]

    def state_dict(self) -> dict[str, Any]:
        """The heads and, so that a run resumes in the middle of an epoch, the position of the
        epoch's generators."""
        state: dict[str, Any] = {"heads": self.heads.state_dict()}
        if self._epoch is not None:
            state["epoch"] = self._epoch
            state["generator"] = self._generator.get_state()
        if self._device_generator is not None:
            state["device_generator"] = {
                "epoch": self._device_epoch,
                "state": self._device_generator.get_state(),
                "device": self._device_generator.device.type,
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.heads.load_state_dict(state["heads"])
        if "epoch" in state:
            self._epoch = int(state["epoch"])
            self._generator.set_state(state["generator"])
        # restored on the device at the next draw there (the checkpoint is read on the CPU)
        self._device_generator = None
        self._saved_device_state = state.get("device_generator")


def build(inputs: MethodInputs) -> TrainingMethod:
    config, model = inputs.config, inputs.model
    if model is None or inputs.train_split is None or inputs.train_pipeline is None or inputs.total_epochs is None:
        raise ValueError("glmc needs the model, the training split, its pipeline and the number of epochs")
    GLMCHeads.check_backbone(model)
    feature_dim = getattr(model, "out_channels", None)
    if not isinstance(feature_dim, int):
        raise TypeError(f"glmc needs the backbone's pooled feature width as {type(model).__name__}.out_channels")
    parameter = next(model.parameters())
    heads = GLMCHeads(feature_dim, inputs.num_classes, config.glmc_projection_dim).to(parameter.device)
    return GLMCMethod(
        heads,
        inputs.train_split,
        inputs.train_pipeline,
        inputs.class_counts,
        inputs.total_epochs,
        alpha=config.glmc_alpha,
        resample_power=config.glmc_resample_power,
        label_power=config.glmc_label_power,
        consistency_weight=config.glmc_consistency_weight,
        seed=GLMC.derive(inputs.seed),
        rank=inputs.context.rank,
    )
