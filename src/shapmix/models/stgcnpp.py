"""ST-GCN++ (Duan et al., "PYSKL: Towards Good Practices for Skeleton Action Recognition", ACM MM 2022).

ST-GCN++ is pyskl's ``STGCN`` backbone (``pyskl/models/gcns/stgcn.py``) built with
``gcn_adaptive='init'``, ``gcn_with_res=True`` and ``tcn_type='mstcn'``, followed by its
``GCNHead``.  This module re-implements that configuration with the same layers, the same
initialisation (PyTorch's defaults everywhere; the classifier ~ N(0, 0.01^2) with zero bias) and,
below the top level, the same parameter names:

* ``data_bn``: ``BatchNorm1d(V*C)``, one normaliser per (joint, channel) shared by the persons
  (pyskl's ``data_bn_type='VC'``);
* ``gcn.{i}``: :class:`STGCNBlock` ``relu(tcn(gcn(x)) + residual(x))`` with a :class:`unit_gcn`
  whose adjacency ``A`` (``(3, V, V)``, pyskl's spatial graph) is a trainable parameter, and the
  multi-scale temporal convolution :class:`mstcn`;
* ``fc``: the classifier (pyskl's ``cls_head.fc_cls``).

A pyskl checkpoint (keys ``backbone.*`` and ``cls_head.fc_cls.*``) loads with
:func:`shapmix.models.load_original_checkpoint`, which calls
:meth:`STGCNPP.convert_original_state_dict`.  The input is ours, ``(N, C, T, V, M)``; pyskl's
``(N, M, T, V, C)`` is ``x.permute(0, 4, 2, 3, 1)`` of it.

Deliberate differences that do not change the computation: width (``base_channels``) and depth
(``num_blocks``, :func:`~shapmix.models.common.block_plan`) are configurable; the first block is
always built (pyskl drops it when ``in_channels == base_channels``); dropout layers with rate 0
are left out; the head is exposed as ``forward_features`` / ``pool`` / ``head``.

Shapes: ``N`` samples, ``M`` persons, ``C`` channels, ``T`` frames, ``V`` joints.  Blocks work on
person-flattened tensors of shape ``(N*M, C, T, V)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from shapmix.models.common import (
    ClassifierKind,
    PooledGCN,
    block_plan,
    block_residual,
    build_classifier,
    normalise_coordinates,
)
from shapmix.models.registry import register_model
from shapmix.skeleton.graph import get_adjacency, pyskl_inward_links
from shapmix.skeleton.layouts import Layout

__all__ = ["unit_gcn", "unit_tcn", "mstcn", "STGCNBlock", "STGCNPP", "MSTCN_BRANCHES", "CLASSIFIER_INIT_STD"]

MSTCN_BRANCHES: tuple[tuple[int | str, int] | str, ...] = ((3, 1), (3, 2), (3, 3), (3, 4), ("max", 3), "1x1")
"""pyskl's ``mstcn`` branches: ``(kernel, dilation)`` temporal convolutions, a ``("max", kernel)``
temporal max-pool and a strided ``"1x1"`` convolution."""

CLASSIFIER_INIT_STD = 0.01
"""Standard deviation of pyskl's ``GCNHead`` classifier weights at initialisation."""

MAX_POOL_PADDING = 1
"""Temporal padding of the max-pool branch (pyskl fixes it at 1, for its kernel of 3)."""


class unit_gcn(nn.Module):  # noqa: N801  (pyskl's name)
    """Spatial graph convolution with a learned adjacency (pyskl ``unit_gcn``, ``adaptive='init'``,
    ``conv_pos='pre'``, ``with_res=True``).

    A 1x1 convolution maps ``C_in`` to ``K * C_out`` channels; subset ``k`` of it is aggregated
    over joints with ``A[k]`` (``out[w] = sum_v feat_k[v] A[k, v, w]``) and the subsets are summed;
    then batch norm, the residual (identity, or 1x1 conv + BN when channels change) and ReLU.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        A: adjacency stack ``(K, V, V)``, the initial value of the trainable parameter ``A``.

    ``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``.
    """

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray | Tensor) -> None:
        super().__init__()
        adjacency = torch.as_tensor(np.asarray(A, dtype=np.float32)).clone()
        if adjacency.ndim != 3 or adjacency.shape[1] != adjacency.shape[2]:
            raise ValueError(f"A must have shape (K, V, V), got {tuple(adjacency.shape)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_subsets = adjacency.shape[0]
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()
        self.A = nn.Parameter(adjacency)
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, kernel_size=1)
        self.down: nn.Module | None = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels))
            if in_channels != out_channels
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.down is None else self.down(x)
        n, _, t, v = x.shape
        features = self.conv(x).view(n, self.num_subsets, self.out_channels, t, v)
        aggregated = torch.einsum("nkctv,kvw->nctw", features, self.A)
        return self.act(self.bn(aggregated) + residual)


class unit_tcn(nn.Module):  # noqa: N801  (pyskl's name)
    """Temporal convolution ``(kernel_size, 1)`` with "same" padding, stride and dilation,
    followed by batch norm (or nothing, ``norm=False``).

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 9,
        stride: int = 1,
        dilation: int = 1,
        norm: bool = True,
    ) -> None:
        super().__init__()
        padding = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=(kernel_size, 1),
            padding=(padding, 0),
            stride=(stride, 1),
            dilation=(dilation, 1),
        )
        self.bn: nn.Module = nn.BatchNorm2d(out_channels) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class mstcn(nn.Module):  # noqa: N801  (pyskl's name)
    """pyskl's multi-scale temporal convolution.

    Six parallel branches (:data:`MSTCN_BRANCHES`), each of ``out_channels // 6`` channels except
    the first, which takes the remainder: four ``1x1 conv -> BN -> ReLU -> temporal conv``
    branches with dilations 1-4, a ``1x1 conv -> BN -> ReLU -> max-pool`` branch and a strided 1x1
    convolution.  Their concatenation goes through ``transform`` (BN -> ReLU -> 1x1 conv) and a
    final BN.  The temporal ``stride`` is applied in every branch.  There is no inner residual.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        branches: Sequence[tuple[int | str, int] | str] = MSTCN_BRANCHES,
    ) -> None:
        super().__init__()
        num_branches = len(branches)
        mid_channels = out_channels // num_branches
        if mid_channels < 1:
            raise ValueError(f"mstcn needs at least {num_branches} output channels, got {out_channels}")
        first_channels = out_channels - mid_channels * (num_branches - 1)
        self.act = nn.ReLU()

        modules: list[nn.Module] = []
        for index, spec in enumerate(branches):
            channels = first_channels if index == 0 else mid_channels
            if spec == "1x1":
                modules.append(nn.Conv2d(in_channels, channels, kernel_size=1, stride=(stride, 1)))
                continue
            kind, size = spec
            # layers created in pyskl's order, so a seeded construction draws the same weights
            branch = nn.Sequential(nn.Conv2d(in_channels, channels, kernel_size=1), nn.BatchNorm2d(channels), self.act)
            if kind == "max":
                branch.append(nn.MaxPool2d(kernel_size=(size, 1), stride=(stride, 1), padding=(MAX_POOL_PADDING, 0)))
            else:
                branch.append(
                    unit_tcn(channels, channels, kernel_size=int(kind), stride=stride, dilation=size, norm=False)
                )
            modules.append(branch)
        self.branches = nn.ModuleList(modules)
        self.transform = nn.Sequential(
            nn.BatchNorm2d(out_channels), self.act, nn.Conv2d(out_channels, out_channels, kernel_size=1)
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        features = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.bn(self.transform(features))


class STGCNBlock(nn.Module):
    """One ST-GCN++ block: ``relu(tcn(gcn(x)) + residual(x))``.

    The block residual is zero (``residual=False``, the first block), the identity, or a strided
    1x1 :class:`unit_tcn` with BN when channels or resolution change.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, A: np.ndarray | Tensor, stride: int = 1, residual: bool = True
    ) -> None:
        super().__init__()
        self.gcn = unit_gcn(in_channels, out_channels, A)
        self.tcn = mstcn(out_channels, out_channels, stride=stride)
        self.relu = nn.ReLU()
        self.residual = block_residual(in_channels, out_channels, stride, residual, unit_tcn)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


_PYSKL_BACKBONE = "backbone."
_PYSKL_CLASSIFIER = "cls_head.fc_cls."


@register_model("stgcnpp")
class STGCNPP(PooledGCN):
    """ST-GCN++ for skeleton action recognition (module docstring).

    Input batch ``x`` of shape ``(N, C, T, V, M)``; output logits ``(N, num_classes)``.

    Args:
        num_classes: number of classes.
        layout: skeleton layout (name or :class:`Layout`); fixes ``V`` and the graph (pyskl's
            graph where pyskl has one, :func:`~shapmix.skeleton.graph.pyskl_inward_links`).
        num_persons: ``M``.
        in_channels: ``C`` (3 for xyz; 2 for 2D keypoints).
        base_channels: width of the first stage (original 64); at least 6 (one channel per
            temporal branch).
        num_blocks: depth (original 10); see :func:`~shapmix.models.common.block_plan`.
        dropout: dropout rate before ``fc`` (pyskl's ``GCNHead`` default: 0).
        graph_mode: adjacency partition (see :func:`shapmix.skeleton.graph.get_adjacency`).
        classifier: ``linear`` (original: ``fc.weight`` and ``fc.bias``) or ``cosine`` (the
            normalised head of LDAM, ``fc.weight`` only).
        cosine_scale: ``cosine`` only: logits are ``cosine_scale * cos``.
    """

    def __init__(
        self,
        num_classes: int,
        layout: str | Layout = "ntu25",
        num_persons: int = 2,
        in_channels: int = 3,
        base_channels: int = 64,
        num_blocks: int = 10,
        dropout: float = 0.0,
        graph_mode: str = "spatial",
        classifier: ClassifierKind = "linear",
        cosine_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if base_channels < len(MSTCN_BRANCHES):
            raise ValueError(f"base_channels must be at least {len(MSTCN_BRANCHES)}, got {base_channels}")
        self._set_input_shape(num_classes, layout, num_persons, in_channels)
        self.base_channels = base_channels
        self.num_blocks = num_blocks

        A = get_adjacency(self.layout, graph_mode, edges=pyskl_inward_links(self.layout))  # (K, V, V)
        self.data_bn = nn.BatchNorm1d(in_channels * self.num_joints)
        blocks = []
        channels = in_channels
        for index, (out_channels, stride) in enumerate(block_plan(num_blocks, base_channels)):
            blocks.append(STGCNBlock(channels, out_channels, A, stride=stride, residual=index > 0))
            channels = out_channels
        self.gcn = nn.ModuleList(blocks)
        self.out_channels = channels

        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = build_classifier(classifier, channels, num_classes, cosine_scale)
        nn.init.normal_(self.fc.weight, 0.0, CLASSIFIER_INIT_STD)
        if isinstance(self.fc, nn.Linear):
            nn.init.zeros_(self.fc.bias)

    @property
    def blocks(self) -> list[STGCNBlock]:
        """The blocks ``gcn.0 .. gcn.{num_blocks - 1}`` in order."""
        return list(self.gcn)

    def embed(self, x: Tensor) -> Tensor:
        """The stem: ``data_bn`` on every coordinate, ``(N, C, T, V, M)`` -> ``(N*M, C, T, V)``."""
        return normalise_coordinates(x, self.data_bn)

    def convert_original_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """pyskl's key names -> ours: ``backbone.X`` -> ``X``, ``cls_head.fc_cls.X`` -> ``fc.X``;
        other keys (e.g. a state dict saved from this model) pass unchanged."""
        converted = {}
        for key, value in state.items():
            if key.startswith(_PYSKL_BACKBONE):
                key = key[len(_PYSKL_BACKBONE):]
            elif key.startswith(_PYSKL_CLASSIFIER):
                key = "fc." + key[len(_PYSKL_CLASSIFIER):]
            converted[key] = value
        return converted
