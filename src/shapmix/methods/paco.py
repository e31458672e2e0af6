"""PaCo: parametric contrastive learning (Cui, Zhong, Liu, Yu, Jia, "Parametric Contrastive
Learning", ICCV 2021), as a training method for any backbone here.

PaCo is supervised contrastive learning in MoCo's set-up with the classifier's weights as a set
of learnable class centres.  Every step, for a batch of ``B`` samples with labels ``y``:

* the query view ``x`` (the trainer's augmented batch) goes through the backbone: its pooled
  features give the classifier logits ``z`` ``(B, K)`` and, through a projection MLP
  (:func:`~shapmix.methods.contrastive.projection_mlp`), L2-normalised queries ``q`` ``(B, D)``;
* the key view (``x`` turned by a fresh pipeline rotation, :mod:`shapmix.methods.contrastive`)
  goes through the momentum encoder, a copy of backbone and projection that is not trained but
  moved before every step to ``m * key + (1 - m) * query`` (MoCo's momentum update), giving
  normalised keys ``k`` ``(B, D)``;
* a queue holds the ``Q`` most recent keys of all ranks and their labels.

Each query ``q_i`` is contrasted, in one softmax, with the ``K`` class centres, whose logits
are the classifier's ``z_i + log prior`` (logit adjustment, not divided by the temperature), and
with the samples ``[q; k; queue]`` (itself left out), whose logits are ``q_i . s_j / T``.  The
loss (:func:`paco_loss`) is the weighted mean of ``-log p`` over the positives: its own class
centre with weight ``beta`` and every same-class sample with weight ``alpha``; the samples count
``gamma`` times in the denominator.  After the loss the batch's keys, gathered from every rank
(as the original's ``concat_all_gather``), replace the oldest ones in the queue.

Inference is the backbone's plain classifier, as the original's ``_inference`` (the linear
layer on the pooled features, no prior).  PaCo's loss is the whole objective, so the configured
``criterion`` is not used (the config requires ``loss.name=ce``).  A backbone's own training
objective (InfoGCN's information bottleneck and label smoothing) is not added.

Differences from the official code (github.com/dvlab-research/Parametric-Contrastive-Learning,
``PaCo/LT/losses.py``, ``moco/builder.py``): the key view is a rotation of the query view rather
than a second independently augmented image; the original shuffles the key batch across GPUs
before the key encoder (MoCo's shuffling BN), here each rank's key encoder normalises its own
batch; the queue may be any size of at least the global batch (the original needs a multiple);
a class without training samples counts as one sample in the prior (the original adds 1e-9).
As the original, the queue starts with Gaussian keys normalised along the queue axis (so every
starting key is short) and random labels, replaced within ``Q / global batch`` steps; the
momentum encoder runs in training mode (batch statistics), and its copy of the classifier moves
too but is not used.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..distributed import DistributedContext
from ..losses import BalancedSoftmax
from ..skeleton.layouts import Layout
from .base import MethodInputs, TrainingMethod, TrainingNetwork
from .contrastive import RotatedViews, check_backbone, pipeline_rotation, projection_mlp

__all__ = [
    "KeyQueue",
    "PaCoHeads",
    "PaCoMethod",
    "frozen_copy",
    "gather_from_ranks",
    "log_class_prior",
    "momentum_update",
    "paco_loss",
]


def paco_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    queue_keys: torch.Tensor,
    labels: torch.Tensor,
    queue_labels: torch.Tensor,
    centre_logits: torch.Tensor,
    log_prior: torch.Tensor,
    alpha: float,
    beta: float,
    gamma: float,
    temperature: float,
) -> torch.Tensor:
    """PaCo's loss, averaged over the ``B`` queries.

    Args:
        queries, keys: ``(B, D)`` normalised projections of the query and key views.
        queue_keys: ``(Q, D)`` the queued keys.
        labels: ``(B,)`` int64 labels of the batch; ``queue_labels`` ``(Q,)`` those of the queue.
        centre_logits: ``(B, K)`` the classifier's logits of the queries (the class centres).
        log_prior: ``(K,)`` log training class frequencies, added to the centre logits.
        alpha, beta: weights of the sample positives and of the class-centre positive.
        gamma: weight of the samples in the denominator (the centres weigh 1).
        temperature: divides the sample similarities (not the centre logits).

    Returns:
        a scalar: ``mean_i -sum_j w_ij log p_ij / sum_j w_ij`` with ``p_i`` the softmax over
        ``[z_i + log prior, q_i . s / T]`` weighted ``[1, gamma]`` (``q_i`` itself left out) and
        ``w_ij`` = ``beta`` for ``i``'s class centre, ``alpha`` for its same-class samples.
    """
    batch, num_classes = centre_logits.shape
    contrast = torch.cat([queries, keys.to(queries.dtype), queue_keys.to(queries.dtype)])  # (2B + Q, D)
    contrast_labels = torch.cat([labels, labels, queue_labels])
    sample_logits = queries @ contrast.T / temperature  # (B, 2B + Q)
    dtype = centre_logits.dtype
    logits = torch.cat([centre_logits + log_prior.to(dtype), sample_logits.to(dtype)], dim=1)
    itself = torch.eye(batch, len(contrast), dtype=torch.bool, device=queries.device)  # q_i in column i
    classes = torch.arange(num_classes, device=labels.device)
    centre_positive = labels[:, None] == classes[None, :]
    sample_positive = (labels[:, None] == contrast_labels[None, :]) & ~itself
    weights = torch.cat([beta * centre_positive.to(logits.dtype), alpha * sample_positive.to(logits.dtype)], dim=1)
    in_denominator = torch.cat(
        [torch.ones_like(centre_logits), gamma * (~itself).to(logits.dtype)], dim=1
    )  # log(0) = -inf drops the query itself (and every sample when gamma = 0)
    log_prob = logits - torch.logsumexp(logits + in_denominator.log(), dim=1, keepdim=True)
    return (-(weights * log_prob).sum(dim=1) / weights.sum(dim=1)).mean()


def log_class_prior(class_counts: np.ndarray) -> torch.Tensor:
    """``(K,)`` float32 ``log(n_c / n)`` (a class without samples counts as one)."""
    return BalancedSoftmax(class_counts).log_prior


def gather_from_ranks(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Every rank's ``(n, ...)`` ``tensor`` concatenated in rank order, ``(world * n, ...)``,
    without gradient (the original's ``concat_all_gather``); ``tensor`` itself in one process."""
    if not context.is_distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(context.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters take no gradient.  The skeleton layouts it
    refers to are shared, not copied: they are immutable, and their read-only part mappings
    cannot be copied."""
    layouts = {
        id(value): value for part in module.modules() for value in vars(part).values() if isinstance(value, Layout)
    }
    return copy.deepcopy(module, memo=layouts).requires_grad_(False)


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, momentum: float) -> None:
    """Move every parameter of ``key`` to ``momentum * key + (1 - momentum) * query`` (the two
    modules have the same parameters in the same order; buffers are left alone)."""
    key_parameters, query_parameters = list(key.parameters()), list(query.parameters())
    if len(key_parameters) != len(query_parameters):
        raise ValueError(
            f"the key encoder has {len(key_parameters)} parameters, the query side {len(query_parameters)}"
        )
    torch._foreach_lerp_(key_parameters, [p.detach() for p in query_parameters], 1.0 - momentum)


class PaCoHeads(nn.Module):
    """PaCo's trainable head: the projection MLP on the backbone's pooled features.

    Args:
        feature_dim: ``C_out`` of the backbone's pooled features.
        projection_dim: ``D`` of the contrast.
        log_prior: ``(K,)`` log training class frequencies (a buffer that follows the device).
    """

    def __init__(self, feature_dim: int, projection_dim: int, log_prior: torch.Tensor) -> None:
        super().__init__()
        self.projection = projection_mlp(feature_dim, projection_dim)
        self.register_buffer("log_prior", log_prior.to(torch.float32), persistent=False)

    def forward(self, backbone: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(N, C, T, V, M)`` -> ``(logits (N, K), normalised projection (N, D))``: the
        backbone's classifier and the projection of the same pooled features."""
        features = backbone.forward_features(x)
        persons = x.shape[-1]
        projection = self.projection(backbone.pool(features, persons))
        return backbone.head(features, persons), F.normalize(projection, dim=1)


class KeyQueue(nn.Module):
    """The queue of keys and labels, a ring written at ``pointer`` (all state in buffers, on the
    device, so a step never reads it back to the host).

    Args:
        size: ``Q`` keys.
        dim: ``D``.
        num_classes: ``K``: the starting labels are drawn from ``0 .. K-1``.

    The starting keys and labels are drawn from torch's global generator (which the trainer
    seeds before it builds the model, so they are part of the run's initial state).
    """

    def __init__(self, size: int, dim: int, num_classes: int) -> None:
        super().__init__()
        # as the original: Gaussian keys normalised along the queue axis, random labels
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=0))
        self.register_buffer("labels", torch.randint(num_classes, (size,)))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Write ``(n, D)`` ``keys`` and ``(n,)`` ``labels`` over the ``n`` oldest entries."""
        n = keys.shape[0]
        if n > self.size:
            raise ValueError(
                f"PaCo pushes {n} keys per step (the global batch) into a queue of {self.size}; "
                f"set method.paco_queue_size to at least {n}"
            )
        slots = (self.pointer + torch.arange(n, device=self.pointer.device)) % self.size
        self.keys.index_copy_(0, slots, keys.to(self.keys.dtype))
        self.labels.index_copy_(0, slots, labels)
        self.pointer.copy_((self.pointer + n) % self.size)


class PaCoMethod(TrainingMethod):
    """PaCo (module docstring).

    Args:
        backbone: the model being trained (the query encoder, with ``heads``).
        heads: the projection head.
        queue: the key queue, on the backbone's device.
        views: draws the key view.
        context: the process group (keys are gathered from every rank).
        alpha, beta, gamma, temperature: :func:`paco_loss`'s.
        momentum: ``m`` of the key encoder's update.

    The momentum encoder is a copy of ``backbone`` and ``heads`` made here; it is method state,
    not trained by the optimiser, saved in :meth:`state_dict`.
    """

    name = "paco"

    def __init__(
        self,
        backbone: nn.Module,
        heads: PaCoHeads,
        queue: KeyQueue,
        views: RotatedViews,
        context: DistributedContext,
        alpha: float,
        beta: float,
        gamma: float,
        temperature: float,
        momentum: float,
    ) -> None:
        if alpha <= 0 and beta <= 0:
            raise ValueError(f"PaCo needs a positive alpha or beta (the positives' weights), got {alpha} and {beta}")
        self.heads = heads
        self.queue = queue
        self.views = views
        self.context = context
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.temperature = temperature
        self.momentum = momentum
        # the query side as one module whose parameters line up with the key encoder's
        self.query_encoder = TrainingNetwork(backbone, heads)
        self.key_encoder = frozen_copy(self.query_encoder)

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        momentum_update(self.key_encoder, self.query_encoder, self.momentum)
        key_view = self.views.draw(x, 1, epoch)[0]
        logits, queries = network(x, with_heads=True)
        with torch.no_grad():
            self.key_encoder.train()  # batch statistics, as the original's key encoder
            keys = self.key_encoder(key_view, with_heads=True)[1]
        loss = paco_loss(
            queries, keys, self.queue.keys, y, self.queue.labels, logits, self.heads.log_prior,
            self.alpha, self.beta, self.gamma, self.temperature,
        )
        self.queue.push(gather_from_ranks(keys, self.context), gather_from_ranks(y, self.context))
        return loss, logits

    def state_dict(self) -> dict[str, Any]:
        return {
            "heads": self.heads.state_dict(),
            "key_encoder": self.key_encoder.state_dict(),
            "queue": self.queue.state_dict(),
            "views": self.views.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.heads.load_state_dict(state["heads"])
        self.key_encoder.load_state_dict(state["key_encoder"])
        self.queue.load_state_dict(state["queue"])
        self.views.load_state_dict(state["views"])


def build(inputs: MethodInputs) -> TrainingMethod:
    config, model = inputs.config, inputs.model
    if model is None or inputs.train_pipeline is None:
        raise ValueError("paco needs the model and the training pipeline")
    feature_dim = check_backbone(model, "PaCo")
    device = next(model.parameters()).device
    heads = PaCoHeads(feature_dim, config.paco_dim, log_class_prior(inputs.class_counts)).to(device)
    queue = KeyQueue(config.paco_queue_size, config.paco_dim, inputs.num_classes).to(device)
    views = RotatedViews(pipeline_rotation(inputs.train_pipeline), inputs.seed, inputs.context.rank, "PaCo's key view")
    return PaCoMethod(
        model,
        heads,
        queue,
        views,
        inputs.context,
        alpha=config.paco_alpha,
        beta=config.paco_beta,
        gamma=config.paco_gamma,
        temperature=config.paco_temperature,
        momentum=config.paco_momentum,
    )
