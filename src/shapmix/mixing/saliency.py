"""The per-class part-saliency table of Shap-Mix (Zhang et al., IJCAI 2024, Section 3.3, Eq. 3).

``values[c, s]`` is an exponential moving average of the per-joint Shapley value of part
combination ``s`` for samples of class ``c`` (estimated online by
:func:`~shapmix.mixing.shapley.estimate_combination_shapley`); the mixing policy samples
combinations of class ``c`` from ``P_c = softmax(values[c] / tau)``
(:func:`sampling_distribution`).

Units: a value is a marginal gain of the true-class probability (clipped contributions lie in
``[0, 1]``) divided by the combination's number of joints, so it is at most ``1 / 8`` for the
smallest NTU combination, and ``tau`` is a temperature on exactly these numbers; no hidden factor
scales them anywhere.  The authors' code stores ten times the per-joint value and samples with a
temperature of 0.2 (``skelemix.py``), which is ``tau = 0.02`` here (:data:`AUTHORS_TAU`).  How
sharp a policy is shows in :func:`policy_sharpness` (probability of the top combination, entropy
against uniform), which the run's exports and ``shapmix saliency`` report per class.

Update rule (one call per estimation step, same on every rank)::

    sum[c, s], n[c, s]  = batch sums and counts of the estimates of class c, combination s,
                          summed over all ranks (DDP) BEFORE the average
    mean[c, s]          = sum[c, s] / n[c, s]                  for cells with n[c, s] > 0
    weight[c, s]       <- m weight[c, s] + (1 - m)             (0 before the first update)
    values[c, s]       <- (m weight_old[c, s] values[c, s] + (1 - m) mean[c, s]) / weight[c, s]
    counts[c, s]       += 1                                    (EMA steps per cell)

This is the EMA with momentum ``m`` divided by its total weight ``1 - m**k`` after ``k`` steps
(the bias correction of Adam).  The authors' table starts at ``1e-6``; through the first six
epochs (their naive-estimate warm-up, epochs 0-4, and epoch 5) they update with momentum 0, so
each update overwrites its cell, and the 0.9 EMA starts at epoch 6 from whatever single estimate
each cell last received (a naive warm-up value, or ``1e-6`` for a cell never drawn).  That
start over-weights one estimate (still ``m**(k-1)`` of the value after ``k`` steps, about 0.6
after 5), and a cell of a tail class is updated only a handful of times in a run; here the ``k``
means are instead weighted ``m**(k-j)`` / normalised: nearly evenly while ``k`` is small, the
EMA's fading memory once it is large.  :meth:`SaliencyTable.restart` sets every
weight back to 0 (Shap-Mix calls it when warm-up ends, so the naive warm-up values, another
quantity, are replaced by the first Shapley estimate of each cell instead of averaged in).
Cells never updated stay at 0.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from os import PathLike
from typing import Any, NamedTuple, Protocol

import torch

from .parts import PartCombinations

__all__ = [
    "AUTHORS_TAU",
    "DEFAULT_MOMENTUM",
    "DEFAULT_TAU",
    "PolicySharpness",
    "SaliencyTable",
    "SumReducer",
    "policy_sharpness",
    "sampling_distribution",
]

DEFAULT_MOMENTUM = 0.9
DEFAULT_TAU = 0.05
"""The library's temperature, chosen by measurement (docs/benchmarks.md, "Policy temperature"):
2.5 times the authors' :data:`AUTHORS_TAU`, so a policy 2.5 times softer than theirs.  Per-joint
values are at most 1/8, so two combinations' probabilities differ by at most ``e**2.5`` = 12x
(the authors': ``e**6.25`` = 518x; the earlier default 0.2: ``e**0.625`` = 1.9x)."""
AUTHORS_TAU = 0.02
"""The authors' temperature in this library's units: 0.2 on a table of per-joint values x 10."""

_CSV_FIELDS = ("class_index", "class", "combination_index", "combination", "value", "count")
_PROBABILITY_FIELD = "probability"


def sampling_distribution(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """The mixing policy ``P = softmax(scores / tau)`` of each row (Eq. 3).

    Args:
        scores: ``(N, S)`` per-combination scores (rows of a :class:`SaliencyTable`).
        tau: temperature, in the units of ``scores`` (per-joint values: see the module docstring).

    Returns:
        ``(N, S)`` float64 probabilities, each row summing to 1.
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    return torch.softmax(scores.to(torch.float64) / tau, dim=1)


class PolicySharpness(NamedTuple):
    """How far a policy is from uniform, per row (all ``(N,)`` float64).

    Attributes:
        top_probability: probability of the most likely combination (uniform: ``1 / S``).
        top_combination: int64 index of that combination.
        normalised_entropy: entropy divided by ``log S``: 1 for a uniform policy, 0 for one
            that always draws the same combination.
    """

    top_probability: torch.Tensor
    top_combination: torch.Tensor
    normalised_entropy: torch.Tensor


def policy_sharpness(probs: torch.Tensor) -> PolicySharpness:
    """Summarise ``(N, S)`` sampling distributions (see :class:`PolicySharpness`)."""
    probs = probs.to(torch.float64)
    num_combinations = probs.shape[1]
    top_probability, top_combination = probs.max(dim=1)
    entropy = -torch.special.xlogy(probs, probs).sum(dim=1)
    scale = math.log(num_combinations) if num_combinations > 1 else 1.0
    return PolicySharpness(top_probability, top_combination, entropy / scale)


class SumReducer(Protocol):
    """What :meth:`SaliencyTable.update` needs from a distributed context
    (:class:`shapmix.distributed.DistributedContext` fits)."""

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor: ...


class SaliencyTable:
    """EMA table of per-joint Shapley values, one row per class and one column per combination.

    Args:
        num_classes: ``K``.
        num_combinations: ``S`` (20 for 5 parts and combinations of 2..3 parts).
        momentum: EMA momentum ``m`` in ``[0, 1)``.
        class_names: ``K`` names for exports (default ``class_0`` ...).
        combination_names: ``S`` names for exports (default ``combination_0`` ...).
        device: where ``values`` and ``counts`` live (default CPU).

    Attributes:
        values: ``(K, S)`` float32, the bias-corrected EMA of each cell.
        counts: ``(K, S)`` int64, the number of EMA updates of each cell.
        weights: ``(K, S)`` float32, each cell's total EMA weight ``1 - m**k`` after ``k``
            updates since the last :meth:`restart`.
    """

    def __init__(
        self,
        num_classes: int,
        num_combinations: int,
        momentum: float = DEFAULT_MOMENTUM,
        class_names: Sequence[str] | None = None,
        combination_names: Sequence[str] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1 or num_combinations < 1:
            raise ValueError(f"need a positive table size, got {num_classes} x {num_combinations}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.class_names = _names(class_names, num_classes, "class")
        self.combination_names = _names(combination_names, num_combinations, "combination")
        self.values = torch.zeros(num_classes, num_combinations, dtype=torch.float32, device=device)
        self.counts = torch.zeros(num_classes, num_combinations, dtype=torch.int64, device=device)
        self.weights = torch.zeros(num_classes, num_combinations, dtype=torch.float32, device=device)

    @classmethod
    def from_combinations(
        cls,
        num_classes: int,
        combinations: PartCombinations,
        momentum: float = DEFAULT_MOMENTUM,
        class_names: Sequence[str] | None = None,
        device: torch.device | str | None = None,
    ) -> SaliencyTable:
        """A table with one column per combination, named after its parts."""
        return cls(num_classes, len(combinations), momentum, class_names, combinations.names, device)

    @property
    def num_classes(self) -> int:
        return self.values.shape[0]

    @property
    def num_combinations(self) -> int:
        return self.values.shape[1]

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device | str) -> SaliencyTable:
        """Move the table to ``device`` (in place) and return it."""
        self.values = self.values.to(device)
        self.counts = self.counts.to(device)
        self.weights = self.weights.to(device)
        return self

    def restart(self) -> None:
        """Start every cell's average afresh: its next update replaces its value (values and
        counts are kept until then)."""
        self.weights = torch.zeros_like(self.weights)

    @torch.no_grad()
    def update(
        self,
        labels: torch.Tensor,
        combinations: torch.Tensor,
        estimates: torch.Tensor,
        context: SumReducer | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Fold a batch of estimates into the table (see the module docstring for the rule).

        Args:
            labels: ``(N,)`` int64 classes.
            combinations: ``(N,)`` int64 combination indices.
            estimates: ``(N,)`` per-joint Shapley estimates.
            context: reduces the batch sums and counts over ranks (``all_reduce_sum``); ``None``
                for a single process.  Every rank must call ``update`` at the same steps.
            mask: ``(N,)`` bool, which estimates count (the others change nothing); ``None``:
                all.  Lets a caller pass a batch of fixed size instead of selecting rows, which
                on a GPU would make the host wait for the selection's size.
        """
        if not labels.shape == combinations.shape == estimates.shape or labels.ndim != 1:
            raise ValueError("labels, combinations and estimates must be (N,) tensors of the same shape")
        if mask is not None and mask.shape != labels.shape:
            raise ValueError(f"mask must have the estimates' shape {tuple(labels.shape)}, got {tuple(mask.shape)}")
        device = estimates.device
        cell = labels.to(device) * self.num_combinations + combinations.to(device)
        sums = estimates.to(torch.float32)
        numbers = torch.ones_like(estimates, dtype=torch.float32)
        if mask is not None:
            mask = mask.to(device)
            sums, numbers = torch.where(mask, sums, 0.0), mask.to(torch.float32)
        stats = torch.zeros(2, self.values.numel(), dtype=torch.float32, device=device)
        stats[0].index_add_(0, cell, sums)
        stats[1].index_add_(0, cell, numbers)
        if context is not None:
            context.all_reduce_sum(stats)
        stats = stats.to(self.device).reshape(2, *self.values.shape)
        sums, numbers = stats[0], stats[1]
        seen = numbers > 0
        mean = sums / numbers.clamp(min=1.0)
        kept = self.momentum * self.weights
        weights = kept + (1.0 - self.momentum)
        updated = (kept * self.values + (1.0 - self.momentum) * mean) / weights
        self.values = torch.where(seen, updated, self.values)
        self.weights = torch.where(seen, weights, self.weights)
        self.counts = self.counts + seen.to(torch.int64)

    # ----------------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and a float, loadable with ``torch.load(weights_only=True)``."""
        return {
            "values": self.values.cpu().clone(),
            "counts": self.counts.cpu().clone(),
            "weights": self.weights.cpu().clone(),
            "momentum": self.momentum,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state without ``weights`` (a table exported before they
        existed) gets those of ``counts`` uninterrupted updates."""
        values, counts = state["values"], state["counts"]
        if values.shape != self.values.shape or counts.shape != self.counts.shape:
            raise ValueError(f"saliency table of shape {tuple(values.shape)} does not fit {tuple(self.values.shape)}")
        self.momentum = float(state["momentum"])
        self.values = values.to(device=self.device, dtype=torch.float32).clone()
        self.counts = counts.to(device=self.device, dtype=torch.int64).clone()
        weights = state.get("weights")
        self.weights = (
            self._weights_after(self.counts) if weights is None else weights.to(self.device, torch.float32).clone()
        )

    def _weights_after(self, counts: torch.Tensor) -> torch.Tensor:
        """Total EMA weight ``1 - m**k`` of ``k = counts`` updates."""
        return 1.0 - torch.pow(torch.tensor(self.momentum, dtype=torch.float64), counts.to(torch.float64)).float()

    def policy(self, tau: float) -> torch.Tensor:
        """``(K, S)`` float64 sampling distribution of every class at temperature ``tau`` (CPU)."""
        return sampling_distribution(self.values.cpu(), tau)

    def to_json(self, path: str | PathLike, tau: float | None = None) -> None:
        """Write names, momentum, values and counts as JSON (floats round-trip exactly).

        With ``tau``, also the policy it gives: ``tau``, ``probabilities`` ``(K, S)`` and per
        class ``policy`` (top combination, its probability, entropy against uniform).
        """
        document: dict[str, Any] = {
            "momentum": self.momentum,
            "classes": list(self.class_names),
            "combinations": list(self.combination_names),
            "values": self.values.cpu().tolist(),
            "counts": self.counts.cpu().tolist(),
        }
        if tau is not None:
            probs = self.policy(tau)
            sharpness = policy_sharpness(probs)
            document["tau"] = tau
            document["probabilities"] = probs.tolist()
            document["policy"] = [
                {
                    "class": name,
                    "top_combination": self.combination_names[int(sharpness.top_combination[k])],
                    "top_probability": float(sharpness.top_probability[k]),
                    "normalised_entropy": float(sharpness.normalised_entropy[k]),
                }
                for k, name in enumerate(self.class_names)
            ]
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)

    @classmethod
    def from_json(cls, path: str | PathLike) -> SaliencyTable:
        """Read a table written by :meth:`to_json` (its EMA weights are those of ``counts``
        uninterrupted updates)."""
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        table = cls(
            len(document["classes"]),
            len(document["combinations"]),
            document["momentum"],
            document["classes"],
            document["combinations"],
        )
        table.values = torch.tensor(document["values"], dtype=torch.float32)
        table.counts = torch.tensor(document["counts"], dtype=torch.int64)
        table.weights = table._weights_after(table.counts)
        return table

    def to_csv(self, path: str | PathLike, tau: float | None = None) -> None:
        """Write one row per cell: class and combination (index and name), value, count, and
        with ``tau`` the cell's sampling probability."""
        values, counts = self.values.cpu().tolist(), self.counts.cpu().tolist()
        probs = None if tau is None else self.policy(tau).tolist()
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(_CSV_FIELDS + (() if probs is None else (_PROBABILITY_FIELD,)))
            for k, class_name in enumerate(self.class_names):
                for s, combination_name in enumerate(self.combination_names):
                    row = [k, class_name, s, combination_name, repr(values[k][s]), counts[k][s]]
                    writer.writerow(row if probs is None else row + [repr(probs[k][s])])

    @classmethod
    def from_csv(cls, path: str | PathLike, momentum: float = DEFAULT_MOMENTUM) -> SaliencyTable:
        """Read a table written by :meth:`to_csv` (the CSV does not store the momentum)."""
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        class_names = {int(row["class_index"]): row["class"] for row in rows}
        combination_names = {int(row["combination_index"]): row["combination"] for row in rows}
        table = cls(
            len(class_names),
            len(combination_names),
            momentum,
            [class_names[k] for k in range(len(class_names))],
            [combination_names[s] for s in range(len(combination_names))],
        )
        for row in rows:
            k, s = int(row["class_index"]), int(row["combination_index"])
            table.values[k, s] = float(row["value"])
            table.counts[k, s] = int(row["count"])
        table.weights = table._weights_after(table.counts)
        return table


def _names(names: Sequence[str] | None, size: int, prefix: str) -> tuple[str, ...]:
    if names is None:
        return tuple(f"{prefix}_{index}" for index in range(size))
    if len(names) != size:
        raise ValueError(f"expected {size} {prefix} names, got {len(names)}")
    return tuple(str(name) for name in names)
