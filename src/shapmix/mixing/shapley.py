"""Shapley values of body parts and part combinations (Shap-Mix, Zhang et al., IJCAI 2024, Sec. 3.3).

The game: the players are the ``P`` body parts of a layout (5), and the worth of a coalition
``S`` of parts for a sample ``(x, y)`` is ``v(S) = softmax(f(x_S))[y]``, the model's probability
of the true class when only the parts in ``S`` are kept and every other joint is replaced, in
all frames, by a baseline sequence (the dataset's mean sequence in the model's input space).

Three tools, all pure functions:

* exact values from the worths of all ``2**P`` coalitions (:func:`shapley_values` for single
  parts, :func:`combination_shapley_values` for combinations treated as one merged player,
  Eq. 2 of the paper), with :func:`coalition_values` computing those worths with a model;
* the online Monte-Carlo estimator :func:`estimate_combination_shapley`: one unbiased
  single-draw estimate per sample, each sample with its own combination and coalition;
* the online exact estimator :func:`exact_combination_rows`: every combination's exact value
  for each of a few samples, from all ``2**P`` worths of each (optionally with the paper's clip);
* :func:`mean_sequence`, the baseline.

Coalitions are indexed by bitmask: index ``b`` of a ``(..., 2**P)`` tensor is the coalition of
the parts ``p`` with bit ``p`` of ``b`` set (so index 0 is the empty coalition, ``2**P - 1`` all).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from math import factorial

import torch
from torch import nn

from ..seeds import draw_device
from ..skeleton.layouts import Layout, get_layout
from .parts import PartCombinations, part_joint_masks
from .saliency import SumReducer

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ShapleyEstimate",
    "coalition_joint_masks",
    "coalition_values",
    "combination_shapley_values",
    "estimate_combination_shapley",
    "evaluation_mode",
    "exact_combination_rows",
    "least_estimated_classes",
    "mask_parts",
    "mean_sequence",
    "class_balanced_subset",
    "clipped_combination_shapley_values",
    "least_estimated_combinations",
    "merged_player_weights",
    "shapley_values",
]

DEFAULT_CHUNK_SIZE = 256
"""Samples per forward pass in :func:`coalition_values`."""

_OUTSIDE_KEY = 2.0
"""Random sort key given to parts that may not join ``T`` (keys of the others lie in [0, 1))."""


# --------------------------------------------------------------------------- exact values


def _num_players(num_coalitions: int) -> int:
    num_players = num_coalitions.bit_length() - 1
    if num_coalitions < 2 or 2**num_players != num_coalitions:
        raise ValueError(f"the last dimension must hold 2**P coalition values, got {num_coalitions}")
    return num_players


def merged_player_weights(num_players: int, groups: tuple[int, ...]) -> torch.Tensor:
    """Linear map from coalition worths to the Shapley value of each group as one merged player.

    For a group ``G`` (a bitmask), the game is reduced to ``n = P - |G| + 1`` players: ``G``
    merged into one, plus each part outside ``G``.  Its Shapley value is

    ``phi(G) = sum_{T subset of U minus G} |T|! (n - 1 - |T|)! / n! * [v(G u T) - v(T)]``

    (Eq. 2 of the paper); for a single part this is the ordinary Shapley value.

    Args:
        num_players: ``P``.
        groups: bitmasks of the ``G`` groups (non-empty).

    Returns:
        ``(2**P, G)`` float64 matrix ``W`` with ``phi = values @ W``.
    """
    return _merged_player_weights(num_players, tuple(groups)).clone()


@cache
def _merged_player_terms(num_players: int, groups: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The terms of Eq. 2 one by one: for group ``G`` and its ``j``-th coalition ``T``, the
    bitmasks of ``G u T`` and ``T`` and the weight of ``T``; ``(G, 2**(P-1))`` each, padded with
    weight 0 (callers must not modify the results)."""
    width = 2 ** (num_players - 1)
    with_group = torch.zeros(len(groups), width, dtype=torch.int64)
    without_group = torch.zeros(len(groups), width, dtype=torch.int64)
    weights = torch.zeros(len(groups), width, dtype=torch.float64)
    for row, group in enumerate(groups):
        if not 0 < group < 2**num_players:
            raise ValueError(f"group bitmask {group} is not a non-empty coalition of {num_players} players")
        players = num_players - group.bit_count() + 1
        terms = [coalition for coalition in range(2**num_players) if not coalition & group]
        for column, coalition in enumerate(terms):
            size = coalition.bit_count()
            with_group[row, column] = coalition | group
            without_group[row, column] = coalition
            weights[row, column] = factorial(size) * factorial(players - 1 - size) / factorial(players)
    return with_group, without_group, weights


@cache
def _merged_player_weights(num_players: int, groups: tuple[int, ...]) -> torch.Tensor:
    """Cached :func:`merged_player_weights` (callers must not modify the result): each term of
    Eq. 2 adds its weight at ``G u T`` and subtracts it at ``T``."""
    with_group, without_group, term_weights = _merged_player_terms(num_players, groups)
    weights = torch.zeros(len(groups), 2**num_players, dtype=torch.float64)
    weights.scatter_add_(1, with_group, term_weights)
    weights.scatter_add_(1, without_group, -term_weights)
    return weights.T.contiguous()


@cache
def _merged_player_terms_on(
    num_players: int, groups: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_merged_player_terms` on ``device``, copied there once (a training step must not
    wait for the same host-to-device copy every time; callers must not modify the results)."""
    with_group, without_group, weights = _merged_player_terms(num_players, groups)
    return with_group.to(device), without_group.to(device), weights.to(device)


@cache
def _merged_player_weights_on(num_players: int, groups: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """:func:`_merged_player_weights` on ``device``, copied there once."""
    return _merged_player_weights(num_players, groups).to(device)


def _apply_weights(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    result = values.to(torch.float64) @ weights.to(values.device)
    return result.to(values.dtype) if values.is_floating_point() else result


def shapley_values(values: torch.Tensor) -> torch.Tensor:
    """Exact Shapley value of every player.

    Args:
        values: ``(..., 2**P)`` worths of all coalitions, indexed by bitmask.

    Returns:
        ``(..., P)``; for every batch entry the values sum to ``v(all) - v(empty)`` (efficiency).
    """
    num_players = _num_players(values.shape[-1])
    groups = tuple(1 << player for player in range(num_players))
    return _apply_weights(values, _merged_player_weights_on(num_players, groups, values.device))


def combination_shapley_values(
    values: torch.Tensor, combinations: Sequence[Sequence[int]] | PartCombinations
) -> torch.Tensor:
    """Exact Shapley value of each combination treated as one merged player (Eq. 2).

    Args:
        values: ``(..., 2**P)`` worths of all coalitions, indexed by bitmask.
        combinations: ``S`` collections of player indices, or a :class:`PartCombinations`.

    Returns:
        ``(..., S)``, not divided by joint counts.  A singleton's value is its Shapley value.
    """
    if isinstance(combinations, PartCombinations):
        combinations = combinations.combinations
    num_players = _num_players(values.shape[-1])
    groups = tuple(sum(1 << player for player in set(combo)) for combo in combinations)
    return _apply_weights(values, _merged_player_weights_on(num_players, groups, values.device))


def clipped_combination_shapley_values(
    values: torch.Tensor, combinations: Sequence[Sequence[int]] | PartCombinations
) -> torch.Tensor:
    """Eq. 2 with every marginal contribution clipped at 0: ``sum_T w(T) max(v(G u T) - v(T), 0)``.

    The expectation of the clipped single-draw estimate of
    :func:`estimate_combination_shapley` (the paper's ReLU), computed exactly.

    Args:
        values: ``(..., 2**P)`` worths of all coalitions, indexed by bitmask.
        combinations: ``S`` collections of player indices, or a :class:`PartCombinations`.

    Returns:
        ``(..., S)`` float64, not divided by joint counts; at least the unclipped value.
    """
    if isinstance(combinations, PartCombinations):
        combinations = combinations.combinations
    num_players = _num_players(values.shape[-1])
    groups = tuple(sum(1 << player for player in set(combo)) for combo in combinations)
    with_group, without_group, weights = _merged_player_terms_on(num_players, groups, values.device)
    worths = values.to(torch.float64)
    marginal = worths[..., with_group] - worths[..., without_group]  # (..., S, 2**(P-1))
    return (marginal.clamp(min=0.0) * weights).sum(dim=-1)


# --------------------------------------------------------------------------- the game on a model


def coalition_joint_masks(layout: str | Layout) -> torch.Tensor:
    """``(2**P, V)`` bool: joint ``v`` is kept in the coalition with bitmask index ``b``."""
    part_masks = part_joint_masks(layout)
    num_parts = part_masks.shape[0]
    bits = (torch.arange(2**num_parts)[:, None] >> torch.arange(num_parts)[None, :]) & 1
    return (bits @ part_masks.to(torch.int64)).bool()


_COALITION_MASKS_ON: dict[tuple[tuple[int, ...], int, torch.device], torch.Tensor] = {}
""":func:`coalition_joint_masks` per (joint-to-part map, number of parts, device), made once."""


def _coalition_joint_masks_on(layout: Layout, device: torch.device) -> torch.Tensor:
    """:func:`coalition_joint_masks` on ``device``, copied there once per layout."""
    key = (tuple(layout.part_of_joint), layout.num_parts, device)
    masks = _COALITION_MASKS_ON.get(key)
    if masks is None:
        masks = _COALITION_MASKS_ON[key] = coalition_joint_masks(layout).to(device)
    return masks


def mask_parts(x: torch.Tensor, keep: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Keep the chosen joints of each sample and replace the others by the baseline, in all frames.

    Args:
        x: ``(N, C, T, V, M)``.
        keep: ``(N, V)`` bool.
        baseline: ``(C, T, V, M)`` (or broadcastable to it), e.g. :func:`mean_sequence`.

    Returns:
        ``(N, C, T, V, M)``.
    """
    keep = keep.to(x.device)[:, None, None, :, None]
    return torch.where(keep, x, baseline.to(device=x.device, dtype=x.dtype))


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode, without gradients, and restore every submodule's previous
    train/eval flag afterwards (also when some submodules were frozen in eval mode)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, training in modes:
            module.training = training


def _true_class_probability(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``softmax(model(x))[n, y[n]]`` as ``(N,)`` float32."""
    probs = torch.softmax(model(x).float(), dim=1)
    return probs.gather(1, y.to(probs.device)[:, None]).squeeze(1)


def _masked_probabilities(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, baseline: torch.Tensor
) -> torch.Tensor:
    """``(2N,)`` true-class probabilities of ``x`` masked by each row of ``keep`` ``(2N, V)``
    (rows ``n`` and ``N + n`` belong to sample ``n``), in one eval-mode, no-grad forward pass.

    Every row is evaluated, also those that keep no joint (the empty coalitions, about 3 in 10
    second rows), which are the baseline itself: leaving them out would make the batch's size
    depend on the draws, which a GPU can only tell by making the host wait for it.
    """
    num_samples = x.shape[0]
    sample_of_row = torch.arange(2 * num_samples, device=x.device) % num_samples
    inputs = mask_parts(x[sample_of_row], keep, baseline)
    with evaluation_mode(model):
        return _true_class_probability(model, inputs, y[sample_of_row])


def coalition_values(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    baseline: torch.Tensor,
    layout: str | Layout,
    batch_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Worths ``v(S) = softmax(f(x_S))[y]`` of all ``2**P`` coalitions of every sample.

    ``N * 2**P`` masked inputs are evaluated in eval mode without gradients, ``batch_size`` at a
    time; the model's train/eval mode is restored afterwards.

    Args:
        model: maps ``(B, C, T, V, M)`` to logits ``(B, K)``.
        x: ``(N, C, T, V, M)`` model inputs.
        y: ``(N,)`` int64 true classes.
        baseline: ``(C, T, V, M)`` replacement for absent parts, in the model's input space.
        layout: the skeleton layout whose parts are the players.
        batch_size: masked inputs per forward pass.

    Returns:
        ``(N, 2**P)`` float32 on ``x.device``, indexed by coalition bitmask.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    keep = _coalition_joint_masks_on(get_layout(layout), x.device)
    num_coalitions = keep.shape[0]
    y = y.to(x.device)
    flat = torch.arange(x.shape[0] * num_coalitions, device=x.device)
    pieces = []
    with evaluation_mode(model):
        for chunk in flat.split(batch_size):
            sample, coalition = chunk // num_coalitions, chunk % num_coalitions
            masked = mask_parts(x[sample], keep[coalition], baseline)
            pieces.append(_true_class_probability(model, masked, y[sample]))
    return torch.cat(pieces).reshape(x.shape[0], num_coalitions)


# --------------------------------------------------------------------------- Monte-Carlo estimate


@dataclass(frozen=True)
class ShapleyEstimate:
    """Per-sample single-draw estimates.

    Attributes:
        values: ``(N,)`` float32, ``[v(S u T) - v(T)] / joints(S)`` (clipped at 0 if requested).
        combinations: ``(N,)`` int64, the index of each sample's combination ``S``.
        coalitions: ``(N,)`` int64, the bitmask of each sample's coalition ``T``.
    """

    values: torch.Tensor
    combinations: torch.Tensor
    coalitions: torch.Tensor


def _draw_coalitions(
    in_combination: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Per sample, a coalition ``T`` of the parts outside ``S`` drawn with the Shapley weights.

    ``|T|`` is uniform in ``0..r`` (``r`` = number of parts outside ``S``), then ``T`` is uniform
    among the subsets of that size: ``P(T) = |T|! (r - |T|)! / (r + 1)!``, exactly the weight of
    ``T`` in Eq. 2, so ``v(S u T) - v(T)`` is an unbiased estimate of ``phi(S)``.

    Args:
        in_combination: ``(N, P)`` bool, the parts of each sample's ``S``.
        generator: where the draws come from (``None``: torch's default one of the device).

    Returns:
        ``(N, P)`` bool, the parts of each sample's ``T``, on ``in_combination``'s device (the
        draws happen on the generator's).
    """
    num_samples, num_parts = in_combination.shape
    device = draw_device(generator, in_combination.device)
    outside = num_parts - in_combination.sum(dim=1)
    fraction = torch.rand(num_samples, generator=generator, device=device).to(outside.device)
    size = (fraction * (outside + 1)).floor().long()
    size = torch.minimum(size, outside)
    keys = torch.rand(num_samples, num_parts, generator=generator, device=device).to(outside.device)
    keys = keys.masked_fill(in_combination, _OUTSIDE_KEY)
    rank = keys.argsort(dim=1).argsort(dim=1)
    return rank < size[:, None]


def estimate_combination_shapley(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    baseline: torch.Tensor,
    combinations: PartCombinations,
    combination: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip: bool = True,
    naive: bool = False,
) -> ShapleyEstimate:
    """One Monte-Carlo estimate of a combination's per-joint Shapley value for every sample.

    Each sample ``n`` has its own combination ``S_n`` (uniform over the combinations unless
    ``combination`` is given) and its own coalition ``T_n`` of the other parts, drawn with the
    Shapley weights (see :func:`_draw_coalitions`).  The ``2N`` masked inputs ``x_{S u T}`` and
    ``x_T`` go through the model in ONE forward pass, in eval mode and without gradients (the
    model's mode is restored afterwards).  The estimate is ``[v(S u T) - v(T)] / joints(S)``;
    without clipping its expectation is exactly ``phi(S) / joints(S)`` (Eq. 2 and the
    normalisation of Eq. 3).

    ``clip=True`` (the authors' choice) replaces a negative marginal contribution by 0.  This
    biases the estimate upwards: ``E[max(D, 0)] >= max(E[D], 0)``, most for combinations whose
    contributions change sign across coalitions, so the table then ranks combinations by how
    often and how much they help rather than by their Shapley value.

    ``naive=True`` (warm-up) uses the empty coalition, ``[v(S) - v(empty)] / joints(S)``.

    Args:
        model: maps ``(B, C, T, V, M)`` to logits ``(B, K)``.
        x: ``(N, C, T, V, M)`` model inputs.
        y: ``(N,)`` int64 true classes.
        baseline: ``(C, T, V, M)`` replacement for absent parts, in the model's input space.
        combinations: the combinations (and part masks) of the model's layout.
        combination: optional ``(N,)`` int64 fixed combination index per sample.
        generator: random generator for ``S`` and ``T``, best on ``x``'s device (``None``:
            torch's default generator of ``x``'s device).
        clip: clip marginal contributions at 0 before normalising.
        naive: use ``T = empty`` instead of a random coalition.

    Returns:
        :class:`ShapleyEstimate` with tensors on ``x.device``.
    """
    num_samples = x.shape[0]
    device = x.device
    if combination is None:
        draw_on = draw_device(generator, device)
        combination = torch.randint(len(combinations), (num_samples,), generator=generator, device=draw_on)
    combination = combination.to(device, torch.int64)
    if combination.shape != (num_samples,):
        raise ValueError(f"combination must have shape ({num_samples},), got {tuple(combination.shape)}")
    tables = combinations.to(device)
    in_combination = tables.part_membership[combination]
    if naive:
        in_coalition = torch.zeros_like(in_combination)
    else:
        in_coalition = _draw_coalitions(in_combination, generator)

    part_masks = tables.part_masks.to(torch.float32)
    keep_with = ((in_combination | in_coalition).float() @ part_masks).bool()
    keep_without = (in_coalition.float() @ part_masks).bool()
    keep = torch.cat([keep_with, keep_without])
    probs = _masked_probabilities(model, x, y.to(device), keep, baseline)
    marginal = probs[:num_samples] - probs[num_samples:]
    if clip:
        marginal = marginal.clamp(min=0.0)
    joints = tables.joint_counts[combination].to(dtype=marginal.dtype)
    powers = 2 ** torch.arange(combinations.num_parts, device=device)
    coalitions = (in_coalition.long() * powers).sum(dim=1)
    return ShapleyEstimate(values=marginal / joints, combinations=combination, coalitions=coalitions)


def exact_combination_rows(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    baseline: torch.Tensor,
    combinations: PartCombinations,
    clip: bool = True,
    batch_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Every combination's exact per-joint Shapley value for every sample (an online estimator).

    The Monte-Carlo estimator spends 2 forwards on one noisy estimate of one combination; with
    ``P = 5`` parts, ``2**P = 32`` forwards (all coalitions, :func:`coalition_values`) give the
    exact values of all 20 combinations of 2..3 parts (Eq. 2).  Per forward that is 8 times as
    many table updates, each free of the coalition draw's noise; the only randomness left is
    which samples are evaluated.  ``clip`` clips every marginal contribution at 0 before
    weighting (:func:`clipped_combination_shapley_values`), so the value is the expectation of
    the clipped Monte-Carlo estimate.

    Args:
        model: maps ``(B, C, T, V, M)`` to logits ``(B, K)`` (evaluated in eval mode, no grad).
        x: ``(N, C, T, V, M)`` model inputs.
        y: ``(N,)`` int64 true classes.
        baseline: ``(C, T, V, M)`` replacement for absent parts, in the model's input space.
        combinations: the combinations (and part masks) of the model's layout.
        clip: clip marginal contributions at 0 (the paper's choice).
        batch_size: masked inputs per forward pass.

    Returns:
        ``(N, S)`` float32 on ``x.device``: ``phi(S) / joints(S)`` of each sample.
    """
    worths = coalition_values(model, x, y, baseline, combinations.layout, batch_size)
    if clip:
        values = clipped_combination_shapley_values(worths, combinations)
    else:
        values = combination_shapley_values(worths.to(torch.float64), combinations)
    joints = combinations.to(values.device).joint_counts.to(torch.float64)
    return (values / joints).float()


def least_estimated_classes(
    row_counts: torch.Tensor, labels: torch.Tensor, number: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One sample each of the ``number`` classes of a batch whose table rows were updated least.

    For :func:`exact_combination_rows`, which updates a whole row per sample: choosing the
    present classes with the fewest row updates (ties and the sample within a class at random)
    keeps every class's row about equally fresh, head and tail alike, as far as a class's
    presence in the batches allows.  The choice depends on labels and past counts only, never on
    estimates.

    Args:
        row_counts: ``(K,)`` updates of each class's row so far (e.g. ``counts.sum(1)``).
        labels: ``(N,)`` int64 classes of the batch.
        number: how many samples to choose (at most one per class present).
        generator: generator for the ties and the sample within a class (``None``: torch's
            default generator of ``labels``' device).

    Returns:
        ``(chosen, picked)``, each ``(min(number, N),)`` on ``labels``' device: int64 batch
        indices, the classes' picks first, fewest updates first, and bool, whether the index is
        its class's pick.  When fewer than ``number`` classes are present the remaining indices
        are other samples (``picked`` false), to be ignored: a size that depended on the labels
        would make a GPU step wait for the host to learn it.
    """
    device = labels.device
    draw_on = draw_device(generator, device)
    labels = labels.to(torch.int64)
    # A uniform key in [0, 1) below the integer counts breaks ties between classes at random.
    tie_break = torch.rand(row_counts.shape, generator=generator, dtype=torch.float64, device=draw_on)
    class_keys = row_counts.to(device, torch.float64) + tie_break.to(device)
    # Shuffle, then sort stably by class key: each class forms one run in random inner order,
    # and the first sample of a run is that class's pick.
    shuffled = torch.randperm(labels.numel(), generator=generator, device=draw_on).to(device)
    order = shuffled[class_keys[labels[shuffled]].argsort(stable=True)]
    first_of_class = torch.ones(order.shape, dtype=torch.bool, device=device)
    first_of_class[1:] = labels[order[1:]] != labels[order[:-1]]
    # The picks first, in their order (a stable sort on "not a pick"), then the other samples.
    ranked = (~first_of_class).to(torch.int32).argsort(stable=True)[:number]
    return order[ranked], first_of_class[ranked]


def class_balanced_subset(
    labels: torch.Tensor,
    class_counts: torch.Tensor,
    budget: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which samples of a batch get a Shapley estimate when only ``budget`` of them can.

    A class's table row only learns from its own samples, and a batch holds samples in
    proportion to the training counts, so estimating a uniform subset would starve the tail
    classes.  Here sample ``n`` is drawn (without replacement) with weight ``1 / counts[y_n]``:
    nearly every sample of a rare class is estimated and the head classes share what is left,
    so the estimates spread over the classes far more evenly than the batch does.  The choice depends on the labels only, never on the estimates, so each
    cell's estimates stay unbiased; only how often each cell is updated changes.

    Args:
        labels: ``(N,)`` int64 class of each sample (any device).
        class_counts: ``(K,)`` training samples per class (a zero count is treated as 1).
        budget: number of samples to choose; ``>= N`` chooses all.
        generator: generator for the draw (``None``: torch's default generator of ``labels``'
            device).

    Returns:
        ``(min(budget, N),)`` int64 indices into the batch, on ``labels``'s device, in batch order.
        Pass ``class_counts`` on that device too, so that nothing is copied from the host.
    """
    num_samples = labels.shape[0]
    device = labels.device
    if budget >= num_samples:
        return torch.arange(num_samples, device=device)
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    counts = class_counts.to(device, torch.float64).clamp(min=1.0)[labels]
    # Weighted sampling without replacement as top-k of log-weight + Gumbel noise.
    draw_on = draw_device(generator, device)
    uniform = torch.rand(num_samples, generator=generator, dtype=torch.float64, device=draw_on).to(device)
    keys = -counts.log() - torch.log(-torch.log(uniform.clamp(min=1e-300)))
    return keys.topk(budget).indices.sort().values


def least_estimated_combinations(
    counts: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per sample, the combination its class's table row has been updated least often.

    Drawing ``S`` this way (ties at random) instead of uniformly fills every cell of a class's
    row at the same rate, which matters for tail classes with a handful of estimates.  ``S`` still
    depends only on labels and past counts, never on the sample's estimate, and the coalition
    ``T`` is drawn with the Shapley weights given ``S``, so each cell's estimates stay unbiased.

    Args:
        counts: ``(K, S)`` updates per cell (:attr:`SaliencyTable.counts`).
        labels: ``(N,)`` int64 classes.
        generator: generator for tie-breaking (``None``: torch's default generator of
            ``labels``' device).

    Returns:
        ``(N,)`` int64 combination indices, on ``labels``' device.
    """
    device = labels.device
    per_sample = counts.to(device, torch.float64)[labels]
    # A uniform key in [0, 1) below the integer counts breaks ties at random, so samples of one
    # class in one batch spread over its least-updated cells.
    draw_on = draw_device(generator, device)
    tie_break = torch.rand(per_sample.shape, generator=generator, dtype=torch.float64, device=draw_on)
    return (per_sample + tie_break.to(device)).argmin(dim=1)


# --------------------------------------------------------------------------- baseline


def mean_sequence(data: torch.Tensor | Iterable, reducer: SumReducer | None = None) -> torch.Tensor:
    """The dataset's mean sequence, the baseline for absent parts.

    Args:
        data: a ``(N, C, T, V, M)`` tensor, or an iterable of batches (each a tensor or a
            tuple/list whose first element is the ``(B, C, T, V, M)`` input), e.g. a loader.
            Pass data already in the model's input space (joint, bone or motion), after the
            same transforms the model sees, so the baseline matches its inputs.
        reducer: under DDP, the process group's context (its ``all_reduce_sum``): each rank
            passes its shard and the sums and counts are added over ranks, so every rank gets
            the mean of all shards.

    Returns:
        ``(C, T, V, M)`` float32, the mean over samples (accumulated in float64).
    """
    batches = [data] if isinstance(data, torch.Tensor) else data
    total: torch.Tensor | None = None
    count = 0
    for batch in batches:
        x = batch if isinstance(batch, torch.Tensor) else batch[0]
        if x.ndim != 5:
            raise ValueError(f"expected batches of shape (N, C, T, V, M), got {tuple(x.shape)}")
        batch_sum = x.detach().to(torch.float64).sum(dim=0)
        total = batch_sum if total is None else total + batch_sum
        count += x.shape[0]
    if total is None or count == 0:
        raise ValueError("mean_sequence needs at least one sample")
    if reducer is None:
        return (total / count).float()
    # one collective for the sums and the count
    sums = torch.cat([total.flatten(), torch.tensor([float(count)], device=total.device, dtype=torch.float64)])
    reducer.all_reduce_sum(sums)
    return (sums[:-1] / sums[-1]).reshape(total.shape).float()
