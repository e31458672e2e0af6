"""Shap-Mix: ST-Mix with a saliency-guided, tail-aware part policy (Zhang et al., IJCAI 2024, Sec. 3.3).

For a target sample ``i`` and its source (partner) ``j``, with real training-set class counts:

* ``count[y_i] > count[y_j]`` (``i`` head, ``j`` tail): draw ``S ~ P_{y_j}`` and paste the
  source's parts ``S`` into the target, so the tail's salient parts enter the mix;
* otherwise (``i`` is the tail, or equal counts): draw ``S ~ P_{y_i}`` and paste the source's
  COMPLEMENT of ``S``, so the tail's own salient parts are kept.

``P_c = softmax(scores[c] / tau)`` (Eq. 3, :meth:`ShapMix.policy`), where the per-class scores
come from the guidance: ``"shapley"`` (a :class:`~shapmix.mixing.saliency.SaliencyTable`),
``"random"`` (all equal, which is ST-Mix) or any callable mapping classes ``(N,)`` to scores
``(N, S)`` (e.g. Grad-CAM).  ``tau`` is a temperature on the per-joint values the table holds
(:mod:`shapmix.mixing.saliency` states the units; the authors' setting is
:data:`~shapmix.mixing.saliency.AUTHORS_TAU`).  The temporal window, the Mixup branch, ``lam``
and the soft targets are ST-Mix's.  Classes are compared by their counts, never by index (the
authors' code assumes class 0 is the most frequent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from ..skeleton.layouts import Layout
from .parts import DEFAULT_MAX_PARTS, DEFAULT_MIN_PARTS
from .saliency import DEFAULT_TAU, SaliencyTable, sampling_distribution
from .stmix import (
    DEFAULT_DONOR_RESIZE,
    DEFAULT_DRAW,
    DEFAULT_P_MIXUP,
    DEFAULT_SEGMENT_FRAMES,
    DEFAULT_WINDOW_FRACTION,
    DeviceCopies,
    DonorResize,
    DrawMode,
    PartnerMode,
    STMix,
)

__all__ = ["ClassScores", "Guidance", "ShapMix", "draw_categorical"]

ClassScores = Callable[[torch.Tensor], torch.Tensor]
"""Maps classes ``(N,)`` int64 to per-combination scores ``(N, S)`` (higher = more salient); the
classes are on the device the mixer draws on, and scores anywhere are moved there."""

Guidance = Literal["shapley", "random"] | ClassScores


class ShapMix(STMix):
    """ST-Mix whose part combinations follow the tail-aware, saliency-guided policy.

    Args:
        layout: skeleton layout (name or :class:`Layout`).
        class_counts: ``(K,)`` training samples per class (sequence, array or tensor); fixes ``K``.
        table: the saliency table (required for ``guidance="shapley"``), ``K x S``.
        tau: temperature of ``P_c = softmax(scores[c] / tau)``, in the units of the scores
            (per-joint Shapley values for a table).  The default, 0.05
            (:data:`~shapmix.mixing.saliency.DEFAULT_TAU`: how it was chosen and how sharp it
            is), is 2.5 times the authors' :data:`~shapmix.mixing.saliency.AUTHORS_TAU`.
        guidance: ``"shapley"``, ``"random"`` or a :data:`ClassScores` callable.
        p_mixup, mixup_alpha, min_parts, max_parts, segment_frames, window_fraction, draw,
        donor_resize, partner, generator, seed: see :class:`~shapmix.mixing.stmix.STMix`.  With
        ``draw="per_batch"`` the random policy (warm-up, ``guidance="random"``) draws one
        combination for the batch; the guided policy always draws one per sample.
    """

    def __init__(
        self,
        layout: str | Layout,
        class_counts: Sequence[int] | np.ndarray | torch.Tensor,
        table: SaliencyTable | None = None,
        tau: float = DEFAULT_TAU,
        guidance: Guidance = "shapley",
        p_mixup: float = DEFAULT_P_MIXUP,
        mixup_alpha: float | None = None,
        min_parts: int = DEFAULT_MIN_PARTS,
        max_parts: int = DEFAULT_MAX_PARTS,
        segment_frames: int = DEFAULT_SEGMENT_FRAMES,
        window_fraction: tuple[float, float] = DEFAULT_WINDOW_FRACTION,
        draw: DrawMode = DEFAULT_DRAW,
        donor_resize: DonorResize = DEFAULT_DONOR_RESIZE,
        partner: PartnerMode = "shift",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        counts = torch.as_tensor(class_counts).to("cpu", torch.int64)
        if counts.ndim != 1 or len(counts) < 1:
            raise ValueError(f"class_counts must be a non-empty (K,) vector, got shape {tuple(counts.shape)}")
        num_classes = len(counts)
        super().__init__(
            layout,
            num_classes,
            p_mixup=p_mixup,
            mixup_alpha=mixup_alpha,
            min_parts=min_parts,
            max_parts=max_parts,
            segment_frames=segment_frames,
            window_fraction=window_fraction,
            draw=draw,
            donor_resize=donor_resize,
            partner=partner,
            generator=generator,
            seed=seed,
        )
        if not self.combinations.has_all_complements:
            raise ValueError(
                f"Shap-Mix pastes complements, but with {self.combinations.num_parts} parts and "
                f"{min_parts}..{max_parts} parts per combination some complements are not combinations"
            )
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if table is not None and (table.num_classes, table.num_combinations) != (num_classes, len(self.combinations)):
            raise ValueError(
                f"saliency table is {table.num_classes} x {table.num_combinations}, "
                f"expected {num_classes} x {len(self.combinations)}"
            )
        self.class_counts = counts
        self._class_counts = DeviceCopies(counts)
        self.table = table
        self.tau = float(tau)
        self.guidance = guidance
        self._check_guidance()

    def _check_guidance(self) -> None:
        if callable(self.guidance):
            return
        if self.guidance not in ("shapley", "random"):
            raise ValueError(f"unknown guidance {self.guidance!r}; use 'shapley', 'random' or a callable")
        if self.guidance == "shapley" and self.table is None:
            raise ValueError("guidance 'shapley' needs a SaliencyTable")

    def class_scores(self, classes: torch.Tensor) -> torch.Tensor:
        """Per-combination scores of each class: ``(N,)`` int64 -> ``(N, S)`` float32 on
        ``classes``' device (the table is read where it lives, never copied to the host)."""
        self._check_guidance()
        if callable(self.guidance):
            scores = self.guidance(classes)
        elif self.guidance == "shapley":
            scores = self.table.values[classes.to(self.table.device)]
        else:
            scores = torch.zeros(classes.shape[0], len(self.combinations), device=classes.device)
        scores = scores.detach().to(classes.device, torch.float32)
        if scores.shape != (classes.shape[0], len(self.combinations)):
            raise ValueError(f"guidance returned scores of shape {tuple(scores.shape)}, expected "
                             f"({classes.shape[0]}, {len(self.combinations)})")
        return scores

    def policy(self, classes: torch.Tensor) -> torch.Tensor:
        """``P_c = softmax(scores[c] / tau)`` of each class: ``(N,)`` int64 -> ``(N, S)`` float64,
        on ``classes``' device."""
        return sampling_distribution(self.class_scores(classes), self.tau)

    def choose_combinations(self, y: torch.Tensor, partner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tail-aware policy (module docstring).

        Args:
            y: ``(N,)`` int64 labels, on the device the mixer draws on (its generator's).
            partner: ``(N,)`` int64 source index of each target, on the same device.

        Returns:
            ``(sampled, pasted)`` ``(N,)`` int64 on that device: the salient combination drawn
            from the tail class's distribution, and the pasted one (``sampled`` when the target
            is the head, its complement otherwise).
        """
        if self.guidance == "random" and self.draw == "per_batch":
            return super().choose_combinations(y, partner)
        device = y.device
        counts = self._class_counts.on(device)
        source_label = y[partner]
        target_is_head = counts[y] > counts[source_label]
        tail_class = torch.where(target_is_head, source_label, y)
        sampled = draw_categorical(self.policy(tail_class), self.stream.on(device))
        pasted = torch.where(target_is_head, sampled, self.combinations.to(device).complement[sampled])
        return sampled, pasted


def draw_categorical(probabilities: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row, drawn with the row's probabilities: ``(N, S)`` -> ``(N,)`` int64.

    ``argmax_s p_s / E_s`` with ``E_s ~ Exp(1)`` is ``s`` with probability ``p_s`` (the
    exponential race).  It is what ``torch.multinomial(p, 1)`` computes, from the same draws, so
    on a CPU both give the same index and leave the generator in the same state; unlike
    ``multinomial`` it does not read the probabilities back to the host to validate them, so it
    never makes a GPU step wait.  The draws happen on the generator's device; the result is on
    ``probabilities``' device.
    """
    race = torch.empty(probabilities.shape, dtype=probabilities.dtype, device=generator.device)
    race.exponential_(1, generator=generator)
    return (probabilities / race.to(probabilities.device)).argmax(dim=1)
