"""Classification losses for long-tailed training; every loss accepts hard or soft targets.

* :class:`CrossEntropy`: softmax cross entropy.
* :class:`BalancedSoftmax`: cross entropy on ``logits + tau * log(prior)`` (Ren et al., NeurIPS
  2020; logit adjustment, Menon et al., ICLR 2021), where ``prior`` is the training class
  frequency.  Shap-Mix trains with it on long-tailed data (paper Section 3.4); predictions at
  test time use the raw logits.
* :class:`FocalLoss`: ``-(1 - p_y)^gamma log p_y`` (Lin et al., ICCV 2017), softmax form.
* :class:`ClassBalancedLoss`: cross entropy or focal loss weighted per class by the inverse
  effective number of samples (Cui et al., CVPR 2019).
* :class:`LDAMLoss`: label-distribution-aware margins ``C / n_y^(1/4)`` (Cao et al., NeurIPS
  2019), meant for a normalised classifier (``model.args.classifier=cosine``).
* :class:`DeferredReweighting`: DRW (Cao et al.): cross entropy, focal or LDAM re-weighted by
  class-balanced weights from a given epoch on (``loss.drw_epoch``).
* :class:`InfluenceBalancedLoss`: cross entropy weighted by the inverse influence of each
  sample (Park et al., ICCV 2021), from a given epoch on.

Targets are either ``(N,)`` int64 class ids or ``(N, K)`` probability rows (mixed samples).  Every
loss is defined by its hard-target loss ``L(z, k)`` (logits ``z``, label ``k``); a soft target
``t`` gets the expected hard-target loss ``sum_k t_k L(z, k)``.  A one-hot row therefore gives
exactly the hard-target loss, and a mixed sample with ``lam`` of class ``a`` and ``1 - lam`` of
``b`` gets ``lam L(z, a) + (1 - lam) L(z, b)``: class weights and margins are those of each
constituent class, in proportion to its share.

Epoch-dependent losses (DRW, IB) switch in :meth:`Loss.set_epoch`, which the trainer calls at the
start of every epoch (also the first epoch after a resume), so they need no checkpointed state.
A loss whose scale changes with the epoch also states the learning-rate multiplier it needs then
(:meth:`Loss.lr_multiplier`, 1 by default); the trainer multiplies its schedule by it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "one_hot",
    "Loss",
    "CrossEntropy",
    "BalancedSoftmax",
    "FocalLoss",
    "ClassBalancedLoss",
    "LDAMLoss",
    "DeferredReweighting",
    "InfluenceBalancedLoss",
    "ClassifierInputs",
    "LossSettings",
    "build_loss",
    "soft_cross_entropy",
    "smooth_targets",
    "target_distribution",
    "effective_number_weights",
    "inverse_frequency_weights",
    "ldam_margins",
    "classifier_module",
]

# Park et al.'s reference code: keeps the IB weight finite for a sample with zero influence.
IB_EPSILON = 1e-3
# Attributes under which a model may keep its classifier module (CTR-GCN: ``fc``).
CLASSIFIER_ATTRIBUTES = ("fc", "classifier")

ClassCounts = Sequence[int] | np.ndarray | torch.Tensor


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy for ``(N, K)`` logits and ``(N,)`` class ids or ``(N, K)`` soft targets."""
    if target.dim() == 1:
        return F.cross_entropy(logits, target)
    if target.shape != logits.shape:
        raise ValueError(f"soft targets {tuple(target.shape)} do not match logits {tuple(logits.shape)}")
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def smooth_targets(target: torch.Tensor, logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label smoothing for hard or soft targets: ``(N, K)`` rows ``(1 - smoothing) t + smoothing / K``.

    Every loss here is linear in its target, so a loss of the smoothed target is ``(1 - s)``
    times the loss of ``t`` plus ``s`` times the mean loss over all classes; for cross entropy
    and hard targets this is the usual label-smoothing cross entropy (InfoGCN's, with
    ``s = 0.1``).  ``target`` is ``(N,)`` class ids or ``(N, K)`` distributions; ``logits``
    ``(N, K)`` give ``K`` and the dtype.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"label smoothing must lie in [0, 1), got {smoothing}")
    distribution = target_distribution(target, logits)
    return distribution * (1 - smoothing) + smoothing / distribution.shape[1]


def target_distribution(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` target probabilities: one-hot rows for ``(N,)`` class ids, soft rows as given."""
    if target.dim() == 1:
        if target.dtype.is_floating_point:
            raise ValueError(f"hard targets must be integer class ids, got dtype {target.dtype}")
        if len(target) != len(logits):
            raise ValueError(f"{len(target)} targets for {len(logits)} rows of logits")
        return one_hot(target, logits.shape[1], logits.dtype)
    if target.shape != logits.shape:
        raise ValueError(f"soft targets {tuple(target.shape)} do not match logits {tuple(logits.shape)}")
    return target.to(logits.dtype)


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N, K)`` one-hot rows of ``dtype`` for ``(N,)`` class ids on their device.

    A scatter rather than ``F.one_hot``, whose range check reads the labels back to the host (on
    a CPU; a label out of range is an index error either way), so a training step that builds
    targets never synchronises.
    """
    rows = torch.zeros(labels.shape[0], num_classes, dtype=dtype, device=labels.device)
    return rows.scatter_(1, labels[:, None], 1)


def _counts(class_counts: ClassCounts) -> torch.Tensor:
    """``(K,)`` float64 counts; a class with no sample counts as 1 so every weight stays finite."""
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    if counts.dim() != 1 or len(counts) == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    if (counts < 0).any():
        raise ValueError("class_counts must not be negative")
    return counts.clamp(min=1)


def effective_number_weights(class_counts: ClassCounts, beta: float) -> torch.Tensor:
    """Class-balanced weights of Cui et al. (CVPR 2019), ``(K,)`` float32.

    ``w_k = (1 - beta) / (1 - beta^n_k)``, the inverse of the effective number of samples
    ``(1 - beta^n) / (1 - beta)``, normalised to sum to ``K``.  ``beta = 0`` gives all ones; as
    ``beta -> 1`` the weights approach inverse class frequency.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must lie in [0, 1), got {beta}")
    counts = _counts(class_counts)
    weights = (1 - beta) / (1 - beta**counts)
    return (weights / weights.sum() * len(counts)).to(torch.float32)


def inverse_frequency_weights(class_counts: ClassCounts) -> torch.Tensor:
    """``(K,)`` float32 weights ``1 / n_k`` normalised to sum to ``K`` (Park et al.'s IB re-weighting)."""
    weights = 1 / _counts(class_counts)
    return (weights / weights.sum() * len(weights)).to(torch.float32)


def ldam_margins(class_counts: ClassCounts, max_margin: float) -> torch.Tensor:
    """LDAM margins ``(K,)`` float32: proportional to ``n_k^(-1/4)``, the rarest class gets ``max_margin``."""
    if max_margin <= 0:
        raise ValueError(f"max_margin must be positive, got {max_margin}")
    margins = _counts(class_counts) ** -0.25
    return (margins * (max_margin / margins.max())).to(torch.float32)


def classifier_module(model: nn.Module) -> nn.Module:
    """The classifier module of ``model`` (unwrapping DDP): the attribute its ``classifier_name``
    names when it has one (InfoGCN: ``decoder``, its ``fc`` being a hidden layer), else its
    ``fc`` or ``classifier`` attribute."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    declared = getattr(model, "classifier_name", None)
    names = (declared,) if isinstance(declared, str) else CLASSIFIER_ATTRIBUTES
    for name in names:
        candidate = getattr(model, name, None)
        if isinstance(candidate, nn.Module):
            return candidate
    raise ValueError(
        f"{type(model).__name__} has no classifier module: expected an nn.Module attribute named "
        f"one of {list(names)}"
    )


class Loss(nn.Module, ABC):
    """Base of the losses here: a hard-target loss per class, contracted with the targets.

    Subclasses define :meth:`class_losses`; ``forward`` returns the batch mean of the expected
    hard-target loss under the target distribution.
    """

    @abstractmethod
    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` logits -> ``(N, K)``: entry ``(i, k)`` is sample ``i``'s loss were its label ``k``."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probabilities = target_distribution(target, logits)
        return (probabilities * self.class_losses(logits)).sum(dim=1).mean()

    def set_epoch(self, epoch: int) -> None:
        """Start of epoch ``epoch`` (0-based); only epoch-dependent losses (DRW, IB) react."""

    def attach(self, model: nn.Module) -> None:
        """Give the loss access to ``model``; only losses that need the classifier's input (IB) use it."""

    def lr_multiplier(self, epoch: int) -> float:
        """Factor on the scheduled learning rate during epoch ``epoch`` (0-based); 1 unless the
        loss's own scale changes with the epoch (IB)."""
        return 1.0


class CrossEntropy(Loss):
    """Softmax cross entropy with hard or soft targets."""

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(logits, dim=1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits, target)


class BalancedSoftmax(Loss):
    """Cross entropy on prior-adjusted logits ``logits + tau * log(counts / counts.sum())``.

    Args:
        class_counts: ``(K,)`` training samples per class; a class with no sample is given a
            count of 1 so its log prior stays finite.
        tau: weight of the log prior (1 = Balanced Softmax).
    """

    def __init__(self, class_counts: ClassCounts, tau: float = 1.0):
        super().__init__()
        counts = _counts(class_counts)
        self.tau = tau
        self.register_buffer("log_prior", (counts / counts.sum()).log().to(torch.float32))

    def _adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.tau * self.log_prior.to(logits.dtype)

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(self._adjusted(logits), dim=1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(self._adjusted(logits), target)


class FocalLoss(Loss):
    """Softmax focal loss ``-(1 - p_k)^gamma log p_k`` for label ``k`` (Lin et al., ICCV 2017).

    ``gamma = 0`` is cross entropy; a larger ``gamma`` down-weights well-classified samples.  Lin
    et al. define it on sigmoid outputs for detection; the softmax form is the one the
    long-tailed classification literature compares against (e.g. Cao et al.'s LDAM-DRW code).

    Args:
        gamma: focusing parameter (Lin et al.'s best setting, 2).
    """

    def __init__(self, gamma: float = 2.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must not be negative, got {gamma}")
        self.gamma = gamma

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        log_probabilities = F.log_softmax(logits, dim=1)
        return -((1 - log_probabilities.exp()) ** self.gamma) * log_probabilities


class ClassBalancedLoss(Loss):
    """Class-balanced loss (Cui et al., CVPR 2019): ``w_k L(z, k)`` with effective-number weights.

    ``w`` is :func:`effective_number_weights` (sum ``K``); the batch loss is the plain mean over
    samples, as in the reference implementation.  ``base="focal"`` weights :class:`FocalLoss`
    (the paper's focal variant is sigmoid-based; the softmax form keeps ``class_balanced`` and
    ``focal`` runs comparable, differing only in the weights).

    Args:
        class_counts: ``(K,)`` training samples per class.
        beta: effective-number hyper-parameter (Cui et al. on long-tailed CIFAR: 0.9999).
        base: ``softmax`` (cross entropy) or ``focal``.
        gamma: focal parameter for ``base="focal"``.
    """

    def __init__(self, class_counts: ClassCounts, beta: float = 0.9999, base: str = "softmax", gamma: float = 2.0):
        super().__init__()
        if base not in ("softmax", "focal"):
            raise ValueError(f"class-balanced base must be 'softmax' or 'focal', got {base!r}")
        self.base: Loss = CrossEntropy() if base == "softmax" else FocalLoss(gamma)
        self.register_buffer("class_weight", effective_number_weights(class_counts, beta))

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        return self.base.class_losses(logits) * self.class_weight.to(logits.dtype)


class LDAMLoss(Loss):
    """Label-distribution-aware margin loss (Cao et al., NeurIPS 2019).

    For label ``k``: cross entropy of ``scale * (z - m_k e_k)``, i.e. the margin ``m_k`` (see
    :func:`ldam_margins`) is subtracted from the label's logit only.  ``z`` should be cosine
    similarities (``model.args.classifier=cosine``): the reference code uses a normalised
    classifier with LDAM and multiplies by ``scale`` in the loss.

    The per-class losses are computed exactly for all ``K`` candidate labels at once as
    ``softplus(logsumexp_{j != k}(s z_j) - s (z_k - m_k))``.

    Args:
        class_counts: ``(K,)`` training samples per class.
        max_margin: margin of the rarest class (Cao et al.: 0.5).
        scale: logit scale ``s`` (Cao et al.: 30).
    """

    def __init__(self, class_counts: ClassCounts, max_margin: float = 0.5, scale: float = 30.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"LDAM scale must be positive, got {scale}")
        self.scale = scale
        self.register_buffer("margins", ldam_margins(class_counts, max_margin))

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        scaled = self.scale * logits
        # log-sum-exp over the other classes: log(1 - p_k) is exact except where p_k is near 1,
        # which can only be the row's top class; that column is summed explicitly.
        top = scaled.argmax(dim=1, keepdim=True)
        is_top = torch.zeros_like(scaled, dtype=torch.bool).scatter_(1, top, True)
        probabilities = torch.softmax(scaled, dim=1).masked_fill(is_top, 0.0)
        others = torch.logsumexp(scaled, dim=1, keepdim=True) + torch.log1p(-probabilities)
        others_of_top = torch.logsumexp(scaled.masked_fill(is_top, float("-inf")), dim=1, keepdim=True)
        others = torch.where(is_top, others_of_top, others)
        margin_logits = scaled - self.scale * self.margins.to(logits.dtype)
        return F.softplus(others - margin_logits)


class DeferredReweighting(Loss):
    """Deferred re-weighting (DRW, Cao et al., NeurIPS 2019) around any :class:`Loss`.

    Before ``start_epoch`` it is ``base`` unchanged; from ``start_epoch`` on every sample's loss
    is weighted by its class's :func:`effective_number_weights` and the batch loss is the weighted
    mean ``sum_i w_i L_i / sum_i w_i`` (``nn.CrossEntropyLoss(weight=...)``, as in the reference
    code), with ``w_i = sum_k t_ik w_k`` for a soft target.

    Args:
        base: the loss to re-weight (cross entropy, focal, LDAM).
        class_counts: ``(K,)`` training samples per class.
        beta: effective-number hyper-parameter (Cao et al.: 0.9999).
        start_epoch: first re-weighted epoch, 0-based (Cao et al.: 160 of 200).
    """

    def __init__(self, base: Loss, class_counts: ClassCounts, beta: float = 0.9999, start_epoch: int = 160):
        super().__init__()
        if start_epoch < 0:
            raise ValueError(f"DRW start_epoch must not be negative, got {start_epoch}")
        self.base = base
        self.start_epoch = start_epoch
        self.reweighting = False
        self.register_buffer("class_weight", effective_number_weights(class_counts, beta))

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)
        self.reweighting = epoch >= self.start_epoch

    def attach(self, model: nn.Module) -> None:
        self.base.attach(model)

    def lr_multiplier(self, epoch: int) -> float:
        return self.base.lr_multiplier(epoch)

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        losses = self.base.class_losses(logits)
        return losses * self.class_weight.to(logits.dtype) if self.reweighting else losses

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.reweighting:
            return self.base(logits, target)
        weighted_targets = target_distribution(target, logits) * self.class_weight.to(logits.dtype)
        return (weighted_targets * self.base.class_losses(logits)).sum() / weighted_targets.sum()


class ClassifierInputs:
    """Captures the input of a classifier module at every forward and hands its rows out in order.

    A forward pre-hook stores the ``(N, C)`` input of the classifier (the penultimate features,
    still attached to the autograd graph).  :meth:`take` returns the next ``rows`` rows, so a
    training step that computes one forward of ``[clean; mixed]`` and then calls the loss on the
    clean rows and on the mixed rows gets the matching features for each call.  Every process
    captures its own batch, so this is DDP-safe.
    """

    def __init__(self, classifier: nn.Module) -> None:
        self.features: torch.Tensor | None = None
        self.used_rows = 0
        self.handle = classifier.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.features = inputs[0]
        self.used_rows = 0

    def take(self, rows: int) -> torch.Tensor:
        """The next ``rows`` rows of the latest classifier input, flattened to ``(rows, C)``."""
        if self.features is None:
            raise RuntimeError("no classifier input captured yet: run the model's forward before the loss")
        end = self.used_rows + rows
        if end > len(self.features):
            raise RuntimeError(
                f"the loss asked for rows {self.used_rows}..{end} of a classifier input of "
                f"{len(self.features)} rows: call it on consecutive slices of the latest forward's logits"
            )
        selected = self.features[self.used_rows : end].flatten(1)
        self.used_rows = end
        return selected

    def remove(self) -> None:
        self.handle.remove()


class InfluenceBalancedLoss(Loss):
    """Influence-balanced loss (Park et al., ICCV 2021).

    From ``start_epoch`` on, the loss of sample ``i`` with label ``k`` is::

        w_k * CE(z_i, k) * alpha / (||softmax(z_i) - e_k||_1 * ||h_i||_1 + epsilon)

    where ``||softmax(z) - e_k||_1 = 2 (1 - p_k)`` is the L1 norm of the loss's gradient with
    respect to the logits, ``h_i`` the classifier's input features, ``w`` the inverse class
    frequency normalised to sum ``K`` and ``epsilon = 1e-3`` (the reference code's "IBReweight"
    recipe); the batch loss is the plain mean.  As in the reference code the influence factor is
    part of the graph (not detached).  Before ``start_epoch`` it is plain cross entropy.

    The features come from ``features=`` or, after :meth:`attach`, from a hook on the model's
    classifier (:class:`ClassifierInputs`).

    The IB loss is far larger than the cross entropy it replaces (``alpha`` over the sample's
    influence), so the reference code lowers the learning rate when it starts: from the IB start
    epoch on, every rate of its schedule (the later decays included) is multiplied by 0.01.
    :meth:`lr_multiplier` states that factor (``lr_factor``) for the trainer's schedule; without
    it the updates grow by orders of magnitude at ``start_epoch`` and training diverges.

    Args:
        class_counts: ``(K,)`` training samples per class.
        alpha: scale of the influence weight (Park et al.: 1000).
        start_epoch: first epoch of the IB loss, 0-based (Park et al.: 100 of 200).
        lr_factor: learning-rate multiplier from ``start_epoch`` on (Park et al., official code: 0.01).
    """

    def __init__(
        self, class_counts: ClassCounts, alpha: float = 1000.0, start_epoch: int = 100, lr_factor: float = 0.01
    ):
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"IB alpha must be positive, got {alpha}")
        if start_epoch < 0:
            raise ValueError(f"IB start_epoch must not be negative, got {start_epoch}")
        if not 0 < lr_factor <= 1:
            raise ValueError(f"IB lr_factor must be in (0, 1], got {lr_factor}")
        self.alpha = alpha
        self.start_epoch = start_epoch
        self.lr_factor = lr_factor
        self.active = False
        self.inputs: ClassifierInputs | None = None
        self.register_buffer("class_weight", inverse_frequency_weights(class_counts))

    def set_epoch(self, epoch: int) -> None:
        self.active = epoch >= self.start_epoch

    def lr_multiplier(self, epoch: int) -> float:
        return self.lr_factor if epoch >= self.start_epoch else 1.0

    def attach(self, model: nn.Module) -> None:
        if self.inputs is not None:
            self.inputs.remove()
        self.inputs = ClassifierInputs(classifier_module(model))

    def influence_weights(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``(N, K)``: ``alpha / (||softmax(z_i) - e_k||_1 ||h_i||_1 + epsilon)`` for every label ``k``."""
        gradient_l1 = 2 * (1 - torch.softmax(logits, dim=1))
        feature_l1 = features.flatten(1).abs().sum(dim=1, keepdim=True)
        return self.alpha / (gradient_l1 * feature_l1 + IB_EPSILON)

    def class_losses(self, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        cross_entropy = -F.log_softmax(logits, dim=1)
        if not self.active:
            return cross_entropy
        if features is None:
            raise ValueError("the influence-balanced loss needs the classifier's input features")
        if len(features) != len(logits):
            raise ValueError(f"{len(features)} feature rows for {len(logits)} rows of logits")
        weights = self.class_weight.to(logits.dtype) * self.influence_weights(logits, features)
        return cross_entropy * weights

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.active:
            return soft_cross_entropy(logits, target)
        if features is None:
            if self.inputs is None:
                raise ValueError(
                    "the influence-balanced loss needs the classifier's input features: pass "
                    "features= or call attach(model) first"
                )
            features = self.inputs.take(len(logits))
        probabilities = target_distribution(target, logits)
        return (probabilities * self.class_losses(logits, features)).sum(dim=1).mean()


class LossSettings(Protocol):
    """The settings :func:`build_loss` reads: the fields of the run configuration's loss section
    (:class:`shapmix.config.LossConfig` is one; the losses do not depend on the config module)."""

    name: str
    tau: float
    focal_gamma: float
    cb_beta: float
    cb_base: str
    ldam_max_margin: float
    ldam_scale: float
    drw_epoch: int | None
    drw_beta: float
    ib_alpha: float
    ib_start_epoch: int | None
    ib_lr_factor: float


def build_loss(config: LossSettings, class_counts: ClassCounts, total_epochs: int) -> Loss:
    """The loss described by ``config`` (e.g. a :class:`~shapmix.config.LossConfig`).

    Args:
        config: loss section of the run configuration.
        class_counts: ``(K,)`` training samples per class.
        total_epochs: length of the schedule; ``ib_start_epoch=null`` starts IB at half of it.
    """
    name = config.name
    loss: Loss
    if name == "ce":
        loss = CrossEntropy()
    elif name == "balanced_softmax":
        loss = BalancedSoftmax(class_counts, config.tau)
    elif name == "focal":
        loss = FocalLoss(config.focal_gamma)
    elif name == "class_balanced":
        loss = ClassBalancedLoss(class_counts, config.cb_beta, config.cb_base, config.focal_gamma)
    elif name == "ldam":
        loss = LDAMLoss(class_counts, config.ldam_max_margin, config.ldam_scale)
    elif name == "influence_balanced":
        start = total_epochs // 2 if config.ib_start_epoch is None else config.ib_start_epoch
        loss = InfluenceBalancedLoss(class_counts, config.ib_alpha, start, config.ib_lr_factor)
    else:
        raise ValueError(
            f"unknown loss {name!r}; use ce, balanced_softmax, focal, class_balanced, ldam or influence_balanced"
        )
    if config.drw_epoch is not None:
        loss = DeferredReweighting(loss, class_counts, config.drw_beta, config.drw_epoch)
    return loss
