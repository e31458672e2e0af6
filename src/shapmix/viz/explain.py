"""Pictures of one explained prediction: the moving skeleton, body parts coloured by saliency.

* :func:`plot_explanation_frames`: the skeleton at a few key frames spread over the sequence,
  every bone and joint coloured by the Shapley value of its body part for the predicted class,
  next to a bar chart of the part values (a PNG, read at a glance);
* :func:`animate_explanation`: the whole sequence as an animated GIF with the same colours
  (matplotlib's ``PillowWriter``: Pillow only, no system video tools).

One diverging colour scale centred at zero: red parts raise the predicted class's probability,
blue ones lower it, white ones do not matter.  The drawing plane is the sequence's x-y (x to the
right, y up), in its own units; absent persons (all-zero frames) are not drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..skeleton.layouts import Layout, get_layout
from .plots import pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

__all__ = ["plot_explanation_frames", "animate_explanation", "key_frames"]

COLORMAP = "coolwarm"
NUM_KEY_FRAMES = 4
MAX_ANIMATION_FRAMES = 48
"""Longer sequences are animated at evenly spaced frames (keeps GIFs small and quick to write)."""
ANIMATION_FPS = 10
PANEL_SIZE = (2.4, 3.2)
"""Width and height (inches) of one skeleton panel."""
BONE_WIDTH = 3.5
JOINT_SIZE = 12.0
MARGIN_FRACTION = 0.08
"""Space around the skeleton, as a fraction of its extent."""
DPI = 100
ANIMATION_TITLE_WIDTH = 44
"""Characters per line of the animation's title (long class names wrap instead of being cut)."""


def key_frames(num_frames: int, count: int = NUM_KEY_FRAMES) -> np.ndarray:
    """``count`` frame indices evenly spread from the first to the last frame (fewer when the
    sequence is shorter), int64."""
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(np.int64))


class _SkeletonDrawing:
    """The x-y track of a ``(C, T, V, M)`` sequence and the colours of its parts."""

    def __init__(self, sequence: np.ndarray, layout: Layout | str, channels: Sequence[str], part_values: np.ndarray) -> None:
        self.layout = get_layout(layout)
        if "x" not in channels or "y" not in channels:
            raise ValueError(f"drawing needs x and y channels, the sequence has {tuple(channels)}")
        self.xy = np.asarray(sequence, dtype=np.float64)[[list(channels).index("x"), list(channels).index("y")]]
        self.present = np.asarray(sequence).any(axis=(0, 2))  # (T, M): the person is in the frame
        values = np.asarray(part_values, dtype=np.float64)
        if values.shape != (self.layout.num_parts,):
            raise ValueError(f"part_values must have shape ({self.layout.num_parts},), got {values.shape}")
        self.values = values
        extent = max(float(np.abs(values).max()), np.finfo(np.float64).tiny)
        # matplotlib is imported on first use (viz.plots.pyplot), not with the package
        from matplotlib.colors import Normalize

        self.norm = Normalize(-extent, extent)
        self.cmap = pyplot().get_cmap(COLORMAP)
        self.part_colours = self.cmap(self.norm(values))  # (P, 4)
        part_of_joint = np.asarray(self.layout.part_of_joint)
        self.bones = np.asarray(self.layout.bones)
        self.joint_colours = self.part_colours[part_of_joint]
        self.bone_colours = self.part_colours[part_of_joint[self.bones[:, 0]]]  # a bone is its child's part

    def limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Axis limits holding every drawn joint of the sequence."""
        points = self.xy.transpose(1, 3, 2, 0)[self.present]  # (present frames x persons, V, 2)
        if points.size == 0:
            return (-1.0, 1.0), (-1.0, 1.0)
        low, high = points.reshape(-1, 2).min(axis=0), points.reshape(-1, 2).max(axis=0)
        margin = MARGIN_FRACTION * max(float((high - low).max()), np.finfo(np.float64).tiny)
        return (low[0] - margin, high[0] + margin), (low[1] - margin, high[1] + margin)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(segments (B', 2, 2), bone colours, joints (J', 2), joint colours)`` of the persons
        present in frame ``t``."""
        persons = np.flatnonzero(self.present[t])
        joints = self.xy[:, t][:, :, persons].transpose(2, 1, 0)  # (M', V, 2)
        segments = joints[:, self.bones].reshape(-1, 2, 2)
        return (
            segments,
            np.tile(self.bone_colours, (len(persons), 1)),
            joints.reshape(-1, 2),
            np.tile(self.joint_colours, (len(persons), 1)),
        )

    def draw(self, ax: Axes, t: int) -> tuple[LineCollection, object]:
        from matplotlib.collections import LineCollection

        segments, bone_colours, joints, joint_colours = self.frame(t)
        bones = ax.add_collection(LineCollection(segments, colors=bone_colours, linewidths=BONE_WIDTH, capstyle="round"))
        points = ax.scatter(joints[:, 0], joints[:, 1], s=JOINT_SIZE, c=joint_colours, edgecolors="black", linewidths=0.4, zorder=3)
        xlim, ylim = self.limits()
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        return bones, points

    def colour_bar(self, fig: Figure, axes) -> None:
        fig.colorbar(
            pyplot().cm.ScalarMappable(norm=self.norm, cmap=self.cmap), ax=axes, fraction=0.04, pad=0.02,
            label="Shapley value of the part\n(probability of the predicted class)",
        )


def plot_explanation_frames(
    sequence: np.ndarray,
    layout: Layout | str,
    channels: Sequence[str],
    part_values: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Key frames of a sequence with part-coloured skeletons, and the part values as bars.

    Args:
        sequence: ``(C, T, V, M)`` the raw sequence (valid frames only).
        layout: its layout (bones and parts).
        channels: its channel names (``x`` and ``y`` are drawn).
        part_values: ``(P,)`` Shapley value of each part.
        path: the PNG to write.
        title: shown above the frames.
    """
    drawing = _SkeletonDrawing(sequence, layout, channels, part_values)
    frames = key_frames(drawing.xy.shape[1])
    fig, axes = pyplot().subplots(
        1, len(frames) + 1, figsize=(PANEL_SIZE[0] * (len(frames) + 1.6), PANEL_SIZE[1]), layout="constrained",
        gridspec_kw={"width_ratios": [1.0] * len(frames) + [1.3]},
    )
    for ax, t in zip(axes[:-1], frames):
        drawing.draw(ax, int(t))
        ax.set_title(f"frame {t + 1} of {drawing.xy.shape[1]}", fontsize=9)
    bars = axes[-1]
    order = np.arange(drawing.layout.num_parts)[::-1]  # first part at the top
    bars.barh(
        np.arange(len(order)), drawing.values[order], color=drawing.part_colours[order], edgecolor="black", linewidth=0.5
    )
    bars.set_yticks(np.arange(len(order)), [drawing.layout.part_names[p].replace("_", " ") for p in order], fontsize=8)
    bars.axvline(0.0, color="black", linewidth=0.6)
    bars.set_xlabel("Shapley value", fontsize=8)
    bars.tick_params(axis="x", labelsize=7)
    bars.set_title("body parts", fontsize=9)
    drawing.colour_bar(fig, axes[:-1])
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def animate_explanation(
    sequence: np.ndarray,
    layout: Layout | str,
    channels: Sequence[str],
    part_values: np.ndarray,
    path: str | Path,
    title: str = "",
    fps: int = ANIMATION_FPS,
) -> Path:
    """The sequence as an animated GIF, parts coloured as in :func:`plot_explanation_frames`.

    Sequences longer than :data:`MAX_ANIMATION_FRAMES` frames are shown at that many evenly
    spaced frames.  Arguments as :func:`plot_explanation_frames`; ``fps`` frames per second.
    """
    drawing = _SkeletonDrawing(sequence, layout, channels, part_values)
    num_frames = drawing.xy.shape[1]
    shown = key_frames(num_frames, MAX_ANIMATION_FRAMES)
    fig, ax = pyplot().subplots(figsize=(PANEL_SIZE[0] + 1.4, PANEL_SIZE[1] + 0.4), layout="constrained")
    bones, points = drawing.draw(ax, int(shown[0]))
    caption = ax.set_title(f"frame {num_frames} of {num_frames}", fontsize=9)
    drawing.colour_bar(fig, ax)
    fig.suptitle(textwrap.fill(title, ANIMATION_TITLE_WIDTH), fontsize=9)
    fig.canvas.draw()
    fig.set_layout_engine("none")  # laid out once: a layout pass per frame would dominate the time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from matplotlib.animation import PillowWriter

    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, DPI):
        for t in shown:  # one draw per frame (FuncAnimation would draw each frame twice)
            segments, bone_colours, joints, joint_colours = drawing.frame(int(t))
            bones.set_segments(segments)
            bones.set_colors(bone_colours)
            points.set_offsets(joints)
            points.set_facecolors(joint_colours)
            caption.set_text(f"frame {t + 1} of {num_frames}")
            writer.grab_frame()
    pyplot().close(fig)
    return path
