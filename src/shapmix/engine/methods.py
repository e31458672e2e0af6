"""Training methods: the two hooks through which a method changes a training step.

The trainer knows nothing about a specific method.  Each step it calls

* ``method.before_step(model, x, y, epoch, step)`` (e.g. saliency estimation, no gradients), then
* ``method.mix(x, y, epoch)``, which returns ``(x_mixed, soft_targets)`` or ``None``.

When a mixed batch is returned the trainer runs one forward pass of ``cat([x, x_mixed])`` and
adds the clean loss and the soft-target loss of the mixed half (the joint clean + mixed
training of Shap-Mix, Section 3.4); otherwise it trains on ``x``.  A method's ``state_dict`` is
saved in every checkpoint and restored on resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn

from ..config import MethodConfig
from ..mixing import (
    CutMix,
    Mixup,
    PartCombinations,
    Remix,
    SaliencyTable,
    ShapMix,
    STMix,
    estimate_combination_shapley,
    gradcam_part_scores,
)
from ..mixing.stmix import BatchMixer
from ..skeleton.layouts import Layout
from .distributed import DistributedContext

__all__ = ["TrainingMethod", "MixingMethod", "ShapMixMethod", "build_method"]


class TrainingMethod:
    """Plain training (the ``none`` method): no estimation, no mixing."""

    name = "none"

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> None:
        """Called with the model input ``x`` ``(N, C, T, V, M)`` and labels ``y`` ``(N,)``."""

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return ``(x_mixed (N, C, T, V, M), soft_targets (N, K))`` or ``None``."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} has no state, got keys {sorted(state)}")

    def write_artifacts(self, out_dir: Path, train_counts: np.ndarray, groups: tuple[int, int], plots: bool) -> list[Path]:
        """Write the method's own outputs into the run directory at the end of training.

        ``groups`` is ``(many_threshold, few_threshold)``.  Returns the files written.
        """
        return []


class MixingMethod(TrainingMethod):
    """Train on clean and mixed data with a batch mixer (Mixup, CutMix, ST-Mix, Remix)."""

    def __init__(self, name: str, mixer: BatchMixer) -> None:
        self.name = name
        self.mixer = mixer

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mixer(x, y)

    def state_dict(self) -> dict[str, Any]:
        return {"mixer": self.mixer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_state_dict(state["mixer"])


class ShapMixMethod(MixingMethod):
    """Shap-Mix: online Shapley saliency estimation + tail-aware, saliency-guided ST-Mix.

    Every ``interval``-th step (``iter-n``, paper Table 13) each sample draws its own part
    combination and coalition, two masked copies of the batch go through the model in one
    no-grad eval-mode pass, and the per-sample estimates update the :class:`SaliencyTable`
    (batch statistics reduced across processes first, so all ranks keep the same table).
    During the first ``warmup_epochs`` the mixing is random (ST-Mix) and the estimates are the
    naive ``v(S) - v(empty)``.

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
    ) -> None:
        super().__init__("shapmix", mixer)
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
        self.estimator_generator = torch.Generator().manual_seed(seed)
        self.guidance = mixer.guidance
        self.estimator = estimator

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> None:
        if step % self.interval:
            return
        if self.estimator == "gradcam":
            self._update_from_gradcam(model, x, y)
            return
        warming_up = epoch < self.warmup_epochs
        estimate = estimate_combination_shapley(
            model,
            x,
            y,
            self.baseline.to(x.device, x.dtype),
            self.mixer.combinations,
            generator=self.estimator_generator,
            clip=self.clip,
            naive=warming_up,
        )
        self.table.update(y, estimate.combinations, estimate.values, self.context)

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
        return {
            "mixer": self.mixer.state_dict(),
            "table": self.table.state_dict(),
            "baseline": self.baseline.detach().cpu(),
            "estimator_generator": self.estimator_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_state_dict(state["mixer"])
        self.table.load_state_dict(state["table"])
        self.baseline = state["baseline"].to(self.baseline.device)
        self.estimator_generator.set_state(state["estimator_generator"])

    def write_artifacts(self, out_dir: Path, train_counts: np.ndarray, groups: tuple[int, int], plots: bool) -> list[Path]:
        """``saliency_table.json`` / ``.csv`` (values and update counts per class and combination)
        and, with ``plots``, the saliency heatmap and part-coloured skeletons."""
        written = [out_dir / "saliency_table.json", out_dir / "saliency_table.csv"]
        self.table.to_json(written[0])
        self.table.to_csv(written[1])
        if plots:
            from ..viz.saliency import write_training_saliency_figures

            written += write_training_saliency_figures(
                self.table.values.cpu().numpy(),
                None,
                train_counts,
                self.table.class_names,
                self.table.combination_names,
                self.mixer.layout,
                out_dir,
                *groups,
            )
        return written


def build_method(
    config: MethodConfig,
    num_classes: int,
    class_counts: np.ndarray,
    layout: Layout,
    seed: int,
    baseline: torch.Tensor | None = None,
    context: DistributedContext | None = None,
    class_names: Sequence[str] | None = None,
) -> TrainingMethod:
    """The training method a config names.

    ``baseline`` (the mean training sequence in model-input space) is required for ``shapmix``.
    """
    if config.name == "none":
        return TrainingMethod()
    mixer_seed = int(np.random.SeedSequence([seed, 7]).generate_state(1)[0])
    if config.name == "mixup":
        return MixingMethod("mixup", Mixup(num_classes, alpha=config.mixup_alpha, partner=config.partner, seed=mixer_seed))
    if config.name == "cutmix":
        return MixingMethod("cutmix", CutMix(num_classes, alpha=config.mixup_alpha, partner=config.partner, seed=mixer_seed))
    if config.name == "remix":
        remix = Remix(
            num_classes,
            class_counts,
            alpha=config.remix_alpha,
            kappa=config.remix_kappa,
            tau=config.remix_tau,
            partner=config.partner,
            seed=mixer_seed,
        )
        return MixingMethod("remix", remix)
    stmix_options = dict(
        p_mixup=config.p_mixup,
        mixup_alpha=config.mixup_alpha,
        min_parts=config.min_parts,
        max_parts=config.max_parts,
        segment_frames=config.segment_frames,
        window_fraction=config.window_fraction,
        partner=config.partner,
        seed=mixer_seed,
    )
    if config.name == "stmix":
        return MixingMethod("stmix", STMix(layout, num_classes, **stmix_options))
    if config.name == "shapmix":
        if baseline is None:
            raise ValueError("shapmix needs the mean training sequence (baseline)")
        combinations = PartCombinations.from_layout(layout, config.min_parts, config.max_parts)
        table = SaliencyTable.from_combinations(
            num_classes, combinations, momentum=config.momentum, class_names=class_names, device=baseline.device
        )
        # Grad-CAM only changes what feeds the table; the mixer samples from the table either way.
        guidance = "shapley" if config.guidance == "gradcam" else config.guidance
        mixer = ShapMix(layout, class_counts, table=table, tau=config.tau, guidance=guidance, **stmix_options)
        return ShapMixMethod(
            mixer,
            baseline,
            warmup_epochs=config.warmup_epochs,
            interval=config.interval,
            clip=config.clip,
            context=context or DistributedContext(),
            seed=int(np.random.SeedSequence([seed, 8]).generate_state(1)[0]),
            estimator="gradcam" if config.guidance == "gradcam" else "shapley",
        )
    raise ValueError(f"unknown method {config.name!r}")
