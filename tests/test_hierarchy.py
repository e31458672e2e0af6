"""Tests for the centre-joint graph constructions: HD-GCN's hierarchy and InfoGCN's A_vector."""

from __future__ import annotations

import numpy as np
import pytest

from shapmix.skeleton.hierarchy import (
    HIERARCHY_SPECS,
    hierarchical_adjacency,
    hierarchy_center,
    hierarchy_levels,
    hierarchy_links,
    joint_distances,
    level_pairs,
    relative_coordinates_matrix,
    resolve_joint,
    tree_parents,
)
from shapmix.skeleton.layouts import Layout, available_layouts, get_layout

LAYOUTS = available_layouts()

# HD-GCN graph/tools.py get_groups('NTU', CoM), converted to 0-based joint ids.
ORIGINAL_NTU_GROUPS = {
    21: [[20], [1, 2, 4, 8], [3, 5, 9, 0], [6, 10, 12, 16], [7, 11, 13, 17], [21, 22, 23, 24, 14, 18], [15, 19]],
    2: [[1], [0, 20], [12, 16, 2, 4, 8], [13, 17, 3, 5, 9], [14, 18, 6, 10], [15, 19, 7, 11], [21, 22, 23, 24]],
    1: [[0], [1, 12, 16], [13, 17, 20], [2, 4, 8, 14, 18], [3, 5, 9, 15, 19], [6, 10], [7, 11, 21, 22, 23, 24]],
}
# HD-GCN's AHA `layers` for CoM 21 (0-based), as the reference checkpoint's notes list them.
ORIGINAL_NTU_LAYERS = [
    [20, 1, 2, 4, 8],
    [1, 2, 4, 8, 3, 5, 9, 0],
    [3, 5, 9, 0, 6, 10, 12, 16],
    [6, 10, 12, 16, 7, 11, 13, 17],
    [7, 11, 13, 17, 21, 22, 23, 24, 14, 18],
    [21, 22, 23, 24, 14, 18, 15, 19],
]
# InfoGCN graph/ntu_rgb_d.py inward_ori_index: 1-based (parent, child) links of its tree.
INFOGCN_NTU_LINKS = [
    (2, 1), (2, 21), (21, 3), (3, 4), (21, 5), (5, 6), (6, 7), (7, 8), (8, 23), (23, 22),
    (21, 9), (9, 10), (10, 11), (11, 12), (12, 25), (25, 24), (1, 13), (13, 14), (14, 15), (15, 16),
    (1, 17), (17, 18), (18, 19), (19, 20),
]


def expected_hierarchical_adjacency(groups: list[list[int]], num_joints: int) -> np.ndarray:
    """HD-GCN's A written out entry by entry: for level pair (g, h), identity on g + h, the
    forward matrix has 1 / |h| at [k, j] (j in g, k in h) and the reverse 1 / |g| at [j, k]."""
    A = np.zeros((len(groups) - 1, 3, num_joints, num_joints), dtype=np.float32)
    for i, (inner, outer) in enumerate(zip(groups[:-1], groups[1:])):
        for v in inner + outer:
            A[i, 0, v, v] = 1
        for j in inner:
            for k in outer:
                A[i, 1, k, j] = 1 / len(outer)
                A[i, 2, j, k] = 1 / len(inner)
    return A


# --------------------------------------------------------------------------- HD-GCN


@pytest.mark.parametrize("com, max_levels", [(21, None), (2, None), (1, 7)])
def test_ntu_levels_are_the_original_groups_for_all_three_centres(com, max_levels):
    levels = hierarchy_levels("ntu25", center=com - 1, max_levels=max_levels)
    assert [set(level) for level in levels] == [set(group) for group in ORIGINAL_NTU_GROUPS[com]]


def test_default_ntu_hierarchy_is_com_21_with_the_original_layers_and_adjacency():
    assert hierarchy_center("ntu25") == 20 == resolve_joint("ntu25", "spine_shoulder")
    levels = hierarchy_levels("ntu25")
    assert [set(layer) for layer in level_pairs(levels)] == [set(layer) for layer in ORIGINAL_NTU_LAYERS]
    A = hierarchical_adjacency("ntu25")
    assert A.shape == (6, 3, 25, 25) and A.dtype == np.float32
    np.testing.assert_array_equal(A, expected_hierarchical_adjacency(ORIGINAL_NTU_GROUPS[21], 25))


def test_without_the_hand_relink_the_ntu_edges_would_put_hand_tips_a_level_further():
    """Why the ntu25 spec re-attaches the hand tips: on CTR-GCN's chain tip -> thumb -> hand the
    tips are 6 steps from the spine shoulder, in the original they are 5 (with the thumbs)."""
    layout = get_layout("ntu25")
    plain = joint_distances(layout.edges, 25, 20)
    relinked = joint_distances(hierarchy_links(layout), 25, 20)
    tips = [layout.joint_names.index(name) for name in ("left_hand_tip", "right_hand_tip")]
    thumbs = [layout.joint_names.index(name) for name in ("left_thumb", "right_thumb")]
    assert plain[tips].tolist() == [6, 6] and relinked[tips].tolist() == [5, 5]
    assert plain[thumbs].tolist() == relinked[thumbs].tolist() == [5, 5]


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_has_a_named_centre_and_levels_by_graph_distance(name):
    layout = get_layout(name)
    assert name in HIERARCHY_SPECS
    center = hierarchy_center(layout)
    assert layout.joint_names[center] == HIERARCHY_SPECS[name].center
    levels = hierarchy_levels(layout)
    assert levels[0] == (center,)
    assert sorted(j for level in levels for j in level) == list(range(layout.num_joints))
    # every joint of level l + 1 touches level l, and no link skips a level
    level_of = {j: index for index, level in enumerate(levels) for j in level}
    links = hierarchy_links(layout)
    for a, b in links:
        assert abs(level_of[a] - level_of[b]) <= 1
    for index, level in enumerate(levels[1:], start=1):
        for joint in level:
            assert any(level_of[other] == index - 1 for a, b in links for other in (a, b) if joint in (a, b) and other != joint)
    A = hierarchical_adjacency(layout)
    assert A.shape == (len(levels) - 1, 3, layout.num_joints, layout.num_joints)
    expected = expected_hierarchical_adjacency([list(level) for level in levels], layout.num_joints)
    np.testing.assert_allclose(A, expected, rtol=1e-7, atol=0)
    assert len(levels) >= 4  # HD-GCN's attention needs at least 3 level pairs


def test_max_levels_merges_the_outer_levels_and_errors_are_clear():
    full = hierarchy_levels("ntu25", center="spine_base")
    assert len(full) == 8
    merged = hierarchy_levels("ntu25", center="spine_base", max_levels=7)
    assert merged[:6] == full[:6] and set(merged[6]) == set(full[6] + full[7])
    with pytest.raises(ValueError, match="no joint named 'hips'"):
        hierarchy_levels("ntu25", center="hips")
    with pytest.raises(ValueError, match="not a joint id"):
        hierarchy_center("coco17", 17)
    with pytest.raises(ValueError, match="at least 2"):
        hierarchy_levels("coco17", max_levels=1)
    with pytest.raises(ValueError, match="not connected"):
        joint_distances([(0, 1)], 3, 0)


# --------------------------------------------------------------------------- InfoGCN


def test_relative_coordinates_matrix_is_infogcns_ntu_a_vector():
    parent_matrix = np.zeros((25, 25))
    for parent, child in INFOGCN_NTU_LINKS:
        parent_matrix[child - 1, parent - 1] = 1  # InfoGCN's A_outward_binary
    for k in (1, 2, 3):
        expected = np.eye(25) - np.linalg.matrix_power(parent_matrix, k)
        np.testing.assert_array_equal(relative_coordinates_matrix("ntu25", k), expected)


@pytest.mark.parametrize("name", LAYOUTS)
def test_relative_coordinates_are_bone_vectors_from_the_centre(name):
    layout = get_layout(name)
    parents = tree_parents(layout)
    assert parents[layout.center] == layout.center
    x = np.random.default_rng(0).normal(size=(layout.num_joints, 3))
    relative = relative_coordinates_matrix(layout, 1) @ x
    for joint, parent in enumerate(parents):
        expected = x[joint] if joint == parent else x[joint] - x[parent]
        np.testing.assert_allclose(relative[joint], expected, rtol=0, atol=1e-12)
    # second order: relative to the grandparent, absolute within one step of the root
    second = relative_coordinates_matrix(layout, 2) @ x
    for joint, parent in enumerate(parents):
        grandparent = parents[parent]
        expected = x[joint] if joint == parent or parent == grandparent else x[joint] - x[grandparent]
        np.testing.assert_allclose(second[joint], expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least 1"):
        relative_coordinates_matrix(layout, 0)


def test_a_layout_without_a_spec_is_centred_at_its_root():
    chain = Layout(
        name="chain6",
        joint_names=tuple(f"j{i}" for i in range(6)),
        bones=((0, 1), (1, 2), (3, 2), (4, 3), (5, 4)),
        root=2,
        center=0,
        parts={"upper": (0, 1, 2), "lower": (3, 4, 5)},
    )
    assert chain.name not in HIERARCHY_SPECS
    assert hierarchy_center(chain) == 2
    assert hierarchy_levels(chain) == ((2,), (1, 3), (0, 4), (5,))
    assert tree_parents(chain) == (0, 0, 1, 2, 3, 4)  # InfoGCN's tree hangs from layout.center
