"""Pictures of Shap-Mix saliency: a class x combination heatmap and part-coloured skeletons.

* :func:`plot_saliency_heatmap`: a ``(K, S)`` table, classes ordered by training frequency (head
  at the top), Many/Medium/Few boundaries marked, each class's top combination outlined.
* :func:`plot_part_saliency_skeletons`: small standing skeletons, one per selected class, each
  body part's bones coloured by its saliency on one shared scale (as the paper's Figures 3, 5).
* :func:`write_training_saliency_figures`: both pictures of an online table, for a run directory.

The skeleton is drawn in a neutral pose: a ``(V, 2+)`` pose given by the caller (e.g. the mean
first frame of a dataset) or the built-in template of :func:`template_pose`, placed from the
joint names so it fits every built-in layout.  The drawing plane is x-y (x to the right, y up);
the skeleton's anatomical left is at +x, as in Kinect camera space.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.longtail import (
    DEFAULT_FEW_THRESHOLD,
    DEFAULT_MANY_THRESHOLD,
    GROUP_LABELS,
    Group,
    group_classes,
)
from ..skeleton.layouts import Layout, get_layout
from .plots import MAX_LABELLED_CLASSES, pyplot

__all__ = [
    "HEATMAP_FILE",
    "POLICY_HEATMAP_FILE",
    "SKELETONS_FILE",
    "part_scores_from_table",
    "pick_classes",
    "plot_part_saliency_skeletons",
    "plot_policy_heatmap",
    "plot_saliency_heatmap",
    "template_pose",
    "write_training_saliency_figures",
]

HEATMAP_FILE = "saliency_heatmap.png"
POLICY_HEATMAP_FILE = "policy_heatmap.png"
SKELETONS_FILE = "part_saliency.png"

HEATMAP_COLORMAP = "viridis"
SKELETON_COLORMAP = "YlOrRd"
MISSING_COLOUR = "#d9d9d9"
"""Colour of a class without data (NaN row) in the heatmap."""
TOP_MARKER_COLOUR = "red"
GROUP_LINE_COLOUR = "white"
SKELETONS_PER_ROW = 6
PANEL_SIZE = (2.1, 3.0)
"""Width and height (inches) of one skeleton panel."""
TITLE_WIDTH = 26
"""Characters per line of a skeleton panel's title."""
POSE_MARGIN = 0.1
"""Space around the skeleton in a panel, in pose units (metres for the template)."""
BONE_WIDTH = 4.0
JOINT_SIZE = 10.0
DPI = 120
COMBINATION_SEPARATOR = "+"
"""How :class:`~shapmix.mixing.PartCombinations` joins part names into a combination name."""

# --------------------------------------------------------------------------- neutral pose

_SIDES = {"left_": 1.0, "right_": -1.0}
# Standing, arms half raised ("T-pose-ish"), in metres: (|x|, y) of a joint by its name without
# the side prefix.  Central joints have x = 0; sided ones are mirrored by `_SIDES`.
_TEMPLATE = {
    "head": (0.0, 1.66),
    "nose": (0.0, 1.60),
    "eye": (0.04, 1.64),
    "ear": (0.08, 1.61),
    "neck": (0.0, 1.50),
    "spine_shoulder": (0.0, 1.42),
    "shoulder_center": (0.0, 1.42),
    "spine_mid": (0.0, 1.15),
    "spine": (0.0, 1.15),
    "spine_base": (0.0, 0.92),
    "hip_center": (0.0, 0.92),
    "shoulder": (0.20, 1.42),
    "elbow": (0.44, 1.30),
    "wrist": (0.64, 1.16),
    "hand": (0.70, 1.12),
    "hand_tip": (0.78, 1.08),
    "thumb": (0.70, 1.20),
    "hip": (0.11, 0.90),
    "knee": (0.14, 0.50),
    "ankle": (0.15, 0.10),
    "foot": (0.20, 0.03),
}


def template_pose(layout: str | Layout) -> np.ndarray:
    """``(V, 2)`` x-y positions of a standing template skeleton, placed from the joint names.

    Works for any layout whose joints are named like the built-in ones (``left_elbow``,
    ``spine_mid``, ``nose`` ...).

    Raises:
        ValueError: naming a joint the template does not know (pass ``pose`` instead).
    """
    layout = get_layout(layout)
    pose = np.zeros((layout.num_joints, 2))
    unknown = []
    for joint, name in enumerate(layout.joint_names):
        side = next((sign for prefix, sign in _SIDES.items() if name.startswith(prefix)), 0.0)
        base = name.removeprefix("left_").removeprefix("right_")
        if base not in _TEMPLATE:
            unknown.append(name)
            continue
        x, y = _TEMPLATE[base]
        pose[joint] = (side * x if side else x, y)
    if unknown:
        raise ValueError(f"no template position for joints {unknown} of layout {layout.name!r}; pass a pose")
    return pose


# --------------------------------------------------------------------------- helpers


def _class_order(train_counts: Sequence[int]) -> np.ndarray:
    """Class indices by decreasing training count (ties keep index order)."""
    return np.argsort(-np.asarray(train_counts), kind="stable")


def pick_classes(
    train_counts: Sequence[int],
    per_group: int = 2,
    many_threshold: int = DEFAULT_MANY_THRESHOLD,
    few_threshold: int = DEFAULT_FEW_THRESHOLD,
) -> list[int]:
    """Example classes for the skeleton drawings: up to ``per_group`` Many, Medium and Few classes.

    Within each group (from the training counts, :func:`~shapmix.data.longtail.group_classes`)
    the classes are sorted by decreasing count and ``per_group`` of them are taken at evenly
    spaced positions (the most and the least frequent first).  Empty groups contribute nothing.

    Returns:
        class indices, Many first, then Medium, then Few.
    """
    if per_group < 1:
        raise ValueError(f"per_group must be positive, got {per_group}")
    order = _class_order(train_counts)
    groups = group_classes(train_counts, many_threshold, few_threshold)[order]
    chosen: list[int] = []
    for group in Group:
        members = order[groups == group]
        if members.size:
            positions = np.unique(np.linspace(0, members.size - 1, min(per_group, members.size)).round().astype(int))
            chosen.extend(int(c) for c in members[positions])
    return chosen


def _abbreviation(part_name: str) -> str:
    """``left_arm`` -> ``LA``, ``torso`` -> ``T``."""
    return "".join(word[0] for word in part_name.split("_") if word).upper()


def _short_combination_names(combination_names: Sequence[str]) -> tuple[list[str], str]:
    """Abbreviated combination names and a legend of the abbreviations."""
    parts = dict.fromkeys(p for name in combination_names for p in name.split(COMBINATION_SEPARATOR))
    short = [
        COMBINATION_SEPARATOR.join(_abbreviation(p) for p in name.split(COMBINATION_SEPARATOR))
        for name in combination_names
    ]
    legend = ", ".join(f"{_abbreviation(p)} {p.replace('_', ' ')}" for p in parts)
    return short, legend


def part_scores_from_table(table: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Per-part display scores derived from a combination table.

    A part's raw score is the mean of the values of the combinations containing it; the scores of
    each class are then min-max normalised to ``[0, 1]`` (the most salient part of the class is 1,
    the least 0; a class whose parts all score the same gets 0.5 everywhere, a NaN row stays NaN).
    The online table holds per-joint values of combinations only, so this is a *relative*
    within-class picture, not a Shapley value of the part.

    Args:
        table: ``(K, S)`` combination values.
        membership: ``(S, P)`` bool, part ``p`` is in combination ``s``.

    Returns:
        ``(K, P)`` float64 in ``[0, 1]`` (or NaN).
    """
    member = np.asarray(membership, dtype=np.float64)
    raw = np.asarray(table, dtype=np.float64) @ member / member.sum(axis=0)
    low = raw.min(axis=1, keepdims=True)
    span = raw.max(axis=1, keepdims=True) - low
    normalised = (raw - low) / np.where(span > 0, span, 1.0)
    return np.where(np.isnan(raw), np.nan, np.where(span > 0, normalised, 0.5))


def _membership_from_names(combination_names: Sequence[str], layout: Layout) -> np.ndarray:
    """``(S, P)`` bool membership parsed from names such as ``left_arm+right_arm``."""
    index = {name: p for p, name in enumerate(layout.part_names)}
    membership = np.zeros((len(combination_names), layout.num_parts), dtype=bool)
    for s, name in enumerate(combination_names):
        for part in name.split(COMBINATION_SEPARATOR):
            if part not in index:
                raise ValueError(f"combination {name!r} names part {part!r}, not a part of layout {layout.name!r}")
            membership[s, index[part]] = True
    return membership


def _wrapped(name: str) -> str:
    """A class name broken into lines of at most :data:`TITLE_WIDTH` characters, preferably after
    a ``+`` (the synthetic benchmark's names join their parts' motions with ``+``)."""
    return "\n".join(textwrap.wrap(name.replace("+", "+ "), TITLE_WIDTH)).replace("+ ", "+")


def _save(fig: Any, path: str | Path) -> Path:
    """Write the matplotlib figure ``fig`` to ``path`` and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


# --------------------------------------------------------------------------- heatmap


def plot_saliency_heatmap(
    table: np.ndarray,
    train_counts: Sequence[int],
    class_names: Sequence[str],
    combination_names: Sequence[str],
    path: str | Path,
    title: str = "Part-combination saliency",
    many_threshold: int = DEFAULT_MANY_THRESHOLD,
    few_threshold: int = DEFAULT_FEW_THRESHOLD,
    value_label: str = "per-joint Shapley value",
) -> Path:
    """Heatmap of a ``(K, S)`` saliency table.

    Rows are classes by decreasing training count (head at the top), columns combinations
    (abbreviated, legend under the axis).  The top combination of each class is outlined in red;
    white lines separate the Many / Medium / Few groups, labelled on the right.  Classes
    without data (NaN rows) are grey.

    Args:
        table: ``(K, S)`` values (e.g. the online table or exact per-joint values).
        train_counts: ``(K,)`` training samples per class (order and groups).
        class_names: ``K`` names.
        combination_names: ``S`` names such as ``left_arm+right_arm``.
        path: the PNG to write.
    """
    values = np.asarray(table, dtype=np.float64)
    num_classes, num_combinations = values.shape
    if (
        len(train_counts) != num_classes
        or len(class_names) != num_classes
        or len(combination_names) != num_combinations
    ):
        raise ValueError("train_counts, class_names and combination_names must match the table's shape")
    order = _class_order(train_counts)
    ordered = values[order]
    groups = group_classes(train_counts, many_threshold, few_threshold)[order]

    height = max(4.2, 0.16 * num_classes + 2.4)
    width = max(6.0, 0.36 * num_combinations + 3.5)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = plt.get_cmap(HEATMAP_COLORMAP).with_extremes(bad=MISSING_COLOUR)
    image = ax.imshow(np.ma.masked_invalid(ordered), aspect="auto", cmap=cmap, interpolation="nearest")
    fig.colorbar(image, ax=ax, label=value_label, fraction=0.04, pad=0.1)

    has_data = np.isfinite(ordered).any(axis=1)
    rows = np.flatnonzero(has_data)
    tops = np.nanargmax(np.where(np.isfinite(ordered[rows]), ordered[rows], -np.inf), axis=1)
    for row, column in zip(rows, tops):
        ax.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=TOP_MARKER_COLOUR, linewidth=1.2))

    boundaries = np.flatnonzero(np.diff(groups)) + 0.5
    for boundary in boundaries:
        ax.axhline(boundary, color=GROUP_LINE_COLOUR, linewidth=2.0)
    label_axis = ax.secondary_yaxis("right")
    starts = np.concatenate([[0], np.ceil(boundaries).astype(int)])
    ends = np.concatenate([np.ceil(boundaries).astype(int), [num_classes]])
    label_axis.set_yticks(
        (starts + ends - 1) / 2,
        [f"{GROUP_LABELS[Group(groups[s])]} ({e - s})" for s, e in zip(starts, ends)],
        rotation=90,
        va="center",
    )
    label_axis.tick_params(length=0)

    short, legend = _short_combination_names(combination_names)
    ax.set_xticks(np.arange(num_combinations), short, rotation=90, fontsize=7)
    ax.set_xlabel(f"part combination ({legend}); red box: top combination", fontsize=8)
    if num_classes <= MAX_LABELLED_CLASSES:
        counts = np.asarray(train_counts)[order]
        ax.set_yticks(np.arange(num_classes), [f"{class_names[c]} ({n})" for c, n in zip(order, counts)], fontsize=6)
    else:
        ax.set_yticks([])
    ax.set_ylabel("class (training samples), head first")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_policy_heatmap(
    probabilities: np.ndarray,
    train_counts: Sequence[int],
    class_names: Sequence[str],
    combination_names: Sequence[str],
    path: str | Path,
    tau: float,
    title: str = "Mixing policy",
    many_threshold: int = DEFAULT_MANY_THRESHOLD,
    few_threshold: int = DEFAULT_FEW_THRESHOLD,
) -> Path:
    """Heatmap of the sampling distribution ``(K, S)`` a policy draws part combinations from
    (rows sum to 1), laid out as :func:`plot_saliency_heatmap`.  The title states the
    temperature and how sharp the policy is: the mean probability of each class's top
    combination against the uniform ``1 / S``."""
    probs = np.asarray(probabilities, dtype=np.float64)
    top = np.nanmax(probs, axis=1)
    return plot_saliency_heatmap(
        probs,
        train_counts,
        class_names,
        combination_names,
        path,
        title=f"{title}: softmax(values / {tau:g}); top combination {np.nanmean(top):.2f} on average "
        f"(max {np.nanmax(top):.2f}, uniform {1 / probs.shape[1]:.2f})",
        many_threshold=many_threshold,
        few_threshold=few_threshold,
        value_label="sampling probability",
    )


# --------------------------------------------------------------------------- skeletons


def plot_part_saliency_skeletons(
    part_values: np.ndarray,
    layout: str | Layout,
    class_indices: Sequence[int],
    class_names: Sequence[str],
    path: str | Path,
    pose: np.ndarray | None = None,
    train_counts: Sequence[int] | None = None,
    title: str = "Body-part saliency",
    value_label: str = "Shapley value of the part",
) -> Path:
    """A grid of skeletons, one per class, each part's bones and joints coloured by its saliency.

    One sequential colour scale (with a colour bar) is shared by all panels; a class without data
    (NaN) is drawn grey.

    Args:
        part_values: ``(K, P)`` per-part saliency (e.g. exact Shapley values of the parts).
        layout: the skeleton layout (bones and parts).
        class_indices: the classes to draw (e.g. :func:`pick_classes`).
        class_names: ``K`` names.
        path: the PNG to write.
        pose: ``(V, 2+)`` joint positions to draw (x, y used); default :func:`template_pose`.
        train_counts: ``(K,)`` training counts, shown under each class name when given.
    """
    layout = get_layout(layout)
    values = np.asarray(part_values, dtype=np.float64)
    if values.shape[1] != layout.num_parts:
        raise ValueError(f"part_values has {values.shape[1]} columns for {layout.num_parts} parts")
    if not len(class_indices):
        raise ValueError("no classes to draw")
    xy = template_pose(layout) if pose is None else np.asarray(pose, dtype=np.float64)[:, :2]
    if xy.shape != (layout.num_joints, 2):
        raise ValueError(f"pose must have shape ({layout.num_joints}, 2+), got {np.shape(pose)}")

    shown = values[list(class_indices)]
    finite = shown[np.isfinite(shown)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    # Delayed imports: matplotlib is heavy and only drawing needs it (see viz.plots.pyplot).
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba

    plt = pyplot()
    norm = plt.Normalize(low, high if high > low else low + 1.0)
    cmap = plt.get_cmap(SKELETON_COLORMAP)
    part_of_joint = np.asarray(layout.part_of_joint)
    bones = np.asarray(layout.bones)
    segments = xy[bones]  # (B, 2 ends, 2 coordinates)
    bone_part = part_of_joint[bones[:, 0]]  # a bone belongs to the part of its child joint

    columns = min(len(class_indices), SKELETONS_PER_ROW)
    rows = -(-len(class_indices) // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(PANEL_SIZE[0] * columns + 1.2, PANEL_SIZE[1] * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax, cls, row_values in zip(axes.flat, class_indices, shown):
        colours = np.where(
            np.isfinite(row_values)[:, None],
            cmap(norm(np.nan_to_num(row_values))),
            to_rgba(MISSING_COLOUR),
        )
        ax.add_collection(LineCollection(segments, colors=colours[bone_part], linewidths=BONE_WIDTH, capstyle="round"))
        ax.scatter(
            xy[:, 0], xy[:, 1], s=JOINT_SIZE, c=colours[part_of_joint], edgecolors="black", linewidths=0.4, zorder=3
        )
        ax.set_xlim(xy[:, 0].min() - POSE_MARGIN, xy[:, 0].max() + POSE_MARGIN)
        ax.set_ylim(xy[:, 1].min() - POSE_MARGIN, xy[:, 1].max() + POSE_MARGIN)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        subtitle = f"\n{train_counts[cls]} training samples" if train_counts is not None else ""
        ax.set_title(f"{_wrapped(class_names[cls])}{subtitle}", fontsize=8)
    for ax in axes.flat[len(class_indices) :]:
        ax.axis("off")
    fig.suptitle(f"{title}\nthe skeleton's left side is drawn at +x", fontsize=10)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=value_label, fraction=0.03, pad=0.02)
    return _save(fig, path)


# --------------------------------------------------------------------------- run directory


def write_training_saliency_figures(
    table_values: np.ndarray,
    part_values: np.ndarray | None,
    train_counts: Sequence[int],
    class_names: Sequence[str],
    combination_names: Sequence[str],
    layout: str | Layout,
    out_dir: str | Path,
    many_threshold: int = DEFAULT_MANY_THRESHOLD,
    few_threshold: int = DEFAULT_FEW_THRESHOLD,
    policy: tuple[np.ndarray, float] | None = None,
) -> list[Path]:
    """Write :data:`HEATMAP_FILE` and :data:`SKELETONS_FILE` for a Shap-Mix run into ``out_dir``,
    and with ``policy`` :data:`POLICY_HEATMAP_FILE`.

    Args:
        table_values: ``(K, S)`` online saliency table.
        part_values: ``(K, P)`` per-part values to draw, or ``None`` to derive relative per-part
            scores from the table with :func:`part_scores_from_table` (the membership of each
            combination is read from its name).
        train_counts: ``(K,)`` training samples per class.
        class_names: ``K`` names.
        combination_names: ``S`` names, parts joined by ``+`` (``PartCombinations.names``).
        layout: the skeleton layout.
        out_dir: the run directory.
        policy: ``(probabilities (K, S), tau)``, the sampling distribution the table gives
            (:func:`plot_policy_heatmap`).

    Returns:
        the paths written.
    """
    layout = get_layout(layout)
    out = Path(out_dir)
    heatmap = plot_saliency_heatmap(
        table_values,
        train_counts,
        class_names,
        combination_names,
        out / HEATMAP_FILE,
        title="Online saliency table",
        many_threshold=many_threshold,
        few_threshold=few_threshold,
    )
    if part_values is None:
        part_values = part_scores_from_table(table_values, _membership_from_names(combination_names, layout))
        label = "relative part saliency (from the table)"
    else:
        label = "part saliency"
    skeletons = plot_part_saliency_skeletons(
        part_values,
        layout,
        pick_classes(train_counts, many_threshold=many_threshold, few_threshold=few_threshold),
        class_names,
        out / SKELETONS_FILE,
        train_counts=train_counts,
        value_label=label,
    )
    written = [heatmap, skeletons]
    if policy is not None:
        probabilities, tau = policy
        written.append(
            plot_policy_heatmap(
                probabilities,
                train_counts,
                class_names,
                combination_names,
                out / POLICY_HEATMAP_FILE,
                tau,
                many_threshold=many_threshold,
                few_threshold=few_threshold,
            )
        )
    return written
