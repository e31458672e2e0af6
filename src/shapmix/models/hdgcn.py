"""HD-GCN: hierarchically decomposed graph convolutions (Lee et al., ICCV 2023).

A re-implementation of the reference model (``model/HDGCN.py`` of Jho-Yonsei/HD-GCN) with the
same layers, initialisation and parameter names, so its checkpoints load
(:meth:`HDGCN.convert_original_state_dict`) and compute the same function.

The skeleton is decomposed into levels of joints by graph distance from a centre-of-mass joint
(:func:`~shapmix.skeleton.hierarchy.hierarchy_levels`).  Every graph convolution
(:class:`HD_Gconv`) has one branch per pair of consecutive levels: identity, forward and
reverse aggregations over the fully connected level pair
(:func:`~shapmix.skeleton.hierarchy.hierarchical_adjacency`, learned from that start as
``PA``) plus an :class:`EdgeConv` over the ``k`` nearest joints in feature space; the branches
are summed, or weighted by the attention :class:`AHA` over the level pairs.

Differences from the original, none of which changes the computation:

* the hierarchy is built from any layout (:mod:`shapmix.skeleton.hierarchy`; NTU's equals the
  original's for all three of its centres), not only NTU's hard-coded groups;
* the original leaves the last level pair's branch list registered a second time as
  ``conv_d`` (a loop variable kept on ``self``), so its state dicts hold those tensors twice;
  this model has no alias, and :meth:`HDGCN.convert_original_state_dict` drops the copies;
* width (``base_channels``), depth (``num_blocks``) and the classifier are configurable
  (defaults = original); no in-place operations, so hooks on blocks are safe;
* :class:`EdgeConv` takes ``(N, C, L)`` or ``(N, C, T, V)`` input by its rank instead of a
  ``dim`` flag.

Neighbour selection is a ``topk`` over pairwise scores, and on real inputs the k-th and
(k+1)-th scores can differ by 1.5e-5 of the largest: :meth:`EdgeConv.knn` computes them with
the original's formula in the original's operation order, so the same neighbours are chosen.

Shapes: ``N`` samples, ``M`` persons, ``C`` channels, ``T`` frames, ``V`` joints, ``L`` level
pairs; blocks work on person-flattened tensors ``(N*M, C, T, V)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from shapmix.models.common import (
    CosineClassifier,
    PooledGCN,
    block_plan,
    block_residual,
    init_bn,
    init_conv,
    normalise_coordinates,
)
from shapmix.models.ctrgcn import unit_tcn
from shapmix.models.registry import register_model
from shapmix.skeleton.hierarchy import hierarchical_adjacency, hierarchy_levels, level_pairs
from shapmix.skeleton.layouts import Layout

__all__ = [
    "TemporalConv",
    "MultiScale_TemporalConv",
    "EdgeConv",
    "AHA",
    "HD_Gconv",
    "TCN_GCN_unit",
    "HDGCN",
]

# Neighbours of every joint in a graph convolution's EdgeConv, and of every level pair in AHA.
JOINT_NEIGHBOURS = 5
LEVEL_NEIGHBOURS = 3
# EdgeConv's LeakyReLU slope.
EDGE_NEGATIVE_SLOPE = 0.2
# Subsets of every level pair's adjacency: identity, forward, reverse.
NUM_SUBSETS = 3


# --------------------------------------------------------------------------- temporal modelling


class TemporalConv(nn.Module):
    """Temporal convolution ``(kernel_size, 1)`` with "same" padding, stride and dilation, a
    separate bias parameter ``(1, C_out, 1, 1)`` (the original's), then batch norm.

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
            bias=False,
        )
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x) + self.bias)


class MultiScale_TemporalConv(nn.Module):  # noqa: N801  (original name)
    """HD-GCN's multi-scale temporal convolution, ``len(dilations) + 2`` parallel branches of
    ``out_channels / num_branches`` channels, concatenated (no residual inside a block):

    * one branch per dilation: 1x1 conv, BN, ReLU, :class:`TemporalConv`;
    * 1x1 conv, BN, ReLU, max-pool ``(3, 1)`` with the stride, BN;
    * a strided 1x1 conv and BN.

    Convolutions are Kaiming-normal (fan-out) with zero bias, batch norms ``N(1, 0.02)`` with
    zero bias.  ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        dilations: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        self.num_branches = len(dilations) + 2
        if out_channels % self.num_branches != 0:
            raise ValueError(
                f"out_channels ({out_channels}) must be a multiple of the number of branches ({self.num_branches})"
            )
        branch_channels = out_channels // self.num_branches
        branches: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, branch_channels, kernel_size=1),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(),
                TemporalConv(branch_channels, branch_channels, kernel_size, stride=stride, dilation=dilation),
            )
            for dilation in dilations
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
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                init_conv(module)
            elif isinstance(module, nn.BatchNorm2d):
                with torch.no_grad():
                    module.weight.normal_(1.0, 0.02)
                    module.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


# --------------------------------------------------------------------------- spatial modelling


class EdgeConv(nn.Module):
    """Dynamic edge convolution over the ``k`` nearest neighbours in feature space.

    For input ``(N, C, V)`` (or ``(N, C, T, V)``, first averaged over time): every element ``v``
    and each of its ``k`` nearest elements ``u`` (itself included) give the edge feature
    ``[x_u - x_v, x_v]``; a 1x1 conv, BN and LeakyReLU(0.2) follow, and the maximum over the
    ``k`` edges is taken.

    ``(N, C, V)`` -> ``(N, C_out, V)``; ``(N, C, T, V)`` -> ``(N, C_out, T, V)`` (repeated over time).
    Parameters: ``conv`` (conv without bias, BN).
    """

    def __init__(self, in_channels: int, out_channels: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels * 2, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(negative_slope=EDGE_NEGATIVE_SLOPE),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                init_conv(module)
            elif isinstance(module, nn.BatchNorm2d):
                init_bn(module, 1.0)

    @staticmethod
    def knn(x: Tensor, k: int) -> Tensor:
        """Indices ``(N, V, k)`` of the ``k`` elements nearest to each of ``x``'s ``(N, C, V)``.

        The score is ``-|x_u - x_v|^2`` computed as ``-|x_v|^2 - (-2 x_v . x_u) - |x_u|^2``,
        the original's formula and operation order (near-ties make the order matter).
        """
        inner = -2 * torch.matmul(x.transpose(2, 1), x)  # (N, V, V)
        squared_norms = torch.sum(x**2, dim=1, keepdim=True)  # (N, 1, V)
        pairwise_distance = -squared_norms - inner - squared_norms.transpose(2, 1)
        return pairwise_distance.topk(k=k, dim=-1)[1]

    def graph_feature(self, x: Tensor) -> Tensor:
        """Edge features ``(N, 2C, V, k)``: ``[x_u - x_v, x_v]`` for the ``k`` nearest ``u`` of every ``v``."""
        N, C, V = x.shape
        neighbour_index = self.knn(x, self.k)  # (N, V, k)
        points = x.transpose(1, 2)  # (N, V, C)
        neighbours = points[torch.arange(N, device=x.device)[:, None, None], neighbour_index]  # (N, V, k, C)
        centres = points.unsqueeze(2).expand(N, V, self.k, C)
        return torch.cat((neighbours - centres, centres), dim=3).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (3, 4):
            raise ValueError(f"EdgeConv takes (N, C, V) or (N, C, T, V), got {tuple(x.shape)}")
        points = x.mean(dim=-2) if x.ndim == 4 else x  # (N, C, V)
        edges = self.conv(self.graph_feature(points)).max(dim=-1)[0]  # (N, C_out, V)
        if x.ndim == 4:
            edges = edges.unsqueeze(2).expand(-1, -1, x.shape[2], -1)
        return edges


class AHA(nn.Module):
    """Attention-guided hierarchy aggregation: weights the ``L`` level-pair outputs of a graph
    convolution per channel and sums them.

    Each level pair's features are max-pooled over time, reduced to ``C / 4`` channels (1x1 conv,
    BN, ReLU), averaged over the pair's joints, related across level pairs by an
    :class:`EdgeConv` (3 neighbours), expanded back to ``C`` channels (``aggregate``) and turned
    into sigmoid weights.

    Args:
        in_channels: ``C``.
        layers: for each of the ``L`` level pairs, its joint ids (:func:`~shapmix.skeleton.hierarchy.level_pairs`).

    ``(N, C, L, T, V)`` -> ``(N, C, T, V)``.  Parameters: ``conv_down``, ``edge_conv``, ``aggregate``.
    """

    def __init__(self, in_channels: int, layers: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.num_layers = len(layers)
        if self.num_layers < LEVEL_NEIGHBOURS:
            raise ValueError(
                f"HD-GCN's attention relates each level pair to its {LEVEL_NEIGHBOURS} nearest: the hierarchy "
                f"needs at least {LEVEL_NEIGHBOURS + 1} levels, got {self.num_layers + 1}"
            )
        self.layers = tuple(tuple(int(v) for v in layer) for layer in layers)
        inter_channels = in_channels // 4
        self.conv_down = nn.Sequential(
            nn.Conv2d(in_channels, inter_channels, kernel_size=1),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(),
        )
        self.edge_conv = EdgeConv(inter_channels, inter_channels, k=LEVEL_NEIGHBOURS)
        self.aggregate = nn.Conv1d(inter_channels, in_channels, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        N, C, L, _, _ = x.shape
        reduced = self.conv_down(x.max(dim=-2)[0])  # (N, C/4, L, V)
        # one mean per level pair over its own joints (pairs differ in size)
        sampled = torch.cat(
            [reduced[:, :, i, list(self.layers[i])].mean(dim=-1, keepdim=True) for i in range(self.num_layers)],
            dim=2,
        )  # (N, C/4, L)
        attention = self.aggregate(self.edge_conv(sampled)).view(N, C, L, 1, 1)
        return (x * self.sigmoid(attention)).sum(dim=2)


class HD_Gconv(nn.Module):  # noqa: N801  (original name)
    """Hierarchically decomposed graph convolution.

    For every level pair ``i``: a 1x1 reduction to ``C_out / 4`` channels (``conv_down[i]``),
    then the identity, forward and reverse aggregations ``z[v] = sum_u PA[i, j, v, u] x[u]`` each
    followed by 1x1 conv + BN (``conv[i][j]``), and an :class:`EdgeConv` (``conv[i][3]``); the
    four are concatenated to ``C_out`` channels.  The ``L`` level pairs are summed, or combined
    by :class:`AHA` (``att``); then BN, residual and ReLU.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out`` (a multiple of 4).
        A: ``(L, 3, V, V)`` hierarchical adjacency (the start of the learned ``PA``).
        layers: joint ids of every level pair (for :class:`AHA`).
        att: combine the level pairs with :class:`AHA`.

    ``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, A: np.ndarray, layers: Sequence[Sequence[int]], att: bool = True
    ) -> None:
        super().__init__()
        self.num_layers, self.num_subset = A.shape[:2]
        self.att = att
        inter_channels = out_channels // (self.num_subset + 1)
        self.PA = nn.Parameter(torch.tensor(A, dtype=torch.float32))  # a copy: blocks share A
        self.conv_down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, inter_channels, kernel_size=1),
                nn.BatchNorm2d(inter_channels),
                nn.ReLU(),
            )
            for _ in range(self.num_layers)
        )
        self.conv = nn.ModuleList(
            nn.ModuleList(
                [
                    *(
                        nn.Sequential(
                            nn.Conv2d(inter_channels, inter_channels, kernel_size=1), nn.BatchNorm2d(inter_channels)
                        )
                        for _ in range(self.num_subset)
                    ),
                    EdgeConv(inter_channels, inter_channels, k=JOINT_NEIGHBOURS),
                ]
            )
            for _ in range(self.num_layers)
        )
        if att:
            self.aha = AHA(out_channels, layers)
        self.down: nn.Module = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
            if in_channels != out_channels
            else nn.Identity()
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                init_conv(module)
            elif isinstance(module, nn.BatchNorm2d):
                init_bn(module, 1.0)
        init_bn(self.bn, 1e-6)

    def forward(self, x: Tensor) -> Tensor:
        A = self.PA
        out = []
        for i in range(self.num_layers):
            reduced = self.conv_down[i](x)
            branches = [
                self.conv[i][j](torch.einsum("nctu,vu->nctv", reduced, A[i, j])) for j in range(self.num_subset)
            ]
            branches.append(self.conv[i][-1](reduced))
            out.append(torch.cat(branches, dim=1))
        stacked = torch.stack(out, dim=2)  # (N, C_out, L, T, V)
        combined = self.aha(stacked) if self.att else stacked.sum(dim=2)
        return self.relu(self.bn(combined) + self.down(x))


class TCN_GCN_unit(nn.Module):  # noqa: N801  (original name)
    """One HD-GCN block: ``relu(tcn1(gcn1(x)) + residual(x))``.

    ``gcn1`` is an :class:`HD_Gconv`, ``tcn1`` a :class:`MultiScale_TemporalConv` (kernel 5,
    dilations 1 and 2) carrying the temporal ``stride``; the block residual is zero
    (``residual=False``), the identity, or a strided 1x1 :class:`~shapmix.models.ctrgcn.unit_tcn`
    (the original's ``residual_conv``) when width or resolution change.

    ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A: np.ndarray,
        layers: Sequence[Sequence[int]],
        stride: int = 1,
        residual: bool = True,
        att: bool = True,
    ) -> None:
        super().__init__()
        self.gcn1 = HD_Gconv(in_channels, out_channels, A, layers, att=att)
        self.tcn1 = MultiScale_TemporalConv(out_channels, out_channels, kernel_size=5, stride=stride, dilations=(1, 2))
        self.relu = nn.ReLU()
        self.residual = block_residual(in_channels, out_channels, stride, residual, unit_tcn)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


# --------------------------------------------------------------------------- the network


@register_model("hdgcn")
class HDGCN(PooledGCN):
    """HD-GCN for skeleton action recognition.

    Input ``(N, C, T, V, M)``; output logits ``(N, num_classes)``.  ``data_bn`` normalises every
    (person, joint, channel) coordinate; blocks ``l1 .. l{num_blocks}`` (:class:`TCN_GCN_unit`,
    the first without block residual and without attention) follow
    :func:`~shapmix.models.ctrgcn.block_plan`; features are averaged over time, joints and
    persons, then dropout and the classifier ``fc``.

    Args:
        num_classes: number of classes.
        layout: skeleton layout (name or :class:`Layout`); fixes ``V`` and the hierarchy.
        num_persons: ``M``.
        in_channels: ``C``.
        base_channels: width of the first stage (original 64); a multiple of 4.
        num_blocks: depth (original 10: stages of 4, 3, 3, strides at ``l5`` and ``l8``).
        dropout: dropout rate before ``fc``.
        center: the hierarchy's centre joint (id or name); default the layout's
            (:data:`~shapmix.skeleton.hierarchy.HIERARCHY_SPECS`; NTU: the spine shoulder,
            the original's ``CoM 21``).
        max_levels: merge the hierarchy's outer levels beyond this many (the original's NTU
            ``CoM 1`` config is ``center="spine_base", max_levels=7``); ``None`` keeps all.
        classifier: ``linear`` (original: ``fc.weight`` and ``fc.bias``) or ``cosine`` (LDAM).
        cosine_scale: ``cosine`` only: logits are ``cosine_scale * cos``.

    Parameter names match the original implementation (less its ``conv_d`` alias).
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
        center: int | str | None = None,
        max_levels: int | None = None,
        classifier: Literal["linear", "cosine"] = "linear",
        cosine_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if classifier not in ("linear", "cosine"):
            raise ValueError(f"classifier must be 'linear' or 'cosine', got {classifier!r}")
        if base_channels < 4 or base_channels % 4 != 0:
            raise ValueError(f"base_channels must be a positive multiple of 4, got {base_channels}")
        self._set_input_shape(num_classes, layout, num_persons, in_channels)
        if self.layout.num_joints < JOINT_NEIGHBOURS:
            raise ValueError(
                f"HD-GCN's EdgeConv picks {JOINT_NEIGHBOURS} neighbours per joint; layout "
                f"{self.layout.name!r} has only {self.layout.num_joints} joints"
            )
        self.base_channels = base_channels
        self.num_blocks = num_blocks

        self.levels = hierarchy_levels(self.layout, center, max_levels)
        A = hierarchical_adjacency(self.layout, center, max_levels)  # (L, 3, V, V)
        layers = level_pairs(self.levels)
        self.data_bn = nn.BatchNorm1d(num_persons * in_channels * self.num_joints)
        channels = in_channels
        for index, (out_channels, stride) in enumerate(block_plan(num_blocks, base_channels), start=1):
            first = index == 1
            block = TCN_GCN_unit(channels, out_channels, A, layers, stride=stride, residual=not first, att=not first)
            self.add_module(f"l{index}", block)
            channels = out_channels
        self.out_channels = channels

        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc: nn.Module = (
            nn.Linear(channels, num_classes)
            if classifier == "linear"
            else CosineClassifier(channels, num_classes, cosine_scale)
        )
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))
        init_bn(self.data_bn, 1.0)

    def embed(self, x: Tensor) -> Tensor:
        """The stem: ``data_bn`` on every coordinate, ``(N, C, T, V, M)`` -> ``(N*M, C, T, V)``."""
        return normalise_coordinates(x, self.data_bn)

    def convert_original_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A state dict of the original code in this model's names: without the ``conv_d`` alias.

        The original's ``HD_Gconv`` keeps its last level pair's branches (``conv.{L-1}``) also
        under ``conv_d``, so every such tensor appears twice; the copies are checked to agree
        with ``conv.{L-1}`` and dropped.  A state dict without them (ours) is unchanged.

        Raises:
            ValueError: naming the first alias key whose tensor differs from its ``conv.{L-1}`` twin.
        """
        converted: dict[str, Tensor] = {}
        aliases: dict[str, Tensor] = {}
        for key, value in state.items():
            (aliases if ".gcn1.conv_d." in key else converted)[key] = value
        for key, value in aliases.items():
            prefix, suffix = key.split(".gcn1.conv_d.", 1)
            adjacency = f"{prefix}.gcn1.PA"
            if adjacency not in state:
                raise ValueError(f"original HD-GCN state dict: {key!r} is there but {adjacency!r} is missing")
            twin = f"{prefix}.gcn1.conv.{state[adjacency].shape[0] - 1}.{suffix}"
            if twin not in state or not torch.equal(state[twin], value):
                raise ValueError(
                    f"original HD-GCN state dict: {key!r} should be an alias of {twin!r}, but "
                    f"{'that key is missing' if twin not in state else 'their tensors differ'}"
                )
        return converted

    def extra_repr(self) -> str:
        return (
            f"layout={self.layout.name}, num_classes={self.num_classes}, num_persons={self.num_persons}, "
            f"in_channels={self.in_channels}, base_channels={self.base_channels}, num_blocks={self.num_blocks}, "
            f"levels={len(self.levels)}"
        )
