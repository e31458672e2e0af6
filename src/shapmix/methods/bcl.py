"""BCL: balanced contrastive learning (Zhu, Wang, Chen, Chen, Jiang, "Balanced Contrastive
Learning for Long-Tailed Visual Recognition", CVPR 2022), as a training method for any backbone.

BCL trains two branches on one backbone.  Every step, for a batch of ``B`` samples with labels
``y``, three views go through the backbone in one forward pass of ``3B`` samples: the trainer's
augmented batch ``x`` (the classification view) and two further views (``x`` turned by fresh
pipeline rotations, :mod:`shapmix.methods.contrastive`):

* classification branch: the backbone's classifier on the first view, trained with **logit
  compensation**: cross entropy on ``logits + log prior`` (logit adjustment with ``tau = 1``,
  i.e. Balanced Softmax, :class:`~shapmix.losses.BalancedSoftmax`);
* contrastive branch: a projection MLP maps the pooled features of the two other views to
  L2-normalised embeddings ``(2B, D)``; a second MLP maps the classifier's ``K`` weight rows
  to normalised **class prototypes** ``(K, D)``.  :func:`balanced_contrastive_loss` contrasts
  every embedding with the other embeddings and the prototypes (**class-complement**: every
  class appears in every batch), averaging the denominator per class (**class-averaging**:
  each class weighs the same, however many of its samples the batch holds).

``loss = alpha * CE(logits + log prior) + beta * L_BCL``.  Inference is the backbone's plain
classifier (the original evaluates ``fc(feat)``, its cosine classifier, without the prior); the
``bcl`` preset gives the backbone a cosine classifier of scale 30 as the original's
``NormedLinear`` (``--use_norm True``).  The configured ``criterion`` is not used (the config
requires ``loss.name=ce``), nor is a backbone's own objective (InfoGCN's information bottleneck
and label smoothing).

Differences from the official code (github.com/FlamieZhu/Balanced-Contrastive-Learning,
``loss/contrastive.py``, ``loss/logitadjust.py``, ``models/resnext.py``, ``main.py``): the two
contrastive views are rotations of the classification view, not independent augmentations of the
image (``sim-sim``); the original trains on one process (DataParallel), so its class averaging
counts the whole batch, while under DDP here each rank averages over its own batch; a class
without training samples counts as one sample in the prior.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import BalancedSoftmax
from .base import MethodInputs, TrainingMethod
from .contrastive import (
    RotatedViews,
    check_backbone,
    classifier_weight,
    pipeline_rotation,
    projection_mlp,
)

__all__ = ["BCLHeads", "BCLMethod", "balanced_contrastive_loss"]

CONTRASTIVE_VIEWS = 2
"""Views of every sample in the contrastive branch (the original's ``sim-sim``)."""


def balanced_contrastive_loss(
    embeddings: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """BCL's class-averaged, class-complemented supervised contrastive loss.

    Args:
        embeddings: ``(V B, D)`` normalised embeddings of ``V`` views, view by view (rows
            ``v B .. (v + 1) B - 1`` are view ``v`` of the batch).
        prototypes: ``(K, D)`` normalised class prototypes (prototype ``c`` has label ``c``).
        labels: ``(B,)`` int64 labels of the batch.
        temperature: divides every similarity.

    Returns:
        a scalar, the mean over the ``V B`` anchors ``i`` of ``-1/|P_i| sum_{p in P_i} log(
        exp(e_i . a_p / T) / sum_c (1 / |A_c \\ i|) sum_{j in A_c \\ i} exp(e_i . a_j / T))``, where
        ``a`` are the embeddings and prototypes, ``A_c`` those of class ``c``, and ``P_i`` those
        of ``i``'s class other than ``i`` itself.
    """
    anchors = embeddings.shape[0]
    views = anchors // len(labels)
    if views * len(labels) != anchors:
        raise ValueError(f"{anchors} embeddings are not a whole number of views of {len(labels)} samples")
    num_classes = prototypes.shape[0]
    classes = torch.arange(num_classes, device=labels.device)
    anchor_labels = labels.repeat(views)
    contrast = torch.cat([embeddings, prototypes.to(embeddings.dtype)])  # (V B + K, D)
    contrast_labels = torch.cat([anchor_labels, classes])
    logits = embeddings @ contrast.T / temperature  # (V B, V B + K)
    itself = torch.eye(anchors, len(contrast), dtype=torch.bool, device=embeddings.device)
    positive = (anchor_labels[:, None] == contrast_labels[None, :]) & ~itself
    class_sizes = (contrast_labels[:, None] == classes[None, :]).sum(dim=0)  # (K,) with the prototype
    # class averaging: each entry counts 1 / (members of its class other than the anchor)
    others_in_class = class_sizes[contrast_labels][None, :] - positive.to(class_sizes.dtype)
    log_weights = torch.where(itself, float("-inf"), -others_in_class.to(logits.dtype).log())
    log_prob = logits - torch.logsumexp(logits + log_weights, dim=1, keepdim=True)
    positives = positive.to(logits.dtype)
    return (-(positives * log_prob).sum(dim=1) / positives.sum(dim=1)).mean()


class BCLHeads(nn.Module):
    """BCL's trainable heads: the embedding MLP on the pooled features (the original's ``head``)
    and the prototype MLP on the classifier's weight rows (``head_fc``).

    Args:
        feature_dim: ``C_out`` of the backbone's pooled features.
        classifier_dim: the width of the classifier's input (its weight is ``(K, classifier_dim)``).
        embedding_dim: ``D`` of both outputs.
    """

    def __init__(self, feature_dim: int, classifier_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.embedding = projection_mlp(feature_dim, embedding_dim)
        self.prototype = projection_mlp(classifier_dim, embedding_dim)

    def forward(self, backbone: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``(N, C, T, V, M)`` -> ``(logits (N, K), embeddings (N, D), prototypes (K, D))``,
        embeddings and prototypes L2-normalised."""
        features = backbone.forward_features(x)
        persons = x.shape[-1]
        embeddings = F.normalize(self.embedding(backbone.pool(features, persons)), dim=1)
        prototypes = F.normalize(self.prototype(classifier_weight(backbone)), dim=1)
        return backbone.head(features, persons), embeddings, prototypes


class BCLMethod(TrainingMethod):
    """BCL (module docstring).

    Args:
        heads: the embedding and prototype MLPs.
        views: draws the two contrastive views.
        classification_loss: the logit-compensated cross entropy (Balanced Softmax with the
            training class counts), on the backbone's device.
        alpha: weight of the classification loss.
        beta: weight of the balanced contrastive loss.
        temperature: of the balanced contrastive loss.
    """

    name = "bcl"

    def __init__(
        self,
        heads: BCLHeads,
        views: RotatedViews,
        classification_loss: BalancedSoftmax,
        alpha: float,
        beta: float,
        temperature: float,
    ) -> None:
        self.heads = heads
        self.views = views
        self.classification_loss = classification_loss
        self.alpha, self.beta = alpha, beta
        self.temperature = temperature

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        contrastive_views = self.views.draw(x, CONTRASTIVE_VIEWS, epoch)
        logits, embeddings, prototypes = network(torch.cat([x, *contrastive_views]), with_heads=True)
        n = len(y)
        classification = self.classification_loss(logits[:n], y)
        contrastive = balanced_contrastive_loss(embeddings[n:], prototypes, y, self.temperature)
        return self.alpha * classification + self.beta * contrastive, logits[:n]

    def state_dict(self) -> dict[str, Any]:
        return {"heads": self.heads.state_dict(), "views": self.views.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.heads.load_state_dict(state["heads"])
        self.views.load_state_dict(state["views"])


def build(inputs: MethodInputs) -> TrainingMethod:
    config, model = inputs.config, inputs.model
    if model is None or inputs.train_pipeline is None:
        raise ValueError("bcl needs the model and the training pipeline")
    feature_dim = check_backbone(model, "BCL")
    classifier_dim = classifier_weight(model).shape[1]
    device = next(model.parameters()).device
    heads = BCLHeads(feature_dim, classifier_dim, config.bcl_feature_dim).to(device)
    views = RotatedViews(pipeline_rotation(inputs.train_pipeline), inputs.seed, inputs.context.rank, "BCL's views")
    return BCLMethod(
        heads,
        views,
        BalancedSoftmax(inputs.class_counts).to(device),
        alpha=config.bcl_alpha,
        beta=config.bcl_beta,
        temperature=config.bcl_temperature,
    )
