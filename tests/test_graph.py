"""Tests for skeleton graphs (adjacency matrices) and the structural validity of every layout."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from helpers import SHARED_DATA
from shapmix.skeleton.graph import (
    get_adjacency,
    inward_links,
    links_to_matrix,
    normalize_columns,
    outward_links,
    spatial_adjacency,
)
from shapmix.skeleton.layouts import Layout, available_layouts, get_layout

LAYOUTS = available_layouts()
REFERENCE_DIR = SHARED_DATA / "ctrgcn_reference"


def test_there_are_layouts_to_check():
    assert {"ntu25", "kinect_v1"} <= set(LAYOUTS)


# --------------------------------------------------------------------------- adjacency


@pytest.mark.parametrize("name", LAYOUTS)
def test_spatial_adjacency_shape_and_identity(name):
    layout = get_layout(name)
    V = layout.num_joints
    A = spatial_adjacency(layout)
    assert A.shape == (3, V, V)
    assert A.dtype == np.float32
    np.testing.assert_array_equal(A[0], np.eye(V, dtype=np.float32))
    assert np.all(A >= 0)


@pytest.mark.parametrize("name", LAYOUTS)
def test_spatial_adjacency_columns_are_normalised(name):
    A = spatial_adjacency(name)
    for subset in (A[1], A[2]):
        sums = subset.sum(axis=0)
        has_edges = (subset != 0).any(axis=0)
        assert has_edges.any()
        np.testing.assert_allclose(sums[has_edges], 1.0, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(sums[~has_edges], 0.0)


@pytest.mark.parametrize("name", LAYOUTS)
def test_outward_is_inward_transposed_before_normalisation(name):
    layout = get_layout(name)
    V = layout.num_joints
    inward = links_to_matrix(inward_links(layout), V)
    outward = links_to_matrix(outward_links(layout), V)
    np.testing.assert_array_equal(outward, inward.T)
    A = spatial_adjacency(layout)
    np.testing.assert_array_equal(A[1] > 0, inward > 0)
    np.testing.assert_array_equal(A[2] > 0, (A[1] > 0).T)
    # each directed edge appears once; the inward and outward subsets never overlap
    assert inward.sum() == len(layout.edges)
    assert not np.any((A[1] > 0) & (A[2] > 0))


@pytest.mark.parametrize("name", LAYOUTS)
def test_inward_columns_point_to_parents(name):
    """With (child, parent) edges, column `child` of the inward subset holds its parent."""
    layout = get_layout(name)
    A = spatial_adjacency(layout)
    parent = layout.parent_of()
    for child in range(layout.num_joints):
        column = A[1][:, child]
        if child == layout.root:
            assert not column.any()
        else:
            assert column[parent[child]] == pytest.approx(1.0)
            assert np.count_nonzero(column) == 1


def test_ntu25_values_match_the_original_convention():
    """Hand-checked entries of CTR-GCN's NTU graph (1-based inward pairs (2, 21), (3, 21), ...)."""
    A = spatial_adjacency("ntu25")
    spine_mid, neck, spine_shoulder = 1, 2, 20
    assert A[1][spine_shoulder, spine_mid] == 1.0  # inward: A[parent, child]
    assert A[1][spine_mid, spine_shoulder] == 0.0
    # spine_shoulder has four children (spine_mid, neck, both shoulders): outward weight 1/4
    assert A[2][spine_mid, spine_shoulder] == pytest.approx(0.25)
    assert A[2][neck, spine_shoulder] == pytest.approx(0.25)
    assert A[2][:, spine_shoulder].sum() == pytest.approx(1.0)


def test_edges_not_bones_define_the_graph():
    base = get_layout("kinect_v1")
    extra = Layout(
        name="kinect_v1_with_hand_link",
        joint_names=base.joint_names,
        bones=base.bones,
        root=base.root,
        center=base.center,
        parts=dict(base.parts),
        edges=(*base.bones, (7, 11)),  # left hand -> right hand
    )
    A = spatial_adjacency(extra)
    assert A[1][11, 7] > 0 and A[2][7, 11] > 0
    assert not np.array_equal(A, spatial_adjacency(base))


def test_normalize_columns_divides_by_column_sum_and_keeps_empty_columns():
    matrix = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    expected = np.array([[0.5, 0.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 0.5]])
    np.testing.assert_allclose(normalize_columns(matrix), expected)


def test_links_to_matrix_puts_link_i_j_at_row_j_column_i():
    matrix = links_to_matrix([(0, 2)], 3)
    assert matrix[2, 0] == 1 and matrix.sum() == 1


def test_get_adjacency_modes():
    np.testing.assert_array_equal(get_adjacency("ntu25"), spatial_adjacency("ntu25"))
    with pytest.raises(ValueError, match="spatial"):
        get_adjacency("ntu25", mode="nonexistent")


@pytest.mark.parametrize(
    "filename, layout",
    [("ctrgcn_ntu60_reference.pt", "ntu25"), ("ctrgcn_ucla10_reference.pt", "kinect_v1")],
)
def test_graph_matches_the_original_code(filename, layout):
    """The original checkpoints' learned topology PA starts at the original graph and moved by
    far less than any entry of a wrong graph would (entries are 0, 1, 1/2, 1/3, ...)."""
    path = REFERENCE_DIR / filename
    if not path.exists():
        pytest.skip(f"reference checkpoint not found at {path} (../shared/data absent)")
    state = torch.load(path, weights_only=True)["state_dict"]
    A = spatial_adjacency(layout)
    for key in ("l1.gcn1.PA", "l10.gcn1.PA"):
        PA = state[key].numpy()
        assert PA.shape == A.shape
        assert np.abs(PA - A).max() < 0.01, key


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("name", LAYOUTS)
def test_bones_form_a_tree_rooted_at_root(name):
    layout = get_layout(name)
    V = layout.num_joints
    assert len(layout.bones) == V - 1
    children = [child for child, _ in layout.bones]
    assert len(set(children)) == len(children), "a joint has two parents"
    assert layout.root not in children
    parent = layout.parent_of()
    for joint in range(V):
        seen = {joint}
        current = joint
        while current != layout.root:
            current = parent[current]
            assert current not in seen, f"cycle through joint {current}"
            seen.add(current)
        assert len(seen) <= V


@pytest.mark.parametrize("name", LAYOUTS)
def test_parts_partition_the_joints(name):
    layout = get_layout(name)
    joints = [j for part in layout.parts.values() for j in part]
    assert len(joints) == len(set(joints)), "parts overlap"
    assert sorted(joints) == list(range(layout.num_joints))
    assert layout.num_parts == 5
    assert all(len(part) > 0 for part in layout.parts.values())
