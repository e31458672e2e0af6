"""Typed run configuration: schemas, YAML loading and dotted command-line overrides.

A run is described by one :class:`Config`.  Every section is a pydantic model that forbids
unknown keys, so a typo is an error naming the key instead of a silently ignored setting::

    cfg = load_config("configs/ntu-lt.yaml", overrides=["optim.lr=0.05", "schedule.epochs=10"])

``--config`` accepts a YAML path or the name of a packaged config (``shapmix configs`` lists
them).  An override ``a.b.c=VALUE`` parses ``VALUE`` as YAML (``1e-3``, ``[60, 80]``, ``null``,
``true``) and must name an existing key.
"""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data.longtail import DEFAULT_FEW_THRESHOLD, DEFAULT_MANY_THRESHOLD
from .data.synthetic import SynthConfig
from .errors import ConfigError
from .mixing.parts import DEFAULT_MAX_PARTS, DEFAULT_MIN_PARTS
from .mixing.remix import DEFAULT_REMIX_ALPHA, DEFAULT_REMIX_KAPPA, DEFAULT_REMIX_TAU
from .mixing.saliency import AUTHORS_TAU, DEFAULT_MOMENTUM, DEFAULT_TAU
from .mixing.skelemix import (
    DEFAULT_CLR_CLIP_FRACTION,
    DEFAULT_CLR_DRAW,
    DEFAULT_CLR_MAX_PARTS,
    DEFAULT_CLR_MIN_PARTS,
    DEFAULT_CLR_SEGMENT_FRAMES,
    DEFAULT_SKELEMIX_FRACTION,
)
from .mixing.stmix import (
    DEFAULT_DONOR_RESIZE,
    DEFAULT_DRAW,
    DEFAULT_P_MIXUP,
    DEFAULT_SEGMENT_FRAMES,
    DEFAULT_WINDOW_FRACTION,
    DonorResize,
    DrawMode,
)
from .models.registry import get_model_builder
from .models.ride import DEFAULT_SHARED_STAGES, ROUTER_HIDDEN, ROUTER_THRESHOLD, ROUTER_TOP_K

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "LossConfig",
    "MethodConfig",
    "FinetuneConfig",
    "TrainConfig",
    "CheckpointConfig",
    "LogConfig",
    "EvalConfig",
    "load_config",
    "packaged_configs",
    "apply_overrides",
    "parse_setting",
    "build_config",
    "config_to_dict",
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Modality = Literal["joint", "bone", "joint_motion", "bone_motion"]
Precision = Literal["fp32", "bf16", "fp16"]


class DataConfig(Section):
    """Where the data comes from and the CTR-GCN input pipeline."""

    path: str | None = Field(
        None, description="dataset directory in shapmix format; null = the built-in synthetic benchmark"
    )
    synthetic: SynthConfig = Field(
        default_factory=SynthConfig, description="generator settings used when path is null"
    )
    train_split: str = Field("train", description="split name, or path of a name list (.txt)")
    test_split: str = Field("test", description="split name, or path of a name list (.txt)")
    val_split: str | None = Field(
        None, description="optional validation split: per-epoch monitoring and best.pt"
    )
    window: int = Field(64, ge=1, description="frames fed to the model after crop-resize")
    p_interval: tuple[float, float] = Field(
        (0.5, 1.0), description="training crop: fraction of the valid frames, drawn uniformly"
    )
    test_crop: float = Field(0.95, gt=0, le=1, description="central fraction kept at test time")
    min_crop_frames: int = Field(
        64, ge=1, description="a training crop keeps at least this many frames (or all valid ones)"
    )
    center: bool = Field(
        True, description="translate to the centre joint of person 0 in its first visible frame"
    )
    rotation: float = Field(
        0.3, ge=0, description="max random rotation about each axis during training, radians"
    )
    modality: Modality = "joint"
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    prefetch_factor: int = Field(
        2, ge=1, description="batches each worker loads ahead (only with num_workers > 0)"
    )
    persistent_workers: bool = Field(
        True,
        description="keep the training loader's worker processes alive across epochs instead of "
        "starting them every epoch (only with num_workers > 0)",
    )
    sampler: Literal["random", "ros", "class_balanced"] = Field(
        "random",
        description="training order: random = a shuffle of the split; ros = random over-sampling "
        "(Van Hulse et al. ICML 2007), every class topped up with replacement to the largest "
        "class, epoch = classes x largest count; class_balanced = uniform class, then uniform "
        "sample (Kang et al. ICLR 2020, cRT), epoch = split size",
    )
    many_threshold: int = Field(
        DEFAULT_MANY_THRESHOLD, ge=0, description="Many: more training samples than this"
    )
    few_threshold: int = Field(DEFAULT_FEW_THRESHOLD, ge=0, description="Few: fewer training samples than this")

    @field_validator("p_interval")
    @classmethod
    def _check_interval(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high <= 1:
            raise ValueError("p_interval must satisfy 0 < low <= high <= 1")
        return value

    @model_validator(mode="after")
    def _check_thresholds(self) -> "DataConfig":
        if self.few_threshold > self.many_threshold:
            raise ValueError("few_threshold must not exceed many_threshold")
        return self


class ModelConfig(Section):
    """Backbone name and its constructor arguments (checked against its signature)."""

    name: str = "ctrgcn"
    args: dict[str, Any] = Field(default_factory=dict, description="backbone keyword arguments")
    ride_experts: int = Field(
        1, ge=1,
        description="1 = the backbone; >= 2 = RIDE's experts on it (Wang et al. ICLR 2021, main setting: 3): "
        "they share the stem and the first ride_shared_stages stages, each owns the later blocks and a head; "
        "the output is their mean logits, or the routed ensemble once the router is trained",
    )
    ride_shared_stages: int = Field(
        DEFAULT_SHARED_STAGES, ge=1, le=2,
        description="RIDE: stages shared by the experts (of 3; the original shares 1 of ResNet-32's 3 and 2 "
        "of ResNet-50's 4)",
    )
    ride_router_hidden: int = Field(
        ROUTER_HIDDEN, ge=1, description="RIDE router: width of each expert's hidden layer (original: 16)"
    )
    ride_router_top_k: int = Field(
        ROUTER_TOP_K, ge=1,
        description="RIDE router: the largest ensemble logits it sees, at most the number of classes "
        "(original top_choices_num: 30 on CIFAR-100-LT, 50 on ImageNet-LT and iNaturalist)",
    )
    ride_router_threshold: float = Field(
        ROUTER_THRESHOLD, ge=0, le=1,
        description="RIDE router: a sample goes on to the next expert while the router's probability exceeds "
        "this (original: 0.5; 0 = every expert, 1 = only the first); may be changed at evaluation",
    )

    @model_validator(mode="after")
    def _check_args(self) -> "ModelConfig":
        try:
            model_class = get_model_builder(self.name)
        except KeyError as error:
            raise ValueError(str(error.args[0])) from None
        params = inspect.signature(model_class).parameters
        reserved = {"num_classes", "layout", "num_persons", "in_channels"}
        allowed = {name for name in params if name not in reserved and name != "self"}
        unknown = sorted(set(self.args) - allowed)
        if unknown:
            raise ValueError(
                f"unknown argument(s) {unknown} for model {self.name!r}; allowed: {sorted(allowed)}"
            )
        return self


class OptimConfig(Section):
    """SGD with momentum (CTR-GCN / Shap-Mix defaults)."""

    lr: float = Field(0.1, gt=0, description="base learning rate for the global batch")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(4e-4, ge=0)


class ScheduleConfig(Section):
    """Linear warm-up, then multistep or cosine decay; stepped every iteration."""

    epochs: int = Field(100, ge=1)
    warmup_epochs: float = Field(5, ge=0, description="linear warm-up length, epochs")
    kind: Literal["multistep", "cosine"] = "multistep"
    milestones: list[int] = Field(default_factory=lambda: [60, 80], description="multistep: epochs")
    gamma: float = Field(0.1, gt=0, le=1, description="multistep: factor at each milestone")
    min_lr: float = Field(0.0, ge=0, description="cosine: final learning rate")

    @model_validator(mode="after")
    def _check_milestones(self) -> "ScheduleConfig":
        if sorted(self.milestones) != self.milestones:
            raise ValueError("milestones must be increasing")
        if self.warmup_epochs > self.epochs:
            raise ValueError("warmup_epochs must not exceed epochs")
        return self


LossName = Literal["ce", "balanced_softmax", "focal", "class_balanced", "ldam", "influence_balanced"]
# Losses that deferred re-weighting may wrap; the others already re-balance from the start.
DRW_BASE_LOSSES = ("ce", "focal", "ldam")
# Methods that read one backbone's features, pooling and classifier (RIDE's experts have several).
METHODS_NEEDING_ONE_CLASSIFIER = ("glmc", "bcl", "paco", "frhead", "fsa")
STAGES_NEEDING_ONE_CLASSIFIER = ("crt", "maxnorm", "classifier")


class LossConfig(Section):
    """Classification loss (:mod:`shapmix.losses`); every loss accepts soft targets."""

    name: LossName = Field(
        "ce",
        description="ce, balanced_softmax (Ren et al. 2020), focal (Lin et al. 2017), class_balanced "
        "(Cui et al. 2019), ldam (Cao et al. 2019; use model.args.classifier=cosine), "
        "influence_balanced (Park et al. 2021)",
    )
    tau: float = Field(1.0, ge=0, description="balanced_softmax: weight of log prior")
    focal_gamma: float = Field(
        2.0, ge=0, description="focal, class_balanced with cb_base=focal: focusing gamma (Lin et al. ICCV 2017: 2)"
    )
    cb_beta: float = Field(
        0.9999, ge=0, lt=1,
        description="class_balanced: effective-number beta (Cui et al. CVPR 2019, long-tailed CIFAR: 0.9999)",
    )
    cb_base: Literal["softmax", "focal"] = Field(
        "softmax", description="class_balanced: weighted softmax cross entropy or weighted focal loss"
    )
    ldam_max_margin: float = Field(
        0.5, gt=0, description="ldam: margin of the rarest class, margins ~ n^-1/4 (Cao et al. NeurIPS 2019: 0.5)"
    )
    ldam_scale: float = Field(30.0, gt=0, description="ldam: logit scale s (Cao et al. NeurIPS 2019: 30)")
    drw_epoch: int | None = Field(
        None, ge=0,
        description="deferred re-weighting with class-balanced weights from this 0-based epoch on "
        "(ce, focal, ldam; Cao et al. NeurIPS 2019: 160 of 200); null = off",
    )
    drw_beta: float = Field(
        0.9999, ge=0, lt=1, description="DRW: effective-number beta of its weights (Cao et al.: 0.9999)"
    )
    ib_alpha: float = Field(
        1000.0, gt=0, description="influence_balanced: influence weight scale alpha (Park et al. ICCV 2021: 1000)"
    )
    ib_start_epoch: int | None = Field(
        None, ge=0,
        description="influence_balanced: 0-based epoch where IB replaces plain cross entropy; "
        "null = half the schedule (Park et al. ICCV 2021: 100 of 200)",
    )
    ib_lr_factor: float = Field(
        0.01, gt=0, le=1,
        description="influence_balanced: the scheduled learning rate is multiplied by this from the IB "
        "start epoch on, as the IB loss is far larger than cross entropy (Park et al. ICCV 2021, "
        "official code: 0.01)",
    )

    @model_validator(mode="after")
    def _check_drw(self) -> "LossConfig":
        if self.drw_epoch is not None and self.name not in DRW_BASE_LOSSES:
            raise ValueError(
                f"drw_epoch applies to {list(DRW_BASE_LOSSES)}, not {self.name!r} "
                "(which re-balances from the first epoch); set loss.drw_epoch=null"
            )
        return self


class MethodConfig(Section):
    """The training method: how (and whether) batches are mixed, and Shap-Mix's estimation.

    ``none``: plain training.  ``mixup`` / ``cutmix``: global or box mixing.  ``stmix``: random
    part-level spatial-temporal mixing (Shap-Mix Section 3.2).  ``shapmix``: ST-Mix whose parts
    follow online Shapley saliency and the tail-aware policy (Section 3.3).  ``remix``: Mixup with
    Remix's re-balanced labels (Chou et al. ECCV-W 2020; add ``loss.drw_epoch`` for Remix-DRW).
    Every mixing method trains on the clean and the mixed batch together.  ``glmc``: global
    Mixup and local CutMix of the batch with a re-sampled batch, a mixture consistency loss and
    cumulative head-tail re-weighting (Du et al. CVPR 2023), trained on the mixed batches only.
    ``skelemix``: Ta-CNN's SkeletonMix (Xu et al. AAAI 2022): a share of each batch is replaced
    by samples made of one skeleton's lower body and another's upper body, and that batch alone
    is trained on.  ``skelemixclr``: SkeleMixCLR's cut-and-paste of 2-3 body parts in a temporal
    clip (Chen et al. arXiv 2207.03065) with soft targets, trained with the clean batch.
    ``paco``: parametric contrastive learning (Cui et al. ICCV 2021): a supervised contrastive
    loss against a momentum encoder's queue of keys and the classifier as learnable class
    centres, with log-prior-adjusted centre logits.  ``bcl``: balanced contrastive learning (Zhu
    et al. CVPR 2022): logit-compensated cross entropy plus a class-averaged, class-complemented
    supervised contrastive loss on two further views.  Both train with their own losses.
    ``brl``: BRL (Liu et al. 2023, arXiv 2308.14024): random scale and left-right flip, a few
    samples of each batch given the lower body of a partner with re-balanced labels, and the
    action-aware class weights from a late epoch on (its own loss; ``loss.name=ce``).
    ``frhead``: FR Head (Zhou et al. CVPR 2023): contrastive feature refinement of multi-level
    features added to the loss during training; inference is the backbone's.  ``fsa``: feature
    space augmentation (Chu et al. ECCV 2020): tail-class features synthesised from the
    class-specific part of tail samples and the class-generic part of head samples (split by
    class activation maps), trained with the real ones; meant as a second stage
    (``finetune.kind=classifier``).
    ``ride``: RIDE (Wang et al. ICLR 2021) on a model with ``model.ride_experts >= 2``: every
    expert trains with the configured loss plus the distribution-aware diversity term; after
    ``finetune.kind=ride_router`` the same method trains the router.
    """

    name: Literal[
        "none", "mixup", "cutmix", "stmix", "shapmix", "remix", "glmc", "skelemix", "skelemixclr", "paco", "bcl",
        "brl", "frhead", "fsa", "ride",
    ] = "none"
    p_mixup: float = Field(DEFAULT_P_MIXUP, ge=0, le=1, description="stmix/shapmix: probability of global Mixup")
    mixup_alpha: float | None = Field(
        None, gt=0, description="Beta(alpha, alpha) mixing ratio; null = U(0, 1) as the authors"
    )
    min_parts: int = Field(DEFAULT_MIN_PARTS, ge=1, description="smallest mixed part combination")
    max_parts: int = Field(DEFAULT_MAX_PARTS, ge=1, description="largest mixed part combination")
    segment_frames: int = Field(DEFAULT_SEGMENT_FRAMES, ge=1, description="frames per temporal segment")
    window_fraction: tuple[float, float] = Field(
        DEFAULT_WINDOW_FRACTION, description="target window, fraction of the segments (low, high)"
    )
    draw: DrawMode = Field(
        DEFAULT_DRAW,
        description="stmix/shapmix: per_sample = each sample draws its own Mixup-or-local choice, ratio, "
        "window, donor clip and parts (the paper's text); per_batch = one draw shared by the batch (the "
        "authors' code; Shap-Mix's guided parts stay per sample)",
    )
    donor_resize: DonorResize = Field(
        DEFAULT_DONOR_RESIZE,
        description="stmix/shapmix: temporal resize of the donor clip into the window: linear, or nearest "
        "(F.interpolate's default, as the authors' code)",
    )
    partner: Literal["shift", "cycle"] = Field(
        "shift", description="pairing: cyclic shift of the batch or a random cycle"
    )
    remix_alpha: float = Field(DEFAULT_REMIX_ALPHA, gt=0, description="remix: Beta(alpha, alpha) input ratio (Chou et al. 2020: 1)")
    remix_kappa: float = Field(
        DEFAULT_REMIX_KAPPA, ge=1, description="remix: class-count ratio from which a pair is head vs tail (Chou et al. 2020: 3)"
    )
    remix_tau: float = Field(
        DEFAULT_REMIX_TAU, ge=0, le=1,
        description="remix: a head sample mixed in below this share gives the whole label to the tail "
        "sample (Chou et al. 2020: 0.5)",
    )
    glmc_alpha: float = Field(
        1.0, gt=0,
        description="glmc: Beta(alpha, alpha) ratio shared by the global Mixup and the local CutMix "
        "(Du et al. 2023, reference GLMC_mixed: 1)",
    )
    glmc_resample_power: float = Field(
        0.2, ge=0,
        description="glmc: the re-sampled batch draws a sample of class c with weight n_c^-q "
        "(1 = class-balanced; Du et al. 2023 reference --resample_weighting: 0.2)",
    )
    glmc_label_power: float = Field(
        1.0, ge=0,
        description="glmc: re-weighted labels scale class c by n_c^-p, normalised to mean 1 "
        "(Du et al. 2023 reference --label_weighting: 1)",
    )
    glmc_consistency_weight: float = Field(
        10.0, ge=0,
        description="glmc: weight of the global-local mixture consistency loss "
        "(Du et al. 2023 reference --contrast_weight: 10)",
    )
    glmc_projection_dim: int = Field(
        128, ge=1,
        description="glmc: width of the projector and predictor (Du et al. 2023 reference: 128 "
        "for ResNet-32, 256 for the larger ResNets)",
    )
    skelemix_fraction: float = Field(
        DEFAULT_SKELEMIX_FRACTION, gt=0, le=1,
        description="skelemix: share of each batch replaced by upper/lower-body mixes, ceil(share x N) "
        "rows (Xu et al. 2022, Ta-CNN's first author in hikvision-research/skelact#1: 1/16)",
    )
    skelemixclr_min_parts: int = Field(
        DEFAULT_CLR_MIN_PARTS, ge=1,
        description="skelemixclr: fewest body parts cut (Chen et al. 2022, authors' swap_params spa_l: 2)",
    )
    skelemixclr_max_parts: int = Field(
        DEFAULT_CLR_MAX_PARTS, ge=1,
        description="skelemixclr: most body parts cut (Chen et al. 2022, authors' swap_params spa_u: 3)",
    )
    skelemixclr_segment_frames: int = Field(
        DEFAULT_CLR_SEGMENT_FRAMES, ge=1,
        description="skelemixclr: frames per temporal segment of the clip (authors' tem_downsample_ratio: 4)",
    )
    skelemixclr_clip_fraction: tuple[float, float] = Field(
        DEFAULT_CLR_CLIP_FRACTION,
        description="skelemixclr: (low, high) fraction of the segments in the pasted clip (authors' "
        "tem_l..tem_u = 7..11 of the 16 segments of a 64-frame input: 7/16, 11/16)",
    )
    skelemixclr_draw: DrawMode = Field(
        DEFAULT_CLR_DRAW,
        description="skelemixclr: per_batch = one draw of parts and clip for the whole batch (the "
        "authors' code); per_sample = each sample its own",
    )
    paco_alpha: float = Field(
        0.01, ge=0,
        description="paco: weight of the sample positives (same-class batch samples, keys and queued keys) "
        "against the class-centre positive (Cui et al. 2021, official CIFAR-100-LT scripts --alpha: 0.01; "
        "ImageNet-LT and iNaturalist: 0.05)",
    )
    paco_beta: float = Field(
        1.0, ge=0,
        description="paco: weight of the class-centre positive (official code --beta: 1)",
    )
    paco_gamma: float = Field(
        1.0, ge=0,
        description="paco: weight of the samples in the contrastive denominator, the class centres "
        "weighing 1 (official code --gamma: 1)",
    )
    paco_temperature: float = Field(
        0.05, gt=0,
        description="paco: temperature of the sample similarities; the centre logits are not divided by it "
        "(official CIFAR-100-LT scripts --moco-t: 0.05; ImageNet-LT and iNaturalist: 0.2)",
    )
    paco_queue_size: int = Field(
        1024, ge=1,
        description="paco: keys in the momentum queue, at least the global batch size "
        "(official CIFAR-100-LT scripts --moco-k: 1024; ImageNet-LT default: 8192)",
    )
    paco_dim: int = Field(
        128, ge=1,
        description="paco: width of the normalised projection the contrast is computed on "
        "(official default --moco-dim: 128; the CIFAR scripts use 32 for ResNet-32's 64-wide features)",
    )
    paco_momentum: float = Field(
        0.999, ge=0, lt=1,
        description="paco: the key encoder moves to m * key + (1 - m) * query before every step "
        "(official default --moco-m, MoCo's: 0.999)",
    )
    bcl_alpha: float = Field(
        1.0, ge=0,
        description="bcl: weight of the logit-compensated cross entropy (Zhu et al. 2022, official code --alpha: 1)",
    )
    bcl_beta: float = Field(
        0.35, ge=0,
        description="bcl: weight of the balanced contrastive loss (official code --beta: 0.35)",
    )
    bcl_temperature: float = Field(
        0.07, gt=0,
        description="bcl: temperature of the balanced contrastive loss (official code --temp: 0.07)",
    )
    bcl_feature_dim: int = Field(
        1024, ge=1,
        description="bcl: output width of the two projection MLPs (samples and class centres; "
        "official code --feat_dim: 1024)",
    )
    brl_mix_fraction: float = Field(
        0.0625, ge=0, le=1,
        description="brl: share of each (per-process) batch whose lower body is replaced by a partner's, "
        "floor(share x batch) samples (Liu et al. 2023, firework8/BRL apis/own.py ratio: 1/16)",
    )
    brl_kappa: float = Field(
        3.0, ge=1,
        description="brl: class-count ratio above which a mixed pair is head vs tail and the label goes "
        "entirely to the tail class (Liu et al. 2023, firework8/BRL apis/own.py im_k: 3)",
    )
    brl_label_share: float | None = Field(
        None, ge=0, le=1,
        description="brl: label weight of a mixed sample's own class when neither class dominates; null = "
        "the layout's upper-body share of the joints (16/25 = 0.64 on ntu25, the constant of firework8/BRL "
        "apis/own.py alpha)",
    )
    brl_scale: float = Field(
        0.1, ge=0, lt=1,
        description="brl: each coordinate axis scaled by 1 + U(-s, s) per sample (firework8/BRL configs, "
        "RandomScale scale: 0.1)",
    )
    brl_p_flip: float = Field(
        0.5, ge=0, le=1,
        description="brl: probability of swapping the left and right joints of a sample (firework8/BRL "
        "configs, Spatial_Flip p: 0.5)",
    )
    brl_p_reverse: float = Field(
        0.0, ge=0, le=1,
        description="brl: probability of playing a sample backwards (the paper's temporal reverse "
        "perception; firework8/BRL has it as Temperal_Flip, p=0.5, but no released config enables it: 0)",
    )
    brl_beta_min: float = Field(
        0.99, ge=0, lt=1,
        description="brl: effective-number beta of the rarest class in the action-aware weights "
        "(firework8/BRL losses.py get_weight_list upsilon: 0.99)",
    )
    brl_beta_span: float = Field(
        0.0099, ge=0, lt=1,
        description="brl: beta grows linearly with the class count by this much from the rarest to the "
        "largest class (firework8/BRL losses.py get_weight_list lamda: 0.0099, so beta in [0.99, 0.9999])",
    )
    brl_reweight_epoch: int | None = Field(
        None, ge=0,
        description="brl: 0-based epoch from which the action-aware class weights apply (plain cross "
        "entropy before); null = int(19/24 x schedule.epochs), firework8/BRL's epoch 19 of 24",
    )
    frhead_weight: float = Field(
        0.1, ge=0,
        description="frhead: weight of the summed refinement losses (Zhou et al. 2023, FR-Head --w-cl-loss: 0.1)",
    )
    frhead_level_weights: list[float] = Field(
        default_factory=lambda: [0.1, 0.2, 0.5, 1.0],
        description="frhead: weight of each refined level, from the first block of the first stage to the last "
        "block (one per stage and one for the last block; Zhou et al. 2023, FR-Head --w-multi-cl-loss: 0.1 0.2 0.5 1)",
    )
    frhead_alpha: float = Field(
        0.125, ge=0,
        description="frhead: weight of the ambiguous-sample (false negative / false positive) terms in the "
        "contrastive logits (Zhou et al. 2023, FR-Head RenovateNet alp: 0.125)",
    )
    frhead_temperature: float = Field(
        0.125, gt=0, description="frhead: temperature of the contrastive logits (FR-Head RenovateNet tmp: 0.125)"
    )
    frhead_momentum: float = Field(
        0.9, ge=0, lt=1,
        description="frhead: momentum of the class prototypes' update from the confident samples "
        "(FR-Head RenovateNet mom: 0.9)",
    )
    frhead_hidden: int = Field(
        256, ge=1, description="frhead: width of the refinement embeddings (FR-Head ST_RenovateNet h_channel: 256)"
    )
    fsa_specific_threshold: float = Field(
        0.8, ge=0, le=1,
        description="fsa: positions (frame, joint, person) whose normalised class activation exceeds this hold a tail "
        "sample's class-specific features (tau_s; 0.8 in the unofficial FSA implementation, SSRSGJYD)",
    )
    fsa_generic_threshold: float = Field(
        0.2, ge=0, le=1,
        description="fsa: positions whose normalised class activation is below this hold a head sample's "
        "class-generic features (tau_g; 0.2 in the unofficial FSA implementation, SSRSGJYD)",
    )
    fsa_synthesised_per_sample: int = Field(
        3, ge=1,
        description="fsa: features synthesised per tail sample, each with another head sample (N_a; 3 in the "
        "unofficial FSA implementation, SSRSGJYD)",
    )
    fsa_tail_max_samples: int = Field(
        100, ge=0,
        description="fsa: classes with at most this many training samples are augmented, the others give "
        "class-generic features (the Many-shot boundary of LT-NTU, Liu et al. 2023: 100)",
    )
    ride_diversity_factor: float = Field(
        -0.2,
        description="ride: weight of each expert's KL divergence from the ensemble, times T^2; negative "
        "rewards disagreement (Wang et al. 2021 additional_diversity_factor: default -0.2, CIFAR-100-LT "
        "config -0.45); 0 trains every expert's loss on the ensemble's logits, as the original code",
    )
    ride_diversity_temperature: float = Field(
        1.0, gt=0, description="ride: temperature T of the diversity term (original base_diversity_temperature: 1)"
    )
    ride_reweight_factor: float = Field(
        0.05, ge=0, lt=1,
        description="ride: once the loss's deferred re-weighting starts, class c's diversity temperature "
        "becomes T (K p_c g + 1 - g) / max, p_c its training frequency (original reweight_factor g: 0.05; "
        "ImageNet-LT config 0.02)",
    )
    ride_router_pos_weight: float = Field(
        100.0, gt=0,
        description="ride, router stage: weight of the positive class (a further expert helps) in the "
        "router's binary cross entropy (original EA configs: 100; code default 20)",
    )
    guidance: Literal["shapley", "random", "gradcam"] = Field(
        "shapley",
        description="shapmix: parts from the table of Shapley estimates, uniformly at random (ST-Mix), "
        "or from a table fed by Grad-CAM part scores",
    )
    tau: float = Field(
        DEFAULT_TAU,
        gt=0,
        description="shapmix: temperature of the part policy softmax(phi / tau), on per-joint Shapley "
        f"values as the table stores them (no hidden factor); the default {DEFAULT_TAU} was chosen by "
        f"measurement (docs/benchmarks.md), the authors' setting is {AUTHORS_TAU} (their 0.2 on a "
        "table x 10), a sharper policy",
    )
    warmup_epochs: int = Field(5, ge=0, description="shapmix: epochs of random mixing and naive estimates")
    interval: int = Field(1, ge=1, description="shapmix: estimate saliency every n-th step (iter-n)")
    momentum: float = Field(DEFAULT_MOMENTUM, ge=0, lt=1, description="shapmix: EMA momentum of the saliency table")
    clip: bool = Field(True, description="shapmix: clip marginal contributions at 0 (the paper's choice)")
    estimate_fraction: float = Field(
        0.25, gt=0, le=1,
        description="shapmix: estimation budget per estimation step, as a share of the batch: the "
        "sampled estimator draws that many samples (weights 1 / class count, so rare classes are "
        "estimated first; 1 = every sample, as the paper), the exact one spends the same 2 masked "
        "forwards per share on whole rows of 2**P",
    )
    shapley_estimator: Literal["sampled", "exact"] = Field(
        "exact",
        description="shapmix: 'sampled' = one Monte-Carlo draw of combination and coalition per "
        "estimated sample (the paper); 'exact' = the same number of masked forwards spent on all "
        "2**P coalitions of fewer samples, giving each one's exact value of every combination",
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> "MethodConfig":
        if self.min_parts > self.max_parts:
            raise ValueError("min_parts must not exceed max_parts")
        low, high = self.window_fraction
        if not 0 < low <= high <= 1:
            raise ValueError("window_fraction must satisfy 0 < low <= high <= 1")
        return self

    @model_validator(mode="after")
    def _check_skelemixclr_ranges(self) -> "MethodConfig":
        if self.skelemixclr_min_parts > self.skelemixclr_max_parts:
            raise ValueError("skelemixclr_min_parts must not exceed skelemixclr_max_parts")
        low, high = self.skelemixclr_clip_fraction
        if not 0 < low <= high <= 1:
            raise ValueError("skelemixclr_clip_fraction must satisfy 0 < low <= high <= 1")
        return self

    @model_validator(mode="after")
    def _check_brl_betas(self) -> "MethodConfig":
        if self.brl_beta_min + self.brl_beta_span >= 1:
            raise ValueError(
                f"brl_beta_min + brl_beta_span = {self.brl_beta_min + self.brl_beta_span} must stay below 1 "
                "(the largest class's effective-number beta)"
            )
        return self


class FinetuneConfig(Section):
    """Second stage of a decoupled method, started from a first-stage ``last.pt``.

    ``none``: an ordinary (first-stage) run.  ``crt``: classifier re-training (Kang et al.,
    ICLR 2020): the backbone is frozen, the classifier re-initialised and trained alone, meant
    with ``data.sampler=class_balanced``.  ``maxnorm``: weight balancing's second stage
    (Alshammari et al., CVPR 2022): the frozen backbone's classifier is fine-tuned under the
    MaxNorm constraint (with weight decay and a class-balanced loss, e.g. Balanced Softmax).
    ``classifier``: the frozen backbone's classifier is fine-tuned from its first-stage weights,
    unconstrained (FSA's second stage, Chu et al., ECCV 2020, with ``method.name=fsa``).
    ``ride_router``: RIDE's second stage (Wang et al., ICLR 2021): the experts are frozen and the
    router learns when a further expert helps; evaluation then uses the routed ensemble.
    """

    kind: Literal["none", "crt", "maxnorm", "classifier", "ride_router"] = Field(
        "none",
        description="second-stage method: none, crt (classifier re-training), maxnorm, classifier (the "
        "first-stage classifier fine-tuned as it is, e.g. by FSA's feature space augmentation), or "
        "ride_router (RIDE's router trained on frozen experts, with method.name=ride)",
    )
    checkpoint: str | None = Field(
        None, description="crt/maxnorm/classifier/ride_router: the first stage's last.pt (same model config and dataset)"
    )
    maxnorm_threshold: float = Field(
        0.1,
        ge=0,
        le=1,
        description="maxnorm: radius of the per-class weight-norm ball, as the fraction of the way "
        "from the smallest to the largest first-stage class-weight norm "
        "(Alshammari et al. CVPR 2022, official code: 0.1)",
    )

    @model_validator(mode="after")
    def _check_checkpoint(self) -> "FinetuneConfig":
        if self.kind != "none" and not self.checkpoint:
            raise ValueError(f"finetune.kind={self.kind} needs finetune.checkpoint (a first-stage last.pt)")
        return self


class TrainConfig(Section):
    seed: int = 0
    batch_size: int = Field(64, ge=1, description="global batch size (split across processes)")
    eval_batch_size: int = Field(128, ge=1)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch default)")
    sync_batchnorm: bool = Field(
        True,
        description="under DDP (more than one process), synchronise batch-norm statistics across "
        "processes, so 2 x 32 normalises like one batch of 64 (the authors train with SyncBatchNorm); "
        "no effect in a single process",
    )
    precision: Precision = Field(
        "fp32",
        description="fp32; bf16 or fp16 = automatic mixed precision (torch.autocast) for the training "
        "forward and loss, Shapley estimation and evaluation; fp16 scales the loss (GradScaler, whose "
        "overflow check reads a flag back from the GPU every step; bf16 needs no scaling)",
    )
    compile: bool = Field(
        False, description="torch.compile the model (the first steps are slower while it compiles)"
    )
    cudnn_benchmark: bool = Field(
        True,
        description="on CUDA, let cuDNN pick the fastest convolution algorithms for the input shapes "
        "(faster; results are then not bitwise reproducible across runs)",
    )


class CheckpointConfig(Section):
    """When ``last.pt`` is written besides the end of every epoch (mid-epoch, resumable there)."""

    every_steps: int | None = Field(
        None, ge=1, description="also write last.pt every this many optimisation steps (null: only at epoch ends)"
    )
    every_minutes: float | None = Field(
        None, gt=0, description="also write last.pt when this many minutes have passed since the last write"
    )


class LogConfig(Section):
    progress: bool = Field(True, description="show a progress bar on rank 0")
    tensorboard: bool = Field(False, description="write TensorBoard events (pip install shapmix[tensorboard])")
    plots: bool = Field(True, description="write PNG plots into the run directory")


class EvalConfig(Section):
    """Test-time scoring: a run's test and validation, ``shapmix eval`` and ``shapmix predict``."""

    num_clips: int = Field(
        1,
        ge=1,
        description="temporal clips scored per test sequence: 1 = the central data.test_crop; K > 1 = K "
        "windows of the same length spaced uniformly over the valid frames, class probabilities "
        "averaged (pyskl's multi-clip testing; its NTU configs use 10)",
    )


class Config(Section):
    """A complete run: every key below is overridable as ``section.key=value``."""

    name: str = Field("run", description="run name, used for the default output directory")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    finetune: FinetuneConfig = Field(
        default_factory=FinetuneConfig, description="second stage of decoupled methods (cRT, MaxNorm)"
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _check_loss_epochs(self) -> "Config":
        epochs = self.schedule.epochs
        if self.loss.drw_epoch is not None and self.loss.drw_epoch >= epochs:
            raise ValueError(
                f"loss.drw_epoch={self.loss.drw_epoch} must be smaller than schedule.epochs={epochs} "
                "(0-based epoch where re-weighting starts)"
            )
        start = self.loss.ib_start_epoch
        if self.loss.name == "influence_balanced" and start is not None and start >= epochs:
            raise ValueError(
                f"loss.ib_start_epoch={start} must be smaller than schedule.epochs={epochs} "
                "(0-based epoch where the IB loss starts)"
            )
        return self

    @model_validator(mode="after")
    def _check_glmc_loss(self) -> "Config":
        if self.method.name == "glmc" and self.loss.name != "ce":
            raise ValueError(
                f"method.name=glmc trains with its own losses (soft cross entropy on its conventional "
                f"and re-balanced classifiers, Du et al. 2023); set loss.name=ce, not {self.loss.name!r}"
            )
        return self

    @model_validator(mode="after")
    def _check_contrastive_loss(self) -> "Config":
        if self.method.name in ("paco", "bcl") and self.loss.name != "ce":
            raise ValueError(
                f"method.name={self.method.name} trains with its own loss (PaCo: the contrastive loss with "
                f"log-prior-adjusted class centres; BCL: logit-compensated cross entropy plus the balanced "
                f"contrastive loss); set loss.name=ce, not {self.loss.name!r}"
            )
        return self

    @model_validator(mode="after")
    def _check_brl(self) -> "Config":
        if self.method.name != "brl":
            return self
        if self.loss.name != "ce" or self.loss.drw_epoch is not None:
            raise ValueError(
                "method.name=brl trains with its own loss (cross entropy, then the action-aware class "
                f"weights, Liu et al. 2023); set loss.name=ce and loss.drw_epoch=null, not {self.loss.name!r}"
                + (f" with drw_epoch={self.loss.drw_epoch}" if self.loss.drw_epoch is not None else "")
            )
        start = self.method.brl_reweight_epoch
        if start is not None and start >= self.schedule.epochs:
            raise ValueError(
                f"method.brl_reweight_epoch={start} must be smaller than schedule.epochs={self.schedule.epochs} "
                "(0-based epoch where the action-aware weights start)"
            )
        return self

    @model_validator(mode="after")
    def _check_ride(self) -> "Config":
        if self.method.name == "ride" and self.model.ride_experts < 2:
            raise ValueError(
                "method.name=ride trains RIDE's experts: set model.ride_experts to 2 or more "
                f"(Wang et al. 2021: 3), not {self.model.ride_experts}"
            )
        if self.model.ride_experts >= 2:
            needs_one_classifier = [
                f"{key}={value}"
                for key, value, conflicts in (
                    ("method.name", self.method.name, self.method.name in METHODS_NEEDING_ONE_CLASSIFIER),
                    ("method.guidance", self.method.guidance,
                     self.method.name == "shapmix" and self.method.guidance == "gradcam"),
                    ("finetune.kind", self.finetune.kind, self.finetune.kind in STAGES_NEEDING_ONE_CLASSIFIER),
                )
                if conflicts
            ]
            if needs_one_classifier:
                raise ValueError(
                    f"{', '.join(needs_one_classifier)} works on one backbone's features and classifier; "
                    f"model.ride_experts={self.model.ride_experts} builds RIDE's experts, which have several: "
                    "set model.ride_experts=1, or use RIDE with a method that mixes inputs or changes the loss"
                )
        if self.finetune.kind == "ride_router" and self.method.name != "ride":
            raise ValueError(
                f"finetune.kind=ride_router trains RIDE's router with its own loss: set method.name=ride, "
                f"not {self.method.name!r}"
            )
        return self


def packaged_configs() -> dict[str, Path]:
    """Configs shipped with the package: name -> path.

    A config in a sub-folder is named with its folder, e.g. ``paper/table1-ltntu60`` for
    ``configs/paper/table1-ltntu60.yaml`` (the paper's experiments).
    """
    found: dict[str, Path] = {}
    folders = [("", resources.files("shapmix") / "configs")]
    while folders:
        prefix, folder = folders.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                folders.append((f"{prefix}{entry.name}/", entry))
            elif entry.name.endswith(".yaml"):
                found[prefix + entry.name[: -len(".yaml")]] = Path(str(entry))
    return found


def _resolve_config_path(source: str | Path) -> Path:
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        return path
    known = packaged_configs()
    if str(source) in known:
        return known[str(source)]
    raise ConfigError(
        f"{source!r} is neither a YAML file nor a packaged config; packaged: {sorted(known)}"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return content


def _allowed_keys(model: type[BaseModel], path: Sequence[str]) -> list[str]:
    for key in path:
        field = model.model_fields.get(key)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def parse_setting(item: str, what: str = "override", form: str = "section.key=value") -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)`` with the value parsed as YAML (``1e-3``, ``[60, 80]``,
    ``null``, ``true``; text that is not valid YAML stays a string; nothing after ``=`` is
    ``""``).  A missing ``=`` or key is a :class:`ConfigError` calling the item ``what`` and
    showing the expected ``form``."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{what} {item!r} must look like {form}")
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        value = text
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, value = parse_setting(item)
        parts = key.split(".")
        allowed = _allowed_keys(Config, parts[:-1])
        if parts[-1] not in allowed and not _is_free_mapping(parts[:-1]):
            prefix = ".".join(parts[:-1]) or "the top level"
            raise ConfigError(
                f"override {key!r}: no key {parts[-1]!r} in {prefix}; allowed: {allowed}"
            )
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def _is_free_mapping(path: Sequence[str]) -> bool:
    """True for dict-valued fields whose keys are checked later (e.g. ``model.args``)."""
    model: type[BaseModel] = Config
    for i, key in enumerate(path):
        field = model.model_fields.get(key)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return i == len(path) - 1 and getattr(annotation, "__origin__", None) is dict
    return False


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(Config, [str(p) for p in item["loc"][:-1]])
            message = f"unknown key; allowed here: {allowed}"
        elif "input" in item and item["type"] != "missing":
            message = f"{message} (got {item['input']!r})"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def build_config(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict into a :class:`Config`, with readable errors."""
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


DEFAULT_CONFIG = "default"
# Top-level block of an experiment file (shapmix.bench.experiment); not a section of a run.
EXPERIMENT_KEY = "experiment"


def load_config(source: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config (path or packaged name) and apply overrides.

    ``source=None`` is the packaged ``default`` config: the built-in synthetic benchmark sized
    for a CPU, which is what ``shapmix train`` runs without ``--config``.  An experiment file's
    ``experiment:`` block (its grid of runs, read by ``shapmix bench --experiment``) is not part
    of the run: loaded here, the file is its base run.
    """
    path = _resolve_config_path(DEFAULT_CONFIG if source is None else source)
    raw = _read_yaml(path)
    raw.pop(EXPERIMENT_KEY, None)
    label = str(path)
    apply_overrides(raw, overrides)
    return build_config(raw, label + (f" with overrides {list(overrides)}" if overrides else ""))


def config_to_dict(config: Config) -> dict[str, Any]:
    """A plain, YAML/JSON-safe dict (tuples become lists)."""
    return config.model_dump(mode="json")
