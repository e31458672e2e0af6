"""Body-part combinations: the "players" of Shap-Mix (Zhang et al., IJCAI 2024, Sections 3.2-3.3).

A :class:`~shapmix.skeleton.layouts.Layout` splits the joints into ``P`` body parts (5 for every
built-in layout).  ST-Mix and Shap-Mix mix whole combinations of ``min_parts..max_parts`` parts
(default 2..3), and the saliency table holds one value per (class, combination).  With 5 parts
and 2..3 parts per combination there are ``C(5,2) + C(5,3) = 20`` combinations, and the
complement of every combination is again a combination (Shap-Mix pastes complements).

Ordering: combinations are listed by size, then lexicographically by part index (the order of
``itertools.combinations``); this is also the order of the authors' table.  A coalition of parts
is written as a bitmask with bit ``p`` set when part ``p`` is present.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import combinations as _subsets

import torch

from ..skeleton.layouts import Layout, get_layout

__all__ = [
    "DEFAULT_MAX_PARTS",
    "DEFAULT_MIN_PARTS",
    "NO_COMPLEMENT",
    "PartCombinations",
    "part_joint_masks",
]

DEFAULT_MIN_PARTS = 2
DEFAULT_MAX_PARTS = 3
NO_COMPLEMENT = -1
"""Entry of :attr:`PartCombinations.complement` for a combination whose complement is not listed."""

_NAME_SEPARATOR = "+"


def part_joint_masks(layout: str | Layout) -> torch.Tensor:
    """``(P, V)`` bool: joint ``v`` belongs to part ``p`` (parts in the layout's order)."""
    layout = get_layout(layout)
    masks = torch.zeros(layout.num_parts, layout.num_joints, dtype=torch.bool)
    masks[torch.tensor(layout.part_of_joint), torch.arange(layout.num_joints)] = True
    return masks


@dataclass(frozen=True, eq=False)
class PartCombinations:
    """All combinations of ``min_parts..max_parts`` body parts of a layout, with their masks.

    Build with :meth:`from_layout`.  ``S`` is the number of combinations, ``P`` the number of
    parts, ``V`` the number of joints.  All tensors live on the CPU; :meth:`to` gives the same
    combinations on another device.

    Attributes:
        layout: the skeleton layout.
        min_parts, max_parts: the size range of a combination.
        combinations: ``S`` sorted tuples of part indices.
        joint_masks: ``(S, V)`` bool, joint ``v`` belongs to combination ``s``.
        joint_counts: ``(S,)`` int64, number of joints of each combination.
        complement: ``(S,)`` int64, index of the combination made of the other parts, or
            :data:`NO_COMPLEMENT` when that set is not a listed combination.
        part_masks: ``(P, V)`` bool, joint ``v`` belongs to part ``p``.
        part_membership: ``(S, P)`` bool, part ``p`` is in combination ``s``.
        bitmasks: ``(S,)`` int64, the coalition bitmask of each combination.
    """

    layout: Layout
    min_parts: int
    max_parts: int
    combinations: tuple[tuple[int, ...], ...]
    joint_masks: torch.Tensor
    joint_counts: torch.Tensor
    complement: torch.Tensor
    part_masks: torch.Tensor
    part_membership: torch.Tensor
    bitmasks: torch.Tensor
    _on_devices: dict[torch.device, PartCombinations] = field(default_factory=dict, init=False, repr=False)
    """Copies made by :meth:`to`, one per device."""

    @classmethod
    def from_layout(
        cls,
        layout: str | Layout,
        min_parts: int = DEFAULT_MIN_PARTS,
        max_parts: int = DEFAULT_MAX_PARTS,
    ) -> PartCombinations:
        """Enumerate the combinations of ``min_parts..max_parts`` parts of ``layout``.

        Raises:
            ValueError: if ``1 <= min_parts <= max_parts <= P`` does not hold.
        """
        layout = get_layout(layout)
        num_parts = layout.num_parts
        if not 1 <= min_parts <= max_parts <= num_parts:
            raise ValueError(
                f"need 1 <= min_parts <= max_parts <= {num_parts} parts, got {min_parts}..{max_parts}"
            )
        combos = tuple(
            combo
            for size in range(min_parts, max_parts + 1)
            for combo in _subsets(range(num_parts), size)
        )
        part_masks = part_joint_masks(layout)

        membership = torch.zeros(len(combos), num_parts, dtype=torch.bool)
        for index, combo in enumerate(combos):
            membership[index, list(combo)] = True
        joint_masks = (membership.to(torch.int64) @ part_masks.to(torch.int64)).bool()
        powers = 2 ** torch.arange(num_parts, dtype=torch.int64)
        bitmasks = (membership.to(torch.int64) * powers).sum(dim=1)

        position = {mask: index for index, mask in enumerate(bitmasks.tolist())}
        full = 2**num_parts - 1
        complement = torch.tensor(
            [position.get(full ^ mask, NO_COMPLEMENT) for mask in bitmasks.tolist()],
            dtype=torch.int64,
        )
        return cls(
            layout=layout,
            min_parts=min_parts,
            max_parts=max_parts,
            combinations=combos,
            joint_masks=joint_masks,
            joint_counts=joint_masks.sum(dim=1),
            complement=complement,
            part_masks=part_masks,
            part_membership=membership,
            bitmasks=bitmasks,
        )

    def to(self, device: torch.device | str) -> PartCombinations:
        """These combinations with every tensor on ``device``; the copy is made once per device
        and reused, so a training step indexes the tables where its batch is without copying them
        from the host each time."""
        device = torch.device(device)
        if device == self.joint_masks.device:
            return self
        copy = self._on_devices.get(device)
        if copy is None:
            tensors = {
                item.name: getattr(self, item.name).to(device)
                for item in dataclasses.fields(self)
                if isinstance(getattr(self, item.name), torch.Tensor)
            }
            copy = self._on_devices[device] = dataclasses.replace(self, **tensors)
        return copy

    def __len__(self) -> int:
        return len(self.combinations)

    @property
    def num_parts(self) -> int:
        return self.layout.num_parts

    @property
    def num_joints(self) -> int:
        return self.layout.num_joints

    @property
    def has_all_complements(self) -> bool:
        """Whether every combination's complement is also a combination (true for 5 parts, 2..3)."""
        return bool((self.complement != NO_COMPLEMENT).all())

    @property
    def names(self) -> tuple[str, ...]:
        """Readable names, e.g. ``"left_arm+right_arm"``, in combination order."""
        part_names = self.layout.part_names
        return tuple(_NAME_SEPARATOR.join(part_names[p] for p in combo) for combo in self.combinations)

    def index_of(self, parts: tuple[int, ...] | list[int] | set[int]) -> int:
        """Index of the combination made of exactly these part indices.

        Raises:
            KeyError: if the set is not a listed combination.
        """
        key = tuple(sorted(set(parts)))
        try:
            return self.combinations.index(key)
        except ValueError:
            raise KeyError(f"parts {key} are not a combination of {self.min_parts}..{self.max_parts} parts") from None
