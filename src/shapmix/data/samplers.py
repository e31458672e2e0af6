"""Re-balancing training samplers: random over-sampling and class-balanced sampling.

* ``ros``: random over-sampling (Van Hulse, Khoshgoftaar, Napolitano, "Experimental
  perspectives on learning from imbalanced data", ICML 2007).  Every training sample is
  kept once and each class is topped up with samples drawn uniformly, with replacement, from
  its own members until it has as many as the largest class.  One epoch therefore has
  ``K' * n_max`` samples (``K'`` classes with at least one sample, ``n_max`` the largest
  class count), each class exactly ``n_max`` times, in a random order.
* ``class_balanced``: class-balanced sampling as in Kang et al., "Decoupling representation
  and classifier for long-tailed recognition", ICLR 2020 (their cRT stage): every draw picks a
  class uniformly (among classes with samples), then one of its samples uniformly.  One epoch
  has as many draws as there are training samples.

Both samplers are DDP-ready in the way :class:`torch.utils.data.DistributedSampler` is: every
rank draws the same global sequence from ``(seed, epoch)`` (call :meth:`RebalancingSampler.
set_epoch` before each epoch), drops the last ``len % world_size`` entries so all shards are
equally long, and keeps every ``world_size``-th entry from its rank on, so the shards are
disjoint and together cover the kept global sequence.  Everything is vectorised; the draws
come from a CPU :class:`torch.Generator`, so a seed gives the same order on any machine.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterator, Literal, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from ..seeds import SAMPLER_EPOCH

__all__ = [
    "REBALANCING_SAMPLERS",
    "SamplerKind",
    "RebalancingSampler",
    "ResumableSampler",
    "ShuffleSampler",
    "class_balanced_sequence",
    "epoch_length",
    "over_sampled_sequence",
]

SamplerKind = Literal["random", "ros", "class_balanced"]
REBALANCING_SAMPLERS = ("ros", "class_balanced")


def _as_labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if tensor.ndim != 1 or len(tensor) == 0:
        raise ValueError(f"expected a non-empty 1-D sequence of class ids, got shape {tuple(tensor.shape)}")
    if int(tensor.min()) < 0:
        raise ValueError("class ids must be non-negative")
    return tensor


def _members_by_class(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(order, starts, counts)``: sample indices sorted by class (stable), and per class its
    first position in ``order`` and its count (``(K,)`` each, ``K = max label + 1``)."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    return order, starts, counts


def _draw_members(
    classes: torch.Tensor, order: torch.Tensor, starts: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One uniformly drawn sample index of each entry's class (``classes`` ``(L,)`` int64)."""
    draw = torch.rand(len(classes), generator=generator, dtype=torch.float64)
    offset = torch.minimum((draw * counts[classes]).floor().long(), counts[classes] - 1)
    return order[starts[classes] + offset]


def over_sampled_sequence(labels: Sequence[int] | np.ndarray | torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One epoch of random over-sampling: ``(K' * n_max,)`` int64 sample indices.

    Every sample appears at least once; class ``c`` gets ``n_max - n_c`` extra samples drawn
    uniformly with replacement from its members; the whole sequence is shuffled.
    """
    labels = _as_labels(labels)
    order, starts, counts = _members_by_class(labels)
    present = torch.nonzero(counts).flatten()
    extra_classes = torch.repeat_interleave(present, counts.max() - counts[present])
    extras = _draw_members(extra_classes, order, starts, counts, generator)
    sequence = torch.cat([torch.arange(len(labels)), extras])
    return sequence[torch.randperm(len(sequence), generator=generator)]


def class_balanced_sequence(
    labels: Sequence[int] | np.ndarray | torch.Tensor, num_draws: int, generator: torch.Generator
) -> torch.Tensor:
    """``(num_draws,)`` int64 sample indices: a uniform class (among those with samples), then a
    uniform sample of it, independently for every draw."""
    labels = _as_labels(labels)
    order, starts, counts = _members_by_class(labels)
    present = torch.nonzero(counts).flatten()
    classes = present[torch.randint(len(present), (num_draws,), generator=generator)]
    return _draw_members(classes, order, starts, counts, generator)


def epoch_length(kind: SamplerKind, labels: Sequence[int] | np.ndarray | torch.Tensor) -> int:
    """Samples in one (global) epoch of ``kind``: ``K' * n_max`` for ``ros``, else the split size."""
    labels = _as_labels(labels)
    if kind == "ros":
        counts = torch.bincount(labels)
        return int((counts > 0).sum() * counts.max())
    if kind in ("random", "class_balanced"):
        return len(labels)
    raise ValueError(f"unknown sampler {kind!r}; use random, ros or class_balanced")


class RebalancingSampler(Sampler[int]):
    """``ros`` or ``class_balanced`` sampling, sharded across ``world_size`` ranks.

    Args:
        kind: ``"ros"`` or ``"class_balanced"``.
        labels: ``(N,)`` class id of every sample of the split.
        seed: seed shared by all ranks; the epoch's sequence is drawn from ``(seed, epoch)``.
        rank, world_size: this process's shard (``0, 1`` without DDP).
    """

    def __init__(
        self,
        kind: SamplerKind,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if kind not in REBALANCING_SAMPLERS:
            raise ValueError(f"unknown re-balancing sampler {kind!r}; use one of {REBALANCING_SAMPLERS}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1} for world_size={world_size}, got {rank}")
        self.kind = kind
        self.labels = _as_labels(labels)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.global_length = epoch_length(kind, self.labels)
        if self.global_length < world_size:
            raise ValueError(f"an epoch of {self.global_length} samples cannot be split over {world_size} ranks")
        self.shard_length = self.global_length // world_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose sequence :meth:`__iter__` yields (as ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def global_sequence(self) -> torch.Tensor:
        """The epoch's full sequence, ``(global_length,)`` int64, identical on every rank."""
        generator = torch.Generator().manual_seed(SAMPLER_EPOCH.derive(self.seed, self.epoch))
        if self.kind == "ros":
            return over_sampled_sequence(self.labels, generator)
        return class_balanced_sequence(self.labels, self.global_length, generator)

    def shard(self) -> torch.Tensor:
        """This rank's ``(shard_length,)`` indices: every ``world_size``-th kept entry from ``rank``."""
        kept = self.global_sequence()[: self.shard_length * self.world_size]
        return kept[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard().tolist())

    def __len__(self) -> int:
        return self.shard_length


class ShuffleSampler(Sampler[int]):
    """A fresh permutation of ``range(size)`` every epoch (the order ``RandomSampler`` gives with a
    generator seeded by ``epoch_seed(epoch)``), chosen with :meth:`set_epoch`.

    Unlike a ``RandomSampler`` built every epoch, one instance serves the whole run, so a
    training loader with persistent workers can keep it.
    """

    def __init__(self, size: int, epoch_seed: Callable[[int], int]) -> None:
        if size < 1:
            raise ValueError(f"cannot shuffle an empty split (size {size})")
        self.size = size
        self.epoch_seed = epoch_seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.epoch_seed(self.epoch))
        yield from torch.randperm(self.size, generator=generator).tolist()

    def __len__(self) -> int:
        return self.size


class EpochSampler(Protocol):
    """A sampler whose sequence is chosen per epoch (``DistributedSampler``, the samplers here)."""

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[int]: ...

    def __len__(self) -> int: ...


class ResumableSampler(Sampler[int]):
    """An epoch's sequence of ``sampler`` from a position on: ``set_epoch(epoch, start)`` skips
    the first ``start`` indices of this rank's sequence, so a run resumed in the middle of an
    epoch sees exactly the samples the interrupted one had not reached yet."""

    def __init__(self, sampler: EpochSampler) -> None:
        self.sampler = sampler
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if start < 0:
            raise ValueError(f"the start position of an epoch cannot be negative, got {start}")
        self.sampler.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)
