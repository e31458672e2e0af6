"""The CTR-GCN input pipeline as small, composable, batched transforms.

Every transform takes a padded batch ``x`` of shape ``(N, C, T, V, M)`` together with the valid
frame counts ``lengths`` ``(N,)`` and returns a new batch; random transforms draw their
parameters from an explicit :class:`torch.Generator` on its own device (a generator on the
batch's device keeps the whole pipeline there, without a round trip to the host; a CPU generator
draws exactly the numbers it always has) and apply them vectorised on ``x``'s device.  Running
the pipeline on the training device keeps the data loader trivial (it only slices the
memory-mapped array).

The pipeline of CTR-GCN (Chen et al., ICCV 2021), used by Shap-Mix:

0. :class:`Center` (not in CTR-GCN's feeder because its npz files are already translated): move
   the origin to the layout's centre joint of the first person in its first visible frame, so
   rotations turn the body about itself rather than about the camera.
1. :class:`CropResize`: training: keep a random fraction ``p ~ U(p_interval)`` of the valid
   frames (at least ``min_frames``) at a random offset; test: the central ``test_crop`` fraction.
   The crop is resized to ``window`` frames by linear interpolation (``align_corners=False``,
   exactly as ``F.interpolate``).
2. :class:`RandomRotation`: a rotation about x, y and z by angles ``U(-theta, theta)``.
3. :class:`ToModality`: joint, bone (``x[child] - x[parent]`` over the layout's tree), joint
   motion or bone motion (frame differences, last frame zero).

Multi-clip testing (:class:`MultiClipCropResize`, pyskl's ``num_clips``) replaces the central crop
by ``K`` uniformly spaced windows of the same length, scored separately and averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, get_args

import torch

from ..seeds import draw_device
from ..skeleton.layouts import Layout, get_layout

__all__ = [
    "BatchTransform",
    "Compose",
    "Center",
    "CropResize",
    "MultiClipCropResize",
    "clip_starts",
    "RandomRotation",
    "ToModality",
    "bone_vectors",
    "temporal_difference",
    "to_modality",
    "rotation_matrices",
    "build_pipeline",
    "resample_frames",
    "resize_source_frames",
    "MODALITIES",
    "RESIZE_MODES",
    "ResizeMode",
]

MODALITIES = ("joint", "bone", "joint_motion", "bone_motion")


class BatchTransform(Protocol):
    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class Compose:
    """Apply transforms in order; each maps ``(x, lengths)`` to ``(x, lengths)``."""

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in self.transforms:
            x, lengths = transform(x, lengths, generator)
        return x, lengths

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@dataclass
class Center:
    """Translate each sample so the centre joint of person 0 in its first visible frame is 0.

    Args:
        joint: the centre joint (``layout.center``).
        channels: the coordinate channels to translate (e.g. ``(0, 1, 2)``; a confidence
            channel is left alone).

    A person absent in a frame (all zeros there) stays all zeros, as in the NTU preprocessing.
    Input and output ``(N, C, T, V, M)``.
    """

    joint: int
    channels: tuple[int, ...] = (0, 1, 2)
    _masks: dict[tuple[int, torch.device], torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)
    """``(C,)`` bool masks of ``channels`` per (number of channels, device), made once: indexing
    with the list itself would copy it to the batch's device at every call."""

    def channel_mask(self, num_channels: int, device: torch.device) -> torch.Tensor:
        """``(C,)`` bool, true on the coordinate channels, on ``device``."""
        key = (num_channels, device)
        if key not in self._masks:
            mask = torch.zeros(num_channels, dtype=torch.bool)
            mask[list(self.channels)] = True
            self._masks[key] = mask.to(device)
        return self._masks[key]

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        coordinate = self.channel_mask(x.shape[1], x.device)[None, :, None]  # (1, C, 1)
        root = x[:, :, :, self.joint, 0]  # (N, C, T)
        visible = ((root != 0) & coordinate).any(dim=1)  # (N, T)
        first = visible.to(torch.int8).argmax(dim=1)  # 0 when never visible
        index = first[:, None, None].expand(-1, x.shape[1], 1)
        origin = torch.gather(root, 2, index)[..., None, None]  # (N, C, 1, 1, 1)
        present = (x != 0).any(dim=1, keepdim=True).any(dim=3, keepdim=True)  # (N, 1, T, 1, M)
        centred = torch.where(present & coordinate[..., None, None], x - origin, x)
        return centred, lengths


@dataclass
class CropResize:
    """Crop valid frames and resize them to ``window`` frames (linear interpolation).

    Args:
        window: output frames.
        p_interval: ``(low, high)``: training crop fraction ``p ~ U(low, high)``; if
            ``low == high`` and ``random`` is False the crop is central.
        min_frames: a random crop keeps at least this many frames (or every valid frame).
        random: random crop (training) or central crop (test).

    Input ``(N, C, T, V, M)`` with ``lengths`` ``(N,)``; output ``(N, C, window, V, M)`` with
    lengths all equal to ``window``.
    """

    window: int = 64
    p_interval: tuple[float, float] = (0.5, 1.0)
    min_frames: int = 64
    random: bool = True

    def crop_bounds(
        self, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(start, crop_length)`` per sample, ``(N,)`` int64 on ``lengths``' device (random
        fractions are drawn on ``generator``'s device)."""
        valid = lengths.to(torch.int64).clamp(min=1)
        if self.random:
            low, high = self.p_interval
            device = draw_device(generator, valid.device)
            fraction = torch.rand(valid.shape, generator=generator, dtype=torch.float64, device=device)
            p = low + (high - low) * fraction.to(valid.device)
            crop = torch.floor(valid * p).to(torch.int64)
            crop = torch.minimum(crop.clamp(min=self.min_frames), valid)
            slack = valid - crop + 1
            offset = torch.rand(valid.shape, generator=generator, dtype=torch.float64, device=device)
            start = (offset.to(valid.device) * slack).floor()
            start = start.to(torch.int64).clamp(max=slack - 1)
        else:
            # Same arithmetic as CTR-GCN: drop int((1 - p) * valid / 2) frames at each end.
            p = self.p_interval[0]
            bias = torch.floor((1.0 - p) * valid.to(torch.float64) / 2).to(torch.int64)
            start = bias
            crop = (valid - 2 * bias).clamp(min=1)
        return start, crop

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start, crop = self.crop_bounds(lengths.to(x.device), generator)
        frames = resample_frames(x, start, crop, self.window)
        return frames, torch.full_like(lengths, self.window)


ResizeMode = Literal["linear", "nearest"]
"""How a temporal resize reads its input: ``"linear"`` interpolation or ``"nearest"`` neighbour,
each exactly as ``F.interpolate`` computes it."""
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)


def resize_source_frames(
    out_frames: torch.Tensor,
    in_length: torch.Tensor,
    out_length: torch.Tensor | int,
    mode: ResizeMode = "linear",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each output frame of a temporal resize reads its input, as ``F.interpolate`` does.

    A clip of ``in_length_i`` frames resized to ``out_length_i`` frames gives output frame ``o``
    the blend ``(1 - weight) * clip[lower] + weight * clip[upper]``.  ``"linear"`` is
    ``F.interpolate(mode="linear", align_corners=False)``: source position
    ``(o + 0.5) * in / out - 0.5``, clamped at 0; ``"nearest"`` is ``F.interpolate``'s default
    mode: ``floor(o * in / out)`` with the ratio in float32 as PyTorch's kernel (weight 0).
    Shared by the crop-resize of the input pipeline and the donor clips of ST-Mix.

    Args:
        out_frames: ``(N, T)`` or ``(1, T)`` float64 output frame positions, relative to the
            first output frame (values outside ``0..out_length-1`` are allowed and clamped into
            the clip, e.g. frames before or after a paste window).
        in_length: ``(N,)`` int64 input clip lengths (at least 1).
        out_length: ``(N,)`` int64 output lengths, or one length for every clip.
        mode: ``"linear"`` or ``"nearest"``.

    Returns:
        ``(lower, upper, weight)``, each ``(N, T)``: int64 input frames in ``0..in_length-1``
        (relative to the clip's start) and the float64 weight of ``upper`` in ``[0, 1]``; on the
        inputs' device.
    """
    if isinstance(out_length, torch.Tensor):
        target = out_length.to(in_length.device)
    else:  # a fill on the device: no host-to-device copy
        target = torch.full((1,), out_length, dtype=torch.int64, device=in_length.device)
    target = target.clamp(min=1).reshape(-1, 1)
    if mode == "linear":
        scale = in_length.to(torch.float64)[:, None] / target
        source = ((out_frames + 0.5) * scale - 0.5).clamp(min=0.0)
    elif mode == "nearest":
        ratio = in_length.to(torch.float32)[:, None] / target.to(torch.float32)
        source = (out_frames.to(torch.float32) * ratio).floor().to(torch.float64).clamp(min=0.0)
    else:
        raise ValueError(f"unknown resize mode {mode!r}; use 'linear' or 'nearest'")
    last = (in_length - 1)[:, None]
    lower = torch.minimum(source.floor().to(torch.int64), last)
    upper = torch.minimum(lower + 1, last)
    weight = (source - lower.to(torch.float64)).clamp(0.0, 1.0)
    return lower, upper, weight


def resample_frames(
    x: torch.Tensor, start: torch.Tensor, length: torch.Tensor, window: int
) -> torch.Tensor:
    """Linearly resample frames ``[start, start + length)`` of each sample to ``window`` frames.

    Matches ``F.interpolate(mode="linear", align_corners=False)`` applied to each crop
    (:func:`resize_source_frames`).  ``x`` ``(N, C, T, V, M)``; ``start``, ``length`` ``(N,)``
    int64 on ``x.device``.
    """
    n, c, _, v, m = x.shape
    out_frames = torch.arange(window, device=x.device, dtype=torch.float64)[None, :]
    lower, upper, weight = resize_source_frames(out_frames, length, window)
    lower, upper = lower + start[:, None], upper + start[:, None]

    def gather(index: torch.Tensor) -> torch.Tensor:
        index = index[:, None, :, None, None].expand(n, c, window, v, m)
        return torch.gather(x, 2, index)

    weight = weight.to(x.dtype)[:, None, :, None, None]
    return gather(lower) * (1 - weight) + gather(upper) * weight


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` angles about x, y, z (radians) -> ``(N, 3, 3)`` matrices ``Rz @ Ry @ Rx``."""
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def matrix(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    rx = matrix([[one, zero, zero], [zero, cos[:, 0], sin[:, 0]], [zero, -sin[:, 0], cos[:, 0]]])
    ry = matrix([[cos[:, 1], zero, -sin[:, 1]], [zero, one, zero], [sin[:, 1], zero, cos[:, 1]]])
    rz = matrix([[cos[:, 2], sin[:, 2], zero], [-sin[:, 2], cos[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


@dataclass
class RandomRotation:
    """Rotate the 3 coordinate channels by random angles ``U(-theta, theta)`` about each axis.

    Input and output ``(N, 3, T, V, M)``; zero (absent) joints stay zero.
    """

    theta: float = 0.3

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] != 3:
            raise ValueError(f"RandomRotation needs 3 coordinate channels, got C={x.shape[1]}")
        if self.theta == 0:
            return x, lengths
        device = draw_device(generator, x.device)
        uniform = torch.rand((x.shape[0], 3), generator=generator, dtype=torch.float64, device=device)
        angles = uniform.to(x.device) * 2 - 1
        rotation = rotation_matrices(angles * self.theta).to(dtype=x.dtype)
        return torch.einsum("nij,njtvm->nitvm", rotation, x), lengths


_PARENTS_ON: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}
"""Parent index tensors per (parent map, device), made once (see :func:`bone_vectors`)."""


def bone_vectors(x: torch.Tensor, layout: Layout | str) -> torch.Tensor:
    """``x[..., child, :] - x[..., parent, :]`` along the joint axis (dim 3); the root is zero."""
    parents = get_layout(layout).parent_of()
    key = (parents, x.device)
    if key not in _PARENTS_ON:  # copied to the device once, not at every training step
        _PARENTS_ON[key] = torch.tensor(parents).to(x.device)
    return x - x.index_select(3, _PARENTS_ON[key])


def temporal_difference(x: torch.Tensor) -> torch.Tensor:
    """Frame differences ``x[:, :, t + 1] - x[:, :, t]`` with the last frame zero."""
    motion = torch.zeros_like(x)
    motion[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return motion


def to_modality(x: torch.Tensor, modality: str, layout: Layout | str) -> torch.Tensor:
    """Convert joint coordinates ``(N, C, T, V, M)`` to the requested input modality."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; use one of {MODALITIES}")
    if modality.startswith("bone"):
        x = bone_vectors(x, layout)
    if modality.endswith("motion"):
        x = temporal_difference(x)
    return x


@dataclass
class ToModality:
    """Transform wrapper around :func:`to_modality`."""

    modality: str
    layout: Layout | str

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return to_modality(x, self.modality, self.layout), lengths


def build_pipeline(
    layout: Layout | str,
    train: bool,
    center: bool = True,
    coordinate_channels: tuple[int, ...] = (0, 1, 2),
    window: int = 64,
    p_interval: tuple[float, float] = (0.5, 1.0),
    test_crop: float = 0.95,
    min_crop_frames: int = 64,
    rotation: float = 0.3,
    modality: str = "joint",
    num_clips: int = 1,
) -> Compose:
    """The CTR-GCN pipeline for training (random crop, rotation) or testing (central crop, or
    ``num_clips > 1`` uniformly spaced windows: the batch grows to ``N * num_clips`` clips)."""
    layout = get_layout(layout)
    steps: list[BatchTransform] = [Center(layout.center, coordinate_channels)] if center else []
    if train:
        steps.append(CropResize(window, p_interval, min_crop_frames, random=True))
        if rotation > 0:
            steps.append(RandomRotation(rotation))
    elif num_clips == 1:
        steps.append(CropResize(window, (test_crop, test_crop), min_crop_frames, random=False))
    else:
        steps.append(MultiClipCropResize(window, test_crop, num_clips))
    if modality != "joint":
        steps.append(ToModality(modality, layout))
    return Compose(steps)


def clip_starts(lengths: torch.Tensor, crop: torch.Tensor, num_clips: int) -> torch.Tensor:
    """First frame of each of ``num_clips`` uniformly spaced windows of ``crop`` frames.

    Window ``k`` starts at ``floor(k * (lengths - crop) / (K - 1))``: the first at frame 0, the
    last ending at the last valid frame and, for odd ``K``, the middle one exactly where the
    central crop starts (``(lengths - crop) / 2``).

    Args:
        lengths: ``(N,)`` valid frames per sample.
        crop: ``(N,)`` window length per sample (at most ``lengths``).
        num_clips: ``K >= 2`` windows per sample.

    Returns:
        ``(N, K)`` int64, on ``lengths``' device.
    """
    if num_clips < 2:
        raise ValueError(f"clip_starts spaces at least 2 windows, got num_clips={num_clips}")
    slack = (lengths.to(torch.int64) - crop.to(torch.int64)).clamp(min=0)
    k = torch.arange(num_clips, device=lengths.device, dtype=torch.int64)
    return torch.div(k[None, :] * slack[:, None], num_clips - 1, rounding_mode="floor")


@dataclass
class MultiClipCropResize:
    """``num_clips`` uniformly spaced windows of each sequence, each resized to ``window`` frames.

    A window is as long as the central test crop (``test_crop`` of the valid frames, with
    :class:`CropResize`'s arithmetic); the windows start at :func:`clip_starts`.  ``num_clips = 1``
    is the central crop.

    Input ``(N, C, T, V, M)`` with ``lengths`` ``(N,)``; output ``(N * K, C, window, V, M)``, row
    ``n * K + k`` being window ``k`` of sample ``n``, with lengths all ``window``.
    """

    window: int = 64
    test_crop: float = 0.95
    num_clips: int = 1

    def __post_init__(self) -> None:
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be at least 1, got {self.num_clips}")

    def windows(self, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(start, crop)`` of every window, each ``(N, K)`` int64 on ``lengths``' device."""
        start, crop = CropResize(self.window, (self.test_crop, self.test_crop), random=False).crop_bounds(lengths)
        if self.num_clips == 1:
            return start[:, None], crop[:, None]
        valid = lengths.to(torch.int64).clamp(min=1)
        return clip_starts(valid, crop, self.num_clips), crop[:, None].expand(-1, self.num_clips)

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start, crop = self.windows(lengths.to(x.device))
        clips = x.repeat_interleave(self.num_clips, dim=0)
        frames = resample_frames(clips, start.flatten(), crop.flatten(), self.window)
        return frames, torch.full((clips.shape[0],), self.window, dtype=lengths.dtype, device=lengths.device)
