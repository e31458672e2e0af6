"""GLMC: Global and Local Mixture Consistency cumulative learning (Du, Yang, Jia, Nan, Chen,
Yang, "Global and Local Mixture Consistency Cumulative Learning for Long-tailed Visual
Recognitions", CVPR 2023), adapted to skeleton batches ``(N, C, T, V, M)``.

Every training step pairs the ordinary (instance-sampled) batch ``x`` with a re-sampled batch
``b`` drawn with per-sample weight ``n_c^-q`` (:func:`resampling_weights`; ``q = 1`` is
class-balanced sampling) and builds, with one ratio ``lam_i ~ Beta(alpha, alpha)`` per pair:

* a global mix (Mixup): ``x_g = lam x + (1 - lam) b``, label ``lam y_x + (1 - lam) y_b``;
* a local mix (the skeleton CutMix of :class:`~shapmix.mixing.CutMix`): a box of
  ``round(sqrt(1 - lam) T)`` frames x ``round(sqrt(1 - lam) V)`` joints of ``b`` is pasted into
  ``x``, label weighted by the exact pasted fraction (:func:`global_local_mix`).

Both mixes go through the backbone in one forward pass.  On the pooled features a projector
``h`` and a predictor ``u`` (:class:`GLMCHeads`) give the global-local mixture consistency loss
(SimSiam's negative cosine with stop-gradient, both directions, :func:`mixture_consistency`).
Two classifiers read the features: a conventional one trained with the mixed labels, and a
re-balanced one trained with labels whose one-hot parts are scaled per class by
``n_c^-p`` (normalised to mean 1, :func:`label_weights`).  The cumulative schedule
``alpha_e = 1 - (e / E)^2`` (:func:`cumulative_weight`) moves the weight from the first to the
second over training::

    loss = alpha_e * CE(conventional) + (1 - alpha_e) * CE(re-balanced) + w * consistency

Predictions use the re-balanced classifier, as the reference code's ``fc_cb`` (here it is the
backbone's own classifier, so evaluation and decoupled second stages see the GLMC head).
Hyper-parameters default to the reference implementation (github.com/ynu-yangpeng/GLMC,
``main.py``): ``alpha = 1``, ``q = 0.2``, ``p = 1``, ``w = 10``, projection width 128.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .stmix import sample_mixing_ratio, window_mask

__all__ = [
    "GLMCHeads",
    "GLMCMix",
    "cumulative_weight",
    "global_local_mix",
    "label_weights",
    "mixture_consistency",
    "resampling_weights",
    "weighted_soft_cross_entropy",
]


def cumulative_weight(epoch: int, total_epochs: int) -> float:
    """GLMC's cumulative coefficient ``alpha = 1 - (epoch / total_epochs)^2`` (epoch 0-based):
    the weight of the conventional loss, ``1 - alpha`` that of the re-balanced one."""
    if total_epochs < 1 or not 0 <= epoch <= total_epochs:
        raise ValueError(f"need 0 <= epoch <= total_epochs and total_epochs >= 1, got {epoch} of {total_epochs}")
    return 1.0 - (epoch / total_epochs) ** 2


def _class_power(class_counts: Sequence[int] | np.ndarray | torch.Tensor, power: float) -> torch.Tensor:
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    if counts.ndim != 1 or len(counts) == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    # a class without training samples is never drawn and never a label; 1 keeps the power finite
    return counts.clamp(min=1) ** -power


def label_weights(class_counts: Sequence[int] | np.ndarray | torch.Tensor, power: float) -> torch.Tensor:
    """``(K,)`` float64 re-balancing label weights ``n_c^-p``, scaled so they sum to ``K``."""
    weights = _class_power(class_counts, power)
    return weights / weights.sum() * len(weights)


def resampling_weights(labels: np.ndarray | torch.Tensor, class_counts: Sequence[int] | np.ndarray, power: float) -> torch.Tensor:
    """``(N,)`` float64 per-sample sampling weights ``n_{y_i}^-q`` of the re-sampled batch."""
    return _class_power(class_counts, power)[torch.as_tensor(np.asarray(labels), dtype=torch.int64)]


@dataclass(frozen=True)
class GLMCMix:
    """The two mixed batches of one step.

    Attributes:
        global_x, local_x: ``(N, C, T, V, M)`` Mixup and CutMix of ``x`` with the re-sampled batch.
        global_own, local_own: ``(N,)`` share of ``x``'s label in each (``lam`` and ``1 -`` the
            pasted fraction).
    """

    global_x: torch.Tensor
    local_x: torch.Tensor
    global_own: torch.Tensor
    local_own: torch.Tensor


def global_local_mix(x: torch.Tensor, resampled: torch.Tensor, alpha: float, generator: torch.Generator) -> GLMCMix:
    """Mix ``x`` with ``resampled`` (both ``(N, C, T, V, M)``, sample ``i`` with sample ``i``)
    globally and locally with one ratio ``lam_i ~ Beta(alpha, alpha)`` per pair.

    Random draws come from ``generator``, on its device (best ``x``'s); the mixed batches are on
    ``x.device``, the label shares on the generator's device.
    """
    if x.shape != resampled.shape or x.ndim != 5:
        raise ValueError(f"expected two batches of one shape (N, C, T, V, M), got {tuple(x.shape)} and {tuple(resampled.shape)}")
    n, _, t, v, _ = x.shape
    device = generator.device
    lam = sample_mixing_ratio(n, alpha, generator)  # share of x, as GLMC's lam
    share = lam.to(device=x.device, dtype=x.dtype)[:, None, None, None, None]
    global_x = share * x + (1 - share) * resampled

    # CutMix box: the re-sampled batch covers about 1 - lam of frames x joints
    side = (1 - lam).sqrt()
    frames = (side * t).round().long()
    joints = (side * v).round().long()
    offset = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
    start = (offset * (t - frames + 1)).floor().long()
    start = torch.minimum(start, t - frames)
    keys = torch.rand(n, v, generator=generator, device=device)
    joint_mask = keys.argsort(dim=1).argsort(dim=1) < joints[:, None]
    box = window_mask(start, frames, t)[:, :, None] & joint_mask[:, None, :]  # (N, T, V)
    local_x = torch.where(box.to(x.device)[:, None, :, :, None], resampled, x)
    pasted = (frames * joints).to(torch.float64) / (t * v)
    return GLMCMix(global_x, local_x, lam, 1 - pasted)


def weighted_soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``-sum_k targets_k log softmax(logits)_k`` for ``(N, K)`` logits and targets whose
    rows need not sum to 1 (GLMC's re-weighted labels)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def mixture_consistency(prediction: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """SimSiam's loss ``-mean cos(prediction, stopgrad(projection))`` for ``(N, D)`` inputs: -1
    when every prediction points along its target, and no gradient reaches ``projection``."""
    return -F.cosine_similarity(prediction, projection.detach(), dim=1).mean()


class GLMCHeads(nn.Module):
    """GLMC's extra trainable heads on a backbone's pooled features.

    Args:
        feature_dim: ``C_out`` of the backbone's pooled features.
        num_classes: ``K``.
        projection_dim: width of the projector and predictor (reference: 128 for ResNet-32).

    The backbone must expose ``forward_features(x)``, ``pool(features, M)`` and
    ``head(features, M)`` (as :class:`~shapmix.models.CTRGCN` does).
    """

    def __init__(self, feature_dim: int, num_classes: int, projection_dim: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, num_classes)  # conventional branch (reference `fc`)
        self.projector = nn.Linear(feature_dim, projection_dim)  # h (reference `projection_head`)
        self.predictor = nn.Linear(projection_dim, projection_dim)  # u (reference `contrast_head`)
        for layer in (self.classifier, self.projector, self.predictor):
            nn.init.kaiming_normal_(layer.weight)  # as the reference's ResNet-32 initialises them

    @staticmethod
    def check_backbone(backbone: nn.Module) -> None:
        missing = [name for name in ("forward_features", "pool", "head") if not hasattr(backbone, name)]
        if missing:
            raise TypeError(
                f"GLMC needs a backbone with forward_features, pool and head (as CTR-GCN); "
                f"{type(backbone).__name__} lacks {missing}"
            )

    def forward(self, backbone: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``(N, C, T, V, M)`` -> ``(rebalanced_logits, conventional_logits, projection,
        prediction)``: ``(N, K)``, ``(N, K)``, ``(N, D)``, ``(N, D)``.  The re-balanced logits are
        the backbone's own classifier."""
        features = backbone.forward_features(x)
        persons = x.shape[-1]
        pooled = backbone.pool(features, persons)
        projection = self.projector(pooled)
        return backbone.head(features, persons), self.classifier(pooled), projection, self.predictor(projection)
