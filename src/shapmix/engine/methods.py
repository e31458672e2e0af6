"""Training methods: the hooks through which a method changes a training step.

The trainer knows nothing about a specific method.  Each step it calls

* ``method.before_step(model, x, y, epoch, step)`` (e.g. saliency estimation, no gradients), then
* ``method.training_loss(network, x, y, criterion, epoch)``, which returns the step's loss and
  the logits its training accuracy is counted on.

The default ``training_loss`` asks ``method.mix(x, y, epoch)`` for ``(x_mixed, soft_targets)``
or ``None``.  When a mixed batch is returned it runs one forward pass of ``cat([x, x_mixed])``
and adds the clean loss and the soft-target loss of the mixed half (the joint clean + mixed
training of Shap-Mix, Section 3.4); otherwise it trains on ``x``.  A method with its own loss
(GLMC) overrides ``training_loss``; one with its own trainable modules exposes them as
``heads``, which the trainer trains, wraps for DDP together with the model
(:class:`TrainingNetwork`) and checkpoints through the method's ``state_dict``.  A method's
``state_dict`` is saved in every checkpoint and restored on resume.

A backbone may bring its own training objective (InfoGCN's information bottleneck), which the
default ``training_loss`` applies to whatever the method mixes, with no method or trainer
knowing the backbone:

* ``label_smoothing`` (float attribute): the targets of the classification loss, hard or soft,
  become ``(1 - s) t + s / K`` (:func:`~shapmix.losses.smooth_targets`);
* ``auxiliary_loss(latent, targets)``: added to the loss; the step's forward pass is then
  ``network(inputs, return_latent=True)``, returning ``(logits, latent)``, and ``targets`` are
  the ``(B,)`` labels or, with a mixed batch, the ``(B, K)`` unsmoothed distributions of all
  ``B`` rows (clean rows one-hot).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import default_collate

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
    class_balanced_subset,
    exact_combination_rows,
    gradcam_part_scores,
    least_estimated_classes,
    least_estimated_combinations,
)
from ..losses import smooth_targets, target_distribution
from ..data.dataset import SkeletonSplit
from ..data.transforms import Compose
from ..mixing.glmc import (
    GLMCHeads,
    cumulative_weight,
    global_local_mix,
    label_weights,
    mixture_consistency,
    resampling_weights,
    weighted_soft_cross_entropy,
)
from ..mixing.stmix import BatchMixer, DeviceCopies
from ..seeds import ESTIMATOR, GLMC, GLMC_EPOCH, MIXER, DeviceGenerator
from ..skeleton.layouts import Layout
from ..viz.saliency import write_training_saliency_figures
from .distributed import DistributedContext

__all__ = [
    "BASELINE_METHODS",
    "METHOD_BUILDERS",
    "GLMCMethod",
    "MethodInputs",
    "MixingMethod",
    "ShapMixMethod",
    "TrainingMethod",
    "TrainingNetwork",
    "build_method",
]


class TrainingNetwork(nn.Module):
    """The backbone and a method's trainable ``heads`` as one module, so that one optimiser and
    one DDP wrapper cover both.  ``forward(x)`` is the backbone's logits; ``forward(x,
    with_heads=True)`` returns ``heads(backbone, x)``.  The trainer uses it only for methods with
    heads; the others train the bare backbone as before."""

    def __init__(self, backbone: nn.Module, heads: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def forward(self, x: torch.Tensor, with_heads: bool = False) -> Any:
        if with_heads:
            return self.heads(self.backbone, x)
        return self.backbone(x)


class TrainingMethod:
    """Plain training (the ``none`` method): no estimation, no mixing."""

    name = "none"
    heads: nn.Module | None = None
    """The method's own trainable modules, or ``None`` (see :class:`TrainingNetwork`)."""

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> None:
        """Called with the model input ``x`` ``(N, C, T, V, M)`` and labels ``y`` ``(N,)``."""

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return ``(x_mixed (N, C, T, V, M), soft_targets (N, K))`` or ``None``."""
        return None

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's loss and the ``(N, K)`` logits its training accuracy is counted on.

        ``network`` maps ``(N, C, T, V, M)`` to logits (the model, DDP-wrapped under DDP); ``x``
        is the augmented batch, ``y`` its ``(N,)`` labels.  Clean loss, plus the soft-target
        loss of the mixed batch when :meth:`mix` returns one (one forward pass of both).  A
        backbone's own objective (module docstring) smooths the targets of both losses and adds
        its auxiliary loss over the whole forward pass (clean and mixed rows).
        """
        mixed = self.mix(x, y, epoch)
        inputs, targets = (x, [y]) if mixed is None else (torch.cat([x, mixed[0]]), [y, mixed[1]])
        backbone = network.module if isinstance(network, DistributedDataParallel) else network
        auxiliary_loss = getattr(backbone, "auxiliary_loss", None)
        smoothing = getattr(backbone, "label_smoothing", 0.0)
        if auxiliary_loss is None:
            all_logits = network(inputs)
        else:
            all_logits, latent = network(inputs, return_latent=True)
        parts = all_logits.split(len(x))  # clean rows, then mixed rows
        loss = None
        for part, target in zip(parts, targets):
            part_loss = criterion(part, smooth_targets(target, part, smoothing) if smoothing else target)
            loss = part_loss if loss is None else loss + part_loss
        if auxiliary_loss is not None:
            all_targets = y if mixed is None else torch.cat([target_distribution(y, parts[0]), mixed[1]])
            loss = loss + auxiliary_loss(latent, all_targets)
        return loss, parts[0]

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


class GLMCMethod(TrainingMethod):
    """GLMC (Du et al., CVPR 2023): global and local mixture consistency with cumulative
    head-tail re-weighting; the losses, heads and mixing are in :mod:`shapmix.mixing.glmc`.

    The re-sampled batch: every step draws as many samples as the ordinary batch from the
    training split, with replacement and weights ``n_c^-q`` (as the reference code's weighted
    sampler), reads them and augments them with the training pipeline.  The index draws come
    from a CPU generator (the samples are read on the host), the augmentation and mixing draws
    from a generator on the batch's device; both are derived from ``(seed, epoch, rank)`` at the
    first step of every epoch, so a resumed run repeats them exactly and DDP ranks draw
    different batches.  On a CPU the two are one generator.  The reference augments every image twice and mixes the two views; a
    skeleton batch here is augmented once, and the global and local mixes of the same pair
    still differ.  GLMC defines its own losses (soft cross entropy on both classifiers), so
    the configured ``criterion`` is not used (the config requires ``loss.name=ce``).  The
    training accuracy is counted on the re-balanced logits of the global mix against the
    ordinary batch's labels (there is no clean forward pass).

    Args:
        heads: the projector, predictor and conventional classifier.
        split: the training split the re-sampled batch is read from.
        pipeline: the training input pipeline.
        class_counts: ``(K,)`` training samples per class.
        total_epochs: ``E`` of the cumulative schedule.
        alpha: Beta parameter of the mixing ratio.
        resample_power: ``q`` of the sampling weights ``n_c^-q`` (1 = class-balanced).
        label_power: ``p`` of the label weights ``n_c^-p``.
        consistency_weight: weight of the mixture consistency loss.
        seed, rank: where the per-epoch generator comes from.
    """

    name = "glmc"

    def __init__(
        self,
        heads: GLMCHeads,
        split: SkeletonSplit,
        pipeline: Compose,
        class_counts: np.ndarray,
        total_epochs: int,
        alpha: float,
        resample_power: float,
        label_power: float,
        consistency_weight: float,
        seed: int,
        rank: int = 0,
    ) -> None:
        self.heads = heads
        self.split = split
        self.pipeline = pipeline
        self.total_epochs = total_epochs
        self.alpha = alpha
        self.consistency_weight = consistency_weight
        self.sample_weights = resampling_weights(split.labels, class_counts, resample_power)
        self.label_weights = label_weights(class_counts, label_power)
        self.seed = seed
        self.rank = rank
        self._epoch: int | None = None
        self._generator = torch.Generator()
        self._device_generator: torch.Generator | None = None
        self._device_epoch: int | None = None
        self._saved_device_state: dict[str, Any] | None = None

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """The CPU generator of this rank's index draws, re-seeded from ``(seed, epoch, rank)``
        when a new epoch starts."""
        if epoch != self._epoch:
            self._generator.manual_seed(GLMC_EPOCH.derive(self.seed, epoch, self.rank))
            self._epoch = epoch
        return self._generator

    def draw_generator(self, epoch: int, device: torch.device) -> torch.Generator:
        """The generator of this rank's augmentation and mixing draws on ``device``: on a CPU
        :meth:`epoch_generator` itself, elsewhere a generator there seeded alike."""
        if device.type == "cpu":
            return self.epoch_generator(epoch)
        generator = self._device_generator
        if generator is None or epoch != self._device_epoch or generator.device != device:
            generator = torch.Generator(device=device).manual_seed(GLMC_EPOCH.derive(self.seed, epoch, self.rank))
            saved = self._saved_device_state
            if saved is not None and saved["epoch"] == epoch and saved["device"] == device.type:
                generator.set_state(saved["state"])  # resumed in the middle of this epoch
            self._device_generator, self._device_epoch = generator, epoch
        self._saved_device_state = None
        return generator

    def resampled_batch(
        self, size: int, device: torch.device, generator: torch.Generator, draws: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` samples drawn with weights ``n_c^-q`` from the CPU ``generator``, read on the
        host and augmented with ``draws`` (default: ``generator``): ``(x (size, C, T, V, M), y
        (size,))`` on ``device``."""
        picked = torch.multinomial(self.sample_weights, size, replacement=True, generator=generator)
        batch = default_collate([self.split[i] for i in picked.tolist()])
        augment = generator if draws is None else draws
        x, _ = self.pipeline(batch.x.to(device), batch.length.to(device), augment)
        return x, batch.label.to(device)

    def training_loss(
        self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self.epoch_generator(epoch)
        draws = self.draw_generator(epoch, x.device)
        n = len(y)
        resampled, resampled_y = self.resampled_batch(n, x.device, generator, draws)
        mix = global_local_mix(x, resampled, self.alpha, draws)
        rebalanced, conventional, projection, prediction = network(
            torch.cat([mix.global_x, mix.local_x]), with_heads=True
        )
        num_classes = rebalanced.shape[1]
        own = torch.cat([mix.global_own, mix.local_own]).to(device=x.device, dtype=rebalanced.dtype)[:, None]
        own_onehot = F.one_hot(torch.cat([y, y]), num_classes).to(rebalanced.dtype)
        other_onehot = F.one_hot(torch.cat([resampled_y, resampled_y]), num_classes).to(rebalanced.dtype)
        targets = own * own_onehot + (1 - own) * other_onehot
        # re-weighting each one-hot part by its class weight is scaling every column by it
        weighted = targets * self.label_weights.to(device=x.device, dtype=rebalanced.dtype)
        halves = (slice(0, n), slice(n, 2 * n))  # global mix, local mix
        conventional_loss = sum(weighted_soft_cross_entropy(conventional[h], targets[h]) for h in halves)
        rebalanced_loss = sum(weighted_soft_cross_entropy(rebalanced[h], weighted[h]) for h in halves)
        consistency = mixture_consistency(prediction[:n], projection[n:]) + mixture_consistency(
            prediction[n:], projection[:n]
        )
        cumulative = cumulative_weight(epoch, self.total_epochs)
        loss = cumulative * conventional_loss + (1 - cumulative) * rebalanced_loss + self.consistency_weight * consistency
        return loss, rebalanced[:n]

    def state_dict(self) -> dict[str, Any]:
        """The heads and, so that a run resumes in the middle of an epoch, the position of the
        epoch's generators."""
        state: dict[str, Any] = {"heads": self.heads.state_dict()}
        if self._epoch is not None:
            state["epoch"] = self._epoch
            state["generator"] = self._generator.get_state()
        if self._device_generator is not None:
            state["device_generator"] = {
                "epoch": self._device_epoch,
                "state": self._device_generator.get_state(),
                "device": self._device_generator.device.type,
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.heads.load_state_dict(state["heads"])
        if "epoch" in state:
            self._epoch = int(state["epoch"])
            self._generator.set_state(state["generator"])
        # restored on the device at the next draw there (the checkpoint is read on the CPU)
        self._device_generator = None
        self._saved_device_state = state.get("device_generator")


@dataclass(frozen=True)
class MethodInputs:
    """What a method builder may need besides the method's config section (see
    :func:`build_method` for which method needs what)."""

    config: MethodConfig
    num_classes: int
    class_counts: np.ndarray
    layout: Layout
    seed: int
    baseline: torch.Tensor | None
    context: DistributedContext
    class_names: Sequence[str] | None
    model: nn.Module | None
    train_split: SkeletonSplit | None
    train_pipeline: Compose | None
    total_epochs: int | None

    @property
    def mixer_seed(self) -> int:
        """The seed of the batch mixer's generator (the ``mixer`` stream of the run seed)."""
        return MIXER.derive(self.seed)

    def stmix_options(self) -> dict[str, Any]:
        """The keyword arguments :class:`STMix` and :class:`ShapMix` share."""
        config = self.config
        return dict(
            p_mixup=config.p_mixup,
            mixup_alpha=config.mixup_alpha,
            min_parts=config.min_parts,
            max_parts=config.max_parts,
            segment_frames=config.segment_frames,
            window_fraction=config.window_fraction,
            draw=config.draw,
            donor_resize=config.donor_resize,
            partner=config.partner,
            seed=self.mixer_seed,
        )


MethodBuilder = Callable[[MethodInputs], TrainingMethod]


def _build_plain(inputs: MethodInputs) -> TrainingMethod:
    return TrainingMethod()


def _build_mixup(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    mixer = Mixup(inputs.num_classes, alpha=config.mixup_alpha, partner=config.partner, seed=inputs.mixer_seed)
    return MixingMethod("mixup", mixer)


def _build_cutmix(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    mixer = CutMix(inputs.num_classes, alpha=config.mixup_alpha, partner=config.partner, seed=inputs.mixer_seed)
    return MixingMethod("cutmix", mixer)


def _build_remix(inputs: MethodInputs) -> TrainingMethod:
    config = inputs.config
    remix = Remix(
        inputs.num_classes,
        inputs.class_counts,
        alpha=config.remix_alpha,
        kappa=config.remix_kappa,
        tau=config.remix_tau,
        partner=config.partner,
        seed=inputs.mixer_seed,
    )
    return MixingMethod("remix", remix)


def _build_stmix(inputs: MethodInputs) -> TrainingMethod:
    return MixingMethod("stmix", STMix(inputs.layout, inputs.num_classes, **inputs.stmix_options()))


def _build_shapmix(inputs: MethodInputs) -> TrainingMethod:
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


def _build_glmc(inputs: MethodInputs) -> TrainingMethod:
    config, model = inputs.config, inputs.model
    if model is None or inputs.train_split is None or inputs.train_pipeline is None or inputs.total_epochs is None:
        raise ValueError("glmc needs the model, the training split, its pipeline and the number of epochs")
    GLMCHeads.check_backbone(model)
    feature_dim = getattr(model, "out_channels", None)
    if not isinstance(feature_dim, int):
        raise TypeError(f"glmc needs the backbone's pooled feature width as {type(model).__name__}.out_channels")
    parameter = next(model.parameters())
    heads = GLMCHeads(feature_dim, inputs.num_classes, config.glmc_projection_dim).to(parameter.device)
    return GLMCMethod(
        heads,
        inputs.train_split,
        inputs.train_pipeline,
        inputs.class_counts,
        inputs.total_epochs,
        alpha=config.glmc_alpha,
        resample_power=config.glmc_resample_power,
        label_power=config.glmc_label_power,
        consistency_weight=config.glmc_consistency_weight,
        seed=GLMC.derive(inputs.seed),
        rank=inputs.context.rank,
    )


METHOD_BUILDERS: dict[str, MethodBuilder] = {
    "none": _build_plain,
    "mixup": _build_mixup,
    "cutmix": _build_cutmix,
    "stmix": _build_stmix,
    "shapmix": _build_shapmix,
    "remix": _build_remix,
    "glmc": _build_glmc,
}
"""``method.name`` -> the function that builds that training method."""
BASELINE_METHODS = frozenset({"shapmix"})
"""Methods whose builder needs the mean training sequence (:func:`build_method`'s ``baseline``)."""


def build_method(
    config: MethodConfig,
    num_classes: int,
    class_counts: np.ndarray,
    layout: Layout,
    seed: int,
    baseline: torch.Tensor | None = None,
    context: DistributedContext | None = None,
    class_names: Sequence[str] | None = None,
    model: nn.Module | None = None,
    train_split: SkeletonSplit | None = None,
    train_pipeline: Compose | None = None,
    total_epochs: int | None = None,
) -> TrainingMethod:
    """The training method a config names (:data:`METHOD_BUILDERS`).

    ``seed`` is the run seed (the method's generators are derived from it, :mod:`shapmix.seeds`).
    ``baseline`` (the mean training sequence in model-input space) is required for ``shapmix``;
    ``model`` (to size the heads), ``train_split``, ``train_pipeline`` and ``total_epochs`` for
    ``glmc``.
    """
    builder = METHOD_BUILDERS.get(config.name)
    if builder is None:
        raise ValueError(f"unknown method {config.name!r}; known: {sorted(METHOD_BUILDERS)}")
    inputs = MethodInputs(
        config=config,
        num_classes=num_classes,
        class_counts=class_counts,
        layout=layout,
        seed=seed,
        baseline=baseline,
        context=context or DistributedContext(),
        class_names=class_names,
        model=model,
        train_split=train_split,
        train_pipeline=train_pipeline,
        total_epochs=total_epochs,
    )
    return builder(inputs)
