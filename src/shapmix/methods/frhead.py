"""FR Head (Zhou et al., CVPR 2023, "Learning Discriminative Representations for Skeleton Based
Action Recognition") as a training method: a feature refinement head trained with contrastive
losses on multi-level features, added to the classification loss; inference is the backbone's.

What the original code (zhysora/FR-Head, ``model/lib.py``, ``model/ctrgcn.py``, ``main.py``)
does, and how it maps here:

* **Multi-level taps.**  CTR-GCN's output of ``l1`` (first block, ``C``), ``l5`` (first block of
  the second stage, ``2C``, ``T/2``), ``l8`` (first block of the third stage, ``4C``, ``T/4``)
  and ``l10`` (the last block) feed four refinement modules ``ren_low/mid/high/fin``.  Here the
  taps are the first block of every stage of the backbone's :func:`block_plan` plus its last
  block, for any backbone and depth (InfoGCN's 9 blocks: ``l1``, ``l4``, ``l7``, ``l9``).
* **Spatial-temporal decoupling** (``ST_RenovateNet``): the ``(N*M, C, T', V)`` features are
  averaged over persons, then over time (spatial branch, ``(N, C, 1, V)``) or over joints
  (temporal branch, ``(N, C, T', 1)``); each branch squeezes the channels with a 1x1
  convolution, batch norm and ReLU to ``h // V`` (``h // T'``) channels, flattens and projects
  with a linear layer to ``h = 256`` dimensions.  The module sizes depend on ``T'``, so the
  heads are sized with a probe forward of one input of the training window.
* **Contrastive feature refinement** (``RenovateNet``, version ``V0``): in each batch a sample
  is a *confident* one (true positive: predicted as its class), a *false negative* of its class
  (predicted otherwise), and a *false positive* of the class it is wrongly predicted as.  Each
  class keeps a prototype ``m_k`` (its memory, ``(K, h)``, initialised ``N(0, 1)``), updated
  once per step with momentum 0.9 towards the mean embedding of the class's confident samples
  in the batch (classes without one keep theirs); the update is part of the graph (the batch's
  share ``1 - momentum`` receives gradient) and is stored detached.  With cosine similarities
  of normalised embeddings ``z`` and ``p = softmax(logits)``, sample ``i`` of class ``y`` gets
  the two logit vectors ``(cos(z_i, m_k) + [k = y] a (1 - p_iy) s_k) / t`` where ``s_y`` is
  ``cos(z_i, mean FN of y) - 1`` (pulled towards its class's ambiguous samples) in the first
  and ``-cos(z_i, mean FP of y) - 1`` (pushed away from samples wrongly taken as ``y``) in the
  second, each counted only when the batch has such samples, ``a = 0.125``, ``t = 0.125``;
  the loss is the sum of the two cross entropies against ``y``.  The original's
  ``pred_threshold=0`` (confident when the softmax exceeds 0) keeps every true positive and is
  not a parameter here.  Labels and logits enter detached.
* **Loss weights** (``main.py`` and the released configs): the level losses (spatial +
  temporal) are weighted ``0.1, 0.2, 0.5, 1`` (low to final) and their sum by ``0.1``, from the
  first epoch (``--start-cl-epoch -1``).

On CTR-GCN for NTU RGB+D (64 frames, ``h = 256``) the heads hold 536,956 parameters, whatever the
number of classes (the Shap-Mix paper's Table 9: 1.46M -> 1.99M for CTR-GCN).

The classification loss is the run's criterion (any loss of :mod:`shapmix.losses`), with the
backbone's own objective (InfoGCN's label smoothing and information bottleneck) as in
:meth:`TrainingMethod.training_loss`.  FR Head trains on the clean batch only: the papers'
comparisons use it without mixing (Shap-Mix paper, Table 9: "+ FR Head" and "+ Ours" are
alternatives), and its confident / ambiguous split needs hard labels, which mixed samples lack.

Under DDP the class sums behind the prototypes and the FN / FP means are summed over the
processes before use (the original's commented-out ``all_reduce``), so every rank keeps the same
prototypes and sees the statistics of the global batch; gradients flow through the local share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import Compose, CropResize
from ..distributed import DistributedContext
from ..models.common import block_plan
from ..losses import one_hot
from .base import BackboneObjective, MethodInputs, TrainingMethod

__all__ = ["FRHeadMethod", "FRHeads", "refinement_loss", "tap_blocks"]

# Guards of the original's divisions and normalisations (``+ 1e-12``).
NORM_EPS = 1e-12
SPATIAL, TEMPORAL = 0, 1


def tap_blocks(num_blocks: int, base_channels: int) -> list[int]:
    """0-based indices of the blocks whose outputs the heads refine: the first block of every
    stage of :func:`block_plan` (where the width changes), then the last block.  For 10 blocks
    ``[0, 4, 7, 9]`` (the original's ``l1, l5, l8, l10``); the last index may repeat a stage's
    first block (3 blocks: ``[0, 1, 2, 2]``)."""
    plan = block_plan(num_blocks, base_channels)
    firsts = [index for index, (width, _) in enumerate(plan) if index == 0 or width != plan[index - 1][0]]
    return firsts + [num_blocks - 1]


class _Branch(nn.Module):
    """One branch of a level: squeeze ``C`` channels to ``hidden // P`` (1x1 conv, batch norm,
    ReLU) at each of ``P`` positions (joints or frames), flatten, project to ``hidden``."""

    def __init__(self, channels: int, positions: int, hidden: int) -> None:
        super().__init__()
        squeezed = hidden // positions
        if squeezed < 1:
            raise ValueError(
                f"FR Head: method.frhead_hidden={hidden} is smaller than the {positions} positions of a branch"
            )
        self.squeeze = nn.Sequential(nn.Conv2d(channels, squeezed, kernel_size=1), nn.BatchNorm2d(squeezed), nn.ReLU())
        self.project = nn.Linear(squeezed * positions, hidden)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(N, C, T', 1)`` or ``(N, C, 1, V)`` -> ``(N, hidden)``."""
        return self.project(self.squeeze(pooled).flatten(1))


class _Level(nn.Module):
    """The spatial and temporal branches of one tapped block (``ST_RenovateNet``)."""

    def __init__(self, channels: int, frames: int, joints: int, hidden: int) -> None:
        super().__init__()
        self.spatial = _Branch(channels, joints, hidden)
        self.temporal = _Branch(channels, frames, hidden)

    def forward(self, features: torch.Tensor, num_persons: int) -> torch.Tensor:
        """``(N*M, C, T', V)`` -> ``(2, N, hidden)``: spatial, temporal embeddings."""
        NM, C, T, V = features.shape
        per_sample = features.reshape(NM // num_persons, num_persons, C, T, V).mean(dim=1)
        spatial = self.spatial(per_sample.mean(dim=2, keepdim=True))
        temporal = self.temporal(per_sample.mean(dim=3, keepdim=True))
        return torch.stack([spatial, temporal])


def _global_sums(
    weights: torch.Tensor, embeddings: torch.Tensor, context: DistributedContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums of the ``(N, h)`` embeddings with ``(N, K)`` 0/1 ``weights`` and the counts
    ``(K,)``, summed over the processes; only this rank's share carries gradient."""
    sums = weights.t() @ embeddings
    counts = weights.sum(dim=0)
    if context.is_distributed:
        local = sums.detach()
        sums = sums + (context.all_reduce_sum(local.clone()) - local)
        counts = context.all_reduce_sum(counts.clone())
    return sums, counts


def _normalise(rows: torch.Tensor) -> torch.Tensor:
    return rows / (rows.norm(dim=-1, keepdim=True) + NORM_EPS)


def refinement_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    logits: torch.Tensor,
    memory: torch.Tensor,
    alpha: float,
    temperature: float,
    momentum: float,
    context: DistributedContext | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The contrastive feature refinement loss of one branch (FR Head's ``RenovateNet``, ``V0``).

    Args:
        embeddings: ``(N, h)`` projected features of the batch.
        labels: ``(N,)`` class ids.
        logits: ``(N, K)`` the backbone's logits (used detached: predictions and confidences).
        memory: ``(K, h)`` class prototypes before this step; the loss is computed in their dtype.
        alpha: weight ``a`` of the ambiguous-sample terms.
        temperature: ``t`` of the contrastive logits.
        momentum: of the prototype update.
        context: the process group the class statistics are summed over.

    Returns:
        ``(loss, new_memory)``: the scalar loss and the ``(K, h)`` updated prototypes (still in
        the graph; store them detached).
    """
    context = context or DistributedContext()
    num_classes = logits.shape[1]
    # in the prototypes' precision (fp32), also under autocast
    logits = logits.detach().to(memory.dtype)
    embeddings = embeddings.to(memory.dtype)
    truth = one_hot(labels, num_classes, embeddings.dtype)
    predicted = one_hot(logits.argmax(dim=1), num_classes, embeddings.dtype)
    confident = truth * predicted  # true positives
    false_negative = truth - confident  # of their own class, predicted otherwise
    false_positive = predicted - confident  # of the class they are wrongly predicted as

    confident_sums, confident_counts = _global_sums(confident, embeddings, context)
    present = (confident_counts > 0)[:, None]
    batch_means = confident_sums / (confident_counts[:, None] + NORM_EPS)
    new_memory = torch.where(present, momentum * memory + (1 - momentum) * batch_means, memory)
    fn_sums, fn_counts = _global_sums(false_negative, embeddings, context)
    fp_sums, fp_counts = _global_sums(false_positive, embeddings, context)
    # the means' scale does not matter: every vector is normalised before a cosine
    has_fn, has_fp = (fn_counts > 0).to(embeddings.dtype), (fp_counts > 0).to(embeddings.dtype)

    z = _normalise(embeddings)
    to_prototypes = z @ _normalise(new_memory).t()  # (N, K)
    to_fn = z @ _normalise(fn_sums).t() - 1  # in [-2, 0]: 0 when aligned with the class's FN
    to_fp = -(z @ _normalise(fp_sums).t()) - 1  # in [-2, 0]: 0 when opposite to the class's FP
    hardness = alpha * (1 - logits.softmax(dim=1)) * truth  # only at the true class
    pull = (to_prototypes + to_fn * hardness * has_fn) / temperature
    push = (to_prototypes + to_fp * hardness * has_fp) / temperature
    loss = F.cross_entropy(pull, labels) + F.cross_entropy(push, labels)
    return loss, new_memory


class FRHeads(nn.Module):
    """The refinement modules of FR Head on the backbone's tapped blocks, and their prototypes.

    ``forward(backbone, x)`` (called through :class:`TrainingNetwork`) runs the backbone through
    its :class:`PooledGCN` interface (``embed``, ``blocks``, ``head``), computing exactly its
    logits, and returns ``(logits (N, K), embeddings (L, 2, N, hidden), latent)``: the spatial
    and temporal embeddings of the ``L`` levels, and the classifier's input when the backbone
    has its own objective (InfoGCN's latent; else ``None``).

    Args:
        taps: block index of each level (:func:`tap_blocks`).
        shapes: ``(C, T')`` of each tapped block's output.
        num_joints: ``V``.
        num_classes: ``K``.
        hidden: embedding width ``h``.
        capture_latent: return the classifier's input (for a backbone ``auxiliary_loss``).
    """

    def __init__(
        self,
        taps: Sequence[int],
        shapes: Sequence[tuple[int, int]],
        num_joints: int,
        num_classes: int,
        hidden: int,
        capture_latent: bool = False,
    ) -> None:
        super().__init__()
        self.taps = list(taps)
        self.capture_latent = capture_latent
        self.levels = nn.ModuleList(_Level(channels, frames, num_joints, hidden) for channels, frames in shapes)
        # the original's ``avg_f = torch.randn(h, K)`` per branch, kept here as (level, branch, K, h)
        self.register_buffer("memory", torch.randn(len(self.taps), 2, num_classes, hidden))

    def forward(self, backbone: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        num_persons = x.shape[-1]
        features = backbone.embed(x)
        outputs: dict[int, torch.Tensor] = {}
        for index, block in enumerate(backbone.blocks):
            features = block(features)
            outputs[index] = features
        embeddings = torch.stack([level(outputs[tap], num_persons) for level, tap in zip(self.levels, self.taps)])
        captured: list[torch.Tensor] = []
        handle = None
        if self.capture_latent:
            classifier = getattr(backbone, backbone.classifier_name)
            handle = classifier.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            logits = backbone.head(features, num_persons)
        finally:
            if handle is not None:
                handle.remove()
        return logits, embeddings, (captured[0] if captured else None)


class FRHeadMethod(TrainingMethod):
    """FR Head: the run's loss plus the weighted refinement losses of every level and branch.

    Args:
        heads: the refinement modules and prototypes.
        weight: weight of the summed refinement losses (original ``--w-cl-loss``).
        level_weights: weight of each level's losses (original ``--w-multi-cl-loss``).
        alpha, temperature, momentum: of :func:`refinement_loss`.
        context: the process group the class statistics are summed over.
    """

    name = "frhead"

    def __init__(
        self,
        heads: FRHeads,
        weight: float,
        level_weights: Sequence[float],
        alpha: float,
        temperature: float,
        momentum: float,
        context: DistributedContext | None = None,
    ) -> None:
        if len(level_weights) != len(heads.levels):
            raise ValueError(
                f"method.frhead_level_weights has {len(level_weights)} weights, but the backbone has "
                f"{len(heads.levels)} refined levels (the first block of each stage and the last block, blocks "
                f"{[tap + 1 for tap in heads.taps]})"
            )
        self.heads = heads
        self.weight = weight
        self.level_weights = list(level_weights)
        self.alpha = alpha
        self.temperature = temperature
        self.momentum = momentum
        self.context = context or DistributedContext()

    def refinement(self, embeddings: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The weighted sum of every level's spatial and temporal refinement losses for the
        ``(L, 2, N, h)`` ``embeddings``; updates the prototypes."""
        memory = self.heads.memory
        total = embeddings.new_zeros((), dtype=torch.float32)
        updated = []
        with torch.autocast(embeddings.device.type, enabled=False):  # cosines and softmax in fp32
            for level, level_weight in enumerate(self.level_weights):
                for branch in (SPATIAL, TEMPORAL):
                    loss, new_memory = refinement_loss(
                        embeddings[level, branch],
                        labels,
                        logits,
                        memory[level, branch].clone(),
                        self.alpha,
                        self.temperature,
                        self.momentum,
                        self.context,
                    )
                    total = total + level_weight * loss
                    updated.append(new_memory.detach())
        with torch.no_grad():
            memory.copy_(torch.stack(updated).reshape(memory.shape))
        return total

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embeddings, latent = network(x, with_heads=True)
        objective = BackboneObjective.of(network)
        loss = objective.add_auxiliary(criterion(logits, objective.targets(y, logits)), latent, y)
        loss = loss + self.weight * self.refinement(embeddings, y, logits)
        return loss, logits

    def state_dict(self) -> dict[str, Any]:
        """The refinement modules and the prototypes."""
        return {"heads": self.heads.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.heads.load_state_dict(state["heads"])


def training_window(pipeline: Compose | None) -> int:
    """The frames a training batch has: the window of the pipeline's crop-resize step."""
    windows = [step.window for step in getattr(pipeline, "transforms", ()) if isinstance(step, CropResize)]
    if not windows:
        raise ValueError("frhead sizes its temporal branches from the training pipeline's window (data.window); none given")
    return windows[-1]


@torch.no_grad()
def tapped_shapes(model: nn.Module, taps: Sequence[int], frames: int) -> list[tuple[int, int]]:
    """``(C, T')`` of each tapped block's output for inputs of ``frames`` frames: one probe
    forward of a zero sample in eval mode (batch-norm statistics untouched)."""
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters())
        probe = parameter.new_zeros(1, model.in_channels, frames, model.num_joints, model.num_persons)
        features = model.embed(probe)
        shapes: dict[int, tuple[int, int]] = {}
        for index, block in enumerate(model.blocks):
            features = block(features)
            shapes[index] = (features.shape[1], features.shape[2])
    finally:
        model.train(was_training)
    return [shapes[tap] for tap in taps]


def build(inputs: MethodInputs) -> TrainingMethod:
    config, model = inputs.config, inputs.model
    if model is None:
        raise ValueError("frhead needs the model (its blocks are tapped)")
    for attribute in ("embed", "blocks", "head", "num_blocks", "base_channels", "classifier_name"):
        if not hasattr(model, attribute):
            raise TypeError(f"frhead needs a PooledGCN backbone; {type(model).__name__} has no {attribute!r}")
    taps = tap_blocks(model.num_blocks, model.base_channels)
    shapes = tapped_shapes(model, taps, training_window(inputs.train_pipeline))
    parameter = next(model.parameters())
    heads = FRHeads(
        taps,
        shapes,
        model.num_joints,
        inputs.num_classes,
        config.frhead_hidden,
        capture_latent=hasattr(model, "auxiliary_loss"),
    ).to(parameter.device)
    return FRHeadMethod(
        heads,
        weight=config.frhead_weight,
        level_weights=config.frhead_level_weights,
        alpha=config.frhead_alpha,
        temperature=config.frhead_temperature,
        momentum=config.frhead_momentum,
        context=inputs.context,
    )
