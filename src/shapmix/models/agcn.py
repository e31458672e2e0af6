"""2s-AGCN: Two-Stream Adaptive Graph Convolutional Networks (Shi et al., CVPR 2019), one stream.

A re-implementation of ``model/agcn.py`` of lshiwjx/2s-AGCN with the same layers, initialisation
and parameter names, so the original checkpoints load with
:func:`shapmix.models.load_original_checkpoint` (or ``load_state_dict``) and compute the same
function.  "Two-stream" is the ensemble of a joint-input and a bone-input model of this same
architecture; one model here is one stream.

Each block's adaptive graph convolution (:class:`unit_gcn`) aggregates joints with, per subset
``k`` of the spatial partition, ``A[k] + PA[k] + softmax(theta(x)^T phi(x) / (C_e T))``: the fixed
graph ``A`` (a non-persistent buffer, absent from ``state_dict`` as in the original), a learned
offset ``PA`` (initially 1e-6) and a data-dependent attention over joint pairs.

Deliberate differences that do not change the computation: width (``base_channels``) and depth
(``num_blocks``, :func:`~shapmix.models.common.block_plan`) are configurable; the attention of
the three subsets is computed together (one convolution for the three ``conv_a`` and one for
the three ``conv_b``, from their concatenated weights, and one batched product); no in-place
additions; the head is exposed as ``forward_features`` / ``pool`` / ``head``.

Shapes: ``N`` samples, ``M`` persons, ``C`` channels, ``T`` frames, ``V`` joints.  Blocks work on
person-flattened tensors of shape ``(N*M, C, T, V)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shapmix.models.common import (
    ClassifierKind,
    PooledGCN,
    block_plan,
    block_residual,
    build_classifier,
    init_bn,
    init_branch_conv,
    init_conv,
    normalise_coordinates,
)
from shapmix.models.registry import register_model
from shapmix.skeleton.graph import get_adjacency
from shapmix.skeleton.layouts import Layout

__all__ = ["unit_gcn", "unit_tcn", "TCN_GCN_unit", "AGCN", "EMBEDDING_REDUCTION", "INITIAL_OFFSET"]

EMBEDDING_REDUCTION = 4
"""``C_e = C_out // 4``: width of the attention embeddings (the original's ``coff_embedding``)."""

INITIAL_OFFSET = 1e-6
"""Constructor value of every entry of the learned graph offset ``PA``."""

GCN_BN_SCALE = 1e-6
"""Constructor weight of the graph convolution's batch norm, so a fresh unit starts near its residual."""

TEMPORAL_KERNEL = 9
"""Temporal kernel size of the block's convolution."""


class unit_gcn(nn.Module):  # noqa: N801  (original name)
    """Adaptive graph convolution (module docstring), then batch norm, residual and ReLU.

    For subset ``k``: ``a = conv_a[k](x)``, ``b = conv_b[k](x)`` (``C_e`` channels), the attention
    ``S[n, v, w] = softmax_v(sum_{c,t} a[n, c, t, v] b[n, c, t, w] / (C_e T))`` (normalised over
    the first joint), the graph ``G = A[k] + PA[k] + S`` and ``z_k = conv_d[k](x @ G)`` (joint
    ``w`` of the output gathers ``sum_v x[..., v] G[v, w]``).  Output
    ``relu(bn(sum_k z_k) + down(x))``, ``down`` the identity or 1x1 conv + BN when channels change.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        A: fixed adjacency stack ``(K, V, V)``.
        embedding_reduction: ``C_e = C_out // embedding_reduction``.

    ``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A: np.ndarray | Tensor,
        embedding_reduction: int = EMBEDDING_REDUCTION,
    ) -> None:
        super().__init__()
        adjacency = torch.as_tensor(np.asarray(A, dtype=np.float32)).clone()
        if adjacency.ndim != 3 or adjacency.shape[1] != adjacency.shape[2]:
            raise ValueError(f"A must have shape (K, V, V), got {tuple(adjacency.shape)}")
        self.inter_c = out_channels // embedding_reduction
        if self.inter_c < 1:
            raise ValueError(f"out_channels ({out_channels}) must be at least {embedding_reduction}")
        self.num_subset = adjacency.shape[0]
        self.PA = nn.Parameter(torch.full_like(adjacency, INITIAL_OFFSET))
        self.register_buffer("A", adjacency, persistent=False)
        self.conv_a = nn.ModuleList(nn.Conv2d(in_channels, self.inter_c, 1) for _ in range(self.num_subset))
        self.conv_b = nn.ModuleList(nn.Conv2d(in_channels, self.inter_c, 1) for _ in range(self.num_subset))
        self.conv_d = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(self.num_subset))
        self.down: nn.Module | None = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
            if in_channels != out_channels
            else None
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                init_conv(module)
            elif isinstance(module, nn.BatchNorm2d):
                init_bn(module, 1.0)
        init_bn(self.bn, GCN_BN_SCALE)
        for conv in self.conv_d:
            init_branch_conv(conv, self.num_subset)

    @staticmethod
    def _stacked(convs: nn.ModuleList) -> tuple[Tensor, Tensor]:
        """Weight and bias of one convolution whose outputs are those of ``convs`` side by side."""
        return torch.cat([conv.weight for conv in convs]), torch.cat([conv.bias for conv in convs])

    def forward(self, x: Tensor) -> Tensor:
        N, C, T, V = x.shape
        K, C_e = self.num_subset, self.inter_c
        a = F.conv2d(x, *self._stacked(self.conv_a)).view(N, K, C_e, T, V)
        b = F.conv2d(x, *self._stacked(self.conv_b)).view(N, K, C_e * T, V)
        a = a.permute(0, 1, 4, 2, 3).reshape(N, K, V, C_e * T)
        attention = torch.softmax(torch.matmul(a, b) / (C_e * T), dim=-2)  # (N, K, V, V)
        graph = attention + (self.A + self.PA)
        # Aggregation and conv_d stay per subset: done for all K at once they are no faster here
        # and their backward holds K-fold gradients at a time (about 2% more peak memory).
        flat = x.reshape(N, C * T, V)
        y = sum(conv(torch.matmul(flat, graph[:, k]).view(N, C, T, V)) for k, conv in enumerate(self.conv_d))
        residual = x if self.down is None else self.down(x)
        return self.relu(self.bn(y) + residual)


class unit_tcn(nn.Module):  # noqa: N801  (original name)
    """Temporal convolution ``(kernel_size, 1)`` with "same" padding and a stride, then BN.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = TEMPORAL_KERNEL, stride: int = 1) -> None:
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
    """One 2s-AGCN block: ``relu(tcn1(gcn1(x)) + residual(x))``.

    The block residual is zero (``residual=False``, the first block), the identity, or a strided
    1x1 :class:`unit_tcn` when channels or resolution change.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, A: np.ndarray | Tensor, stride: int = 1, residual: bool = True
    ) -> None:
        super().__init__()
        self.gcn1 = unit_gcn(in_channels, out_channels, A)
        self.tcn1 = unit_tcn(out_channels, out_channels, stride=stride)
        self.relu = nn.ReLU()
        self.residual = block_residual(in_channels, out_channels, stride, residual, unit_tcn)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


@register_model("agcn")
class AGCN(PooledGCN):
    """2s-AGCN (one stream) for skeleton action recognition.

    Input batch ``x`` of shape ``(N, C, T, V, M)``; output logits ``(N, num_classes)``.

    Pipeline: ``data_bn`` normalises every (person, joint, channel) coordinate over ``(N, T)``;
    persons are folded into the batch; blocks ``l1 .. l{num_blocks}`` (:class:`TCN_GCN_unit`)
    follow :func:`~shapmix.models.common.block_plan`; features are averaged over time, joints and
    persons and passed through dropout and the classifier ``fc``.

    Args:
        num_classes: number of classes.
        layout: skeleton layout (name or :class:`Layout`); fixes ``V`` and the graph.
        num_persons: ``M``.
        in_channels: ``C`` (3 for xyz; 2 for 2D keypoints).
        base_channels: width of the first stage (original 64); at least 4.
        num_blocks: depth (original 10).
        dropout: dropout rate before ``fc`` (the original has none: 0).
        graph_mode: adjacency partition (see :func:`shapmix.skeleton.graph.get_adjacency`).
        classifier: ``linear`` (original: ``fc.weight`` and ``fc.bias``) or ``cosine`` (the
            normalised head of LDAM, ``fc.weight`` only).
        cosine_scale: ``cosine`` only: logits are ``cosine_scale * cos``.

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
        graph_mode: str = "spatial",
        classifier: ClassifierKind = "linear",
        cosine_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if base_channels < EMBEDDING_REDUCTION:
            raise ValueError(f"base_channels must be at least {EMBEDDING_REDUCTION}, got {base_channels}")
        self._set_input_shape(num_classes, layout, num_persons, in_channels)
        self.base_channels = base_channels
        self.num_blocks = num_blocks

        A = get_adjacency(self.layout, graph_mode)  # (K, V, V)
        self.data_bn = nn.BatchNorm1d(num_persons * in_channels * self.num_joints)
        channels = in_channels
        for index, (out_channels, stride) in enumerate(block_plan(num_blocks, base_channels), start=1):
            self.add_module(f"l{index}", TCN_GCN_unit(channels, out_channels, A, stride=stride, residual=index > 1))
            channels = out_channels
        self.out_channels = channels

        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = build_classifier(classifier, channels, num_classes, cosine_scale)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))
        init_bn(self.data_bn, 1.0)

    def embed(self, x: Tensor) -> Tensor:
        """The stem: ``data_bn`` on every coordinate, ``(N, C, T, V, M)`` -> ``(N*M, C, T, V)``."""
        return normalise_coordinates(x, self.data_bn)
