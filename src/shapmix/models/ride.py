"""RIDE's multi-expert network on any backbone (Wang et al., "Long-tailed recognition by routing
diverse distribution-aware experts", ICLR 2021).

:class:`RIDEModel` builds ``num_experts + 1`` instances of one :class:`~shapmix.models.common.PooledGCN`
backbone and keeps, from the first, the stem and the blocks of the first ``shared_stages`` stages
(the *trunk*, shared by every expert) and, from each of the others, the blocks of the remaining
stages and the head (an *expert*).  So every expert starts from the backbone's own, independent
initialisation, as the original's experts do, and owns everything after the trunk: its last
blocks, dropout and classifier (InfoGCN: its latent layers and decoder too).

How this follows the original (``frank-xwang/RIDE-LongTailRecognition``):

* Shared stages: the original shares the stem and ``layer1`` of the 3-stage CIFAR ResNet-32 and
  the stem, ``layer1`` and ``layer2`` of the 4-stage ImageNet ResNets; the later stages are the
  experts'.  The GCNs here have 3 stages (:func:`~shapmix.models.common.block_plan`); the default
  shares 2 of them and gives each expert the third (``model.ride_shared_stages=1`` is the
  ResNet-32 split, with experts twice as expensive).
* Width: the original narrows the experts' stages to 3/4 of the backbone's width
  (``reduce_dimension``: ResNet-32's 32/64 channels become 24/48) so that 3 experts cost about
  as much as one network.  Here the experts keep the backbone's width: a narrower copy of a block
  needs the backbone's own block constructor, which the backbone interface does not expose.  A
  3-expert model therefore has about 3x the parameters and compute of the experts' stages.
* Logits: each expert's logits are those of its own head.  With ``model.args.classifier=cosine``
  and ``cosine_scale=30`` (the ``ride`` preset) they are ``30 cos``, as the original's
  ``NormedLinear`` times ``s = 30`` in the model.
* Output: the mean of the experts' logits; once the router is trained (:attr:`RIDEModel.routed`),
  the routed ensemble in eval mode (:meth:`RIDEModel.routed_ensemble`).
* Router (the "expert assignment module", trained in a second stage with the experts frozen):
  for every expert ``i`` but the last, the L2-normalised pooled features of expert ``i`` go through
  its own ``Linear(C, 16)`` and ReLU; concatenated with the ``k`` largest logits of the mean of
  experts ``0..i`` they go through one shared ``Linear(16 + k, 1)``.  A sample goes on to expert
  ``i + 1`` while ``sigmoid(router) > threshold`` (original: 0.5) and stops for good at the first
  "no"; its output is the mean of the experts it used.  The original runs the later experts only
  on the samples still going; here every expert runs on every sample and the decisions mask
  them (the same outputs, without the compute saving, and no data-dependent shapes).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shapmix.models.common import block_plan

__all__ = [
    "DEFAULT_SHARED_STAGES",
    "ROUTER_HIDDEN",
    "ROUTER_THRESHOLD",
    "ROUTER_TOP_K",
    "ExpertRouter",
    "RIDEModel",
    "RIDEOutput",
    "shared_block_count",
    "stage_sizes",
    "threshold_logit",
]

DEFAULT_SHARED_STAGES = 2
"""Stages of the trunk (see the module docstring)."""
ROUTER_HIDDEN = 16
"""Width of each router's hidden layer (the original's ``expert_hidden_fc_output_dim``)."""
ROUTER_TOP_K = 30
"""Largest logits the router sees (``top_choices_num`` of the original's CIFAR-100-LT router
config; its ImageNet-LT and iNaturalist configs use 50)."""
ROUTER_THRESHOLD = 0.5
"""A sample goes on to the next expert when the router's probability exceeds this (original)."""
STEM_PROBE_FRAMES = 4
"""Frames of the constant input on which the stem's parameters are found (any length works)."""

RIDEOutput = Literal["ensemble", "experts", "router", "routed"]


def stage_sizes(num_blocks: int) -> list[int]:
    """Blocks per stage of :func:`~shapmix.models.common.block_plan` (``10`` -> ``[4, 3, 3]``)."""
    widths = [width for width, _ in block_plan(num_blocks, 1)]
    return [widths.count(width) for width in sorted(set(widths))]


def shared_block_count(num_blocks: int, shared_stages: int) -> int:
    """Blocks in the first ``shared_stages`` stages; the rest must leave each expert one block.

    Raises:
        ValueError: ``shared_stages`` is not 1 or 2, or the backbone is too shallow.
    """
    sizes = stage_sizes(num_blocks)
    if not 1 <= shared_stages < len(sizes):
        raise ValueError(
            f"model.ride_shared_stages={shared_stages}: a backbone of {num_blocks} blocks has stages "
            f"{sizes}; share 1 to {len(sizes) - 1} of them so every expert owns at least one"
        )
    return sum(sizes[:shared_stages])


def threshold_logit(threshold: float) -> float:
    """``logit(threshold)``: ``sigmoid(z) > threshold`` is ``z > threshold_logit(threshold)``,
    exactly also at 0 (``-inf``: always go on) and 1 (``inf``: never)."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"the router threshold must lie in [0, 1], got {threshold}")
    if threshold == 0:
        return -math.inf
    if threshold == 1:
        return math.inf
    return math.log(threshold) - math.log1p(-threshold)


def _stem_parameters(backbone: nn.Module) -> set[int]:
    """Ids of the parameters the backbone's ``embed`` uses (found by autograd on a constant
    input in eval mode, so no statistic or random state changes)."""
    probe = torch.ones(1, backbone.in_channels, STEM_PROBE_FRAMES, backbone.num_joints, backbone.num_persons)
    parameters = [parameter for parameter in backbone.parameters() if parameter.requires_grad]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.enable_grad():
            embedded = backbone.embed(probe)
    finally:
        backbone.train(was_training)
    if not embedded.requires_grad:
        return set()
    gradients = torch.autograd.grad(embedded.sum(), parameters, allow_unused=True)
    return {id(parameter) for parameter, gradient in zip(parameters, gradients) if gradient is not None}


def _detach_modules(root: nn.Module, modules: list[nn.Module]) -> None:
    """Unregister ``modules`` wherever they sit under ``root`` (their slots become ``None``)."""
    targets = {id(module) for module in modules}
    for parent in list(root.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and id(child) in targets:
                parent._modules[name] = None


def _drop_parameters(root: nn.Module, unwanted: set[int]) -> None:
    """Remove the parameters ``unwanted`` from ``root``: every submodule whose parameters are all
    unwanted, and such parameters held directly by a module that keeps others."""
    for name, parameter in list(root._parameters.items()):
        if parameter is not None and id(parameter) in unwanted:
            root._parameters[name] = None
    for name, child in list(root._modules.items()):
        if child is None:
            continue
        parameters = list(child.parameters())
        if parameters and all(id(parameter) in unwanted for parameter in parameters):
            root._modules[name] = None
        else:
            _drop_parameters(child, unwanted)


class _Trunk(nn.Module):
    """The backbone's stem and its first blocks: ``(N, C, T, V, M)`` -> ``(N*M, C_s, T_s, V)``."""

    def __init__(self, backbone: nn.Module, shared_blocks: int) -> None:
        super().__init__()
        blocks = list(backbone.blocks)
        stem = _stem_parameters(backbone)
        _detach_modules(backbone, blocks)
        _drop_parameters(backbone, {id(p) for p in backbone.parameters()} - stem)  # its head
        self.network = backbone  # what is left: the stem (embed)
        self.blocks = nn.ModuleList(blocks[:shared_blocks])

    def forward(self, x: Tensor) -> Tensor:
        self.network._check_input(x)
        features = self.network.embed(x)
        for block in self.blocks:
            features = block(features)
        return features


class _Expert(nn.Module):
    """One expert: the last blocks and the head of its own backbone instance."""

    def __init__(self, backbone: nn.Module, shared_blocks: int) -> None:
        super().__init__()
        blocks = list(backbone.blocks)
        stem = _stem_parameters(backbone)
        _detach_modules(backbone, blocks)
        _drop_parameters(backbone, stem)
        self.network = backbone  # what is left: the head (pool, dropout, classifier)
        self.blocks = nn.ModuleList(blocks[shared_blocks:])

    def forward(self, shared: Tensor, num_persons: int) -> tuple[Tensor, Tensor]:
        """Trunk features ``(N*M, C_s, T_s, V)`` -> ``(logits (N, K), pooled features (N, C_out))``."""
        features = shared
        for block in self.blocks:
            features = block(features)
        return self.network.head(features, num_persons), self.network.pool(features, num_persons)


class ExpertRouter(nn.Module):
    """RIDE's expert assignment module: one "does a further expert help?" logit per sample for
    every expert but the last.

    Args:
        num_experts: ``E``.
        feature_dim: ``C_out``, the width of an expert's pooled features.
        top_k: how many of the largest ensemble logits it sees (at most ``K``).
        hidden: width of each expert's hidden layer.
    """

    def __init__(self, num_experts: int, feature_dim: int, top_k: int, hidden: int = ROUTER_HIDDEN) -> None:
        super().__init__()
        self.top_k = top_k
        self.hidden = nn.ModuleList(nn.Linear(feature_dim, hidden) for _ in range(num_experts - 1))
        self.decision = nn.Linear(hidden + top_k, 1)  # shared by the experts (share_expert_help_pred_fc)
        for layer in (*self.hidden, self.decision):
            nn.init.kaiming_normal_(layer.weight)  # the original's _weights_init of every Linear

    def forward(self, pooled: Tensor, mean_logits: Tensor) -> Tensor:
        """``pooled`` ``(E-1, N, C_out)`` features of experts ``0..E-2`` and ``mean_logits``
        ``(E-1, N, K)``, row ``i`` the mean logits of experts ``0..i`` -> ``(E-1, N)`` logits."""
        normalised = F.normalize(pooled, dim=-1)
        hidden = torch.stack([F.relu(layer(features)) for layer, features in zip(self.hidden, normalised)])
        top = mean_logits.topk(self.top_k, dim=-1).values
        return self.decision(torch.cat([top, hidden], dim=-1)).squeeze(-1)


class RIDEModel(nn.Module):
    """Several experts on one backbone, their mean, and a router (module docstring).

    Args:
        build_backbone: builds one backbone instance (a :class:`~shapmix.models.common.PooledGCN`:
            ``embed``, ``blocks``, ``head``, ``pool``, ``out_channels``); called
            ``num_experts + 1`` times, in order (trunk, expert 0, expert 1, ...).
        num_experts: ``E`` (the paper's main setting: 3).
        shared_stages: stages of the trunk.
        router_hidden: width of the router's hidden layers.
        router_top_k: largest logits the router sees (clipped to the number of classes).
        router_threshold: a sample goes on to the next expert when the router's probability
            exceeds it (0: every expert; 1: only the first).

    Attributes:
        routed: ``False`` until the router stage switches it on; then the eval-mode output is the
            routed ensemble.  Saved in the state dict (``_extra_state``).
    """

    def __init__(
        self,
        build_backbone: Callable[[], nn.Module],
        num_experts: int,
        shared_stages: int = DEFAULT_SHARED_STAGES,
        router_hidden: int = ROUTER_HIDDEN,
        router_top_k: int = ROUTER_TOP_K,
        router_threshold: float = ROUTER_THRESHOLD,
    ) -> None:
        super().__init__()
        if num_experts < 2:
            raise ValueError(f"RIDE needs at least 2 experts, got model.ride_experts={num_experts}")
        template = build_backbone()
        missing = [name for name in ("embed", "blocks", "head", "pool", "out_channels") if not hasattr(template, name)]
        if missing:
            raise TypeError(f"RIDE needs a backbone with embed, blocks, head, pool and out_channels; "
                            f"{type(template).__name__} lacks {missing}")
        self.num_classes = template.num_classes
        self.num_persons = template.num_persons
        self.num_experts = num_experts
        self.shared_blocks = shared_block_count(len(template.blocks), shared_stages)
        self.trunk = _Trunk(template, self.shared_blocks)
        self.experts = nn.ModuleList(_Expert(build_backbone(), self.shared_blocks) for _ in range(num_experts))
        top_k = min(router_top_k, self.num_classes)
        self.router = ExpertRouter(num_experts, template.out_channels, top_k, router_hidden)
        self.router.requires_grad_(False)  # trained only in the router stage
        self.threshold = router_threshold
        self._threshold_logit = threshold_logit(router_threshold)
        self.routed = False

    def get_extra_state(self) -> dict[str, bool]:
        return {"routed": self.routed}

    def set_extra_state(self, state: dict[str, bool]) -> None:
        self.routed = bool(state["routed"])

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, shared_blocks={self.shared_blocks}, threshold={self.threshold}, routed={self.routed}"

    def expert_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, C, T, V, M)`` -> ``(logits (E, N, K), pooled features (E, N, C_out))``."""
        shared = self.trunk(x)
        outputs = [expert(shared, x.shape[-1]) for expert in self.experts]
        return torch.stack([logits for logits, _ in outputs]), torch.stack([pooled for _, pooled in outputs])

    def router_logits(self, logits: Tensor, pooled: Tensor) -> Tensor:
        """The router's ``(E-1, N)`` logits from :meth:`expert_outputs`' ``(E, N, K)`` logits and
        ``(E, N, C_out)`` features: entry ``(i, n)`` says whether experts after ``i`` help sample ``n``."""
        counts = torch.arange(1, self.num_experts, device=logits.device, dtype=logits.dtype)
        cumulative_means = logits[:-1].cumsum(0) / counts[:, None, None]
        return self.router(pooled[:-1], cumulative_means)

    def routed_ensemble(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, C, T, V, M)`` -> ``(logits (N, K), experts used (N,) int64)``: each sample's mean
        over experts ``0..j``, where ``j + 1`` is where the router first says stop."""
        logits, pooled = self.expert_outputs(x)
        go_on = self.router_logits(logits, pooled) > self._threshold_logit  # (E-1, N)
        first = torch.ones_like(go_on[:1])
        used = torch.cat([first, go_on]).long().cumprod(0)  # (E, N): 1 while every decision so far said go on
        counts = used.sum(0)
        ensemble = (logits * used[..., None].to(logits.dtype)).sum(0) / counts[:, None].to(logits.dtype)
        return ensemble, counts

    def forward(self, x: Tensor, output: RIDEOutput = "ensemble") -> Tensor | tuple[Tensor, Tensor]:
        """``(N, C, T, V, M)`` ->

        * ``"ensemble"``: ``(N, K)`` logits: in eval mode after the router stage the routed
          ensemble, else the mean of the experts' logits;
        * ``"experts"``: ``(E, N, K)`` every expert's logits;
        * ``"router"``: ``(experts' logits (E, N, K), router logits (E-1, N))``;
        * ``"routed"``: :meth:`routed_ensemble`'s ``(logits, experts used)``.
        """
        if output == "routed" or (output == "ensemble" and self.routed and not self.training):
            ensemble, counts = self.routed_ensemble(x)
            return (ensemble, counts) if output == "routed" else ensemble
        logits, pooled = self.expert_outputs(x)
        if output == "ensemble":
            return logits.mean(0)
        if output == "experts":
            return logits
        if output == "router":
            return logits, self.router_logits(logits, pooled)
        raise ValueError(f"unknown RIDE output {output!r}; use ensemble, experts, router or routed")
