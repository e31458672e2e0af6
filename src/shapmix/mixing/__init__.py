"""Mixing for long-tailed skeleton action recognition: Mixup, CutMix, ST-Mix and Shap-Mix.

Shap-Mix (Zhang, Lin, Liu, IJCAI 2024): :class:`STMix` mixes random body-part combinations in a
random, temporally down-sampled window (Section 3.2); :class:`ShapMix` picks the combinations
from per-class Shapley saliency (:class:`SaliencyTable`, estimated online with
:func:`estimate_combination_shapley`, or fed by :func:`gradcam_part_scores` for the paper's
Grad-CAM ablation) with a tail-aware policy (Section 3.3).
:class:`Remix` is the re-balanced Mixup baseline (Chou et al., ECCV-W 2020).
:class:`SkeleMix` (Ta-CNN's upper/lower-body mixing, Xu et al., AAAI 2022) and
:class:`SkeleMixCLR` (SkeleMixCLR's part-and-clip cut-and-paste, Chen et al., arXiv 2207.03065)
are the skeleton mixings of the paper's Table 7.
"""

from .gradcam import gradcam_joint_maps, gradcam_part_scores, last_block_gradients
from .parts import NO_COMPLEMENT, PartCombinations, part_joint_masks
from .remix import Remix, remix_label_ratio
from .saliency import SaliencyTable
from .shapley import (
    ShapleyEstimate,
    class_balanced_subset,
    clipped_combination_shapley_values,
    coalition_joint_masks,
    coalition_values,
    combination_shapley_values,
    estimate_combination_shapley,
    evaluation_mode,
    exact_combination_rows,
    least_estimated_classes,
    least_estimated_combinations,
    mask_parts,
    mean_sequence,
    merged_player_weights,
    shapley_values,
)
from .shapmix import ClassScores, Guidance, ShapMix
from .skelemix import SkeleMix, SkeleMixCLR, lower_body_mask
from .stmix import (
    NO_COMBINATION,
    BatchMixer,
    CutMix,
    MixInfo,
    Mixup,
    STMix,
    draw_partners,
    make_stream,
    mixed_targets,
    paste_resized,
    sample_mixing_ratio,
    window_mask,
)

__all__ = [
    "NO_COMBINATION",
    "NO_COMPLEMENT",
    "BatchMixer",
    "ClassScores",
    "CutMix",
    "Guidance",
    "MixInfo",
    "Mixup",
    "PartCombinations",
    "Remix",
    "STMix",
    "SaliencyTable",
    "ShapMix",
    "ShapleyEstimate",
    "SkeleMix",
    "SkeleMixCLR",
    "coalition_joint_masks",
    "clipped_combination_shapley_values",
    "coalition_values",
    "class_balanced_subset",
    "combination_shapley_values",
    "draw_partners",
    "estimate_combination_shapley",
    "evaluation_mode",
    "gradcam_joint_maps",
    "gradcam_part_scores",
    "last_block_gradients",
    "exact_combination_rows",
    "least_estimated_classes",
    "least_estimated_combinations",
    "lower_body_mask",
    "make_stream",
    "remix_label_ratio",
    "mask_parts",
    "mean_sequence",
    "merged_player_weights",
    "mixed_targets",
    "part_joint_masks",
    "paste_resized",
    "sample_mixing_ratio",
    "shapley_values",
    "window_mask",
]
