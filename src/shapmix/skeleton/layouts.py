"""Skeleton layouts: joint names, bones, graph edges, centre joint and the five body parts.

A :class:`Layout` is pure data, defined once per joint convention, and every other module
(bone modality, GCN adjacency, part masks for mixing, drawings) derives what it needs from it.

Conventions
-----------
* Joints are 0-based indices into the ``V`` axis of a ``(C, T, V, M)`` sample.
* ``bones`` are ``(child, parent)`` pairs forming a tree rooted at ``root``; the bone modality
  is ``x[:, :, child] - x[:, :, parent]`` and the root's bone is zero.  Where a community
  convention exists (CTR-GCN for NTU RGB+D and NW-UCLA, ST-GCN/pyskl for OpenPose and COCO) the
  tree is exactly that convention, so bone-stream checkpoints trained elsewhere stay valid.
* ``edges`` are the undirected graph links a GCN uses; by default the bones.
* ``parts`` are five named, disjoint joint sets covering every joint, in a fixed order
  (torso/head, left arm, right arm, left leg, right leg) with anatomical left/right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = ["Layout", "get_layout", "available_layouts", "register_layout"]


@dataclass(frozen=True)
class Layout:
    """A skeleton joint convention.

    Attributes:
        name: registry name, e.g. ``"ntu25"``.
        joint_names: one name per joint, index = joint id.
        bones: ``(child, parent)`` pairs; a tree over all joints rooted at ``root``.
        root: the joint without a parent (its bone vector is zero).
        center: the joint used to centre a skeleton (spine middle for Kinect layouts).
        parts: ordered mapping ``part name -> joint ids``; disjoint and covering all joints.
        edges: undirected graph links for GCN adjacency; defaults to ``bones``.
        description: where the convention comes from.
    """

    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    root: int
    center: int
    parts: Mapping[str, tuple[int, ...]]
    edges: tuple[tuple[int, int], ...] = ()
    description: str = ""
    _part_of_joint: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))
        if not self.edges:
            object.__setattr__(self, "edges", tuple(self.bones))
        self._validate()
        owner = [-1] * self.num_joints
        for index, joints in enumerate(self.parts.values()):
            for joint in joints:
                owner[joint] = index
        object.__setattr__(self, "_part_of_joint", tuple(owner))

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(self.parts)

    @property
    def part_of_joint(self) -> tuple[int, ...]:
        """For every joint, the index of the part that contains it."""
        return self._part_of_joint

    def parent_of(self) -> tuple[int, ...]:
        """For every joint its parent in the bone tree (the root is its own parent)."""
        parent = list(range(self.num_joints))
        for child, par in self.bones:
            parent[child] = par
        return tuple(parent)

    def _validate(self) -> None:
        n = self.num_joints
        problems = []
        for a, b in (*self.bones, *self.edges):
            if not (0 <= a < n and 0 <= b < n) or a == b:
                problems.append(f"link ({a}, {b}) is not between two distinct joints of 0..{n - 1}")
        if not 0 <= self.center < n or not 0 <= self.root < n:
            problems.append("center and root must be joint ids")
        seen: list[int] = [j for joints in self.parts.values() for j in joints]
        if sorted(seen) != list(range(n)):
            problems.append("parts must partition the joints (each joint in exactly one part)")
        if problems:
            raise ValueError(f"layout {self.name!r} is invalid: " + "; ".join(problems))


_REGISTRY: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Add a layout to the registry (name clashes are an error) and return it."""
    if layout.name in _REGISTRY:
        raise ValueError(f"a layout named {layout.name!r} is already registered")
    _REGISTRY[layout.name] = layout
    return layout


def get_layout(name: str | Layout) -> Layout:
    """Look a layout up by name (a :class:`Layout` passes through unchanged)."""
    if isinstance(name, Layout):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown skeleton layout {name!r}; available: {', '.join(available_layouts())}"
        ) from None


def available_layouts() -> list[str]:
    return sorted(_REGISTRY)


def _one_based(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in pairs)


# Kinect v2, as in NTU RGB+D 60/120.  Bones are CTR-GCN's `inward` links (1-based there); note
# that CTR-GCN chains hand tip -> thumb -> hand rather than attaching both to the hand.
NTU25 = register_layout(
    Layout(
        name="ntu25",
        joint_names=(
            "spine_base", "spine_mid", "neck", "head",
            "left_shoulder", "left_elbow", "left_wrist", "left_hand",
            "right_shoulder", "right_elbow", "right_wrist", "right_hand",
            "left_hip", "left_knee", "left_ankle", "left_foot",
            "right_hip", "right_knee", "right_ankle", "right_foot",
            "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb",
        ),
        bones=_one_based([
            (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
            (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
            (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
        ]),
        root=20,
        center=1,
        parts={
            "torso": (0, 1, 2, 3, 20),
            "left_arm": (4, 5, 6, 7, 21, 22),
            "right_arm": (8, 9, 10, 11, 23, 24),
            "left_leg": (12, 13, 14, 15),
            "right_leg": (16, 17, 18, 19),
        },
        description="Kinect v2, 25 joints (NTU RGB+D 60/120); bones as in CTR-GCN",
    )
)

# Kinect v1 SDK order, as in NW-UCLA (CTR-GCN's `ucla` graph).
KINECT_V1 = register_layout(
    Layout(
        name="kinect_v1",
        joint_names=(
            "hip_center", "spine", "shoulder_center", "head",
            "left_shoulder", "left_elbow", "left_wrist", "left_hand",
            "right_shoulder", "right_elbow", "right_wrist", "right_hand",
            "left_hip", "left_knee", "left_ankle", "left_foot",
            "right_hip", "right_knee", "right_ankle", "right_foot",
        ),
        bones=_one_based([
            (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
            (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
        ]),
        root=2,
        center=1,
        parts={
            "torso": (0, 1, 2, 3),
            "left_arm": (4, 5, 6, 7),
            "right_arm": (8, 9, 10, 11),
            "left_leg": (12, 13, 14, 15),
            "right_leg": (16, 17, 18, 19),
        },
        description="Kinect v1 SDK order, 20 joints (NW-UCLA); bones as in CTR-GCN",
    )
)

# UTD-MHAD's own order (its Skeleton_joint_order.txt): head first, then down the spine.
UTD_MHAD = register_layout(
    Layout(
        name="utd_mhad",
        joint_names=(
            "head", "shoulder_center", "spine", "hip_center",
            "left_shoulder", "left_elbow", "left_wrist", "left_hand",
            "right_shoulder", "right_elbow", "right_wrist", "right_hand",
            "left_hip", "left_knee", "left_ankle", "left_foot",
            "right_hip", "right_knee", "right_ankle", "right_foot",
        ),
        bones=(
            (0, 1), (2, 1), (3, 2), (4, 1), (5, 4), (6, 5), (7, 6), (8, 1), (9, 8), (10, 9),
            (11, 10), (12, 3), (13, 12), (14, 13), (15, 14), (16, 3), (17, 16), (18, 17), (19, 18),
        ),
        root=1,
        center=2,
        parts={
            "torso": (0, 1, 2, 3),
            "left_arm": (4, 5, 6, 7),
            "right_arm": (8, 9, 10, 11),
            "left_leg": (12, 13, 14, 15),
            "right_leg": (16, 17, 18, 19),
        },
        description="Kinect v1, 20 joints in UTD-MHAD's order",
    )
)

# MSR Action3D real-world coordinates (Vemulapalli et al.'s copy).  The order interleaves left
# and right; left/right were checked on the data: in a01 (high arm wave, performed with the
# right arm) joint 13 (1-based) moves most, and in a14 (forward kick) joint 19.
MSR_ACTION3D = register_layout(
    Layout(
        name="msr_action3d",
        joint_names=(
            "left_shoulder", "right_shoulder", "shoulder_center", "spine",
            "left_hip", "right_hip", "hip_center",
            "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
            "left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot", "right_foot",
            "head",
        ),
        bones=(
            (0, 2), (1, 2), (3, 2), (6, 3), (4, 6), (5, 6), (7, 0), (8, 1), (9, 7), (10, 8),
            (11, 9), (12, 10), (13, 4), (14, 5), (15, 13), (16, 14), (17, 15), (18, 16), (19, 2),
        ),
        root=2,
        center=3,
        parts={
            "torso": (2, 3, 6, 19),
            "left_arm": (0, 7, 9, 11),
            "right_arm": (1, 8, 10, 12),
            "left_leg": (4, 13, 15, 17),
            "right_leg": (5, 14, 16, 18),
        },
        description="Kinect v1, 20 joints in MSR Action3D's order",
    )
)

# COCO-17 keypoints (Kinetics-400 HRNet in pyskl); bones as pyskl's `coco` graph.
COCO17 = register_layout(
    Layout(
        name="coco17",
        joint_names=(
            "nose", "left_eye", "right_eye", "left_ear", "right_ear",
            "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
            "left_wrist", "right_wrist", "left_hip", "right_hip",
            "left_knee", "right_knee", "left_ankle", "right_ankle",
        ),
        bones=(
            (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8),
            (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2),
        ),
        root=0,
        center=0,
        parts={
            "head": (0, 1, 2, 3, 4),
            "left_arm": (5, 7, 9),
            "right_arm": (6, 8, 10),
            "left_leg": (11, 13, 15),
            "right_leg": (12, 14, 16),
        },
        description="COCO-17 keypoints (2D; Kinetics-400 HRNet); bones as pyskl's coco graph",
    )
)

# OpenPose-18 (ST-GCN's Kinetics-skeleton); bones as ST-GCN's `openpose` graph.
OPENPOSE18 = register_layout(
    Layout(
        name="openpose18",
        joint_names=(
            "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
            "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
            "right_ankle", "left_hip", "left_knee", "left_ankle",
            "right_eye", "left_eye", "right_ear", "left_ear",
        ),
        bones=(
            (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
            (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14),
        ),
        root=1,
        center=1,
        parts={
            "head": (0, 1, 14, 15, 16, 17),
            "left_arm": (5, 6, 7),
            "right_arm": (2, 3, 4),
            "left_leg": (11, 12, 13),
            "right_leg": (8, 9, 10),
        },
        description="OpenPose-18 keypoints (2D; ST-GCN Kinetics-skeleton); bones as ST-GCN",
    )
)
