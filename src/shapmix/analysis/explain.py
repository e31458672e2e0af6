"""Explain one prediction: exact Shapley values of the body parts for the predicted class.

The game is Shap-Mix's (:mod:`shapmix.mixing.shapley`): the players are the layout's ``P = 5``
body parts, and the worth of a coalition ``S`` is the model's probability of the *predicted*
class when only the parts in ``S`` are kept and every other joint is replaced, in all frames, by
a baseline sequence in the model's input space.  All ``2**P = 32`` coalitions are evaluated
(:func:`~shapmix.mixing.coalition_values`, batched over samples and coalitions), so the values
are exact:

* the Shapley value of every part (they sum to ``v(all parts) - v(no part)``);
* the Shapley value of every non-empty part combination treated as one merged player (Eq. 2 of
  the paper; a single part's is its Shapley value), also divided by its number of joints, the
  per-joint scale of the training-time saliency table;
* the 32 worths themselves.

With ``eval.num_clips = K > 1`` each clip is masked alike and a coalition's worth is the
clip-averaged probability, the same average the prediction uses.

The baseline is, in order of preference, the checkpoint's Shap-Mix baseline (the mean training
sequence the run estimated saliency with), the mean training sequence of the run's dataset, or
zeros when that dataset cannot be opened; the JSON records which.

:class:`Explainer` is the ``on_batch`` hook of :func:`~shapmix.engine.predict.predict` that
``shapmix predict --explain DIR`` uses: for every input it writes ``NAME.json`` and the pictures
of :mod:`shapmix.viz.explain` (``NAME_frames.png``, ``NAME.gif``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.format import DatasetFormatError
from ..engine.builders import build_pipelines, mean_input_sequence, open_run_data
from ..engine.checkpoint import load_checkpoint
from ..distributed import DistributedContext
from ..engine.predict import PredictedBatch, Predictor
from ..viz.explain import animate_explanation, plot_explanation_frames
from ..mixing import PartCombinations, coalition_values, combination_shapley_values, shapley_values
from ..mixing.shapley import DEFAULT_CHUNK_SIZE

__all__ = ["Explanation", "Explainer", "explain_batch", "explanation_baseline"]

logger = logging.getLogger("shapmix.analysis.explain")

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Explanation:
    """The exact Shapley explanation of one sample's predicted class.

    Attributes:
        name: sample name.
        source: its file.
        predicted: class index; ``class_name`` its name; ``probability`` the model's probability.
        part_values: ``(P,)`` float64 Shapley value of each part.
        combination_values: ``(S,)`` float64 value of each combination of
            ``combinations`` (all non-empty ones) as one merged player.
        worths: ``(2**P,)`` float64 probability of the predicted class per coalition (bitmask).
        combinations: the combinations valued.
    """

    name: str
    source: str
    predicted: int
    class_name: str
    probability: float
    part_values: np.ndarray
    combination_values: np.ndarray
    worths: np.ndarray
    combinations: PartCombinations

    @property
    def most_salient_part(self) -> str:
        return self.combinations.layout.part_names[int(np.argmax(self.part_values))]

    def as_json(self, num_clips: int, baseline: str) -> dict[str, Any]:
        layout = self.combinations.layout
        parts = layout.part_names
        joint_counts = self.combinations.joint_counts.tolist()
        return {
            "name": self.name,
            "file": self.source,
            "predicted": {"index": self.predicted, "class": self.class_name, "probability": self.probability},
            "layout": layout.name,
            "num_clips": num_clips,
            "baseline": baseline,
            "game": "v(S) = probability of the predicted class with only the parts in S kept, the "
            "other joints replaced by the baseline in every frame",
            "parts": [
                {"part": part, "joints": list(layout.parts[part]), "shapley": float(value)}
                for part, value in zip(parts, self.part_values)
            ],
            "most_salient_part": self.most_salient_part,
            "combinations": [
                {
                    "parts": [parts[p] for p in combo],
                    "shapley": float(value),
                    "shapley_per_joint": float(value) / joints,
                }
                for combo, value, joints in zip(self.combinations.combinations, self.combination_values, joint_counts)
            ],
            "coalitions": [
                {"parts": [parts[p] for p in range(len(parts)) if mask >> p & 1], "probability": float(worth)}
                for mask, worth in enumerate(self.worths)
            ],
        }


def explanation_baseline(predictor: Predictor, checkpoint: str | os.PathLike) -> tuple[torch.Tensor, str]:
    """``((C, window, V, M) baseline on the predictor's device, description)``: the checkpoint's
    Shap-Mix baseline, else its run's mean training sequence, else zeros (see the module)."""
    method_state = load_checkpoint(checkpoint).get("method", {})
    if "baseline" in method_state:
        return method_state["baseline"].to(predictor.device), "the run's Shap-Mix baseline (mean training sequence)"
    try:
        run_data = open_run_data(predictor.config)
    except (OSError, DatasetFormatError) as error:
        logger.warning("explaining against a zero baseline: the run's dataset cannot be opened (%s)", error)
        shape = (len(predictor.spec.channels), predictor.config.data.window, predictor.spec.layout.num_joints, predictor.spec.num_persons)
        return torch.zeros(shape, device=predictor.device), f"zeros (the run's dataset cannot be opened: {error})"
    _, central = build_pipelines(predictor.config, run_data.dataset)
    baseline = mean_input_sequence(
        run_data.train, central, predictor.config.train.eval_batch_size, predictor.device, DistributedContext()
    )
    return baseline, f"the mean training sequence of {run_data.dataset.root}"


def explain_batch(
    predictor: Predictor, batch: PredictedBatch, baseline: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> list[Explanation]:
    """Exact part and combination Shapley values of every sample's predicted class.

    ``32 * N * num_clips`` masked inputs are scored, ``chunk_size`` per forward pass.
    """
    layout = predictor.spec.layout
    combinations = PartCombinations.from_layout(layout, 1, layout.num_parts)
    clips = predictor.prepare(batch.x, batch.lengths)
    predicted = batch.scores.argmax(dim=1)
    per_clip = predicted.repeat_interleave(predictor.num_clips).to(predictor.device)
    worths = coalition_values(predictor.model, clips, per_clip, baseline, layout, chunk_size)
    worths = worths.reshape(len(predicted), predictor.num_clips, -1).mean(dim=1).cpu().to(torch.float64)
    parts = shapley_values(worths).numpy()
    merged = combination_shapley_values(worths, combinations).numpy()
    probabilities = torch.softmax(batch.scores, dim=1)
    return [
        Explanation(
            name=sample.name,
            source=str(sample.source),
            predicted=int(cls),
            class_name=predictor.class_names[int(cls)],
            probability=float(probabilities[row, cls]),
            part_values=parts[row],
            combination_values=merged[row],
            worths=worths[row].numpy(),
            combinations=combinations,
        )
        for row, (sample, cls) in enumerate(zip(batch.samples, predicted.tolist()))
    ]


class Explainer:
    """``on_batch`` hook of :func:`~shapmix.engine.predict.predict` writing, per input,
    ``NAME.json`` and (``pictures``) ``NAME_frames.png`` and ``NAME.gif`` into ``out_dir``.

    Args:
        checkpoint: the predicting checkpoint (its baseline, see :func:`explanation_baseline`).
        out_dir: created if needed.
        pictures: also draw the key frames and the animation.
    """

    def __init__(self, checkpoint: str | os.PathLike, out_dir: str | os.PathLike, pictures: bool = True) -> None:
        self.checkpoint = checkpoint
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.pictures = pictures
        self.baseline: torch.Tensor | None = None
        self.baseline_description = ""
        self.written: list[Path] = []
        self._used: set[str] = set()

    def _stem(self, name: str) -> str:
        """A file-name-safe, unique stem for a sample name."""
        stem = _UNSAFE_NAME.sub("_", name) or "sample"
        unique, copy = stem, 1
        while unique in self._used:
            copy += 1
            unique = f"{stem}_{copy}"
        self._used.add(unique)
        return unique

    def __call__(self, predictor: Predictor, batch: PredictedBatch) -> None:
        if self.baseline is None:  # the predictor's device and config are known from the first batch
            self.baseline, self.baseline_description = explanation_baseline(predictor, self.checkpoint)
        explanations = explain_batch(predictor, batch, self.baseline)
        layout, channels = predictor.spec.layout, predictor.spec.channels
        for row, explanation in enumerate(explanations):
            stem = self._stem(explanation.name)
            path = self.out_dir / f"{stem}.json"
            document = explanation.as_json(predictor.num_clips, self.baseline_description)
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            self.written.append(path)
            if not self.pictures:
                continue
            length = int(batch.lengths[row])
            sequence = batch.x[row, :, :length].numpy()
            title = f"{explanation.name}: {explanation.class_name} (p = {explanation.probability:.2f})"
            self.written.append(
                plot_explanation_frames(
                    sequence, layout, channels, explanation.part_values, self.out_dir / f"{stem}_frames.png", title
                )
            )
            self.written.append(
                animate_explanation(sequence, layout, channels, explanation.part_values, self.out_dir / f"{stem}.gif", title)
            )
