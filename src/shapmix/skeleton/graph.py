"""Adjacency matrices for graph convolutions, derived from a :class:`~shapmix.skeleton.layouts.Layout`.

The construction follows the "spatial" partition strategy of ST-GCN as implemented by CTR-GCN
(``graph/tools.py`` there), so that a freshly built model starts from exactly the same
adjacency as the original code:

* a directed link ``(i, j)`` becomes the matrix entry ``A[j, i] = 1``, i.e. column ``i`` holds
  the joints that joint ``i`` sends to; with ``inward = (child, parent)`` pairs, column ``child``
  has a one in row ``parent``;
* each directed matrix is normalised by its column sums, ``A @ D^-1`` with
  ``D = diag(A.sum(axis=0))``; all-zero columns stay zero;
* the spatial partition stacks ``[I, norm(inward), norm(outward)]`` into a ``(3, V, V)`` array,
  where ``outward`` are the inward links reversed (so the un-normalised outward matrix is the
  transpose of the un-normalised inward matrix).

The inward links are ``layout.edges`` (which default to the layout's ``(child, parent)`` bones).
Backbones from pyskl (ST-GCN++) use pyskl's own graphs, which differ from the layout's edges for
NTU RGB+D at the hands (:func:`pyskl_inward_links`); build those with ``edges=`` (same partition).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from shapmix.skeleton.layouts import Layout, get_layout

__all__ = [
    "links_to_matrix",
    "normalize_columns",
    "inward_links",
    "outward_links",
    "pyskl_inward_links",
    "spatial_adjacency",
    "get_adjacency",
]


def links_to_matrix(links: Iterable[tuple[int, int]], num_joints: int) -> np.ndarray:
    """Binary matrix of directed links.

    Args:
        links: ``(i, j)`` pairs of joint ids.
        num_joints: ``V``.

    Returns:
        float64 array of shape ``(V, V)`` with ``A[j, i] = 1`` for every link ``(i, j)``.
    """
    matrix = np.zeros((num_joints, num_joints), dtype=np.float64)
    for i, j in links:
        matrix[j, i] = 1.0
    return matrix


def normalize_columns(matrix: np.ndarray) -> np.ndarray:
    """Right-multiply by the inverse column-degree matrix: ``A @ D^-1``, ``D = diag(sum_rows A)``.

    Every column with at least one non-zero entry sums to one afterwards; empty columns stay zero.

    Args:
        matrix: array of shape ``(V, V)``.

    Returns:
        float64 array of shape ``(V, V)``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    degree = matrix.sum(axis=0)
    inverse = np.zeros_like(degree)
    nonzero = degree > 0
    inverse[nonzero] = 1.0 / degree[nonzero]
    return matrix @ np.diag(inverse)


Links = tuple[tuple[int, int], ...]


def inward_links(layout: str | Layout) -> Links:
    """Directed links pointing towards the root: the layout's ``edges`` as ``(child, parent)``."""
    return tuple((int(a), int(b)) for a, b in get_layout(layout).edges)


def outward_links(layout: str | Layout, edges: Iterable[tuple[int, int]] | None = None) -> Links:
    """Directed links pointing away from the root: the inward links (``edges``, by default the
    layout's) reversed."""
    inward = inward_links(layout) if edges is None else tuple(edges)
    return tuple((b, a) for a, b in inward)


# pyskl's ``nturgb+d`` graph hangs the hand tip and the thumb both from the hand, where CTR-GCN
# (whose links the ntu25 layout's edges are) chains hand tip -> thumb -> hand.  The other inward
# links are the same.  0-based ``(child, parent)``: layout link -> pyskl link.
_PYSKL_RELINKED: dict[str, dict[tuple[int, int], tuple[int, int]]] = {
    "ntu25": {(21, 22): (21, 7), (23, 24): (23, 11)},  # left / right hand tip -> hand
}


def pyskl_inward_links(layout: str | Layout) -> Links:
    """The inward ``(child, parent)`` links of pyskl's graph for ``layout`` (``pyskl/utils/graph.py``).

    ``ntu25`` differs from the layout's edges at the hand tips (see ``_PYSKL_RELINKED``);
    ``coco17`` and ``openpose18`` are pyskl's ``coco`` and ``openpose`` graphs already, and the
    layouts pyskl has no graph for keep their own edges.
    """
    layout = get_layout(layout)
    relinked = _PYSKL_RELINKED.get(layout.name, {})
    return tuple(relinked.get(link, link) for link in inward_links(layout))


def spatial_adjacency(layout: str | Layout, edges: Iterable[tuple[int, int]] | None = None) -> np.ndarray:
    """The ST-GCN/CTR-GCN "spatial" partition of a layout's graph.

    Args:
        layout: a layout name or :class:`Layout`.
        edges: inward ``(child, parent)`` links to use instead of the layout's edges, e.g.
            :func:`pyskl_inward_links`.

    Returns:
        float32 array of shape ``(3, V, V)``: ``[identity, normalised inward, normalised
        outward]``, numerically identical to CTR-GCN's ``get_spatial_graph`` (and, with pyskl's
        links, to pyskl's ``Graph(mode='spatial').A``) cast to float32.
    """
    layout = get_layout(layout)
    num_joints = layout.num_joints
    inward = inward_links(layout) if edges is None else tuple(edges)
    identity = links_to_matrix(((v, v) for v in range(num_joints)), num_joints)
    inward_matrix = normalize_columns(links_to_matrix(inward, num_joints))
    outward_matrix = normalize_columns(links_to_matrix(outward_links(layout, inward), num_joints))
    return np.stack((identity, inward_matrix, outward_matrix)).astype(np.float32)


_MODES = {"spatial": spatial_adjacency}


def get_adjacency(
    layout: str | Layout, mode: str = "spatial", edges: Iterable[tuple[int, int]] | None = None
) -> np.ndarray:
    """Adjacency stack of a layout for a partition ``mode`` (only ``"spatial"`` so far).

    ``edges`` replaces the layout's inward links (e.g. :func:`pyskl_inward_links`).

    Returns:
        float32 array of shape ``(K, V, V)``.
    """
    try:
        builder = _MODES[mode]
    except KeyError:
        raise ValueError(
            f"unknown adjacency mode {mode!r}; available: {', '.join(sorted(_MODES))}"
        ) from None
    return builder(layout, edges)
