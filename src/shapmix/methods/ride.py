"""RIDE (Wang et al., "Long-tailed recognition by routing diverse distribution-aware experts",
ICLR 2021) as a training method: the experts' loss, then the router's.

The experts, their shared trunk and the router are the model, a
:class:`~shapmix.models.ride.RIDEModel` (``model.ride_experts``), so evaluation, prediction and
export see RIDE's output from the checkpoint alone.  This method only supplies the two losses,
after the original's ``RIDELoss`` and ``EAResNet``:

* Experts (the first stage): for every expert ``i`` with logits ``z_i`` and the ensemble's mean
  logits ``z``, the configured loss ``L(z_i, y)`` (the ``ride`` preset: LDAM with deferred
  re-weighting, the original's setting) plus ``lambda T^2 KL(softmax(z / T) || softmax(z_i / T))``
  with the ensemble's distribution held fixed (no gradient) and ``lambda`` =
  ``method.ride_diversity_factor`` (negative: the experts are pushed apart).  Once the loss's
  deferred re-weighting starts (``loss.drw_epoch``; the original's ``reweight_epoch`` switches
  both), the temperature becomes per class, ``T_c = T w_c`` with ``w_c = (K p_c g + 1 - g) /
  max_c(...)`` (``p_c`` the class's training frequency, ``g`` = ``method.ride_reweight_factor``),
  and ``T^2`` becomes the square of their mean.  With ``lambda = 0`` every expert's loss is taken
  on the ensemble's logits (the original code's behaviour).  A backbone's own objective
  (InfoGCN's label smoothing and information bottleneck) is not added, as with GLMC.
* Router (``finetune.kind=ride_router``, which freezes the experts and switches the model to
  routing): for every expert ``i`` but the last, the target "a further expert helps" is 1 when
  the mean of experts ``0..i`` is wrong and the mean of experts ``0..j`` is right for some
  ``j > i``; the router's logits learn it by binary cross entropy with ``pos_weight``
  (``method.ride_router_pos_weight``), averaged over the ``E - 1`` decisions.

Training accuracy is counted on the experts' mean logits in both stages (the original's).  The
method keeps no state of its own: the experts and the router are the model's parameters.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import DeferredReweighting
from ..models.ride import RIDEModel
from .base import MethodInputs, TrainingMethod

__all__ = ["RIDEExpertsMethod", "RIDERouterMethod", "diversity_temperatures", "router_targets"]


def diversity_temperatures(class_counts: np.ndarray, temperature: float, reweight_factor: float) -> torch.Tensor:
    """``(K,)`` float32 distribution-aware temperatures ``T (K p_c g + 1 - g) / max_c(...)``:
    ``T`` for the most frequent class, lower for rarer ones."""
    frequencies = np.asarray(class_counts, dtype=np.float64) / np.sum(class_counts)
    weights = len(frequencies) * frequencies * reweight_factor + 1 - reweight_factor
    return torch.as_tensor(temperature * weights / weights.max(), dtype=torch.float32)


def router_targets(expert_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(E-1, N)`` bool: row ``i`` is True where the mean of experts ``0..i`` is wrong and the
    mean of experts ``0..j`` is right for some ``j > i``.

    Args:
        expert_logits: ``(E, N, K)``.
        labels: ``(N,)`` class ids.
    """
    # the running sum has the running mean's argmax
    correct = expert_logits.cumsum(0).argmax(-1) == labels  # (E, N): experts 0..i right
    # right with some j >= i: a running maximum from the last expert backwards
    right_later = correct.flip(0).long().cummax(0).values.flip(0).bool()
    return ~correct[:-1] & right_later[1:]


class RIDEExpertsMethod(TrainingMethod):
    """RIDE's first stage: every expert's loss and the diversity term (module docstring).

    Args:
        class_counts: ``(K,)`` training samples per class.
        diversity_factor: ``lambda``.
        temperature: ``T``.
        reweight_factor: ``g`` of the distribution-aware temperatures.
    """

    name = "ride"

    def __init__(self, class_counts: np.ndarray, diversity_factor: float, temperature: float, reweight_factor: float) -> None:
        self.diversity_factor = diversity_factor
        self.temperature = temperature
        self.class_temperatures = diversity_temperatures(class_counts, temperature, reweight_factor)
        self.class_temperature_mean = float(self.class_temperatures.mean())

    def temperatures(self, criterion: nn.Module, device: torch.device) -> tuple[torch.Tensor | float, float]:
        """``(T, mean T)``: the scalar ``T`` until the loss re-weights, then the ``(1, K)`` per-class
        temperatures on ``device`` (copied there once)."""
        if not (isinstance(criterion, DeferredReweighting) and criterion.reweighting):
            return self.temperature, self.temperature
        if self.class_temperatures.device != device:
            self.class_temperatures = self.class_temperatures.to(device)
        return self.class_temperatures[None, :], self.class_temperature_mean

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        expert_logits = network(x, output="experts")  # (E, N, K)
        ensemble = expert_logits.mean(0)
        if self.diversity_factor == 0:
            # the original trains on the ensemble's logits when there is no diversity term
            return len(expert_logits) * criterion(ensemble, y), ensemble
        temperature, mean_temperature = self.temperatures(criterion, x.device)
        with torch.no_grad():
            ensemble_distribution = F.softmax(ensemble / temperature, dim=1)
        loss = expert_logits.new_zeros(())
        for logits in expert_logits:
            divergence = F.kl_div(F.log_softmax(logits / temperature, dim=1), ensemble_distribution, reduction="batchmean")
            loss = loss + criterion(logits, y) + self.diversity_factor * mean_temperature**2 * divergence
        return loss, ensemble


class RIDERouterMethod(TrainingMethod):
    """RIDE's router stage: binary cross entropy of the router's decisions (module docstring).

    Args:
        pos_weight: weight of the positive ("a further expert helps") targets.
    """

    name = "ride"

    def __init__(self, pos_weight: float) -> None:
        self.pos_weight = pos_weight

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        expert_logits, router_logits = network(x, output="router")  # (E, N, K), (E-1, N)
        targets = router_targets(expert_logits, y).to(router_logits.dtype)
        # binary cross entropy with logits and pos_weight, written out so that the weight stays a
        # Python number (no tensor copied to the device every step)
        losses = self.pos_weight * targets * F.softplus(-router_logits) + (1 - targets) * F.softplus(router_logits)
        return losses.mean(), expert_logits.mean(0)


def build(inputs: MethodInputs) -> TrainingMethod:
    """The experts' method, or the router's once the router stage has switched the model to routing."""
    model = inputs.model
    if not isinstance(model, RIDEModel):
        raise ValueError(
            "method.name=ride needs RIDE's experts: set model.ride_experts to 2 or more (Wang et al. 2021: 3)"
        )
    config = inputs.config
    if model.routed:
        return RIDERouterMethod(config.ride_router_pos_weight)
    return RIDEExpertsMethod(
        inputs.class_counts, config.ride_diversity_factor, config.ride_diversity_temperature, config.ride_reweight_factor
    )
