"""BRL (Liu, Wang, Ren, Hu, Luo, Hou, Sun, "Balanced Representation Learning for Long-tailed
Skeleton-based Action Recognition", arXiv 2308.14024, 2023) as a training method.

What the authors' code (github.com/firework8/BRL, the ``configs/BRL`` recipes) trains with, in
the order of a step:

1. **Spatial exploration of each sample** (their data pipeline): every coordinate axis scaled by
   ``1 + U(-0.1, 0.1)`` (``RandomScale``), a rotation about x, y, z by ``U(-0.3, 0.3)``
   (``RandomRot``: this library's pipeline already rotates exactly so, ``data.rotation=0.3``), and
   with probability 0.5 the left and right joints swapped (``Spatial_Flip``: the joint indices
   are exchanged, the coordinates are not mirrored).  :func:`random_scale`, :func:`random_flip`.
2. **Rebalanced partial mixing** (``MixRecognizerGCN`` / ``rebalance_mix_up``): ``floor(N / 16)``
   samples of the batch keep their upper body and take the lower body (legs and the spine base)
   of another sample of the batch, in every frame; the mixed sample *replaces* the original (no
   clean copy is added).  Its label is Remix-like: all of it to the partner's class if the
   sample's class has more than ``kappa = 3`` times the partner's training samples, all of it to
   the sample's own class in the mirror case, else ``0.64`` (16 of 25 joints) to its own class.
   :func:`partial_mix`, :func:`own_label_share`.
3. **Detached action-aware learning schedule** (``MixAAHead`` / ``TwostageAALoss``): plain cross
   entropy until epoch 19 of 24 (0-based), then cross entropy with class weights
   ``w_c = (1 - beta_c) / (1 - beta_c^n_c)``, normalised to sum ``K``, whose effective-number
   ``beta_c = 0.99 + 0.0099 (n_c - n_min) / (n_max - n_min)`` grows with the class count (the
   rarest class 0.99, the largest 0.9999).  :func:`action_aware_weights`, :func:`action_aware_loss`.

At test time the model is the plain backbone and classifier (no extra head, no adjustment of the
logits); the authors average softmax probabilities over 10 clips (``eval.num_clips=10`` does so
here).  BRL's third part, the skip-bone modality (joint minus a joint two bones away) fused with
the others, is an input modality of the data pipeline and not part of this method.

Deviations from the authors' code, and why:

* The upper/lower split and the left-right swap are derived from the layout (legs plus the torso
  joint they hang from; joints named ``left_*``/``right_*``), which reproduces their NTU lists
  exactly (:func:`lower_body_joints`, :func:`mirror_permutation`) and works for every layout.
* Their mixing loop writes ``cat(upper joints, lower joints)`` into joints ``0..24`` in order, so
  a mixed NTU skeleton comes out with its joints permuted (joint 0 holds joint 1, ...); here each
  joint keeps its index, which is what the paper describes.  Their loop also removes entries from
  the list it iterates over (a chosen sample right after another chosen one is skipped, and
  earlier chosen samples can no longer be partners) and mixes in place (a later pair may take a
  lower body that is already mixed); with their one mixed sample per batch of 16 none of this
  matters.  Here the ``floor(fraction * N)`` chosen samples each take a uniformly drawn other
  sample's original lower body.
* Their label weight is one number per batch, that of the last mixed pair, and their loss is
  ``a CE_w(z, y_own) + (1 - a) CE_w(z, y_partner)`` with two weighted means.  Here every mixed
  sample has its own soft target ``t = a_i e_own + (1 - a_i) e_partner`` and the loss is the
  weighted mean ``sum_ik t_ik w_k CE_ik / sum_ik t_ik w_k`` (:func:`action_aware_loss`, the same
  convention as :class:`~shapmix.losses.DeferredReweighting`).  Before the re-weighting epoch
  (``w = 1``) both are the mean soft-target cross entropy; after it the two differ only in the
  normaliser of the one mixed sample of their batch.
* Their class counts come from a formula (``600 * 0.01^(c / (K - 1))``, fixed to imbalance 100
  even for their IF 10 and 50 lists); here they are the training split's counts.
* Their re-weighting code flips its own beta list in place every time the epoch changes, so from
  epoch 20 on the weights alternate between the action-aware ones (epochs 19, 21, 23) and almost
  uniform ones (20, 22); here the action-aware weights hold from the re-weighting epoch to the end.
* Scale and flip act on the model input after this library's crop and rotation (theirs: before
  the rotation and the joint-to-bone or motion transform).  The flip and the scale commute with
  the bone and motion transforms; scale-then-rotate and rotate-then-scale differ only by the
  anisotropy of a 10% scale under a rotation of at most 0.3 rad.  Only the coordinate channels
  (``x``, ``y``, ``z``) are scaled.
* The paper's temporal reverse perception is in their repository as ``Temperal_Flip`` (the frame
  order reversed with probability 0.5), which no released BRL config enables; here it is
  ``method.brl_p_reverse`` (0 by default, as their configs).
* Their temporal sampling (``UniformSample``, 64 frames) and optimiser recipe (SGD 0.0125 per 16
  samples, cosine, 24 epochs of 5 repeats, ST-GCN++ backbone) are the run's data and schedule
  settings here, shared with every other method.

Every random draw of a step (scales, flips, reversals, the mixed samples and their partners) comes
from the ``brl`` stream (:mod:`shapmix.seeds`), re-derived from ``(seed, epoch, rank)`` at the
first step of every epoch on the batch's device, and checkpointed within an epoch, so a resumed
run repeats them exactly and DDP ranks draw differently.  The class weights depend on the
training counts only (the same on every rank); the method has no trainable part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..mixing.stmix import DeviceCopies, mixed_targets
from ..seeds import BRL, DeviceGenerator
from ..skeleton.layouts import Layout, get_layout
from .base import BackboneObjective, MethodInputs, TrainingMethod

__all__ = [
    "ORIGINAL_REWEIGHT_FRACTION",
    "BRLMethod",
    "action_aware_loss",
    "action_aware_weights",
    "lower_body_joints",
    "mirror_permutation",
    "own_label_share",
    "partial_mix",
    "random_flip",
    "random_reverse",
    "random_scale",
]

ORIGINAL_REWEIGHT_FRACTION = 19 / 24
"""Where the action-aware weights start, as a fraction of the schedule: firework8/BRL's
``TwostageAALoss`` switches at ``(epoch + 1) // 20 == 1``, 0-based epoch 19 of its 24."""
COORDINATE_CHANNELS = ("x", "y", "z")
"""The channel names :func:`random_scale` scales (a confidence channel is left alone)."""
LEFT, RIGHT = "left_", "right_"


# --------------------------------------------------------------------------- body parts


def _leg_joints(layout: Layout) -> tuple[int, ...]:
    legs = [joint for name, joints in layout.parts.items() if name.endswith("leg") for joint in joints]
    if not legs:
        raise ValueError(f"layout {layout.name!r} has no part named '*leg' (parts: {list(layout.parts)})")
    return tuple(legs)


def lower_body_joints(layout: Layout | str) -> tuple[int, ...]:
    """The joints BRL takes from the partner: the legs and the torso joint(s) they hang from.

    On ``ntu25`` this is ``(0, 12, ..., 19)`` (spine base, hips, knees, ankles, feet), the
    authors' ``Ntu_Lower_Body``; on ``kinect_v1`` their NW-UCLA list.  Sorted joint ids.
    """
    layout = get_layout(layout)
    legs = set(_leg_joints(layout))
    torso = set(next(iter(layout.parts.values())))
    parents = layout.parent_of()
    hips = {parents[joint] for joint in legs if parents[joint] not in legs and parents[joint] in torso}
    return tuple(sorted(legs | hips))


def mirror_permutation(layout: Layout | str) -> tuple[int, ...]:
    """For every joint, the joint whose data it takes when left and right are swapped: the joint
    named ``right_*`` for ``left_*`` and back, itself otherwise (on ``ntu25`` the authors'
    ``Spatial_Flip`` order)."""
    layout = get_layout(layout)
    index = {name: joint for joint, name in enumerate(layout.joint_names)}
    permutation = []
    for joint, name in enumerate(layout.joint_names):
        if name.startswith(LEFT):
            permutation.append(index.get(RIGHT + name[len(LEFT):], joint))
        elif name.startswith(RIGHT):
            permutation.append(index.get(LEFT + name[len(RIGHT):], joint))
        else:
            permutation.append(joint)
    return tuple(permutation)


# --------------------------------------------------------------------------- augmentations


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``U(0, 1)`` float64 draws of ``shape`` on ``generator``'s device, moved to ``device``."""
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device).to(device)


def _per_sample(mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1, 1, 1, 1)`` to select whole samples of an ``(N, C, T, V, M)`` batch."""
    return mask[:, None, None, None, None]


def random_scale(
    x: torch.Tensor, amount: float, generator: torch.Generator, channels: torch.Tensor | None = None
) -> torch.Tensor:
    """Scale each of ``x``'s channels by its own ``1 + U(-amount, amount)`` per sample.

    Args:
        x: ``(N, C, T, V, M)``.
        amount: the largest relative change (BRL: 0.1).
        generator: where the ``(N, C)`` factors are drawn.
        channels: ``(C,)`` bool, the channels to scale (coordinates); ``None`` = all.

    Returns:
        ``(N, C, T, V, M)``.
    """
    draws = _uniform(x.shape[:2], generator, x.device)
    factors = (1 + (2 * draws - 1) * amount).to(x.dtype)
    if channels is not None:
        factors = torch.where(channels, factors, torch.ones_like(factors))
    return x * factors[:, :, None, None, None]


def random_flip(x: torch.Tensor, permutation: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """With probability ``p`` per sample, joint ``v`` takes the data of joint ``permutation[v]``
    (left and right swapped, :func:`mirror_permutation`).  ``x`` ``(N, C, T, V, M)``,
    ``permutation`` ``(V,)`` int64 on ``x``'s device."""
    flip = _uniform((x.shape[0],), generator, x.device) < p
    return torch.where(_per_sample(flip), x.index_select(3, permutation), x)


def random_reverse(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """With probability ``p`` per sample, the frames in reverse order.  ``x`` ``(N, C, T, V, M)``
    whose ``T`` frames are all valid (the training pipeline resizes every crop to the window)."""
    reverse = _uniform((x.shape[0],), generator, x.device) < p
    return torch.where(_per_sample(reverse), x.flip(2), x)


# --------------------------------------------------------------------------- partial mixing


def partial_mix(
    x: torch.Tensor, lower_body: torch.Tensor, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random samples of the batch take the lower body of another random sample.

    Args:
        x: ``(N, C, T, V, M)``.
        lower_body: ``(V,)`` bool on ``x``'s device, the joints taken from the partner.
        count: how many samples are mixed (at most ``N``; none when ``N < 2``).
        generator: where the choice of samples and partners is drawn.

    Returns:
        ``(x_mixed (N, C, T, V, M), partner (N,) int64)``: every joint of a mixed sample ``i``
        in ``lower_body`` comes from sample ``partner[i] != i`` in all frames and persons, the
        other joints stay; an unmixed sample is unchanged and its ``partner[i] == i``.
    """
    num_samples = x.shape[0]
    index = torch.arange(num_samples, device=x.device)
    count = min(count, num_samples)
    if count == 0 or num_samples < 2:
        return x, index
    chosen = _uniform((num_samples,), generator, x.device).argsort()[:count]
    # a uniform other sample: one of the N - 1 positions, skipping the sample itself
    offset = (_uniform((count,), generator, x.device) * (num_samples - 1)).floor().long().clamp(max=num_samples - 2)
    partner = index.clone()
    partner[chosen] = offset + (offset >= chosen).long()
    take = _per_sample(partner != index) & lower_body[None, None, None, :, None]
    return torch.where(take, x[partner], x), partner


def own_label_share(
    own_count: torch.Tensor, partner_count: torch.Tensor, kappa: float, share: float
) -> torch.Tensor:
    """BRL's label weight of a mixed sample's own class.

    ``0`` (the label goes to the partner's class) if the own class has more than ``kappa`` times
    the partner class's training samples, ``1`` if the partner's class has more than ``kappa``
    times the own class's, ``share`` otherwise.  ``own_count``, ``partner_count``: ``(N,)``
    float64 class counts; returns ``(N,)`` float64.
    """
    own_count, partner_count = own_count.to(torch.float64), partner_count.to(torch.float64)
    balanced = torch.full_like(own_count, share)
    kept = torch.where(partner_count > kappa * own_count, torch.ones_like(balanced), balanced)
    return torch.where(own_count > kappa * partner_count, torch.zeros_like(balanced), kept)


# --------------------------------------------------------------------------- the loss


def action_aware_weights(class_counts: Sequence[int] | np.ndarray, beta_min: float, beta_span: float) -> torch.Tensor:
    """BRL's class weights ``(K,)`` float32, summing to ``K``.

    ``w_c = (1 - beta_c) / (1 - beta_c^n_c)`` (the inverse effective number of Cui et al. 2019)
    with a per-class ``beta_c = beta_min + beta_span (n_c - n_min) / (n_max - n_min)``: a larger
    class counts with a ``beta`` nearer 1, so its effective number grows closer to its count.
    Equal counts give equal weights; a class without samples counts as 1.
    """
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    if counts.dim() != 1 or len(counts) == 0 or (counts < 0).any():
        raise ValueError(f"class_counts must be a non-empty 1-D sequence of counts, got {counts.tolist()}")
    if not (0 <= beta_min and 0 <= beta_span and beta_min + beta_span < 1):
        raise ValueError(f"need 0 <= beta_min, 0 <= beta_span and beta_min + beta_span < 1, got {beta_min}, {beta_span}")
    counts = counts.clamp(min=1)
    spread = counts.max() - counts.min()
    position = (counts - counts.min()) / spread if spread > 0 else torch.zeros_like(counts)
    beta = beta_min + beta_span * position
    weights = (1 - beta) / (1 - beta**counts)
    return (weights / weights.sum() * len(counts)).to(torch.float32)


def action_aware_loss(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """The class-weighted mean cross entropy of soft targets.

    ``sum_ik t_ik w_k (-log softmax(z_i)_k) / sum_ik t_ik w_k`` for ``logits`` ``z`` ``(N, K)``,
    ``targets`` ``t`` ``(N, K)`` rows of probabilities and ``class_weights`` ``w`` ``(K,)``; with
    one-hot targets exactly ``F.cross_entropy(z, y, weight=w)``, with ``w = 1`` the mean soft
    cross entropy.
    """
    log_probabilities = F.log_softmax(logits, dim=1)  # float32 under autocast
    weighted = targets.to(log_probabilities.dtype) * class_weights.to(log_probabilities.dtype)
    return -(weighted * log_probabilities).sum() / weighted.sum()


# --------------------------------------------------------------------------- the method


class BRLMethod(TrainingMethod):
    """BRL: scale and flip, rebalanced partial mixing and the action-aware schedule (module
    docstring); no trainable part of its own, its own loss (the configured ``criterion`` is not
    used: the config requires ``loss.name=ce``).

    Args:
        layout: the skeleton layout (lower body, left/right joints).
        class_counts: ``(K,)`` training samples per class.
        mix_fraction: ``floor(mix_fraction * N)`` samples of a batch of ``N`` are mixed.
        kappa: head/tail count ratio of the label rule.
        label_share: own-class label weight of a balanced pair; ``None`` = the share of the
            layout's joints that stay (its upper body).
        scale: largest relative change of :func:`random_scale`.
        p_flip: probability of :func:`random_flip`.
        p_reverse: probability of :func:`random_reverse`.
        beta_min, beta_span: :func:`action_aware_weights`.
        reweight_epoch: first 0-based epoch trained with the action-aware weights.
        seed: the run seed; the ``brl`` stream is derived from it, the epoch and ``rank``.
        rank: this process's rank.
        channel_names: names of the input channels; only ``x``, ``y``, ``z`` are scaled
            (``None``: all channels are coordinates).
    """

    name = "brl"

    def __init__(
        self,
        layout: Layout | str,
        class_counts: Sequence[int] | np.ndarray,
        mix_fraction: float,
        kappa: float,
        label_share: float | None,
        scale: float,
        p_flip: float,
        p_reverse: float,
        beta_min: float,
        beta_span: float,
        reweight_epoch: int,
        seed: int,
        rank: int = 0,
        channel_names: Sequence[str] | None = None,
    ) -> None:
        layout = get_layout(layout)
        lower = lower_body_joints(layout)
        if not 0 <= mix_fraction <= 1:
            raise ValueError(f"mix_fraction must lie in [0, 1], got {mix_fraction}")
        if kappa < 1:
            raise ValueError(f"kappa must be at least 1 (a count ratio), got {kappa}")
        if reweight_epoch < 0:
            raise ValueError(f"reweight_epoch must not be negative, got {reweight_epoch}")
        self.mix_fraction = mix_fraction
        self.kappa = float(kappa)
        self.label_share = (layout.num_joints - len(lower)) / layout.num_joints if label_share is None else float(label_share)
        self.scale = scale
        self.p_flip = p_flip
        self.p_reverse = p_reverse
        self.reweight_epoch = reweight_epoch
        self.seed = seed
        self.rank = rank
        counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64).clamp(min=1)
        weights = action_aware_weights(class_counts, beta_min, beta_span)
        lower_mask = torch.zeros(layout.num_joints, dtype=torch.bool)
        lower_mask[list(lower)] = True
        self._counts = DeviceCopies(counts)
        self._weights = DeviceCopies(weights)
        self._uniform_weights = DeviceCopies(torch.ones_like(weights))
        self._lower_body = DeviceCopies(lower_mask)
        self._mirror = DeviceCopies(torch.tensor(mirror_permutation(layout), dtype=torch.int64))
        self._channels = (
            None
            if channel_names is None
            else DeviceCopies(torch.tensor([name in COORDINATE_CHANNELS for name in channel_names]))
        )
        self._epoch: int | None = None
        self._stream: DeviceGenerator | None = None

    def _new_stream(self, epoch: int) -> DeviceGenerator:
        return DeviceGenerator(BRL.derive(self.seed, epoch, self.rank), name="BRL's augmentation and mixing")

    def generator(self, epoch: int, device: torch.device) -> torch.Generator:
        """The ``brl`` stream of ``epoch`` on ``device`` (re-derived when a new epoch starts)."""
        if self._stream is None or epoch != self._epoch:
            self._stream, self._epoch = self._new_stream(epoch), epoch
        return self._stream.on(device)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scale, flip and (if enabled) reverse ``x`` ``(N, C, T, V, M)``, each per sample."""
        channels = None if self._channels is None else self._channels.on(x.device)
        if channels is not None and len(channels) != x.shape[1]:
            raise ValueError(f"BRL was built for {len(channels)} input channels, got a batch with C={x.shape[1]}")
        if self.scale > 0:
            x = random_scale(x, self.scale, generator, channels)
        if self.p_flip > 0:
            x = random_flip(x, self._mirror.on(x.device), self.p_flip, generator)
        if self.p_reverse > 0:
            x = random_reverse(x, self.p_reverse, generator)
        return x

    def mixed_batch(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented, partially mixed batch and its ``(N, K)`` targets (rows of unmixed
        samples one-hot), drawn from this epoch's stream."""
        generator = self.generator(epoch, x.device)
        x = self.augment(x, generator)
        count = int(self.mix_fraction * x.shape[0])  # from the shape: no read of device data
        mixed, partner = partial_mix(x, self._lower_body.on(x.device), count, generator)
        counts = self._counts.on(x.device)
        own = own_label_share(counts[y], counts[y[partner]], self.kappa, self.label_share)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return mixed, mixed_targets(y, partner, 1 - own, len(counts), dtype)

    def class_weights_at(self, epoch: int, device: torch.device) -> torch.Tensor:
        """``(K,)`` weights of ``epoch``: ones before :attr:`reweight_epoch`, the action-aware
        weights from it on."""
        return (self._weights if epoch >= self.reweight_epoch else self._uniform_weights).on(device)

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass of the augmented, partially mixed batch; :func:`action_aware_loss`
        with this epoch's weights.  A backbone's own objective (label smoothing, auxiliary loss;
        see :mod:`shapmix.methods.base`) applies as in the default step."""
        mixed, targets = self.mixed_batch(x, y, epoch)
        objective = BackboneObjective.of(network)
        logits, latent = objective.forward(network, mixed)
        loss = action_aware_loss(logits, objective.targets(targets, logits), self.class_weights_at(epoch, x.device))
        loss = objective.add_auxiliary(loss, latent, targets)
        return loss, logits

    def state_dict(self) -> dict[str, Any]:
        """The epoch and position of the ``brl`` stream, so that a run resumed in the middle of
        an epoch draws what the uninterrupted one draws (nothing before the first step)."""
        if self._stream is None:
            return {}
        return {"mixer": {"epoch": self._epoch, **self._stream.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self._stream, self._epoch = None, None
            return
        saved = state["mixer"]
        self._epoch = int(saved["epoch"])
        self._stream = self._new_stream(self._epoch)
        self._stream.load_state_dict({"state": saved["state"], "device": saved["device"]})


def build(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    reweight_epoch = config.brl_reweight_epoch
    if reweight_epoch is None:
        if inputs.total_epochs is None:
            raise ValueError("brl needs method.brl_reweight_epoch or the number of epochs to place it")
        reweight_epoch = int(ORIGINAL_REWEIGHT_FRACTION * inputs.total_epochs)
    channel_names = None if inputs.train_split is None else inputs.train_split.data.channels
    return BRLMethod(
        inputs.layout,
        inputs.class_counts,
        mix_fraction=config.brl_mix_fraction,
        kappa=config.brl_kappa,
        label_share=config.brl_label_share,
        scale=config.brl_scale,
        p_flip=config.brl_p_flip,
        p_reverse=config.brl_p_reverse,
        beta_min=config.brl_beta_min,
        beta_span=config.brl_beta_span,
        reweight_epoch=reweight_epoch,
        seed=inputs.seed,
        rank=inputs.context.rank,
        channel_names=channel_names,
    )
