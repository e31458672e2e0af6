"""Batch mixing for skeleton sequences: Mixup, CutMix and ST-Mix.

ST-Mix is the random spatial-temporal mixing of Shap-Mix (Zhang, Lin, Liu, "Shap-Mix:
Shapley Value Guided Mixing for Long-Tailed Skeleton Based Action Recognition", IJCAI 2024,
Section 3.2); Mixup is Zhang et al. (ICLR 2018) and CutMix Yun et al. (ICCV 2019), adapted to
skeletons.  The API follows timm's ``mixup.py``: a mixer is a small object with a typed
constructor whose ``__call__(x, y)`` returns ``(x_mixed, soft_targets)``.

Shapes: a batch ``x`` is ``(N, C, T, V, M)`` (channels, frames, joints, persons), labels ``y``
are ``(N,)`` int64, soft targets ``(N, K)`` with rows summing to 1.  Every sample ``i`` is mixed
with a partner ``j = partner[i]`` (never itself when ``N > 1``) with its own ratio ``lam_i``::

    x'_i = mix(x_i, x_j),    target_i = (1 - lam_i) onehot(y_i) + lam_i onehot(y_j)

``lam`` is the **partner's** share (of the label, and for Mixup of the content: ``x'_i = (1 -
lam_i) x_i + lam_i x_j``), the reverse of timm's convention, where ``lam`` is the sample's own
share (``x * lam + x.flip(0) * (1 - lam)``): timm's ``lam`` is ``1 - lam`` here.  It suits
CutMix and ST-Mix, whose ratio is the share of the sample that the partner's pasted content
covers (ST-Mix: window frames x mixed joints / (T x V)).

Everything is vectorised over the batch, on the batch's device, without reading anything back
to the host.  Random parameters come from the mixer's own :class:`torch.Generator`, made on the
device of the first batch the mixer mixes (:class:`~shapmix.seeds.DeviceGenerator`; on a CPU
exactly the CPU generator of the mixer's seed).  ST-Mix draws them per sample, as the paper
describes; ``draw="per_batch"`` draws them once for the whole batch, as the authors' code does
(:data:`DrawMode`).
:meth:`BatchMixer.mix_with_info` also returns a :class:`MixInfo` with the drawn parameters (for
tests, logging and analysis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..data.transforms import RESIZE_MODES, ResizeMode, resize_source_frames
from ..seeds import DeviceGenerator
from ..skeleton.layouts import Layout, get_layout
from .parts import DEFAULT_MAX_PARTS, DEFAULT_MIN_PARTS, PartCombinations

__all__ = [
    "DEFAULT_DONOR_RESIZE",
    "DEFAULT_DRAW",
    "DEFAULT_P_MIXUP",
    "DEFAULT_SEGMENT_FRAMES",
    "DEFAULT_WINDOW_FRACTION",
    "NO_COMBINATION",
    "BatchMixer",
    "CutMix",
    "DonorResize",
    "DrawMode",
    "MixInfo",
    "Mixup",
    "PartnerMode",
    "STMix",
    "DeviceCopies",
    "draw_partners",
    "make_stream",
    "mixed_targets",
    "paste_resized",
    "sample_mixing_ratio",
    "segment_range",
    "window_mask",
]

PartnerMode = Literal["shift", "cycle"]
"""``"shift"``: ``partner = (i + k) mod N`` with one random ``k`` in ``1..N-1`` (the authors').
``"cycle"``: a uniformly random ``N``-cycle, a permutation without fixed points."""

DrawMode = Literal["per_sample", "per_batch"]
"""What ST-Mix draws once per sample or once per batch: the Mixup-or-local choice, Mixup's
ratio, the window (length and start), the donor clip (length and start) and the part
combination.  ``"per_sample"``: every sample its own (the paper's text).  ``"per_batch"``: one draw
shared by the batch (the authors' code, ``skelemix.py``), with one exception: Shap-Mix's guided
policy draws a combination per sample either way, as the authors do after warm-up."""

DonorResize = ResizeMode
"""How the donor clip is resized in time to the target window: ``"linear"`` interpolation, or
``"nearest"`` neighbour (``F.interpolate``'s default mode, which the authors' code uses);
:func:`~shapmix.data.transforms.resize_source_frames` computes both."""

NO_COMBINATION = -1
""":attr:`MixInfo.combination` of a sample that was not mixed by part combination."""

DEFAULT_P_MIXUP = 0.25
DEFAULT_SEGMENT_FRAMES = 4
DEFAULT_WINDOW_FRACTION = (0.4, 0.7)
DEFAULT_DRAW: DrawMode = "per_sample"
DEFAULT_DONOR_RESIZE: DonorResize = "linear"

_ROUND_DIGITS = 9
"""Fractions of a segment count are rounded to this many digits before ceil/floor, so that
e.g. ``0.3 * 10`` counts as 3 segments, not 4."""


# --------------------------------------------------------------------------- random parameters


def make_stream(generator: torch.Generator | None = None, seed: int | None = None, name: str = "a mixer") -> DeviceGenerator:
    """The random stream a mixer draws from: ``generator`` itself (on whatever device it lives),
    or a stream seeded with ``seed`` (or with a seed drawn from torch's global generator when
    both are ``None``) whose generator is made on the device of the first batch."""
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either generator or seed, not both")
        return DeviceGenerator(generator=generator, name=name)
    if seed is None:
        seed = int(torch.randint(2**62, (1,)).item())
    return DeviceGenerator(seed, name=name)


class DeviceCopies:
    """A constant tensor and its copies on the devices it is used on, each made once: a copy to
    a GPU is a host-to-device transfer, which a training step must not wait for every time."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self._copies = {tensor.device: tensor}

    def on(self, device: torch.device) -> torch.Tensor:
        """The tensor on ``device``."""
        copy = self._copies.get(device)
        if copy is None:
            copy = self._copies[device] = self.tensor.to(device)
        return copy


def _uniform_int(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-element integers uniform in ``low..high`` (inclusive), ``(N,)`` int64 on the
    generator's device (where ``low`` and ``high`` must be)."""
    draw = torch.rand(low.shape, generator=generator, dtype=torch.float64, device=generator.device)
    span = (high - low + 1).to(torch.float64)
    return low + torch.minimum((draw * span).floor().long(), high - low)


def draw_partners(num_samples: int, generator: torch.Generator, mode: PartnerMode = "shift") -> torch.Tensor:
    """Partner index of every sample: ``(N,)`` int64 on the generator's device, no fixed points
    when ``N > 1``.

    ``"shift"`` pairs ``i`` with ``(i + k) mod N`` for one random ``k`` in ``1..N-1``.
    ``"cycle"`` draws a random order ``o`` and pairs ``o[r]`` with ``o[r + 1]`` (cyclically).
    A batch of one sample is paired with itself.
    """
    device = generator.device
    index = torch.arange(num_samples, device=device)
    if num_samples == 1:
        return index
    if mode == "shift":
        shift = torch.randint(1, num_samples, (1,), generator=generator, device=device)
        return (index + shift) % num_samples
    if mode == "cycle":
        order = torch.randperm(num_samples, generator=generator, device=device)
        partner = torch.empty_like(order)
        partner[order] = order.roll(-1)
        return partner
    raise ValueError(f"unknown partner mode {mode!r}; use 'shift' or 'cycle'")


def _check_alpha(alpha: float | None) -> None:
    if alpha is not None and alpha <= 0:
        raise ValueError(f"alpha must be positive (or None for U(0, 1)), got {alpha}")


def sample_mixing_ratio(num_samples: int, alpha: float | None, generator: torch.Generator) -> torch.Tensor:
    """``(N,)`` float64 ratios: ``Beta(alpha, alpha)``, or ``U(0, 1)`` when ``alpha`` is ``None``,
    on the generator's device.

    The Beta draw is ``G1 / (G1 + G2)`` with ``G1, G2 ~ Gamma(alpha)`` from the generator.
    """
    _check_alpha(alpha)
    device = generator.device
    if alpha is None:
        return torch.rand(num_samples, generator=generator, dtype=torch.float64, device=device)
    shape = torch.full((2, num_samples), float(alpha), dtype=torch.float64, device=device)
    gammas = torch._standard_gamma(shape, generator=generator)
    total = gammas.sum(dim=0).clamp(min=torch.finfo(torch.float64).tiny)
    return gammas[0] / total


def mixed_targets(
    y: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Soft targets ``(1 - lam_i) onehot(y_i) + lam_i onehot(y_partner[i])``.

    Args:
        y: ``(N,)`` int64 labels.
        partner: ``(N,)`` int64 partner indices (same device as ``y``).
        lam: ``(N,)`` mixing ratios (same device as ``y``).
        num_classes: ``K``.

    Returns:
        ``(N, K)`` of ``dtype``; each row sums to 1.
    """
    lam = lam.to(dtype)[:, None]
    return (1 - lam) * _one_hot(y, num_classes, dtype) + lam * _one_hot(y[partner], num_classes, dtype)


def _one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N, K)`` one-hot rows of ``dtype``.  A scatter rather than ``F.one_hot``, which on some
    devices reads the labels' range back to the host to check it."""
    rows = torch.zeros(labels.shape[0], num_classes, dtype=dtype, device=labels.device)
    return rows.scatter_(1, labels[:, None], 1)


def window_mask(start: torch.Tensor, length: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(N, T)`` bool, true on frames ``start_i <= t < start_i + length_i``."""
    frames = torch.arange(num_frames, device=start.device)[None, :]
    return (frames >= start[:, None]) & (frames < (start + length)[:, None])


def paste_resized(
    x: torch.Tensor,
    partner: torch.Tensor,
    joint_mask: torch.Tensor,
    window_start: torch.Tensor,
    window_length: torch.Tensor,
    donor_start: torch.Tensor,
    donor_length: torch.Tensor,
    resize: DonorResize = DEFAULT_DONOR_RESIZE,
) -> torch.Tensor:
    """Paste a time-resized clip of each partner into a window of each sample, on chosen joints.

    For sample ``i`` with partner ``j``, the donor clip ``x_j[:, donor_start_i : donor_start_i +
    donor_length_i]`` is resized in time to ``window_length_i`` frames and written into frames
    ``window_start_i ..`` of ``x_i`` on the joints of ``joint_mask_i`` and for all persons.  The
    resize is exactly ``F.interpolate(mode="linear", align_corners=False)`` or, with
    ``resize="nearest"``, ``F.interpolate(mode="nearest")``.  With ``donor_length_i =
    window_length_i`` the clip is copied unchanged.

    Args:
        x: ``(N, C, T, V, M)``.
        partner: ``(N,)`` int64.
        joint_mask: ``(N, V)`` bool, the joints to replace.
        window_start, window_length: ``(N,)`` int64 target window in frames (length >= 1).
        donor_start, donor_length: ``(N,)`` int64 donor clip in frames (length >= 1).
        resize: ``"linear"`` or ``"nearest"`` (:data:`DonorResize`).
        All index tensors may live on any device (best: ``x.device``, then nothing is copied);
        the result is on ``x.device``.

    Returns:
        ``(N, C, T, V, M)``, a new tensor.
    """
    n, c, t, v, m = x.shape
    device = x.device
    window_start, window_length, donor_start, donor_length = (
        index.to(device) for index in (window_start, window_length, donor_start, donor_length)
    )
    # Source frame of every output frame; frames outside the window are not pasted.
    offset = torch.arange(t, dtype=torch.float64, device=device)[None, :] - window_start[:, None]
    lower, upper, weight = resize_source_frames(offset, donor_length, window_length, resize)
    inside = window_mask(window_start, window_length, t)
    lower = torch.where(inside, lower + donor_start[:, None], 0)
    upper = torch.where(inside, upper + donor_start[:, None], 0)
    donor = x[partner.to(device)]

    def frames(index: torch.Tensor) -> torch.Tensor:
        index = index[:, None, :, None, None].expand(n, c, t, v, m)
        return torch.gather(donor, 2, index)

    weight = weight.to(dtype=x.dtype)[:, None, :, None, None]
    resized = frames(lower) * (1 - weight) + frames(upper) * weight
    mask = inside[:, None, :, None, None] & joint_mask.to(device)[:, None, None, :, None]
    return torch.where(mask, resized, x)


def segment_range(num_frames: int, segment_frames: int, fraction: tuple[float, float]) -> tuple[int, int, int]:
    """``(segments, smallest, largest)``: a clip of ``num_frames`` frames split into ``segments =
    num_frames // segment_frames`` segments, and the range of window lengths, in segments, that
    ``fraction = (lo, hi)`` allows: ``ceil(lo * segments)..floor(hi * segments)``, at least 1.

    Raises:
        ValueError: if the clip is shorter than one segment.
    """
    segments = num_frames // segment_frames
    if segments < 1:
        raise ValueError(f"need at least {segment_frames} frames to mix, got {num_frames}")
    low, high = fraction
    smallest = max(1, math.ceil(round(low * segments, _ROUND_DIGITS)))
    largest = max(smallest, math.floor(round(high * segments, _ROUND_DIGITS)))
    return segments, smallest, largest


# --------------------------------------------------------------------------- mixers


@dataclass(frozen=True)
class MixInfo:
    """The parameters a mixer drew for one batch (all ``(N,)`` unless stated, on the device of
    the mixer's generator: the batch's, unless a generator elsewhere was given).

    Attributes:
        partner: int64, the partner ``j`` of each sample.
        lam: float64, the weight of the partner's label (and of its content).
        global_mix: bool, the sample was mixed globally (Mixup) rather than locally.
        joint_mask: ``(N, V)`` bool, the joints replaced by local mixing (all false for Mixup).
        window_start, window_length: int64, the target frames of local mixing.
        donor_start, donor_length: int64, the partner's frames resized into the window.
        combination: int64, the index of the pasted part combination, or :data:`NO_COMBINATION`.
        sampled_combination: int64, the combination the part policy drew (ST-Mix: the pasted
            one; Shap-Mix: the salient combination, whose complement may have been pasted), or
            :data:`NO_COMBINATION`.
    """

    partner: torch.Tensor
    lam: torch.Tensor
    global_mix: torch.Tensor
    joint_mask: torch.Tensor
    window_start: torch.Tensor
    window_length: torch.Tensor
    donor_start: torch.Tensor
    donor_length: torch.Tensor
    combination: torch.Tensor
    sampled_combination: torch.Tensor


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 5:
        raise ValueError(f"expected a batch of shape (N, C, T, V, M), got {tuple(x.shape)}")
    if y.shape != (x.shape[0],) or y.dtype != torch.int64:
        raise ValueError(f"expected int64 labels of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")


class BatchMixer:
    """Base class: partner drawing, soft targets, the generator and its checkpoint state.

    Args:
        num_classes: ``K``, the width of the soft targets.
        partner: how partners are drawn (see :data:`PartnerMode`).
        generator: generator to draw from, on any device (exclusive with ``seed``; the draws
            are moved to the batch's device when it is elsewhere).
        seed: seed of the mixer's own generator, made on the device of the first batch
            (:class:`~shapmix.seeds.DeviceGenerator`).
    """

    def __init__(
        self,
        num_classes: int,
        partner: PartnerMode = "shift",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if partner not in ("shift", "cycle"):
            raise ValueError(f"unknown partner mode {partner!r}; use 'shift' or 'cycle'")
        self.num_classes = num_classes
        self.partner = partner
        self.stream = make_stream(generator, seed, f"the {type(self).__name__} mixer")

    @property
    def generator(self) -> torch.Generator:
        """The generator the mixer draws from now (:attr:`DeviceGenerator.current`)."""
        return self.stream.current

    def _generator_for(self, x: torch.Tensor) -> torch.Generator:
        """The generator that draws this batch's parameters: on ``x``'s device unless a
        generator elsewhere was given."""
        return self.stream.on(x.device)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(N, C, T, V, M)``, ``y`` ``(N,)`` -> ``(x_mixed (N, C, T, V, M), targets (N, K))``."""
        x_mixed, targets, _ = self.mix_with_info(x, y)
        return x_mixed, targets

    def mix_with_info(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixInfo]:
        """Like ``__call__`` and also the drawn :class:`MixInfo`."""
        raise NotImplementedError

    def _targets(self, x: torch.Tensor, y: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return mixed_targets(y, partner.to(y.device), lam.to(dtype).to(y.device), self.num_classes, dtype)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (a CPU uint8 tensor) and its device type, so a resumed run
        draws the same numbers (:meth:`DeviceGenerator.state_dict`)."""
        stream = self.stream.state_dict()
        return {"generator": stream["state"], "generator_device": stream["device"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a state without a device type is a CPU generator's)."""
        self.stream.load_state_dict({"state": state["generator"], "device": state.get("generator_device", "cpu")})


def _global_mix(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``(1 - lam_i) x_i + lam_i x_partner[i]`` for ``x`` ``(N, C, T, V, M)``, ``lam`` ``(N,)``."""
    lam = lam.to(device=x.device, dtype=x.dtype)[:, None, None, None, None]
    return (1 - lam) * x + lam * x[partner.to(x.device)]


class _RatioMixer(BatchMixer):
    """A mixer whose mixing ratio is drawn from ``Beta(alpha, alpha)`` (``None``: ``U(0, 1)``)."""

    def __init__(
        self,
        num_classes: int,
        alpha: float | None = None,
        partner: PartnerMode = "shift",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, partner, generator, seed)
        _check_alpha(alpha)
        self.alpha = alpha


class Mixup(_RatioMixer):
    """Global Mixup with a per-sample ratio: ``x'_i = (1 - lam_i) x_i + lam_i x_j``.

    Args:
        num_classes: ``K``.
        alpha: ``lam ~ Beta(alpha, alpha)``; ``None`` for ``U(0, 1)`` (ST-Mix's Mixup branch).
        partner, generator, seed: see :class:`BatchMixer`.
    """

    def mix_with_info(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixInfo]:
        _check_batch(x, y)
        n, _, _, v, _ = x.shape
        g = self._generator_for(x)
        partner = draw_partners(n, g, self.partner)
        lam = sample_mixing_ratio(n, self.alpha, g)
        zeros = torch.zeros(n, dtype=torch.int64, device=g.device)
        info = MixInfo(
            partner=partner,
            lam=lam,
            global_mix=torch.ones(n, dtype=torch.bool, device=g.device),
            joint_mask=torch.zeros(n, v, dtype=torch.bool, device=g.device),
            window_start=zeros,
            window_length=zeros,
            donor_start=zeros,
            donor_length=zeros,
            combination=torch.full((n,), NO_COMBINATION, device=g.device),
            sampled_combination=torch.full((n,), NO_COMBINATION, device=g.device),
        )
        return _global_mix(x, partner, lam), self._targets(x, y, partner, lam), info


class CutMix(_RatioMixer):
    """CutMix for skeletons: a random joint subset in a random frame window is copied from the
    partner (same frames, no resizing).

    A target ratio ``r ~ Beta(alpha, alpha)`` (or ``U(0, 1)``) is split evenly between the two
    axes, as CutMix does for an image box: ``round(sqrt(r) T)`` frames at a random offset and
    ``round(sqrt(r) V)`` joints chosen uniformly.  ``lam`` is the exact replaced fraction
    ``frames * joints / (T * V)``.

    Args:
        num_classes: ``K``.
        alpha: Beta parameter of the target ratio; ``None`` for ``U(0, 1)``.
        partner, generator, seed: see :class:`BatchMixer`.
    """

    def mix_with_info(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixInfo]:
        _check_batch(x, y)
        n, _, t, v, _ = x.shape
        g = self._generator_for(x)
        partner = draw_partners(n, g, self.partner)
        side = sample_mixing_ratio(n, self.alpha, g).sqrt()
        length = (side * t).round().long()
        num_joints = (side * v).round().long()
        start = _uniform_int(torch.zeros(n, dtype=torch.int64, device=g.device), t - length, g)
        keys = torch.rand(n, v, generator=g, device=g.device)
        joint_mask = keys.argsort(dim=1).argsort(dim=1) < num_joints[:, None]
        lam = (length * num_joints).to(torch.float64) / (t * v)
        x_mixed = paste_resized(x, partner, joint_mask, start, length, start, length)
        info = MixInfo(
            partner=partner,
            lam=lam,
            global_mix=torch.zeros(n, dtype=torch.bool),
            joint_mask=joint_mask,
            window_start=start,
            window_length=length,
            donor_start=start,
            donor_length=length,
            combination=torch.full((n,), NO_COMBINATION, device=g.device),
            sampled_combination=torch.full((n,), NO_COMBINATION, device=g.device),
        )
        return x_mixed, self._targets(x, y, partner, lam), info



def check_clip_options(segment_frames: int, fraction: tuple[float, float], fraction_name: str, draw: str) -> None:
    """Validate the options ST-Mix and SkeleMixCLR share: a positive segment length in frames, a
    clip-length range ``(lo, hi)`` as fractions of the sequence with ``0 < lo <= hi <= 1``, and a
    known draw mode."""
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be positive, got {segment_frames}")
    low, high = fraction
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"{fraction_name} must satisfy 0 < lo <= hi <= 1, got {fraction}")
    if draw not in ("per_sample", "per_batch"):
        raise ValueError(f"unknown draw mode {draw!r}; use 'per_sample' or 'per_batch'")

class STMix(BatchMixer):
    """ST-Mix (Shap-Mix, Section 3.2): per sample, global Mixup or body-part/temporal mixing.

    Per sample ``i`` with partner ``j``:

    * with probability ``p_mixup``: Mixup, ``lam ~ U(0, 1)`` (or ``Beta(mixup_alpha, ...)``);
    * otherwise local mixing.  Spatial: a part combination chosen by the part policy
      (:meth:`choose_combinations`; ST-Mix: uniform over the combinations of
      ``min_parts..max_parts`` parts, which for 5 parts equals the authors' "uniform size, then
      uniform parts").  Temporal: ``T`` is split into ``T // segment_frames`` segments; the
      target window has ``Ct`` segments, ``Ct`` uniform in ``ceil(lo * segs)..floor(hi * segs)``
      for ``window_fraction = (lo, hi)`` (7..11 of 16 by default) at a random segment offset;
      the donor clip of ``x_j`` has ``Ct2`` segments, ``Ct2`` uniform in ``Ct..segs``, at a random
      segment offset, and is resized to the window's length (temporal down-sampling); it is
      pasted on the combination's joints for all persons (:func:`paste_resized`), and
      ``lam = window frames * mixed joints / (T * V)``.

    All parameters are drawn for every sample (both branches), in a fixed order, so the random
    stream consumed per batch does not depend on the branch outcomes.  With
    ``draw="per_batch"`` each is drawn once and shared by the batch (:data:`DrawMode`).

    Args:
        layout: skeleton layout (name or :class:`Layout`), whose 5 parts are mixed.
        num_classes: ``K``.
        p_mixup: probability of the global Mixup branch.
        mixup_alpha: Beta parameter of Mixup's ratio; ``None`` for ``U(0, 1)``.
        min_parts, max_parts: size range of the mixed part combinations.
        segment_frames: frames per temporal segment.
        window_fraction: ``(lo, hi)`` fractions of the segments in the target window.
        draw: ``"per_sample"`` or ``"per_batch"`` random parameters (:data:`DrawMode`).
        donor_resize: ``"linear"`` or ``"nearest"`` temporal resize of the donor clip.
        partner, generator, seed: see :class:`BatchMixer`.
    """

    def __init__(
        self,
        layout: str | Layout,
        num_classes: int,
        p_mixup: float = DEFAULT_P_MIXUP,
        mixup_alpha: float | None = None,
        min_parts: int = DEFAULT_MIN_PARTS,
        max_parts: int = DEFAULT_MAX_PARTS,
        segment_frames: int = DEFAULT_SEGMENT_FRAMES,
        window_fraction: tuple[float, float] = DEFAULT_WINDOW_FRACTION,
        draw: DrawMode = DEFAULT_DRAW,
        donor_resize: DonorResize = DEFAULT_DONOR_RESIZE,
        partner: PartnerMode = "shift",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, partner, generator, seed)
        if not 0.0 <= p_mixup <= 1.0:
            raise ValueError(f"p_mixup must be in [0, 1], got {p_mixup}")
        check_clip_options(segment_frames, window_fraction, "window_fraction", draw)
        if donor_resize not in RESIZE_MODES:
            raise ValueError(f"unknown donor resize {donor_resize!r}; use 'linear' or 'nearest'")
        self.layout = get_layout(layout)
        self.combinations = PartCombinations.from_layout(self.layout, min_parts, max_parts)
        self.p_mixup = p_mixup
        _check_alpha(mixup_alpha)
        self.mixup_alpha = mixup_alpha
        self.segment_frames = segment_frames
        self.window_fraction = (float(window_fraction[0]), float(window_fraction[1]))
        self.draw = draw
        self.donor_resize = donor_resize

    def _draws(self, num_samples: int) -> int:
        """How many independent values a per-sample parameter gets in a batch of ``num_samples``."""
        return 1 if self.draw == "per_batch" else num_samples

    def _to_batch(self, values: torch.Tensor, num_samples: int) -> torch.Tensor:
        """``(draws,)`` values as ``(num_samples,)``: a per-batch draw shared by every sample."""
        return values.expand(num_samples) if values.shape[0] != num_samples else values

    def window_segments(self, num_frames: int) -> tuple[int, int, int]:
        """``(segments, min_window, max_window)`` in segments for a clip of ``num_frames``."""
        return segment_range(num_frames, self.segment_frames, self.window_fraction)

    def choose_combinations(self, y: torch.Tensor, partner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The part policy: which combination each sample receives from its partner.

        Args:
            y: ``(N,)`` int64 labels, on the device the mixer draws on (its generator's).
            partner: ``(N,)`` int64 partner indices, on the same device.

        Returns:
            ``(sampled, pasted)``, each ``(N,)`` int64 combination indices on that device: the
            combination the policy drew and the one whose joints are pasted.  ST-Mix draws
            uniformly (once for the batch with ``draw="per_batch"``) and pastes what it drew.
        """
        g = self.stream.on(y.device)
        drawn = torch.randint(len(self.combinations), (self._draws(len(y)),), generator=g, device=g.device)
        sampled = self._to_batch(drawn, len(y))
        return sampled, sampled

    def mix_with_info(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixInfo]:
        _check_batch(x, y)
        n, _, t, v, _ = x.shape
        if v != self.combinations.num_joints:
            raise ValueError(f"layout {self.layout.name!r} has {self.combinations.num_joints} joints, batch has {v}")
        g = self._generator_for(x)
        device = g.device  # where the parameters are drawn and kept (the batch's, normally)
        partner = draw_partners(n, g, self.partner)
        draws = self._draws(n)
        global_mix = torch.rand(draws, generator=g, dtype=torch.float64, device=device) < self.p_mixup
        lam_global = sample_mixing_ratio(draws, self.mixup_alpha, g)

        segments, smallest, largest = self.window_segments(t)
        full = torch.full((draws,), segments, dtype=torch.int64, device=device)
        zero = torch.zeros(draws, dtype=torch.int64, device=device)
        window = _uniform_int(
            torch.full((draws,), smallest, device=device), torch.full((draws,), largest, device=device), g
        )
        window_offset = _uniform_int(zero, full - window, g)
        donor = _uniform_int(window, full, g)
        donor_offset = _uniform_int(zero, full - donor, g)
        global_mix, lam_global, window, window_offset, donor, donor_offset = (
            self._to_batch(values, n) for values in (global_mix, lam_global, window, window_offset, donor, donor_offset)
        )
        sampled, pasted = self.choose_combinations(y.to(device), partner)

        frames = self.segment_frames
        combinations = self.combinations.to(device)
        joint_mask = combinations.joint_masks[pasted]
        local = paste_resized(
            x,
            partner,
            joint_mask,
            window_offset * frames,
            window * frames,
            donor_offset * frames,
            donor * frames,
            resize=self.donor_resize,
        )
        lam_local = (window * frames * combinations.joint_counts[pasted]).to(torch.float64) / (t * v)
        branch = global_mix.to(x.device)[:, None, None, None, None]
        x_mixed = torch.where(branch, _global_mix(x, partner, lam_global), local)
        lam = torch.where(global_mix, lam_global, lam_local)

        local_only = ~global_mix
        info = MixInfo(
            partner=partner,
            lam=lam,
            global_mix=global_mix,
            joint_mask=joint_mask & local_only[:, None],
            window_start=torch.where(local_only, window_offset * frames, 0),
            window_length=torch.where(local_only, window * frames, 0),
            donor_start=torch.where(local_only, donor_offset * frames, 0),
            donor_length=torch.where(local_only, donor * frames, 0),
            combination=torch.where(local_only, pasted, NO_COMBINATION),
            sampled_combination=torch.where(local_only, sampled, NO_COMBINATION),
        )
        return x_mixed, self._targets(x, y, partner, lam), info
