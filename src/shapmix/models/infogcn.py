"""InfoGCN: representation learning with an information bottleneck (Chi et al., CVPR 2022).

A re-implementation of the reference model (``model/infogcn.py`` and ``model/modules.py`` of
stnoah1/infogcn) with the same layers, initialisation and parameter names, so its checkpoints
load (:meth:`InfoGCN.convert_original_state_dict`) and compute the same function.

The network: every joint is expressed relative to its ``k``-th ancestor in the skeleton tree
rooted at the body centre (``A_vector = I - P^k``,
:func:`~shapmix.skeleton.hierarchy.relative_coordinates_matrix`), embedded by a linear layer
plus a learned joint embedding, batch-normalised per (person, joint, channel), and passed
through encoding blocks (a self-attention graph convolution :class:`SA_GC` and a multi-scale
temporal convolution).  The pooled features ``h`` give a Gaussian latent
``z ~ N(mu(h), exp(noise_ratio * logvar(h))^2)`` (its mean ``mu`` in eval mode) and the logits
are ``decoder(z)``.

The objective (the original ``main.py``)::

    loss = LS_0.1(logits, y) + 0.1 * MMD(z, z_prior | y) + 1e-4 * ||mean_i z_i||_2

with fixed class priors ``z_prior`` (orthogonal, gain 3) and label smoothing ``LS``
(:func:`class_prior_mmd`, :meth:`InfoGCN.auxiliary_loss`).

Differences from the original (only the last one changes a computation, and not on NTU):

* :meth:`InfoGCN.forward` returns the logits; ``forward(x, return_latent=True)`` returns
  ``(logits, z)``, the original's output;
* the objective is split in the form the engine's training methods use for any backbone
  (:mod:`shapmix.methods`): the classification loss is the configured one (Balanced
  Softmax, ...) on targets smoothed by :attr:`InfoGCN.label_smoothing`, and
  :meth:`InfoGCN.auxiliary_loss` adds the MMD and latent-mean terms; both accept the soft
  targets of mixed samples;
* ``z_prior`` is a buffer, so our checkpoints hold it and a resumed run keeps its priors (the
  original redraws them at every construction);
* ``A_vector`` is a non-persistent float32 buffer (the original keeps a float64 attribute; its
  entries are 0 and +-1, so the cast is exact);
* width (``base_channels``), depth (``num_blocks``) and the classifier are configurable
  (defaults = original); no in-place operations, so hooks on blocks are safe;
* the original's ``A_vector`` for NW-UCLA subtracts the sum of a joint's children instead of
  its parent (its UCLA edge list is oriented the other way round from its NTU one); here every
  layout follows the NTU graph's convention (and the paper's): relative to the ancestor.

Shapes: ``N`` samples, ``M`` persons, ``C`` channels, ``T`` frames, ``V`` joints; blocks work on
person-flattened tensors ``(N*M, C, T, V)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shapmix.models.common import (
    CosineClassifier,
    PooledGCN,
    block_plan,
    init_bn,
    init_branch_conv,
    init_conv,
    normalise_coordinates,
)
from shapmix.models.ctrgcn import unit_tcn
from shapmix.models.ctrgcn import MultiScale_TemporalConv as CTRGCNTemporalConv
from shapmix.models.registry import register_model
from shapmix.skeleton.hierarchy import relative_coordinates_matrix
from shapmix.skeleton.layouts import Layout

__all__ = [
    "SelfAttention",
    "SA_GC",
    "MultiScale_TemporalConv",
    "EncodingBlock",
    "InfoGCN",
    "class_prior_mmd",
]

# The original's reduction of the attention width: query/key width per head = C_in // 8.
ATTENTION_REDUCTION = 8
# Upper bound of the latent's standard deviation in train mode (the original's clamp).
MAX_LATENT_STD = 100.0


# --------------------------------------------------------------------------- spatial modelling


class SelfAttention(nn.Module):
    """Multi-head joint-to-joint attention of every frame.

    Layer-normalised features are projected to queries and keys (``hidden_dim`` per head);
    ``softmax(q k^T / sqrt(hidden_dim))`` over the attended joints.

    ``(N, C, T, V)`` -> ``(N*T, heads, V, V)`` (rows sum to 1).  Parameters: ``ln``, ``to_qk``.
    """

    def __init__(self, in_channels: int, hidden_dim: int, n_heads: int) -> None:
        super().__init__()
        self.scale = hidden_dim**-0.5
        self.n_heads = n_heads
        self.to_qk = nn.Linear(in_channels, hidden_dim * n_heads * 2)
        self.ln = nn.LayerNorm(in_channels)
        nn.init.normal_(self.to_qk.weight, 0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        N, _, T, V = x.shape
        y = self.to_qk(self.ln(x.permute(0, 2, 3, 1)))  # (N, T, V, 2 * heads * d)
        query, key = (
            part.reshape(N * T, V, self.n_heads, -1).permute(0, 2, 1, 3) for part in y.chunk(2, dim=-1)
        )  # (N*T, heads, V, d)
        dots = torch.einsum("bhid,bhjd->bhij", query, key) * self.scale
        return dots.softmax(dim=-1)


class SA_GC(nn.Module):  # noqa: N801  (original name)
    """Self-attention graph convolution: per head, joints are aggregated with the attention map
    times a learned shared topology, transformed by a 1x1 convolution and summed over heads;
    then batch norm, residual and ReLU.

    Args:
        in_channels: ``C_in`` (at least :data:`ATTENTION_REDUCTION`).
        out_channels: ``C_out``.
        A: ``(heads, V, V)`` initial shared topology (identity per head in InfoGCN).

    ``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``.  Parameters: ``shared_topology``, ``conv_d``
    (one 1x1 conv per head), ``down`` (when the width changes), ``bn``, ``attn``.
    """

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray) -> None:
        super().__init__()
        self.num_head = A.shape[0]
        self.shared_topology = nn.Parameter(torch.tensor(A, dtype=torch.float32))  # a copy: blocks share A
        self.conv_d = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(self.num_head))
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
        for conv in self.conv_d:
            init_branch_conv(conv, self.num_head)
        # created after the loop above, as in the original: LayerNorm and bias keep torch defaults
        self.attn = SelfAttention(in_channels, in_channels // ATTENTION_REDUCTION, self.num_head)

    def forward(self, x: Tensor) -> Tensor:
        N, C, T, V = x.shape
        topology = self.attn(x) * self.shared_topology.unsqueeze(0)  # (N*T, heads, V, V)
        features = x.permute(0, 2, 3, 1).reshape(N * T, V, C)

        def head_output(head: int) -> Tensor:
            aggregated = topology[:, head] @ features  # (N*T, V, C)
            return self.conv_d[head](aggregated.reshape(N, T, V, C).permute(0, 3, 1, 2))

        out = head_output(0)
        for head in range(1, self.num_head):
            out = head_output(head) + out
        return self.relu(self.bn(out) + self.down(x))


# --------------------------------------------------------------------------- temporal modelling


class MultiScale_TemporalConv(CTRGCNTemporalConv):  # noqa: N801  (original name)
    """InfoGCN's multi-scale temporal convolution: CTR-GCN's branches (same parameter names),
    PyTorch's default initialisation (the original's ``model/ms_tcn.py`` sets none) and a ReLU
    on the output.  ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                module.reset_parameters()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(super().forward(x))


class EncodingBlock(nn.Module):
    """One InfoGCN block: ``relu(tcn(agcn(x)) + residual(x))``.

    ``agcn`` is an :class:`SA_GC`, ``tcn`` a :class:`MultiScale_TemporalConv` (kernel 5,
    dilations 1 and 2, no inner residual) carrying the temporal ``stride``; the residual is the
    identity, or a strided 1x1 :class:`~shapmix.models.ctrgcn.unit_tcn` when width or resolution
    change.  ``(N, C_in, T, V)`` -> ``(N, C_out, ceil(T / stride), V)``.
    """

    def __init__(self, in_channels: int, out_channels: int, A: np.ndarray, stride: int = 1) -> None:
        super().__init__()
        self.agcn = SA_GC(in_channels, out_channels, A)
        self.tcn = MultiScale_TemporalConv(
            out_channels, out_channels, kernel_size=5, stride=stride, dilations=(1, 2), residual=False
        )
        self.relu = nn.ReLU()
        self.residual: nn.Module = (
            nn.Identity()
            if in_channels == out_channels and stride == 1
            else unit_tcn(in_channels, out_channels, kernel_size=1, stride=stride)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.tcn(self.agcn(x)) + self.residual(x))


# --------------------------------------------------------------------------- the objective


def class_prior_mmd(latent: Tensor, targets: Tensor, priors: Tensor) -> Tensor:
    """InfoGCN's MMD term: squared distance between class-conditional latent means and the
    class priors, averaged over the classes present and the latent dimensions.

    With hard targets this is the original ``get_mmd_loss``: for every class ``c`` in the
    batch, ``mean_{i: y_i = c} z_i - prior_c``, squared and averaged.  A soft target ``t_i``
    (a mixed sample) has the mixed prior ``p_i = sum_c t_ic prior_c``, where its latent belongs
    if the decoder's linear logits are to give the mixed label; its residual ``z_i - p_i`` counts
    towards the mean residual of every class ``c`` with weight ``t_ic``::

        r_c = sum_i t_ic (z_i - p_i) / sum_i t_ic      for every c with sum_i t_ic > 0
        MMD = mean_c mean_d r_cd^2

    For one-hot rows ``p_i = prior_{y_i}`` and ``r_c`` is the original's difference; a latent
    equal to its (mixed) prior contributes nothing.  Every present class weighs alike, as in the
    original.

    Args:
        latent: ``(B, D)`` latents ``z``.
        targets: ``(B, K)`` target distributions (rows sum to 1).
        priors: ``(K, D)`` class priors (no gradient flows into them in InfoGCN: a buffer).

    Returns:
        a scalar tensor.
    """
    if targets.dim() != 2 or targets.shape[0] != latent.shape[0] or targets.shape[1] != priors.shape[0]:
        raise ValueError(
            f"targets must be (B, K) = ({latent.shape[0]}, {priors.shape[0]}) distributions, got {tuple(targets.shape)}"
        )
    weights = targets.to(latent.dtype)
    residual = latent - weights @ priors.to(latent.dtype)  # (B, D)
    mass = weights.sum(dim=0)  # (K,)
    present = (mass > 0).to(latent.dtype)
    # absent classes have a zero sum and are left out of the mean by weight, not by a boolean
    # mask, whose data-dependent size would make a GPU wait for the host
    class_residual = (weights.T @ residual) / mass.clamp_min(torch.finfo(latent.dtype).tiny)[:, None]  # (K, D)
    return (class_residual.pow(2).mean(dim=1) * present).sum() / present.sum()


# --------------------------------------------------------------------------- the network


@register_model("infogcn")
class InfoGCN(PooledGCN):
    """InfoGCN for skeleton action recognition.

    Input ``(N, C, T, V, M)``; :meth:`forward` returns logits ``(N, num_classes)`` and, with
    ``return_latent=True``, also the latent ``z`` ``(N, D)`` (``D = 4 * base_channels`` at the
    default depth).

    Args:
        num_classes: number of classes.
        layout: skeleton layout (name or :class:`Layout`); fixes ``V`` and the tree of
            ``A_vector`` (rooted at ``layout.center``).
        num_persons: ``M``.
        in_channels: ``C``.
        base_channels: width of the first stage (original 64); a multiple of 4, at least 8.
        num_blocks: depth (original 9: three stages of 3, strides at ``l4`` and ``l7``); see
            :func:`~shapmix.models.ctrgcn.block_plan`.
        dropout: dropout rate after the hidden layer ``fc``.
        num_heads: attention heads per graph convolution (original ``--n_heads 3``).
        relative_order: ``k`` of ``A_vector = I - P^k`` (original ``--k 1``).
        noise_ratio: the latent's standard deviation is ``exp(noise_ratio * logvar)``
            (original default 0.5).
        prior_gain: gain of the orthogonal class priors (original ``--z_prior_gain 3``).
        classifier: ``linear`` (original ``decoder``: weight and bias) or ``cosine``
            (:class:`~shapmix.models.ctrgcn.CosineClassifier`, for LDAM).
        cosine_scale: ``cosine`` only: logits are ``cosine_scale * cos``.
        label_smoothing: share of every training target spread uniformly over the classes
            before the classification loss (original 0.1; 0 turns it off).
        mmd_weight: weight of :func:`class_prior_mmd` (original ``--lambda_2 0.1``).
        latent_mean_weight: weight of ``||mean_i z_i||_2`` (original ``--lambda_1 1e-4``).

    Parameter names match the original; ``z_prior`` is a buffer (see
    :meth:`convert_original_state_dict`).
    """

    classifier_name = "decoder"
    """The module mapping the latent to logits (``fc`` is InfoGCN's hidden layer)."""

    def __init__(
        self,
        num_classes: int,
        layout: str | Layout = "ntu25",
        num_persons: int = 2,
        in_channels: int = 3,
        base_channels: int = 64,
        num_blocks: int = 9,
        dropout: float = 0.0,
        num_heads: int = 3,
        relative_order: int = 1,
        noise_ratio: float = 0.5,
        prior_gain: float = 3.0,
        classifier: Literal["linear", "cosine"] = "linear",
        cosine_scale: float = 1.0,
        label_smoothing: float = 0.1,
        mmd_weight: float = 0.1,
        latent_mean_weight: float = 1e-4,
    ) -> None:
        super().__init__()
        if classifier not in ("linear", "cosine"):
            raise ValueError(f"classifier must be 'linear' or 'cosine', got {classifier!r}")
        if num_heads < 1:
            raise ValueError(f"num_heads must be positive, got {num_heads}")
        if base_channels < ATTENTION_REDUCTION or base_channels % 4 != 0:
            raise ValueError(f"base_channels must be a multiple of 4 and at least {ATTENTION_REDUCTION}, got {base_channels}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        if mmd_weight < 0 or latent_mean_weight < 0:
            raise ValueError("mmd_weight and latent_mean_weight must not be negative")
        self._set_input_shape(num_classes, layout, num_persons, in_channels)
        self.base_channels = base_channels
        self.num_blocks = num_blocks
        self.noise_ratio = noise_ratio
        self.label_smoothing = label_smoothing
        self.mmd_weight = mmd_weight
        self.latent_mean_weight = latent_mean_weight

        V = self.num_joints
        self.register_buffer(
            "A_vector",
            torch.from_numpy(relative_coordinates_matrix(self.layout, relative_order)).float(),
            persistent=False,
        )
        self.to_joint_embedding = nn.Linear(in_channels, base_channels)
        self.pos_embedding = nn.Parameter(torch.randn(1, V, base_channels))
        self.data_bn = nn.BatchNorm1d(num_persons * base_channels * V)

        topology = np.stack([np.eye(V)] * num_heads)  # (heads, V, V): identity per head
        channels = base_channels
        for index, (out_channels, stride) in enumerate(block_plan(num_blocks, base_channels), start=1):
            self.add_module(f"l{index}", EncodingBlock(channels, out_channels, topology, stride=stride))
            channels = out_channels
        self.out_channels = channels

        self.fc = nn.Linear(channels, channels)
        self.fc_mu = nn.Linear(channels, channels)
        self.fc_logvar = nn.Linear(channels, channels)
        self.decoder: nn.Module = (
            nn.Linear(channels, num_classes)
            if classifier == "linear"
            else CosineClassifier(channels, num_classes, cosine_scale)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        z_prior = torch.empty(num_classes, channels)
        nn.init.orthogonal_(z_prior, gain=prior_gain)
        self.register_buffer("z_prior", z_prior)
        relu_gain = nn.init.calculate_gain("relu")
        for layer in (self.fc, self.fc_mu, self.fc_logvar):
            nn.init.xavier_uniform_(layer.weight, gain=relu_gain)
        nn.init.normal_(self.decoder.weight, 0.0, math.sqrt(2.0 / num_classes))
        init_bn(self.data_bn, 1.0)

    # ------------------------------------------------------------------ forward
    def embed(self, x: Tensor) -> Tensor:
        """The stem: every joint relative to its ``k``-th ancestor, embedded to ``base_channels``
        with a learned position per joint, then ``data_bn``: ``(N, C, T, V, M)`` ->
        ``(N*M, base_channels, T, V)``."""
        V = x.shape[3]
        joints = x.permute(0, 2, 4, 3, 1)  # (N, T, M, V, C)
        joints = self.A_vector.to(joints.dtype) @ joints  # relative to the k-th ancestor
        embedded = self.to_joint_embedding(joints) + self.pos_embedding[:, :V]  # (N, T, M, V, D)
        return normalise_coordinates(embedded.permute(0, 4, 1, 3, 2), self.data_bn)

    def latent(self, pooled: Tensor) -> Tensor:
        """The latent ``z`` ``(N, D)`` of pooled features ``(N, C_out)``.

        Eval mode: the mean ``mu``.  Train mode: ``mu + eps * min(exp(noise_ratio * logvar),
        100)`` with ``eps ~ N(0, I)`` drawn from torch's default generator of the device (the
        trainer seeds and checkpoints it, so seeded runs and resumed runs draw the same noise).
        """
        hidden = self.dropout(F.relu(self.fc(pooled)))
        mu = self.fc_mu(hidden)
        if not self.training:
            return mu
        std = (self.noise_ratio * self.fc_logvar(hidden)).exp().clamp(max=MAX_LATENT_STD)
        return mu + torch.randn_like(std) * std

    def head(self, features: Tensor, num_persons: int | None = None) -> Tensor:
        """Logits of last-block features: ``(N*M, C_out, T', V)`` -> ``(N, num_classes)``."""
        return self.decoder(self.latent(self.pool(features, num_persons)))

    def forward(self, x: Tensor, return_latent: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``(N, C, T, V, M)`` -> logits ``(N, K)``; with ``return_latent``, ``(logits, z)``
        with ``z`` ``(N, D)`` (the original's output)."""
        z = self.latent(self.pool(self.forward_features(x), x.shape[-1]))
        logits = self.decoder(z)
        return (logits, z) if return_latent else logits

    # ------------------------------------------------------------------ objective
    def auxiliary_loss(self, latent: Tensor, targets: Tensor) -> Tensor:
        """The information-bottleneck terms added to the classification loss:
        ``mmd_weight * class_prior_mmd(z, targets, z_prior) + latent_mean_weight * ||mean_i z_i||_2``.

        Args:
            latent: ``(B, D)`` latents of the step's forward (``forward(x, return_latent=True)``).
            targets: ``(B,)`` class ids or ``(B, K)`` target distributions (mixed samples),
                without label smoothing.

        Returns:
            a scalar tensor; no gradient reaches ``z_prior`` (a fixed buffer, as in the original).
        """
        if targets.dim() == 1:  # a scatter: F.one_hot reads the labels back to the host to check them
            targets = latent.new_zeros(len(targets), self.num_classes).scatter_(1, targets[:, None], 1.0)
        mmd = class_prior_mmd(latent, targets, self.z_prior)
        return self.mmd_weight * mmd + self.latent_mean_weight * latent.mean(dim=0).norm()

    # ------------------------------------------------------------------ original checkpoints
    def convert_original_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A state dict of the original code in this model's names: the same, plus ``z_prior``.

        The original keeps its class priors in a plain attribute, drawn anew at every
        construction and never saved, so its checkpoints have no ``z_prior``; this model keeps
        its own (freshly drawn) priors then.  A state dict that has one (ours) is unchanged.
        """
        converted = dict(state)
        converted.setdefault("z_prior", self.z_prior.detach().clone())
        return converted
