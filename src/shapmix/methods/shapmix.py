"""Shap-Mix as a training method: online Shapley saliency estimation before each step, guided mixing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..distributed import DistributedContext
from ..mixing import (
    PartCombinations,
    SaliencyTable,
    ShapMix,
    class_balanced_subset,
    estimate_combination_shapley,
    exact_combination_rows,
    gradcam_part_scores,
    least_estimated_classes,
    least_estimated_combinations,
)
from ..mixing.stmix import DeviceCopies
from ..seeds import ESTIMATOR, DeviceGenerator
from ..viz.saliency import write_training_saliency_figures
from .base import MethodInputs, MixingMethod, TrainingMethod

__all__ = ["ShapMixMethod"]


class ShapMixMethod(MixingMethod):
    """Shap-Mix: online Shapley saliency estimation + tail-aware, saliency-guided ST-Mix.

    Every ``interval``-th step (``iter-n``, paper Table 13) part of the batch is valued in
    no-grad eval-mode forwards of masked copies, and the estimates update the
    :class:`SaliencyTable` (batch statistics reduced across processes first, so all ranks keep
    the same table): with the sampled estimator (the paper's) each estimated sample draws its
    own combination and coalition (two masked copies each); with the exact one (the default) a
    few samples get all ``2**P`` coalitions and so the exact value of every combination.
    During the first ``warmup_epochs`` the mixing is random (ST-Mix) and the estimates are the
    naive single-draw ``v(S) - v(empty)`` with either estimator.

    With ``estimator="gradcam"`` (the paper's Grad-CAM ablation, Table 8) the same table is
    instead fed, at the same steps, with the Grad-CAM score of EVERY combination of every sample
    (:func:`~shapmix.mixing.gradcam_part_scores`, ``N * S`` estimates per step; no warm-up
    variant), and the mixer samples from it as it does from the Shapley table.

    Args:
        mixer: the :class:`ShapMix` mixer (its ``table`` is updated in place).
        baseline: ``(C, T, V, M)`` mean training sequence in the model's input space.
        warmup_epochs: epochs of random mixing and naive estimates.
        interval: estimate every ``interval``-th optimisation step.
        clip: clip marginal contributions at 0 (the paper's choice; biased, see
            :func:`~shapmix.mixing.estimate_combination_shapley`).
        context: process group used to reduce the table's batch statistics.
        seed: seed of the estimator's random draws.
        estimator: what feeds the table: ``"shapley"`` estimates or ``"gradcam"`` scores.
        estimate_fraction: share of each batch that gets a Shapley estimate at an estimation
            step (at least one sample), drawn with weights ``1 / class count``
            (:func:`~shapmix.mixing.class_balanced_subset`): rare classes get nearly every
            sample estimated, head classes share the rest.  The estimator's two no-grad
            forwards of the whole batch cost about a quarter of a clean + mixed training step;
            a fraction keeps iter-1 cheap.

        shapley_estimator: ``"sampled"``, the paper's per-sample Monte-Carlo draw, or
            ``"exact"``: the same number of masked forwards spent on whole rows
            (:func:`~shapmix.mixing.exact_combination_rows`, ``2**P`` forwards per sample, the
            unspent remainder carried to the next estimation step), one sample each of the
            batch's least-updated classes (:func:`~shapmix.mixing.least_estimated_classes`).

    With the sampled estimator, each estimated sample's combination is its class's
    least-updated one (:func:`~shapmix.mixing.least_estimated_combinations`), so a row fills
    evenly; its coalition is drawn with the Shapley weights, and every cell's estimates stay
    unbiased.  At the first estimation step after warm-up the table is restarted
    (:meth:`SaliencyTable.restart`): the naive warm-up values measure another quantity, so each
    cell's first Shapley estimate replaces its value instead of being averaged with it.
    """

    def __init__(
        self,
        mixer: ShapMix,
        baseline: torch.Tensor,
        warmup_epochs: int,
        interval: int,
        clip: bool,
        context: DistributedContext,
        seed: int,
        estimator: Literal["shapley", "gradcam"] = "shapley",
        estimate_fraction: float = 1.0,
        shapley_estimator: Literal["sampled", "exact"] = "exact",
    ) -> None:
        super().__init__("shapmix", mixer)
        if shapley_estimator not in ("sampled", "exact"):
            raise ValueError(f"unknown Shapley estimator {shapley_estimator!r}; use 'sampled' or 'exact'")
        if not 0 < estimate_fraction <= 1:
            raise ValueError(f"estimate_fraction must lie in (0, 1], got {estimate_fraction}")
        if estimator not in ("shapley", "gradcam"):
            raise ValueError(f"unknown saliency estimator {estimator!r}; use 'shapley' or 'gradcam'")
        if mixer.table is None:
            raise ValueError("ShapMixMethod needs a mixer with a saliency table")
        self.table: SaliencyTable = mixer.table
        self.baseline = baseline
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.clip = clip
        self.context = context
        # the estimator's draws happen on the batch's device (its generator is made there)
        self.estimator_stream = DeviceGenerator(seed, name="the Shap-Mix estimator")
        self._class_counts = DeviceCopies(mixer.class_counts)
        self.guidance = mixer.guidance
        self.estimator = estimator
        self.estimate_fraction = estimate_fraction
        self.shapley_estimator = shapley_estimator
        self.shapley_started = False
        self.row_credit = 0.0

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> None:
        if step % self.interval:
            return
        if self.estimator == "gradcam":
            self._update_from_gradcam(model, x, y)
            return
        warming_up = epoch < self.warmup_epochs
        if not warming_up and not self.shapley_started:
            self.table.restart()
            self.shapley_started = True
        if not warming_up and self.shapley_estimator == "exact":
            self._update_from_exact_rows(model, x, y)
            return
        generator = self.estimator_stream.on(x.device)
        budget = max(1, round(self.estimate_fraction * len(y)))
        chosen = class_balanced_subset(y, self._class_counts.on(y.device), budget, generator)
        combination = least_estimated_combinations(self.table.counts, y[chosen], generator)
        estimate = estimate_combination_shapley(
            model,
            x[chosen],
            y[chosen],
            self.baseline.to(x.device, x.dtype),
            self.mixer.combinations,
            combination=combination,
            generator=generator,
            clip=self.clip,
            naive=warming_up,
        )
        self.table.update(y[chosen], estimate.combinations, estimate.values, self.context)

    def _update_from_exact_rows(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fold exact rows of a few samples into the table, as many as the sampled estimator's
        ``2 * estimate_fraction * N`` masked forwards pay for (every rank calls the update, also
        with no row this step).  The number of rows is fixed before the labels are seen; in a
        batch with fewer classes than rows the extra rows are computed and left out of the
        update (``mask``), so no size depends on the labels."""
        combinations = self.mixer.combinations
        self.row_credit += 2 * self.estimate_fraction * len(y) / 2**combinations.num_parts
        number = int(self.row_credit)
        self.row_credit -= number
        generator = self.estimator_stream.on(x.device)
        chosen, picked = least_estimated_classes(self.table.counts.sum(dim=1), y, number, generator)
        num_combinations = len(combinations)
        if len(chosen):
            rows = exact_combination_rows(
                model, x[chosen], y[chosen], self.baseline.to(x.device, x.dtype), combinations, clip=self.clip
            )
        else:
            rows = torch.zeros(0, num_combinations, device=x.device)
        labels = y[chosen].repeat_interleave(num_combinations)
        combination = torch.arange(num_combinations, device=y.device).repeat(len(chosen))
        mask = picked.repeat_interleave(num_combinations)
        self.table.update(labels, combination, rows.flatten(), self.context, mask=mask)

    def _update_from_gradcam(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fold the Grad-CAM scores of all ``S`` combinations of all ``N`` samples into the table."""
        scores = gradcam_part_scores(model, x, y, self.mixer.combinations)  # (N, S)
        num_samples, num_combinations = scores.shape
        labels = y.to(scores.device).repeat_interleave(num_combinations)
        combination = torch.arange(num_combinations, device=scores.device).repeat(num_samples)
        self.table.update(labels, combination, scores.flatten(), self.context)

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.mixer.guidance = "random" if epoch < self.warmup_epochs else self.guidance
        return self.mixer(x, y)

    def state_dict(self) -> dict[str, Any]:
        estimator = self.estimator_stream.state_dict()
        return {
            "mixer": self.mixer.state_dict(),
            "table": self.table.state_dict(),
            "baseline": self.baseline.detach().cpu(),
            "estimator_generator": estimator["state"],
            "estimator_generator_device": estimator["device"],
            "shapley_started": self.shapley_started,
            "row_credit": self.row_credit,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_state_dict(state["mixer"])
        self.table.load_state_dict(state["table"])
        self.baseline = state["baseline"].to(self.baseline.device)
        self.estimator_stream.load_state_dict(
            {"state": state["estimator_generator"], "device": state.get("estimator_generator_device", "cpu")}
        )
        self.shapley_started = bool(state.get("shapley_started", False))
        self.row_credit = float(state.get("row_credit", 0.0))

    def write_artifacts(self, out_dir: Path, train_counts: np.ndarray, groups: tuple[int, int], plots: bool) -> list[Path]:
        """``saliency_table.json`` / ``.csv`` (values, update counts and sampling probabilities per
        class and combination, and per class how sharp the policy is) and, with ``plots``, the
        saliency and policy heatmaps and the part-coloured skeletons."""
        written = [out_dir / "saliency_table.json", out_dir / "saliency_table.csv"]
        self.table.to_json(written[0], tau=self.mixer.tau)
        self.table.to_csv(written[1], tau=self.mixer.tau)
        if plots:
            written += write_training_saliency_figures(
                self.table.values.cpu().numpy(),
                None,
                train_counts,
                self.table.class_names,
                self.table.combination_names,
                self.mixer.layout,
                out_dir,
                *groups,
                policy=(self.table.policy(self.mixer.tau).numpy(), self.mixer.tau),
            )
        return written


def build(inputs: MethodInputs) -> TrainingMethod:
    config, baseline = inputs.config, inputs.baseline
    if baseline is None:
        raise ValueError("shapmix needs the mean training sequence (baseline)")
    combinations = PartCombinations.from_layout(inputs.layout, config.min_parts, config.max_parts)
    table = SaliencyTable.from_combinations(
        inputs.num_classes, combinations, momentum=config.momentum, class_names=inputs.class_names, device=baseline.device
    )
    # Grad-CAM only changes what feeds the table; the mixer samples from the table either way.
    guidance = "shapley" if config.guidance == "gradcam" else config.guidance
    mixer = ShapMix(
        inputs.layout, inputs.class_counts, table=table, tau=config.tau, guidance=guidance, **inputs.stmix_options()
    )
    return ShapMixMethod(
        mixer,
        baseline,
        warmup_epochs=config.warmup_epochs,
        interval=config.interval,
        clip=config.clip,
        context=inputs.context,
        seed=ESTIMATOR.derive(inputs.seed),
        estimator="gradcam" if config.guidance == "gradcam" else "shapley",
        estimate_fraction=config.estimate_fraction,
        shapley_estimator=config.shapley_estimator,
    )
