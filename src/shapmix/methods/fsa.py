"""FSA (Chu et al., ECCV 2020, "Feature Space Augmentation for Long-Tailed Data") as a training
method: tail-class features synthesised in the feature space and trained on with the real ones.

The paper (no official code) trains in two phases.  Phase I learns the backbone and classifier
on all data; Phase II decomposes each sample's feature map with its class activation map into
a *class-specific* part (where the map is high) and a *class-generic* part (where it is low),
generates new samples of under-represented classes on the fly by fusing the class-specific
features of a tail sample with the class-generic features of samples of the classes it is
confused with, and fine-tunes the classifier on real and synthesised features.  Here Phase I
is any first stage and Phase II is this method in a second stage with a frozen backbone
(``finetune.kind=classifier``: the first-stage classifier is fine-tuned, so the activation maps
are meaningful from the first step; the ``fsa`` preset).  How each step maps to skeletons:

* **Activation maps over time x joints x persons.**  The last block's features ``F``
  ``(N*M, C, T', V)`` take the place of the image feature map.  The map of sample ``i`` for its
  own class ``y_i`` is Grad-CAM (the unofficial implementation's choice): channel weights
  ``a_k`` = the gradient of logit ``y_i`` averaged over the positions, map =
  ``ReLU(sum_k a_k F_k)`` over ``(M, T', V)``, min-max normalised to ``[0, 1]`` per sample.  For
  a linear classifier on the pooled features (every backbone but InfoGCN) the weights are
  ``W[y_i] / (M T' V)``, so the map is exactly the CAM ``ReLU(W[y_i] . F)`` normalised;
  InfoGCN's classifier acts on a latent and Grad-CAM is what defines its map.
* **Split.**  Class-specific features: ``F`` at the positions whose map exceeds ``tau_s``
  (``method.fsa_specific_threshold``), zero elsewhere; class-generic: ``F`` where the map is below
  ``tau_g`` (``method.fsa_generic_threshold``).
* **Confusing classes.**  Class ``c``'s confusion with ``d`` is the mean softmax score of ``d``
  over the training samples of ``c`` (the unofficial implementation's Phase II statistic),
  accumulated over the stage's steps from the real samples' logits (uniform until ``c`` has
  been seen).  The paper fuses with samples of the top confusing classes of the dataset; a batch
  rarely holds a given class, so each tail sample (class with at most
  ``method.fsa_tail_max_samples`` training samples) draws its ``N_a``
  (``method.fsa_synthesised_per_sample``) head samples from the batch without replacement with
  probabilities proportional to its class's confusion with theirs: the most confusing classes
  present are preferred.  Rows without a head sample to draw are not synthesised.
* **Fusion** (the unofficial implementation's): each synthesised map takes, at every position,
  the tail sample's class-specific features with probability ``1 - g`` and the head sample's
  class-generic features otherwise, ``g ~ U(0, 1)`` per synthesised sample; its label is the
  tail class.  It goes through the backbone's head (pooling and classifier) like a real map.

The loss is the run's criterion over the real and the synthesised rows together (a mean over
all of them; the backbone's label smoothing applies to both).  InfoGCN's information bottleneck
acts on the latent before the classifier and is not added.  The draws come from the ``fsa``
stream (:mod:`shapmix.seeds`), different on every rank; the confusion statistics are summed
over the processes every step, so every rank keeps the same.  Used without a second stage, the
method trains the whole network on real and synthesised features from the first step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import DistributedContext
from ..seeds import FSA, DeviceGenerator
from ..losses import one_hot
from .base import BackboneObjective, MethodInputs, TrainingMethod, backbone_of

__all__ = ["FSAMethod", "FeatureMaps", "activation_maps", "fuse_features", "split_features"]

# Keeps the min-max normalisation of a flat map and the Gumbel draws finite.
EPS = 1e-12


class FeatureMaps(nn.Module):
    """FSA's ``heads``: no parameters; ``forward(backbone, x)`` returns the last block's features
    ``(N*M, C, T', V)``, so that the step's forward pass goes through the (DDP-wrapped)
    :class:`TrainingNetwork`."""

    def forward(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return backbone.forward_features(x)


def activation_maps(backbone: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of each sample for its own class, normalised to ``[0, 1]`` per sample.

    Args:
        backbone: the :class:`PooledGCN` whose ``head`` scores the features.
        features: ``(N*M, C, T', V)`` last-block features.
        labels: ``(N,)`` the class of each sample.

    Returns:
        ``(N, M, T', V)`` maps (no gradient).
    """
    NM, _, T, V = features.shape
    N = labels.shape[0]
    probe = features.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = backbone.head(probe, NM // N)
        gradient = torch.autograd.grad(scores.gather(1, labels[:, None]).sum(), probe)[0]
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    maps = F.relu((weights * features.detach()).sum(dim=1)).reshape(N, NM // N, T, V).float()
    low = maps.amin(dim=(1, 2, 3), keepdim=True)
    high = maps.amax(dim=(1, 2, 3), keepdim=True)
    return (maps - low) / (high - low + EPS)


def split_features(
    features: torch.Tensor, maps: torch.Tensor, specific_threshold: float, generic_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(specific, generic)``: the ``(N, M, C, T', V)`` features where the ``(N, M, T', V)`` map
    exceeds ``specific_threshold`` (resp. is below ``generic_threshold``), zero elsewhere."""
    N, M = maps.shape[:2]
    per_sample = features.reshape(N, M, *features.shape[1:])
    specific = per_sample * (maps > specific_threshold).to(features.dtype)[:, :, None]
    generic = per_sample * (maps < generic_threshold).to(features.dtype)[:, :, None]
    return specific, generic


def fuse_features(
    specific: torch.Tensor, generic: torch.Tensor, donors: torch.Tensor, take_specific: torch.Tensor
) -> torch.Tensor:
    """Synthesised maps: at each position the sample's class-specific features where
    ``take_specific``, else its donor's class-generic features.

    Args:
        specific, generic: ``(N, M, C, T', V)``.
        donors: ``(N, A)`` the head sample each synthesised map takes its generic part from.
        take_specific: ``(N, A, M, T', V)`` bool.

    Returns:
        ``(N, A, M, C, T', V)``.
    """
    mask = take_specific[:, :, :, None]
    return torch.where(mask, specific[:, None], generic[donors])


class FSAMethod(TrainingMethod):
    """Feature space augmentation: real features plus tail features synthesised from the
    class-specific part of tail samples and the class-generic part of head samples.

    Args:
        class_counts: ``(K,)`` training samples per class.
        tail_max_samples: classes with at most this many samples are augmented.
        specific_threshold, generic_threshold: ``tau_s`` and ``tau_g`` of :func:`split_features`.
        synthesised_per_sample: ``N_a``, synthesised maps per tail sample.
        seed: seed of this rank's draws.
        context: the process group the confusion statistics are summed over.
    """

    name = "fsa"

    def __init__(
        self,
        class_counts: np.ndarray,
        tail_max_samples: int,
        specific_threshold: float,
        generic_threshold: float,
        synthesised_per_sample: int,
        seed: int,
        context: DistributedContext | None = None,
    ) -> None:
        if generic_threshold > specific_threshold:
            raise ValueError(
                f"method.fsa_generic_threshold={generic_threshold} must not exceed "
                f"method.fsa_specific_threshold={specific_threshold}"
            )
        self.heads = FeatureMaps()
        counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
        self.tail = counts <= tail_max_samples
        self.num_classes = len(counts)
        self.specific_threshold = specific_threshold
        self.generic_threshold = generic_threshold
        self.synthesised_per_sample = synthesised_per_sample
        self.context = context or DistributedContext()
        self.stream = DeviceGenerator(seed=seed, name="FSA's draws")
        # per class: summed softmax scores of its real training samples, and how many there were
        self.score_sums = torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)
        self.score_counts = torch.zeros(self.num_classes, dtype=torch.float64)
        self._tail_on: dict[torch.device, torch.Tensor] = {}

    def _on(self, device: torch.device) -> torch.Tensor:
        """The statistics moved to ``device`` once (later steps find them there); the tail mask."""
        if self.score_sums.device != device:
            self.score_sums = self.score_sums.to(device)
            self.score_counts = self.score_counts.to(device)
        if device not in self._tail_on:
            self._tail_on[device] = self.tail.to(device)
        return self._tail_on[device]

    def confusion(self) -> torch.Tensor:
        """``(K, K)`` float64: row ``c`` = the mean softmax scores of class ``c``'s samples so far,
        uniform before the first one, with the diagonal zeroed."""
        seen = self.score_counts[:, None] > 0
        mean = torch.where(seen, self.score_sums / self.score_counts[:, None].clamp_min(1), 1.0 / self.num_classes)
        return mean * (1 - torch.eye(self.num_classes, dtype=mean.dtype, device=mean.device))

    @torch.no_grad()
    def _record_scores(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        truth = one_hot(labels, self.num_classes, torch.float64)
        sums = truth.t() @ logits.detach().double().softmax(dim=1)
        counts = truth.sum(dim=0)
        self.score_sums += self.context.all_reduce_sum(sums)
        self.score_counts += self.context.all_reduce_sum(counts)

    def draw_donors(self, labels: torch.Tensor, tail: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(donors, valid)``, both ``(N, A)``: for each sample, ``A`` distinct head samples of the
        batch drawn with probabilities proportional to its class's confusion with theirs (Gumbel
        top-k); ``valid`` is false for rows of head samples and draws with no head sample left."""
        affinity = self.confusion()[labels][:, labels]  # (N, N): confusion of row's class with column's
        weights = affinity * tail[labels, None] * ~tail[None, labels]
        uniform = torch.rand(weights.shape, generator=generator, device=weights.device, dtype=weights.dtype)
        gumbel = -torch.log(-torch.log(uniform.clamp(EPS, 1 - EPS)))
        count = min(self.synthesised_per_sample, len(labels))
        keys, donors = (weights.log() + gumbel).topk(count, dim=1)
        return donors, torch.isfinite(keys)

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = network(x, with_heads=True)
        backbone = backbone_of(network)
        num_persons = x.shape[-1]
        tail = self._on(x.device)
        real_logits = backbone.head(features, num_persons)
        self._record_scores(real_logits, y)

        generator = self.stream.on(x.device)
        maps = activation_maps(backbone, features, y)
        specific, generic = split_features(features, maps, self.specific_threshold, self.generic_threshold)
        donors, valid = self.draw_donors(y, tail, generator)
        N, A = donors.shape
        share = torch.rand(N, A, 1, 1, 1, generator=generator, device=x.device)  # g: the generic share
        positions = torch.rand(N, A, *maps.shape[1:], generator=generator, device=x.device)
        fused = fuse_features(specific, generic, donors, positions > share)
        synthesised_logits = backbone.head(fused.reshape(N * A * num_persons, *fused.shape[3:]), num_persons)

        logits = torch.cat([real_logits, synthesised_logits])
        truth = one_hot(y, self.num_classes, logits.dtype)
        targets = BackboneObjective.of(backbone).targets(torch.cat([truth, truth.repeat_interleave(A, dim=0)]), logits)
        kept = torch.cat([torch.ones_like(y, dtype=logits.dtype), valid.reshape(-1).to(logits.dtype)])
        # the criterion averages over every row; the rows not synthesised (zero targets) add nothing
        loss = criterion(logits, targets * kept[:, None]) * (len(kept) / kept.sum())
        return loss, real_logits

    def state_dict(self) -> dict[str, Any]:
        """The confusion statistics and the position of the draws."""
        return {
            "score_sums": self.score_sums.clone(),
            "score_counts": self.score_counts.clone(),
            "stream": self.stream.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = (self.num_classes, self.num_classes)
        if tuple(state["score_sums"].shape) != expected:
            raise ValueError(f"fsa state holds {tuple(state['score_sums'].shape)} class scores, expected {expected}")
        self.score_sums = state["score_sums"].to(torch.float64).clone()
        self.score_counts = state["score_counts"].to(torch.float64).clone()
        self.stream.load_state_dict(state["stream"])


def build(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    return FSAMethod(
        inputs.class_counts,
        tail_max_samples=config.fsa_tail_max_samples,
        specific_threshold=config.fsa_specific_threshold,
        generic_threshold=config.fsa_generic_threshold,
        synthesised_per_sample=config.fsa_synthesised_per_sample,
        seed=FSA.derive(inputs.seed, inputs.context.rank),
        context=inputs.context,
    )
