"""A layout's graph seen from one centre joint: graph distances, a rooted tree and the hierarchy.

Two backbones need more than the plain adjacency of :mod:`shapmix.skeleton.graph`; both are
built here from a layout's ``edges`` and a centre joint, by breadth-first search:

* InfoGCN (Chi et al., CVPR 2022) feeds the network the joints expressed relative to their
  ``k``-th ancestor, ``x' = (I - P^k) x``, where ``P[v, parent(v)] = 1`` in the skeleton tree
  rooted at the body centre (:func:`relative_coordinates_matrix`).  Its NTU graph
  (``graph/ntu_rgb_d.py``, ``A_outward_binary``) is the tree of the NTU edges rooted at the
  spine middle, which is ``layout.center`` of ``ntu25``; so the tree is rooted at
  ``layout.center`` for every layout.
* HD-GCN (Lee et al., ICCV 2023) groups the joints into levels by graph distance from a
  "centre of mass" joint (:func:`hierarchy_levels`) and builds one 3-subset adjacency per pair of
  consecutive levels (:func:`hierarchical_adjacency`); its attention pools the joints of each
  such pair (:func:`level_pairs`).

Centres of HD-GCN's hierarchy
-----------------------------
HD-GCN's default (and the checkpoints' ``joint_com_21`` config) centres NTU's hierarchy at
joint 21 (1-based), the spine shoulder.  :data:`HIERARCHY_SPECS` names the centre of every
built-in layout, the analogous upper-body hub: the shoulder centre of the Kinect v1 layouts,
the neck of OpenPose-18 and, as COCO-17 has no neck or spine joint, the nose (where its
shoulders meet).  A layout without an entry is centred at its bone tree's ``root``.

HD-GCN's NTU levels treat the hand tip and the thumb both as neighbours of the hand (both one
level beyond it), while the NTU edges (CTR-GCN's, ``layout.edges``) chain hand tip -> thumb ->
hand.  The ``ntu25`` spec therefore re-attaches each hand tip to its hand for the hierarchy;
with that, the levels from the spine shoulder are exactly the original's groups, and so are
those from its other two configurations' centres (``CoM`` 1 and 2; for ``CoM`` 1 the original
also merges the two outermost levels, which ``max_levels=7`` reproduces).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from shapmix.skeleton.graph import links_to_matrix, normalize_columns
from shapmix.skeleton.layouts import Layout, get_layout

__all__ = [
    "HierarchySpec",
    "HIERARCHY_SPECS",
    "resolve_joint",
    "joint_distances",
    "tree_parents",
    "relative_coordinates_matrix",
    "hierarchy_center",
    "hierarchy_links",
    "hierarchy_levels",
    "level_pairs",
    "hierarchical_adjacency",
]


@dataclass(frozen=True)
class HierarchySpec:
    """How HD-GCN's hierarchy is laid over one layout.

    Attributes:
        center: name of the centre-of-mass joint, the hierarchy's level 0.
        removed_links: ``(joint, joint)`` name pairs of ``layout.edges`` the hierarchy ignores.
        added_links: ``(joint, joint)`` name pairs the hierarchy links in their place.
    """

    center: str
    removed_links: tuple[tuple[str, str], ...] = ()
    added_links: tuple[tuple[str, str], ...] = ()


HIERARCHY_SPECS: Mapping[str, HierarchySpec] = {
    "ntu25": HierarchySpec(
        center="spine_shoulder",
        removed_links=(("left_hand_tip", "left_thumb"), ("right_hand_tip", "right_thumb")),
        added_links=(("left_hand_tip", "left_hand"), ("right_hand_tip", "right_hand")),
    ),
    "kinect_v1": HierarchySpec(center="shoulder_center"),
    "utd_mhad": HierarchySpec(center="shoulder_center"),
    "msr_action3d": HierarchySpec(center="shoulder_center"),
    "coco17": HierarchySpec(center="nose"),
    "openpose18": HierarchySpec(center="neck"),
}
"""HD-GCN's hierarchy for each built-in layout (module docstring)."""


def resolve_joint(layout: str | Layout, joint: int | str) -> int:
    """A joint id from an id or a joint name of ``layout``; a clear error for anything else."""
    layout = get_layout(layout)
    if isinstance(joint, str):
        if joint not in layout.joint_names:
            raise ValueError(
                f"layout {layout.name!r} has no joint named {joint!r}; joints: {', '.join(layout.joint_names)}"
            )
        return layout.joint_names.index(joint)
    if isinstance(joint, bool) or not 0 <= int(joint) < layout.num_joints:
        raise ValueError(f"joint {joint!r} is not a joint id of layout {layout.name!r} (0..{layout.num_joints - 1})")
    return int(joint)


def joint_distances(links: Iterable[tuple[int, int]], num_joints: int, source: int) -> np.ndarray:
    """Hop counts from ``source`` over undirected ``links`` (breadth-first search).

    Args:
        links: ``(i, j)`` joint pairs, each usable in both directions.
        num_joints: ``V``.
        source: the joint at distance 0.

    Returns:
        int64 array of shape ``(V,)``.

    Raises:
        ValueError: if a joint cannot be reached from ``source``.
    """
    neighbours: list[list[int]] = [[] for _ in range(num_joints)]
    for i, j in links:
        neighbours[i].append(j)
        neighbours[j].append(i)
    distance = np.full(num_joints, -1, dtype=np.int64)
    distance[source] = 0
    queue = deque([source])
    while queue:
        joint = queue.popleft()
        for neighbour in sorted(neighbours[joint]):
            if distance[neighbour] < 0:
                distance[neighbour] = distance[joint] + 1
                queue.append(neighbour)
    unreachable = np.flatnonzero(distance < 0)
    if len(unreachable):
        raise ValueError(f"joints {unreachable.tolist()} are not connected to joint {source} by the links")
    return distance


def tree_parents(layout: str | Layout, root: int | str | None = None) -> tuple[int, ...]:
    """The parent of every joint in the tree of ``layout.edges`` rooted at ``root``.

    A joint's parent is its neighbour one step closer to the root (the lowest-numbered one if a
    graph with cycles offers several); the root is its own parent.

    Args:
        layout: a layout name or :class:`Layout`.
        root: joint id or name; default ``layout.center``.

    Returns:
        ``V`` joint ids.
    """
    layout = get_layout(layout)
    root_id = resolve_joint(layout, layout.center if root is None else root)
    distance = joint_distances(layout.edges, layout.num_joints, root_id)
    parent = list(range(layout.num_joints))
    for i, j in layout.edges:
        for child, candidate in ((i, j), (j, i)):
            if distance[candidate] != distance[child] - 1:
                continue  # not a step towards the root
            parent[child] = candidate if parent[child] == child else min(parent[child], candidate)
    return tuple(parent)


def relative_coordinates_matrix(layout: str | Layout, order: int = 1, root: int | str | None = None) -> np.ndarray:
    """InfoGCN's input transform ``I - P^order`` (its ``A_vector``), ``P[v, parent(v)] = 1``.

    ``(I - P^k) @ x`` over the joint axis expresses every joint relative to its ``k``-th
    ancestor in the tree rooted at ``root``; joints closer than ``k`` steps to the root keep
    their absolute position.  ``order = 1`` gives bone vectors.

    Args:
        layout: a layout name or :class:`Layout`.
        order: ``k >= 1`` (``k = 0`` would zero the input).
        root: joint id or name; default ``layout.center`` (NTU: the spine middle, as InfoGCN).

    Returns:
        float64 array of shape ``(V, V)`` with entries in ``{-1, 0, 1}``.
    """
    if order < 1:
        raise ValueError(f"the relative-coordinate order k must be at least 1 (k = 0 zeroes the input), got {order}")
    layout = get_layout(layout)
    parents = tree_parents(layout, root)
    num_joints = layout.num_joints
    # P[child, parent] = 1 for every joint except the root (its own parent)
    parent_matrix = np.zeros((num_joints, num_joints), dtype=np.float64)
    for child, parent in enumerate(parents):
        if child != parent:
            parent_matrix[child, parent] = 1.0
    return np.eye(num_joints) - np.linalg.matrix_power(parent_matrix, order)


def hierarchy_center(layout: str | Layout, center: int | str | None = None) -> int:
    """The centre joint of HD-GCN's hierarchy: ``center`` if given, else the layout's entry in
    :data:`HIERARCHY_SPECS`, else ``layout.root``."""
    layout = get_layout(layout)
    if center is not None:
        return resolve_joint(layout, center)
    spec = HIERARCHY_SPECS.get(layout.name)
    return resolve_joint(layout, spec.center) if spec is not None else layout.root


def hierarchy_links(layout: str | Layout) -> tuple[tuple[int, int], ...]:
    """The undirected links HD-GCN's hierarchy measures distances on: ``layout.edges`` with the
    spec's removed links dropped and its added links appended."""
    layout = get_layout(layout)
    spec = HIERARCHY_SPECS.get(layout.name)
    links = [tuple(sorted((int(a), int(b)))) for a, b in layout.edges]
    if spec is None:
        return tuple(links)  # type: ignore[return-value]
    for a, b in spec.removed_links:
        pair = tuple(sorted((resolve_joint(layout, a), resolve_joint(layout, b))))
        if pair not in links:
            raise ValueError(f"hierarchy spec of {layout.name!r}: ({a}, {b}) is not an edge of the layout")
        links.remove(pair)
    links += [tuple(sorted((resolve_joint(layout, a), resolve_joint(layout, b)))) for a, b in spec.added_links]
    return tuple(links)  # type: ignore[return-value]


def hierarchy_levels(
    layout: str | Layout, center: int | str | None = None, max_levels: int | None = None
) -> tuple[tuple[int, ...], ...]:
    """HD-GCN's levels: the joints grouped by graph distance from the centre joint.

    Args:
        layout: a layout name or :class:`Layout`.
        center: joint id or name; default :func:`hierarchy_center`.
        max_levels: merge every level from this one on into the last (the original's NTU
            ``CoM 1`` groups are 7 levels of a distance-8 hierarchy); ``None`` keeps them all.

    Returns:
        one ascending tuple of joint ids per level, level 0 being ``(center,)``.
    """
    layout = get_layout(layout)
    source = hierarchy_center(layout, center)
    distance = joint_distances(hierarchy_links(layout), layout.num_joints, source)
    if max_levels is not None:
        if max_levels < 2:
            raise ValueError(f"max_levels must be at least 2, got {max_levels}")
        distance = np.minimum(distance, max_levels - 1)
    return tuple(tuple(np.flatnonzero(distance == level).tolist()) for level in range(int(distance.max()) + 1))


def level_pairs(levels: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """The joints of every two consecutive levels (HD-GCN attention's ``layers``): ``L - 1`` tuples."""
    return tuple(levels[i] + levels[i + 1] for i in range(len(levels) - 1))


def hierarchical_adjacency(
    layout: str | Layout, center: int | str | None = None, max_levels: int | None = None
) -> np.ndarray:
    """HD-GCN's hierarchical graph: one ``[identity, forward, reverse]`` stack per level pair.

    For the pair of levels ``(l, l + 1)``:

    * identity: ones on the diagonal entries of the joints of both levels;
    * forward: every joint of level ``l`` linked to every joint of level ``l + 1``;
    * reverse: every joint of level ``l + 1`` linked to every joint of level ``l``;

    a link ``(i, j)`` is the entry ``[j, i]`` and the forward/reverse matrices are normalised by
    their column sums (:func:`~shapmix.skeleton.graph.normalize_columns`), as in HD-GCN's
    ``graph/tools.py``.

    Args:
        layout, center, max_levels: see :func:`hierarchy_levels`.

    Returns:
        float32 array of shape ``(L - 1, 3, V, V)`` for ``L`` levels.
    """
    layout = get_layout(layout)
    levels = hierarchy_levels(layout, center, max_levels)
    num_joints = layout.num_joints
    stacks = []
    for inner, outer in zip(levels[:-1], levels[1:]):
        identity = links_to_matrix(((v, v) for v in inner + outer), num_joints)
        forward = normalize_columns(links_to_matrix(((i, j) for i in inner for j in outer), num_joints))
        reverse = normalize_columns(links_to_matrix(((j, i) for i in inner for j in outer), num_joints))
        stacks.append(np.stack((identity, forward, reverse)))
    if not stacks:
        raise ValueError(f"layout {layout.name!r} has a single level: a hierarchy needs at least two")
    return np.stack(stacks).astype(np.float32)
