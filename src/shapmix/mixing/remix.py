"""Remix: rebalanced Mixup (Chou, Chang, Pan, Wei, Juan, "Remix: Rebalanced Mixup",
ECCV Workshops 2020).

Inputs are mixed exactly as Mixup mixes them; only the label changes.  In the paper's notation
``x~ = lam_x x_i + (1 - lam_x) x_j`` and the label is ``lam_y y_i + (1 - lam_y) y_j`` with

* ``lam_y = 0`` if ``n_i / n_j >= kappa`` and ``lam_x < tau`` (``i`` is a head sample that
  contributes little: the label goes entirely to the minority sample ``j``);
* ``lam_y = 1`` if ``n_i / n_j <= 1 / kappa`` and ``1 - lam_x < tau`` (the mirror case);
* ``lam_y = lam_x`` otherwise,

where ``n`` are training class counts.  The paper's defaults are ``kappa = 3``, ``tau = 0.5`` and
``lam_x ~ Beta(1, 1)``.  The mixers of this package weight the *partner* instead
(``x'_i = (1 - lam_i) x_i + lam_i x_j``, :mod:`shapmix.mixing.stmix`), so here ``lam_x = 1 - lam``;
:func:`remix_label_ratio` applies the rule in that convention.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .stmix import DeviceCopies, MixInfo, Mixup, PartnerMode

__all__ = ["DEFAULT_REMIX_ALPHA", "DEFAULT_REMIX_KAPPA", "DEFAULT_REMIX_TAU", "Remix", "remix_label_ratio"]

DEFAULT_REMIX_ALPHA = 1.0
DEFAULT_REMIX_KAPPA = 3.0
DEFAULT_REMIX_TAU = 0.5


def remix_label_ratio(
    lam: torch.Tensor, own_count: torch.Tensor, partner_count: torch.Tensor, kappa: float, tau: float
) -> torch.Tensor:
    """The partner's label weight under Remix's rule.

    Args:
        lam: ``(N,)`` the partner's share of the mixed input (so the sample's own share is
            ``1 - lam``, the paper's ``lam_x``).
        own_count, partner_count: ``(N,)`` training counts of the sample's and the partner's class.
        kappa: count ratio from which a pair counts as head vs tail (paper: 3).
        tau: share below which the head sample loses its label (paper: 0.5).

    Returns:
        ``(N,)`` float64: 1 where the label goes entirely to the partner (the sample is the head
        one and contributes ``1 - lam < tau``), 0 where it stays entirely with the sample (the
        partner is the head one and contributes ``lam < tau``), ``lam`` otherwise.
    """
    lam = lam.to(torch.float64)
    ratio = own_count.to(torch.float64) / partner_count.to(torch.float64)
    to_partner = (ratio >= kappa) & (1 - lam < tau)
    to_self = (ratio <= 1 / kappa) & (lam < tau)
    return torch.where(to_partner, 1.0, torch.where(to_self, 0.0, lam))


class Remix(Mixup):
    """Mixup of the inputs with Remix's re-balanced labels (see the module docstring).

    Args:
        num_classes: ``K``.
        class_counts: ``(K,)`` training samples per class (a class without samples counts as 1,
            so ratios stay finite).
        alpha: ``lam ~ Beta(alpha, alpha)``; the paper uses 1.
        kappa, tau: Remix's head/tail ratio and label threshold (paper: 3 and 0.5).
        partner, generator, seed: see :class:`~shapmix.mixing.stmix.BatchMixer`.

    :meth:`mix_with_info` reports the input ratio in ``MixInfo.lam``; the targets use
    :func:`remix_label_ratio` of it.
    """

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int] | np.ndarray | torch.Tensor,
        alpha: float | None = DEFAULT_REMIX_ALPHA,
        kappa: float = DEFAULT_REMIX_KAPPA,
        tau: float = DEFAULT_REMIX_TAU,
        partner: PartnerMode = "shift",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, alpha, partner, generator, seed)
        counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
        if counts.shape != (num_classes,):
            raise ValueError(f"class_counts must have {num_classes} entries, got shape {tuple(counts.shape)}")
        if kappa < 1:
            raise ValueError(f"kappa must be at least 1 (a count ratio), got {kappa}")
        if not 0 <= tau <= 1:
            raise ValueError(f"tau must be in [0, 1], got {tau}")
        self.class_counts = counts.clamp(min=1)
        self._class_counts = DeviceCopies(self.class_counts)
        self.kappa = float(kappa)
        self.tau = float(tau)

    def mix_with_info(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixInfo]:
        x_mixed, _, info = super().mix_with_info(x, y)
        device = info.partner.device
        counts, labels = self._class_counts.on(device), y.to(device)
        label_lam = remix_label_ratio(info.lam, counts[labels], counts[labels[info.partner]], self.kappa, self.tau)
        return x_mixed, self._targets(x, y, info.partner, label_lam), info
