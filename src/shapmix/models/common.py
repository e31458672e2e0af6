"""What the GCN backbones here share: the block plan, the classifier and the person-pooled head.

Every backbone maps ``(N, C, T, V, M)`` skeleton batches to ``(N, K)`` logits in two halves
that the training methods use separately:

* ``embed(x)`` -> the input of the first block ``(N*M, C_0, T, V)`` (the backbone's stem: input
  normalisation, and InfoGCN's joint embedding), then the blocks in order (:attr:`PooledGCN.blocks`)
  -- methods that need intermediate features (multi-level heads, experts sharing the early
  blocks) run the two themselves;
* ``forward_features(x)`` -> the last block's output ``(N*M, C_out, T', V)``, persons of a sample
  contiguous (index ``n*M + m``): Grad-CAM guidance differentiates the head on it;
* ``pool(features, M)`` -> ``(N, C_out)``, the mean over time, joints and persons, and
  ``head(features, M)`` -> logits, i.e. ``fc(dropout(pool(...)))``: GLMC adds its own heads on
  the pooled features, whose width is ``out_channels``.

:class:`PooledGCN` implements all but the stem once; a backbone subclasses it, sets the attributes
listed there and defines ``embed``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from shapmix.skeleton.layouts import Layout, get_layout

__all__ = [
    "ClassifierKind",
    "CosineClassifier",
    "PooledGCN",
    "block_plan",
    "block_residual",
    "build_classifier",
    "init_branch_conv",
    "init_bn",
    "init_conv",
    "normalise_coordinates",
]

ClassifierKind = Literal["linear", "cosine"]


def block_plan(num_blocks: int = 10, base_channels: int = 64) -> list[tuple[int, int]]:
    """Output channels and temporal stride of each block.

    Blocks are split into three stages of widths ``base``, ``2 base`` and ``4 base`` as evenly
    as possible, extra blocks going to the earlier stages; the first block of the second and
    third stage halves the temporal resolution.  ``num_blocks=10`` gives the ``[4, 3, 3]`` split
    of CTR-GCN, 2s-AGCN and ST-GCN++ (strides at the 5th and 8th block); e.g. 4 blocks give
    ``[2, 1, 1]``, 3 give ``[1, 1, 1]``.

    Returns:
        ``[(out_channels, stride), ...]``, one entry per block.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
    plan: list[tuple[int, int]] = []
    for stage in range(3):
        size = num_blocks // 3 + (1 if stage < num_blocks % 3 else 0)
        for index in range(size):
            stride = 2 if stage > 0 and index == 0 else 1
            plan.append((base_channels * 2**stage, stride))
    return plan


def init_conv(conv: nn.Conv2d) -> None:
    """Kaiming-normal weights (fan-out mode) and zero bias (the originals' ``conv_init``)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def init_bn(bn: nn.modules.batchnorm._BatchNorm, scale: float) -> None:
    """Constant ``scale`` for the affine weight, zero bias (the originals' ``bn_init``)."""
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)


def init_branch_conv(conv: nn.Conv2d, branches: int) -> None:
    """Normal weights with variance ``2 / (C_out * C_in * k * branches)`` and zero bias, so the sum
    of ``branches`` such convolutions has the variance of one (the originals' ``conv_branch_init``)."""
    out_channels, in_channels, kernel = conv.weight.shape[:3]
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (out_channels * in_channels * kernel * branches)))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def block_residual(
    in_channels: int, out_channels: int, stride: int, enabled: bool, temporal_unit: Callable[..., nn.Module]
) -> nn.Module | None:
    """The residual branch of a graph-convolution block: none (``enabled=False``, every
    backbone's first block), the identity when shape and resolution are kept, else the
    backbone's temporal convolution unit (with batch norm) as a strided 1x1 projection:
    ``temporal_unit(in_channels, out_channels, kernel_size=1, stride=stride)``."""
    if not enabled:
        return None
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return temporal_unit(in_channels, out_channels, kernel_size=1, stride=stride)


class CosineClassifier(nn.Module):
    """Normalised linear classifier: ``scale * cos(feature, class weight)`` for every class.

    Both the ``(N, C)`` features and each class's ``(C,)`` weight vector are L2-normalised, so a
    logit lies in ``[-scale, scale]``.  LDAM (Cao et al., NeurIPS 2019) is defined on this head:
    its reference ``NormedLinear`` outputs the raw cosine and the loss applies the scale
    (``loss.ldam_scale``), so LDAM runs keep ``scale = 1``.  There is no bias (a bias would undo
    the normalisation).  The weight has the ``(num_classes, C)`` shape of ``nn.Linear``.

    Args:
        in_features: ``C``.
        num_classes: ``K``.
        scale: multiplier of the cosine.
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"cosine classifier scale must be positive, got {scale}")
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))  # the backbone initialises it

    def forward(self, features: Tensor) -> Tensor:
        """``(N, C)`` -> ``(N, K)`` scaled cosine similarities."""
        return self.scale * nn.functional.linear(
            nn.functional.normalize(features, dim=1), nn.functional.normalize(self.weight, dim=1)
        )

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, scale={self.scale}"


def build_classifier(kind: ClassifierKind, in_features: int, num_classes: int, cosine_scale: float = 1.0) -> nn.Module:
    """``nn.Linear`` (``kind="linear"``, weight and bias) or :class:`CosineClassifier`
    (``"cosine"``, weight only); both have a ``(num_classes, in_features)`` ``weight``."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "cosine":
        return CosineClassifier(in_features, num_classes, cosine_scale)
    raise ValueError(f"classifier must be 'linear' or 'cosine', got {kind!r}")


def normalise_coordinates(x: Tensor, data_bn: nn.BatchNorm1d) -> Tensor:
    """The stem every backbone here shares: batch-normalise each coordinate over the batch and time.

    ``data_bn`` has one normaliser per (person, joint, channel) (``M*V*C`` features: CTR-GCN,
    2s-AGCN, HD-GCN, InfoGCN on its joint embedding) or per (joint, channel) shared by the
    persons (``V*C``: ST-GCN++).

    Args:
        x: ``(N, C, T, V, M)``.
        data_bn: ``BatchNorm1d`` of ``M*V*C`` or ``V*C`` features.

    Returns:
        ``(N*M, C, T, V)``, persons of a sample contiguous (index ``n*M + m``).
    """
    N, C, T, V, M = x.shape
    per_person = x.permute(0, 4, 3, 1, 2)  # (N, M, V, C, T)
    if data_bn.num_features == M * V * C:
        normalised = data_bn(per_person.reshape(N, M * V * C, T))
    elif data_bn.num_features == V * C:
        normalised = data_bn(per_person.reshape(N * M, V * C, T))
    else:
        raise ValueError(f"data_bn has {data_bn.num_features} features; expected M*V*C={M * V * C} or V*C={V * C}")
    return normalised.reshape(N, M, V, C, T).permute(0, 1, 3, 4, 2).reshape(N * M, C, T, V)


class PooledGCN(nn.Module, ABC):
    """Base of backbones whose head averages the last block over time, joints and persons.

    A subclass calls :meth:`_set_input_shape` in its constructor, defines :meth:`embed`
    (``(N, C, T, V, M)`` -> ``(N*M, C_0, T, V)``, the first block's input), and sets
    ``base_channels``, ``num_blocks``, ``out_channels`` (``C_out``), ``dropout`` (a module) and
    the classifier (see :func:`build_classifier`), named ``fc`` unless the subclass sets
    :attr:`classifier_name` (the name decoupled second stages and the influence-balanced loss
    look for).  Its blocks are the submodules ``l1 .. l{num_blocks}`` unless it overrides
    :attr:`blocks`.  A backbone whose head is more than dropout and the classifier (InfoGCN's
    latent) overrides :meth:`head` and :meth:`forward`.
    """

    classifier_name = "fc"
    """The attribute holding the classifier (``(num_classes, C)`` ``weight``)."""

    layout: Layout
    num_classes: int
    num_joints: int
    num_persons: int
    in_channels: int
    base_channels: int
    num_blocks: int
    out_channels: int
    dropout: nn.Module
    fc: nn.Module

    @property
    def blocks(self) -> list[nn.Module]:
        """The blocks ``l1 .. l{num_blocks}`` in order."""
        return [getattr(self, f"l{i}") for i in range(1, self.num_blocks + 1)]

    @property
    def last_block(self) -> nn.Module:
        """The block whose output :meth:`forward_features` returns (Grad-CAM target)."""
        return self.blocks[-1]

    def extra_repr(self) -> str:
        return (
            f"layout={self.layout.name}, num_classes={self.num_classes}, num_persons={self.num_persons}, "
            f"in_channels={self.in_channels}, base_channels={self.base_channels}, num_blocks={self.num_blocks}"
        )

    def _set_input_shape(self, num_classes: int, layout: str | Layout, num_persons: int, in_channels: int) -> None:
        """Validate and store the class count and the ``(C, V, M)`` the model takes."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if num_persons < 1 or in_channels < 1:
            raise ValueError(f"num_persons and in_channels must be positive, got {num_persons} and {in_channels}")
        self.layout = get_layout(layout)
        self.num_classes = num_classes
        self.num_joints = self.layout.num_joints
        self.num_persons = num_persons
        self.in_channels = in_channels

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 5:
            raise ValueError(f"expected input of shape (N, C, T, V, M), got {tuple(x.shape)}")
        _, C, _, V, M = x.shape
        if (C, V, M) != (self.in_channels, self.num_joints, self.num_persons):
            raise ValueError(
                f"expected (C, V, M) = {(self.in_channels, self.num_joints, self.num_persons)} "
                f"for layout {self.layout.name!r}, got {(C, V, M)} from input {tuple(x.shape)}"
            )

    @abstractmethod
    def embed(self, x: Tensor) -> Tensor:
        """The stem: ``(N, C, T, V, M)`` -> the first block's input ``(N*M, C_0, T, V)``, persons
        of a sample contiguous (index ``n*M + m``).  The input is already checked."""

    def forward_features(self, x: Tensor) -> Tensor:
        """Output of the last block, before pooling.

        Args:
            x: ``(N, C, T, V, M)``.

        Returns:
            ``(N*M, C_out, T', V)`` with persons of a sample contiguous (index ``n*M + m``) and
            ``T' = T / 4`` (rounded up per strided block) for three stages.
        """
        self._check_input(x)
        features = self.embed(x)
        for block in self.blocks:
            features = block(features)
        return features

    def pool(self, features: Tensor, num_persons: int | None = None) -> Tensor:
        """Global average over time, joints and persons: ``(N*M, C_out, T', V)`` -> ``(N, C_out)``."""
        M = self.num_persons if num_persons is None else num_persons
        NM, C_out = features.shape[:2]
        if NM % M != 0:
            raise ValueError(f"batch of {NM} person-samples is not divisible by num_persons={M}")
        return features.reshape(NM // M, M, C_out, -1).mean(dim=3).mean(dim=1)

    def head(self, features: Tensor, num_persons: int | None = None) -> Tensor:
        """Classifier on last-block features: ``(N*M, C_out, T', V)`` -> logits ``(N, num_classes)``."""
        return self.fc(self.dropout(self.pool(features, num_persons)))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M)`` -> logits ``(N, num_classes)``."""
        return self.head(self.forward_features(x), x.shape[-1])
