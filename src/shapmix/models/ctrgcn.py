"""CTR-GCN: Channel-wise Topology Refinement Graph Convolution (Chen et al., ICCV 2021).

A re-implementation of the reference model (``model/ctrgcn.py`` of Uason-Chen/CTR-GCN) with the
same layer structure, initialisation and parameter names, so original checkpoints load with
``model.load_state_dict(state_dict)`` and compute the same function.  Differences from the
original are deliberate and do not change the computation:

* width (``base_channels``) and depth (``num_blocks``) are configurable (defaults = original);
* the non-adaptive adjacency is a non-persistent buffer (device-agnostic, absent from
  ``state_dict`` as in the original) instead of a tensor moved with ``.cuda()``;
* no in-place additions/activations, so hooks (e.g. Grad-CAM on the last block) are safe;
* the pooling + classifier is exposed separately (:meth:`CTRGCN.forward_features`,
  :meth:`CTRGCN.head`).

Shapes: ``N`` samples, ``M`` persons, ``C`` channels, ``T`` frames, ``V`` joints.  Blocks work on
person-flattened tensors of shape ``(N*M, C, T, V)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from shapmix.models.common import (
    ClassifierKind,
    CosineClassifier,
    PooledGCN,
    block_plan,
    block_residual,
    build_classifier,
    init_bn,
    init_conv,
    normalise_coordinates,
)
from shapmix.models.loading import load_original_checkpoint  # its home before it became generic
from shapmix.models.registry import register_model
from shapmix.skeleton.graph import get_adjacency
from shapmix.skeleton.layouts import Layout

__all__ = [
    "CTRGC",
    "TemporalConv",
    "MultiScale_TemporalConv",
    "unit_tcn",
    "unit_gcn",
    "TCN_GCN_unit",
    "CTRGCN",
    "CosineClassifier",
    "block_plan",
    "load_original_checkpoint",
]


# --------------------------------------------------------------------------- initialisation


def _init_temporal_module(module: nn.Module) -> None:
    """Initialisation used for the multi-scale temporal convolution: Kaiming-normal (fan-out)
    convolutions with zero bias, and batch norms with weight ~ N(1, 0.02) and zero bias."""
    if isinstance(module, nn.Conv2d):
        init_conv(module)
    elif isinstance(module, nn.BatchNorm2d):
        with torch.no_grad():
            module.weight.normal_(1.0, 0.02)
            module.bias.zero_()


# --------------------------------------------------------------------------- spatial modelling


class CTRGC(nn.Module):
    """Channel-wise topology refinement graph convolution for one adjacency subset.

    For an input ``x`` of shape ``(N, C_in, T, V)``:

    1. two 1x1 convolutions embed ``x`` into ``R`` relation channels and are averaged over time,
       giving ``q, k`` of shape ``(N, R, V)``;
    2. channel-specific correlations ``tanh(q[..., u] - k[..., v])`` of shape ``(N, R, V, V)``
       are lifted to ``C_out`` channels by a 1x1 convolution, scaled by ``alpha`` and added to
       the shared topology ``A`` (``(V, V)``): a refined topology per sample and channel;
    3. a 1x1 convolution transforms the features to ``C_out`` channels and every channel is
       aggregated over joints with its own topology: ``out[n, c, t, u] = sum_v
       topo[n, c, u, v] * feat[n, c, t, v]``.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        rel_reduction: ``R = C_in // rel_reduction`` for hidden layers.  Layers reading raw
            input (``C_in`` of 3 or 9, as in the original, or any ``C_in < rel_reduction``)
            use ``R = 8``.
        mid_reduction: kept for parity with the original (its ``mid_channels`` is unused).

    Parameters (original names): ``conv1``/``conv2`` (``C_in -> R``), ``conv3``
    (``C_in -> C_out``), ``conv4`` (``R -> C_out``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rel_reduction: int = 8,
        mid_reduction: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        if in_channels in (3, 9) or in_channels < rel_reduction:
            self.rel_channels = 8
            self.mid_channels = 16
        else:
            self.rel_channels = in_channels // rel_reduction
            self.mid_channels = in_channels // mid_reduction
        self.conv1 = nn.Conv2d(in_channels, self.rel_channels, kernel_size=1)
        self.conv2 = nn.Conv2d(in_channels, self.rel_channels, kernel_size=1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv4 = nn.Conv2d(self.rel_channels, out_channels, kernel_size=1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            init_conv(conv)

    def refined_topology(self, x: Tensor, A: Tensor | None = None, alpha: Tensor | float = 1.0) -> Tensor:
        """Per-sample, per-channel topology of shape ``(N, C_out, V, V)`` (rows aggregate)."""
        query = self.conv1(x).mean(dim=-2)  # (N, R, V)
        key = self.conv2(x).mean(dim=-2)  # (N, R, V)
        relation = torch.tanh(query.unsqueeze(-1) - key.unsqueeze(-2))  # (N, R, V, V)
        topology = self.conv4(relation) * alpha  # (N, C_out, V, V)
        if A is not None:
            topology = topology + A  # broadcast (V, V)
        return topology

    def forward(self, x: Tensor, A: Tensor | None = None, alpha: Tensor | float = 1.0) -> Tensor:
        """``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``; ``A`` is ``(V, V)``, ``alpha`` a scalar."""
        topology = self.refined_topology(x, A, alpha)  # (N, C_out, V, V)
        features = self.conv3(x)  # (N, C_out, T, V)
        return torch.einsum("ncuv,nctv->nctu", topology, features)


class unit_gcn(nn.Module):  # noqa: N801  (original name, kept for checkpoint/readability parity)
    """Graph-convolution unit: a :class:`CTRGC` per adjacency subset, summed, then batch norm,
    residual and ReLU.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        A: adjacency stack ``(K, V, V)`` (numpy or tensor).
        adaptive: learn the shared topology (parameter ``PA``, initialised to ``A``); otherwise
            ``A`` is a fixed, non-persistent buffer.
        residual: add a residual path (identity, or 1x1 conv + BN when channels change).

    ``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``.  ``alpha`` (one scalar shared by the subsets)
    starts at zero and ``bn`` at weight ``1e-6``, so a fresh unit is close to its residual path.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A: np.ndarray | Tensor,
        adaptive: bool = True,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.adaptive = adaptive
        adjacency = torch.as_tensor(np.asarray(A, dtype=np.float32)).clone()
        if adjacency.ndim != 3 or adjacency.shape[1] != adjacency.shape[2]:
            raise ValueError(f"A must have shape (K, V, V), got {tuple(adjacency.shape)}")
        self.num_subset = adjacency.shape[0]
        self.convs = nn.ModuleList(CTRGC(in_channels, out_channels) for _ in range(self.num_subset))

        if not residual:
            self.down: nn.Module | None = None
        elif in_channels != out_channels:
            self.down = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.down = nn.Identity()

        if adaptive:
            self.PA = nn.Parameter(adjacency)
        else:
            self.register_buffer("A", adjacency, persistent=False)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                init_conv(module)
            elif isinstance(module, nn.BatchNorm2d):
                init_bn(module, 1.0)
        init_bn(self.bn, 1e-6)

    @property
    def adjacency(self) -> Tensor:
        """The shared topology ``(K, V, V)`` in use (learned ``PA`` or fixed ``A``)."""
        return self.PA if self.adaptive else self.A

    def forward(self, x: Tensor) -> Tensor:
        A = self.adjacency
        y = self.convs[0](x, A[0], self.alpha)
        for i in range(1, self.num_subset):
            y = y + self.convs[i](x, A[i], self.alpha)
        y = self.bn(y)
        if self.down is not None:
            y = y + self.down(x)
        return self.relu(y)


# --------------------------------------------------------------------------- temporal modelling


class TemporalConv(nn.Module):
    """Temporal convolution ``(kernel_size, 1)`` with "same" padding, stride and dilation, then BN.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1
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
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class MultiScale_TemporalConv(nn.Module):  # noqa: N801  (original name)
    """Multi-scale temporal convolution with ``len(dilations) + 2`` parallel branches.

    Each branch gets ``out_channels / num_branches`` channels and starts with a 1x1 conv + BN:

    * one branch per dilation: ReLU, then a :class:`TemporalConv` (``kernel_size``, dilation);
    * a max-pool branch: ReLU, max-pool ``(3, 1)`` with the stride, then BN;
    * a strided 1x1 branch (the 1x1 conv itself carries the stride).

    Branch outputs are concatenated along channels, plus an optional residual.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    Parameter names follow the original (``branches.{b}.{layer}``, ``residual``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 5,
        stride: int = 1,
        dilations: Sequence[int] = (1, 2),
        residual: bool = True,
        residual_kernel_size: int = 1,
    ) -> None:
        super().__init__()
        self.num_branches = len(dilations) + 2
        if out_channels % self.num_branches != 0:
            raise ValueError(
                f"out_channels ({out_channels}) must be a multiple of the number of branches "
                f"({self.num_branches})"
            )
        branch_channels = out_channels // self.num_branches
        if isinstance(kernel_size, int):
            kernel_sizes = [kernel_size] * len(dilations)
        else:
            kernel_sizes = list(kernel_size)
            if len(kernel_sizes) != len(dilations):
                raise ValueError("give one kernel size per dilation")

        branches: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, branch_channels, kernel_size=1),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(),
                TemporalConv(branch_channels, branch_channels, ks, stride=stride, dilation=dilation),
            )
            for ks, dilation in zip(kernel_sizes, dilations)
        ]
        branches.append(
            nn.Sequential(
                nn.Conv2d(in_channels, branch_channels, kernel_size=1),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=(3, 1), stride=(stride, 1), padding=(1, 0)),
                nn.BatchNorm2d(branch_channels),
            )
        )
        branches.append(
            nn.Sequential(
                nn.Conv2d(in_channels, branch_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(branch_channels),
            )
        )
        self.branches = nn.ModuleList(branches)

        if not residual:
            self.residual: nn.Module | None = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = TemporalConv(in_channels, out_channels, residual_kernel_size, stride=stride)

        self.apply(_init_temporal_module)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([branch(x) for branch in self.branches], dim=1)
        if self.residual is not None:
            out = out + self.residual(x)
        return out


class unit_tcn(nn.Module):  # noqa: N801  (original name)
    """Plain temporal convolution ``(kernel_size, 1)`` + BN; used as the strided 1x1 residual
    projection of a block.  ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=(kernel_size, 1), padding=(padding, 0), stride=(stride, 1)
        )
        self.bn = nn.BatchNorm2d(out_channels)
        init_conv(self.conv)
        init_bn(self.bn, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class TCN_GCN_unit(nn.Module):  # noqa: N801  (original name)
    """One CTR-GCN block: ``relu(tcn1(gcn1(x)) + residual(x))``.

    ``gcn1`` is a :class:`unit_gcn`, ``tcn1`` a :class:`MultiScale_TemporalConv` (no inner
    residual) carrying the temporal ``stride``; the block residual is zero (``residual=False``),
    the identity, or a strided 1x1 :class:`unit_tcn` when channels or resolution change.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A: np.ndarray | Tensor,
        stride: int = 1,
        residual: bool = True,
        adaptive: bool = True,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.gcn1 = unit_gcn(in_channels, out_channels, A, adaptive=adaptive)
        self.tcn1 = MultiScale_TemporalConv(
            out_channels, out_channels, kernel_size=kernel_size, stride=stride, dilations=dilations, residual=False
        )
        self.relu = nn.ReLU()
        self.residual = block_residual(in_channels, out_channels, stride, residual, unit_tcn)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


# --------------------------------------------------------------------------- the network


@register_model("ctrgcn")
class CTRGCN(PooledGCN):
    """CTR-GCN for skeleton action recognition.

    Input batch ``x`` of shape ``(N, C, T, V, M)``; output logits ``(N, num_classes)``.

    Pipeline: ``data_bn`` normalises every (person, joint, channel) coordinate over ``(N, T)``;
    persons are folded into the batch, ``(N*M, C, T, V)``; blocks ``l1 .. l{num_blocks}``
    (:class:`TCN_GCN_unit`) follow :func:`block_plan`; features are averaged over time, joints
    and persons, passed through dropout and the classifier ``fc`` (linear, or cosine for LDAM).

    Args:
        num_classes: number of classes.
        layout: skeleton layout (name or :class:`Layout`); fixes ``V`` and the graph.
        num_persons: ``M``.
        in_channels: ``C`` (3 for xyz; 2 for 2D keypoints).
        base_channels: width of the first stage (original 64); must be a multiple of 4.
        num_blocks: depth (original 10); see :func:`block_plan`.
        dropout: dropout rate before ``fc``.
        adaptive: learn the shared topology ``PA`` (original default) or keep ``A`` fixed.
        graph_mode: adjacency partition (see :func:`shapmix.skeleton.graph.get_adjacency`).
        classifier: ``linear`` (original: ``fc.weight`` and ``fc.bias``) or ``cosine``
            (:class:`CosineClassifier`, ``fc.weight`` only; the normalised head of LDAM).
        cosine_scale: ``cosine`` only: logits are ``cosine_scale * cos``; 1 for LDAM, whose
            loss applies its own scale.

    Parameter names match the original implementation, so its checkpoints load directly.
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
        adaptive: bool = True,
        graph_mode: str = "spatial",
        classifier: ClassifierKind = "linear",
        cosine_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if base_channels < 4 or base_channels % 4 != 0:
            raise ValueError(f"base_channels must be a positive multiple of 4, got {base_channels}")
        self._set_input_shape(num_classes, layout, num_persons, in_channels)
        self.base_channels = base_channels
        self.num_blocks = num_blocks

        A = get_adjacency(self.layout, graph_mode)  # (K, V, V)
        self.data_bn = nn.BatchNorm1d(num_persons * in_channels * self.num_joints)

        channels = in_channels
        for index, (out_channels, stride) in enumerate(block_plan(num_blocks, base_channels), start=1):
            block = TCN_GCN_unit(
                channels, out_channels, A, stride=stride, residual=index > 1, adaptive=adaptive
            )
            self.add_module(f"l{index}", block)
            channels = out_channels
        self.out_channels = channels

        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = build_classifier(classifier, channels, num_classes, cosine_scale)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))
        init_bn(self.data_bn, 1.0)

    def embed(self, x: Tensor) -> Tensor:
        """The stem: ``data_bn`` on every coordinate, ``(N, C, T, V, M)`` -> ``(N*M, C, T, V)``."""
        return normalise_coordinates(x, self.data_bn)
