"""What the contrastive methods (PaCo, BCL) share: the extra augmented views of a batch, the
projection MLP, and the backbone interface they read.

**Views.**  Both methods compare several augmentations ("views") of every sample.  The trainer
hands a method one view, ``x``: the raw batch through the training pipeline (centre, random
crop-resize, random rotation, modality); the raw batch itself is not passed on, so a further
view is made from ``x``: ``x`` turned by a fresh random rotation drawn like the pipeline's own
(:class:`~shapmix.data.transforms.RandomRotation`, angles ``U(-theta, theta)`` about x, y and z).
A rotation is a per-frame linear map of the coordinates applied to every joint alike, so it
commutes with bone vectors (differences of joints) and with motion (differences of frames):
rotating ``x`` is rotating the raw sample, for every modality.  The new view differs from ``x``
by one pipeline rotation; an independent draw of the whole pipeline (what the image methods do
with their two crops) would also re-crop the sequence in time, which cannot be redone on an
already cropped and resized ``x``.

When the training pipeline does not rotate (``data.rotation=0``, or data without exactly the x,
y, z channels) the extra views are copies of ``x``: the methods still contrast different samples
of a class (and PaCo its queue, both methods the class centres), no longer two views of one.

The rotations come from the ``views`` stream of :mod:`shapmix.seeds`, derived from ``(seed,
epoch, rank)`` at the first draw of every epoch (ranks draw differently, and a run resumed at an
epoch boundary, where every rank loads rank 0's method state, draws as an uninterrupted one), on
the batch's device; the position within the epoch is checkpointed for a resume in the middle of
an epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.transforms import Compose, RandomRotation
from ..seeds import VIEWS, DeviceGenerator

__all__ = ["RotatedViews", "check_backbone", "classifier_weight", "pipeline_rotation", "projection_mlp"]

BACKBONE_INTERFACE = ("forward_features", "pool", "head", "out_channels", "classifier_name")
"""What the contrastive methods use of a backbone (:class:`~shapmix.models.common.PooledGCN`)."""


def check_backbone(backbone: nn.Module, method: str) -> int:
    """Raise unless ``backbone`` has the pooled-GCN interface; return its pooled width ``C_out``."""
    missing = [name for name in BACKBONE_INTERFACE if not hasattr(backbone, name)]
    if missing:
        raise TypeError(
            f"{method} needs a backbone with {', '.join(BACKBONE_INTERFACE)} (a PooledGCN, as every "
            f"backbone here); {type(backbone).__name__} lacks {missing}"
        )
    if not isinstance(backbone.out_channels, int):
        raise TypeError(f"{method} needs the pooled feature width as {type(backbone).__name__}.out_channels (an int)")
    return backbone.out_channels


def classifier_weight(backbone: nn.Module) -> torch.Tensor:
    """The backbone classifier's ``(K, C)`` weight, one row per class (linear or cosine)."""
    return getattr(backbone, backbone.classifier_name).weight


def projection_mlp(in_features: int, out_features: int) -> nn.Sequential:
    """The two-layer projection head of MoCo v2, PaCo and BCL: ``Linear(C, C)``, batch norm,
    ReLU, ``Linear(C, out_features)``; ``(N, C)`` -> ``(N, out_features)``."""
    return nn.Sequential(
        nn.Linear(in_features, in_features),
        nn.BatchNorm1d(in_features),
        nn.ReLU(inplace=True),
        nn.Linear(in_features, out_features),
    )


def pipeline_rotation(pipeline: Compose) -> RandomRotation | None:
    """The training pipeline's random rotation, or ``None`` when it does not rotate."""
    rotations = [step for step in pipeline.transforms if isinstance(step, RandomRotation)]
    if len(rotations) > 1:
        raise ValueError(f"the training pipeline rotates {len(rotations)} times; expected at most once: {pipeline}")
    return rotations[0] if rotations and rotations[0].theta > 0 else None


class RotatedViews:
    """Draws further views of an augmented batch (module docstring).

    Args:
        rotation: the training pipeline's rotation (:func:`pipeline_rotation`), or ``None``:
            the views are then copies of the batch.
        seed: the run seed (``train.seed``).
        rank: this process's rank.
        name: the owner, for the stream's warnings (e.g. ``"PaCo's key view"``).
    """

    def __init__(self, rotation: RandomRotation | None, seed: int, rank: int, name: str) -> None:
        self.rotation = rotation
        self.seed = seed
        self.rank = rank
        self.name = name
        self._epoch: int | None = None
        self._stream: DeviceGenerator | None = None

    def _epoch_stream(self, epoch: int) -> DeviceGenerator:
        if self._stream is None or epoch != self._epoch:
            seed = VIEWS.derive(self.seed, epoch, self.rank)
            self._stream = DeviceGenerator(seed=seed, name=f"{self.name} (epoch {epoch + 1})")
            self._epoch = epoch
        return self._stream

    def draw(self, x: torch.Tensor, count: int, epoch: int) -> list[torch.Tensor]:
        """``count`` new views of ``x`` ``(N, C, T, V, M)``, each ``(N, C, T, V, M)`` on ``x``'s
        device, drawn in epoch ``epoch`` (0-based)."""
        if self.rotation is None:
            return [x.clone() for _ in range(count)]
        generator = self._epoch_stream(epoch).on(x.device)
        unused_lengths = x.new_empty(0, dtype=torch.long)  # a rotation ignores the frame counts
        return [self.rotation(x, unused_lengths, generator)[0] for _ in range(count)]

    def state_dict(self) -> dict[str, Any]:
        """The epoch of the current stream and its position (empty before the first draw)."""
        if self._stream is None:
            return {}
        return {"epoch": self._epoch, "generator": self._stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch, self._stream = None, None
        if state:
            self._epoch_stream(int(state["epoch"])).load_state_dict(state["generator"])
