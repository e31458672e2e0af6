"""Two earlier skeleton mixings, as supervised batch mixers: SkeleMix and SkeleMixCLR-style mixing.

These are the "other skeleton mixing methods" the Shap-Mix paper compares ST-Mix with in its
Table 7 (Zhang, Lin, Liu, IJCAI 2024, Section 4.5; it cites them as Xu et al. 2022 and "Zhan
et al. 2022").  Both follow :class:`~shapmix.mixing.stmix.BatchMixer`: ``__call__(x, y)`` takes
a batch ``x`` ``(N, C, T, V, M)`` with ``(N,)`` int64 labels and returns ``(x_mixed (N, C, T,
V, M), soft_targets (N, K))``, every row of the targets summing to 1, with ``lam`` the
**partner's** share of the label (:func:`~shapmix.mixing.stmix.mixed_targets`).  Draws come from
the mixer's own seeded :class:`~shapmix.seeds.DeviceGenerator` on the batch's device; nothing is
read back to the host and nothing loops over samples.

:class:`SkeleMix`
    Xu, Ye, Zhong, Xie, "Topology-aware Convolutional Neural Network for Efficient
    Skeleton-based Action Recognition" (Ta-CNN), AAAI 2022, where it is called *SkeletonMix*:
    a new sample is made of the upper body of one skeleton and the lower body of another.  The
    official repository (hikvision-research/skelact) ports only the architecture; in its issue
    #1 the first author states that SkeletonMix follows equation (8) of the paper, that it
    generates 1/16 of the samples of each batch, and that it combines the upper body and the
    lower body of randomly chosen samples.  The choices made here, where that leaves room:

    * **Which rows.** ``ceil(fraction * N)`` rows of each batch (``fraction = 1/16``: 4 of a
      batch of 64), chosen uniformly, are replaced by a mixed sample; the others pass unchanged
      with one-hot targets.  The batch is trained on as it comes out
      (:class:`~shapmix.methods.mixers.InPlaceMixingMethod`), as "1/16 of the samples in a
      batch" reads: the mixed samples take the place of originals rather than being added as a
      second batch.  Under DDP each rank mixes ``ceil(fraction * N)`` of its own ``N`` rows.
    * **Upper and lower body** come from the layout's five parts: the lower body is the two leg
      parts (:data:`LOWER_BODY_PARTS`: hips, knees, ankles and feet), the upper body all the
      others (torso or head, both arms).  A mixed row ``i`` keeps its own lower body and takes
      its partner's upper body (all persons, all frames)::

          layout        lower body (legs)            upper body   partner's label share
          ntu25         8 joints: 12-19              17 joints    17/25 = 0.68
          kinect_v1     8 joints: 12-19              12 joints    12/20 = 0.60
          utd_mhad      8 joints: 12-19              12 joints    12/20 = 0.60
          msr_action3d  8 joints: 4,5,13-18          12 joints    12/20 = 0.60
          coco17        6 joints: 11-16              11 joints    11/17 = 0.65
          openpose18    6 joints: 8-13               12 joints    12/18 = 0.67

      The pelvis centre of the Kinect layouts (spine base, hip centre) is part of the torso,
      as in SkeleMixCLR's and this library's part definitions; the hips go with the legs.
    * **Label.** Proportional to the joints each source contributes: ``lam = upper joints /
      V`` for a mixed row, the CutMix rule (Yun et al. 2019) that the library's other part
      mixers use.  The text of equation (8) could not be consulted; if it gives the whole
      label to one body half, only ``lam`` changes.
    * **No alignment.** The partner's upper body is pasted as it is, not translated onto the
      source's hips: the mixer works on the model's input, where for the bone and motion
      modalities a translation means nothing (bones are differences; pasted bones join up by
      construction), and every sequence is already centred on its first frame's centre joint
      (:class:`~shapmix.data.transforms.Center`), so the two halves share an origin.  ST-Mix and
      SkeleMixCLR paste unaligned too.

:class:`SkeleMixCLR`
    Chen, Liu, Guo, Chen, Song, Tang, "Contrastive Learning from Spatio-Temporal Mixed Skeleton
    Sequences for Self-Supervised Skeleton-Based Action Recognition", arXiv 2207.03065, 2022
    (the first author is Zhan Chen; the Shap-Mix paper's reference list swaps the names and
    cites it as "Zhan et al.").  Its *SkeleMix* cuts body parts in a temporal clip out of one
    sequence and pastes them into another, at the same frames.  Defaults from the authors'
    code (czhaneva/SkeleMixCLR, ``net/skeletonclr_multi_swapv2.py`` with
    ``config/CrosSCLR/skelemixclr_multi_swap_ntu.yaml``, ``swap_params [2, 3, 7, 11, 3, 1]``,
    ``swap_mode 'swap'``, ``spatial_mode 'semantic'``, 64-frame inputs):

    * **Parts:** a number of parts uniform in ``2..3``, then that many of the 5 parts uniformly
      (:meth:`SkeleMixCLR.draw_combinations`; for 5 parts the same as uniform over the 20
      combinations).
    * **Clip:** the frames are split into segments of 4 (``tem_downsample_ratio``); a clip of
      ``7..11`` of the 16 segments of a 64-frame input (here ``7/16..11/16`` of the segments,
      :func:`~shapmix.mixing.stmix.segment_range`), at a uniform segment offset, is replaced by
      the partner's same frames on the drawn parts, for all persons; no resizing.
    * **Drawn once per batch:** the parts, the clip and the shift of the partners are shared by
      the whole batch (``draw="per_batch"``); ``draw="per_sample"`` gives each sample its own.
    * **Partners:** a cyclic shift of the batch (``shift`` partners; the authors' shift is
      ``1..N-2``, here ``1..N-1``, as for ST-Mix).

    Used here as a supervised augmentation, as the Shap-Mix paper does for Table 7: the targets
    are proportional to what each sequence contributes, ``lam = clip frames x pasted joints /
    (T x V)``, which is the mean of the authors' ``(T / 4, V)`` mask that the Shap-Mix authors'
    balanced-data harness (JHang2020/Shap-Mix ``mix_main.py``) uses as the ratio; and the model
    trains on the clean and the mixed batch together, as that harness does.  SkeleMixCLR makes
    three mixed views per batch for its contrastive loss; here one mixed batch, like every other
    mixer of the library.
"""

from __future__ import annotations

import math

import torch

from ..skeleton.layouts import Layout, get_layout
from .parts import PartCombinations
from .stmix import (
    NO_COMBINATION,
    BatchMixer,
    DeviceCopies,
    DrawMode,
    MixInfo,
    PartnerMode,
    _check_batch,
    check_clip_options,
    _uniform_int,
    draw_partners,
    segment_range,
    window_mask,
)

__all__ = [
    "DEFAULT_CLR_CLIP_FRACTION",
    "DEFAULT_CLR_DRAW",
    "DEFAULT_CLR_MAX_PARTS",
    "DEFAULT_CLR_MIN_PARTS",
    "DEFAULT_CLR_SEGMENT_FRAMES",
    "DEFAULT_SKELEMIX_FRACTION",
    "LOWER_BODY_PARTS",
    "SkeleMix",
    "SkeleMixCLR",
    "lower_body_mask",
]

DEFAULT_SKELEMIX_FRACTION = 1 / 16
"""Ta-CNN's share of each batch made by SkeletonMix (first author, hikvision-research/skelact#1)."""
LOWER_BODY_PARTS = ("left_leg", "right_leg")
"""The parts of a :class:`~shapmix.skeleton.layouts.Layout` that make up the lower body."""

DEFAULT_CLR_MIN_PARTS = 2
DEFAULT_CLR_MAX_PARTS = 3
"""SkeleMixCLR's ``spa_l, spa_u``: 2..3 of the 5 parts are cut."""
DEFAULT_CLR_SEGMENT_FRAMES = 4
"""SkeleMixCLR's ``tem_downsample_ratio``: clips start and end on 4-frame segments."""
_CLR_SEGMENTS = 16  # a 64-frame input in segments of 4
DEFAULT_CLR_CLIP_FRACTION = (7 / _CLR_SEGMENTS, 11 / _CLR_SEGMENTS)
"""SkeleMixCLR's ``tem_l, tem_u`` = 7..11 segments of a 64-frame input, as fractions of the segments."""
DEFAULT_CLR_DRAW: DrawMode = "per_batch"
"""SkeleMixCLR draws the parts, the clip and the partner shift once per batch."""

_ROUND_DIGITS = 9
"""``fraction * N`` is rounded to this many digits before the ceiling, so ``0.0625 * 16`` is 1."""


def lower_body_mask(layout: str | Layout) -> torch.Tensor:
    """``(V,)`` bool: the joints of the layout's :data:`LOWER_BODY_PARTS` (on the CPU).

    Raises:
        ValueError: if the layout has no part of one of those names.
    """
    layout = get_layout(layout)
    missing = [name for name in LOWER_BODY_PARTS if name not in layout.parts]
    if missing:
        raise ValueError(
            f"layout {layout.name!r} has no part(s) {missing}: SkeleMix needs the lower-body parts "
            f"{list(LOWER_BODY_PARTS)} among its parts {list(layout.part_names)}"
        )
    mask = torch.zeros(layout.num_joints, dtype=torch.bool)
    for name in LOWER_BODY_PARTS:
        mask[list(layout.parts[name])] = True
    return mask


def _check_joints(layout: Layout, x: torch.Tensor) -> None:
    if x.shape[3] != layout.num_joints:
        raise ValueError(f"layout {layout.name!r} has {layout.num_joints} joints, batch has {x.shape[3]}")


class SkeleMix(BatchMixer):
    """SkeleMix (Ta-CNN's SkeletonMix): some rows of the batch get their partner's upper body.

    ``ceil(fraction * N)`` rows, chosen uniformly, become ``x'_i`` = the lower body of ``x_i``
    with the upper body of its partner ``x_j`` (every frame, every person); the other rows are
    returned unchanged.  Targets: ``(1 - lam_i) onehot(y_i) + lam_i onehot(y_j)`` with ``lam_i =
    upper-body joints / V`` for a mixed row and 0 otherwise.  The module docstring gives the
    body halves of every layout and the reasons for each choice.

    Args:
        layout: skeleton layout (name or :class:`Layout`) with ``left_leg`` and ``right_leg`` parts.
        num_classes: ``K``.
        fraction: share of each batch that is mixed, in ``(0, 1]`` (Ta-CNN: 1/16).
        partner, generator, seed: see :class:`~shapmix.mixing.stmix.BatchMixer`.
    """

    def __init__(
        self,
        layout: str | Layout,
        num_classes: int,
        fraction: float = DEFAULT_SKELEMIX_FRACTION,
        partner: PartnerMode = "shift",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, partner, generator, seed)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.layout = get_layout(layout)
        self.fraction = fraction
        upper = ~lower_body_mask(self.layout)
        self.upper_body = DeviceCopies(upper)
        self.upper_share = int(upper.sum()) / self.layout.num_joints

    def mixed_count(self, num_samples: int) -> int:
        """How many of ``num_samples`` rows are mixed: ``ceil(fraction * N)`` (at least one)."""
        return math.ceil(round(self.fraction * num_samples, _ROUND_DIGITS))

    def mix_with_info(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixInfo]:
        _check_batch(x, y)
        _check_joints(self.layout, x)
        n, _, t, _, _ = x.shape
        g = self._generator_for(x)
        device = g.device
        partner = draw_partners(n, g, self.partner)
        # the rows whose random key ranks among the k smallest: k rows, uniformly chosen
        keys = torch.rand(n, generator=g, device=device)
        mixed = keys.argsort().argsort() < self.mixed_count(n)
        joint_mask = mixed[:, None] & self.upper_body.on(device)[None, :]
        donors = x[partner.to(x.device)]
        x_mixed = torch.where(joint_mask.to(x.device)[:, None, None, :, None], donors, x)
        lam = mixed.to(torch.float64) * self.upper_share
        frames = torch.where(mixed, t, 0)
        zeros = torch.zeros(n, dtype=torch.int64, device=device)
        no_combination = torch.full((n,), NO_COMBINATION, device=device)
        info = MixInfo(
            partner=partner,
            lam=lam,
            global_mix=torch.zeros(n, dtype=torch.bool, device=device),
            joint_mask=joint_mask,
            window_start=zeros,
            window_length=frames,
            donor_start=zeros,
            donor_length=frames,
            combination=no_combination,
            sampled_combination=no_combination,
        )
        return x_mixed, self._targets(x, y, partner, lam), info


class SkeleMixCLR(BatchMixer):
    """SkeleMixCLR's spatio-temporal cut-and-paste, with soft targets.

    For each sample ``i`` and its partner ``j``: a combination of ``min_parts..max_parts`` body
    parts (a size uniform in that range, then a combination of that size uniformly) and a clip
    of ``Ct`` segments of ``segment_frames`` frames (``Ct`` uniform in ``ceil(lo * S)..floor(hi
    * S)`` of the ``S = T // segment_frames`` segments, at a uniform segment offset); ``x_j``'s
    frames of the clip on the parts' joints replace ``x_i``'s (the same frames, all persons).
    ``lam_i = clip frames x pasted joints / (T x V)``.  With ``draw="per_batch"`` (the
    authors') the parts and the clip are drawn once and shared by the batch.

    Args:
        layout: skeleton layout (name or :class:`Layout`), whose parts are cut.
        num_classes: ``K``.
        min_parts, max_parts: the number of parts cut (SkeleMixCLR: 2..3).
        segment_frames: frames per temporal segment (SkeleMixCLR: 4).
        clip_fraction: ``(lo, hi)`` fractions of the segments in the clip (SkeleMixCLR: 7/16,
            11/16, i.e. 7..11 of 16 segments).
        draw: ``"per_batch"`` (SkeleMixCLR) or ``"per_sample"`` parts and clip.
        partner, generator, seed: see :class:`~shapmix.mixing.stmix.BatchMixer`.
    """

    def __init__(
        self,
        layout: str | Layout,
        num_classes: int,
        min_parts: int = DEFAULT_CLR_MIN_PARTS,
        max_parts: int = DEFAULT_CLR_MAX_PARTS,
        segment_frames: int = DEFAULT_CLR_SEGMENT_FRAMES,
        clip_fraction: tuple[float, float] = DEFAULT_CLR_CLIP_FRACTION,
        draw: DrawMode = DEFAULT_CLR_DRAW,
        partner: PartnerMode = "shift",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, partner, generator, seed)
        check_clip_options(segment_frames, clip_fraction, "clip_fraction", draw)
        self.layout = get_layout(layout)
        self.combinations = PartCombinations.from_layout(self.layout, min_parts, max_parts)
        self.segment_frames = segment_frames
        self.clip_fraction = (float(clip_fraction[0]), float(clip_fraction[1]))
        self.draw = draw
        # combinations are listed by size: those of size min_parts + s start at first_of_size[s]
        sizes = torch.tensor([len(combo) for combo in self.combinations.combinations])
        per_size = torch.bincount(sizes - min_parts, minlength=max_parts - min_parts + 1)
        self.first_of_size = DeviceCopies(torch.cumsum(per_size, 0) - per_size)
        self.combinations_of_size = DeviceCopies(per_size)

    def draw_combinations(self, draws: int, generator: torch.Generator) -> torch.Tensor:
        """``(draws,)`` int64 combination indices on the generator's device: a size uniform in
        ``min_parts..max_parts``, then a combination of that size uniformly (the authors'
        ``random.randint`` then ``random.sample``)."""
        device = generator.device
        smallest, largest = self.combinations.min_parts, self.combinations.max_parts
        size = _uniform_int(
            torch.full((draws,), 0, device=device), torch.full((draws,), largest - smallest, device=device), generator
        )
        count = self.combinations_of_size.on(device)[size]
        within = _uniform_int(torch.zeros_like(count), count - 1, generator)
        return self.first_of_size.on(device)[size] + within

    def mix_with_info(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixInfo]:
        _check_batch(x, y)
        _check_joints(self.layout, x)
        n, _, t, v, _ = x.shape
        g = self._generator_for(x)
        device = g.device
        partner = draw_partners(n, g, self.partner)
        draws = 1 if self.draw == "per_batch" else n
        segments, smallest, largest = segment_range(t, self.segment_frames, self.clip_fraction)
        clip = _uniform_int(
            torch.full((draws,), smallest, device=device), torch.full((draws,), largest, device=device), g
        )
        offset = _uniform_int(torch.zeros(draws, dtype=torch.int64, device=device), segments - clip, g)
        combination = self.draw_combinations(draws, g)
        clip, offset, combination = (values.expand(n) for values in (clip, offset, combination))

        combinations = self.combinations.to(device)
        joint_mask = combinations.joint_masks[combination]
        start, length = offset * self.segment_frames, clip * self.segment_frames
        frame_mask = window_mask(start, length, t)
        pasted = frame_mask[:, None, :, None, None] & joint_mask[:, None, None, :, None]
        donors = x[partner.to(x.device)]
        x_mixed = torch.where(pasted.to(x.device), donors, x)
        lam = (length * combinations.joint_counts[combination]).to(torch.float64) / (t * v)
        info = MixInfo(
            partner=partner,
            lam=lam,
            global_mix=torch.zeros(n, dtype=torch.bool, device=device),
            joint_mask=joint_mask,
            window_start=start,
            window_length=length,
            donor_start=start,
            donor_length=length,
            combination=combination,
            sampled_combination=combination,
        )
        return x_mixed, self._targets(x, y, partner, lam), info
