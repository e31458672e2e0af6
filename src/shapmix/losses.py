"""Classification losses for long-tailed training; every loss accepts hard or soft targets.

* :class:`CrossEntropy`: softmax cross entropy.
* :class:`BalancedSoftmax`: cross entropy on ``logits + tau * log(prior)`` (Ren et al., NeurIPS
  2020; logit adjustment, Menon et al., ICLR 2021), where ``prior`` is the training class
  frequency.  Shap-Mix trains with it on long-tailed data (paper Section 3.4); predictions at
  test time use the raw logits.

Targets are either ``(N,)`` int64 class ids or ``(N, K)`` probability rows (mixed samples).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossEntropy", "BalancedSoftmax", "build_loss", "soft_cross_entropy"]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy for ``(N, K)`` logits and ``(N,)`` class ids or ``(N, K)`` soft targets."""
    if target.dim() == 1:
        return F.cross_entropy(logits, target)
    if target.shape != logits.shape:
        raise ValueError(f"soft targets {tuple(target.shape)} do not match logits {tuple(logits.shape)}")
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class CrossEntropy(nn.Module):
    """Softmax cross entropy with hard or soft targets."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits, target)


class BalancedSoftmax(nn.Module):
    """Cross entropy on prior-adjusted logits ``logits + tau * log(counts / counts.sum())``.

    Args:
        class_counts: ``(K,)`` training samples per class; a class with no sample is given a
            count of 1 so its log prior stays finite.
        tau: weight of the log prior (1 = Balanced Softmax).
    """

    def __init__(self, class_counts: Sequence[int] | np.ndarray | torch.Tensor, tau: float = 1.0):
        super().__init__()
        counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64).clamp(min=1)
        self.tau = tau
        self.register_buffer("log_prior", (counts / counts.sum()).log().to(torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        adjusted = logits + self.tau * self.log_prior.to(logits.dtype)
        return soft_cross_entropy(adjusted, target)


def build_loss(name: str, class_counts: Sequence[int] | np.ndarray, tau: float = 1.0) -> nn.Module:
    """Loss by config name: ``ce`` or ``balanced_softmax``."""
    if name == "ce":
        return CrossEntropy()
    if name == "balanced_softmax":
        return BalancedSoftmax(class_counts, tau)
    raise ValueError(f"unknown loss {name!r}; use ce or balanced_softmax")
