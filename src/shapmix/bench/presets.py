"""The methods ``shapmix bench`` compares: each a named list of config overrides per stage.

A preset describes a method completely: every stage starts from :data:`NEUTRAL` (cross entropy,
no mixing, instance sampling, no second stage), so the method does not inherit e.g. the default
config's Shap-Mix.  Everything else (data, model, schedule, budget) comes from the bench's base
config and the user's overrides; a preset's keys win over the user's overrides.

Some hyper-parameters are defined by their papers as a point of the schedule (deferred
re-weighting starts at epoch 160 of 200): a preset states them as a fraction of
``schedule.epochs`` (:attr:`Preset.derived`), so they stay where the paper put them for any
budget.

Two-stage (decoupled) presets list a second stage; the bench runner fills in
``finetune.checkpoint`` with the first stage's ``last.pt``.

Names and the methods of the Shap-Mix paper's Table 1 (Zhang et al., IJCAI 2024):

====================  ==================================================================
``ce``                cross entropy, instance-balanced sampling
``bs``                Balanced Softmax (Ren et al., NeurIPS 2020)
``focal``             Focal loss (Lin et al., ICCV 2017)
``cb``                Class-Balanced loss (Cui et al., CVPR 2019)
``ldam_drw``          LDAM with deferred re-weighting (Cao et al., NeurIPS 2019)
``ib``                Influence-Balanced loss (Park et al., ICCV 2021)
``ros``               random over-sampling (Van Hulse et al., ICML 2007)
``cbs``               class-balanced sampling with cross entropy (Kang et al., ICLR 2020)
``mixup``             Mixup (Zhang et al., ICLR 2018)
``cutmix``            CutMix (Yun et al., ICCV 2019)
``remix_drw``         Remix with deferred re-weighting (Chou et al., ECCV-W 2020)
``stmix``             ST-Mix, random body parts (Shap-Mix Section 3.2) with Balanced Softmax
``shapmix``           Shap-Mix with Balanced Softmax (Shap-Mix Section 3.3)
``crt``               classifier re-training (Kang et al., ICLR 2020)
``bs_maxnorm``        weight balancing, "BS + Max Norm" (Alshammari et al., CVPR 2022)
``glmc``              GLMC (Du et al., CVPR 2023)
``skelemix``          SkeleMix: upper/lower-body mixing of 1/16 of each batch (Ta-CNN, Xu et al.,
                      AAAI 2022) with Balanced Softmax (Table 7's comparison)
``skelemixclr``       SkeleMixCLR's part-and-clip cut-and-paste (Chen et al., arXiv 2207.03065)
                      with soft targets and Balanced Softmax (Table 7's comparison)
``paco``              PaCo, parametric contrastive learning (Cui et al., ICCV 2021)
``bcl``               BCL, balanced contrastive learning (Zhu et al., CVPR 2022)
``brl``               BRL (Liu et al., arXiv 2308.14024, 2023)
``frhead``            FR Head (Zhou et al., CVPR 2023), contrastive feature refinement
``fsa``               feature space augmentation (Chu et al., ECCV 2020), a second stage
``ride``              RIDE, 3 experts, then the router (Wang et al., ICLR 2021)
====================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..config import Config, load_config
from ..mixing.skelemix import (
    DEFAULT_CLR_CLIP_FRACTION,
    DEFAULT_CLR_DRAW,
    DEFAULT_CLR_MAX_PARTS,
    DEFAULT_CLR_MIN_PARTS,
    DEFAULT_CLR_SEGMENT_FRAMES,
    DEFAULT_SKELEMIX_FRACTION,
)

__all__ = ["Preset", "PRESETS", "NEUTRAL", "get_presets", "preset_config"]

# Every stage of every preset starts from these, so a method is exactly what its preset says.
NEUTRAL: tuple[str, ...] = (
    "loss.name=ce",
    "method.name=none",
    "data.sampler=random",
    "finetune.kind=none",
)

# Cao et al. (NeurIPS 2019) defer re-weighting to epoch 160 of 200; Chou et al. (Remix-DRW)
# use the same point.
DRW_START_FRACTION = 0.8
# Park et al. (ICCV 2021) start the influence-balanced loss at epoch 100 of 200.
IB_START_FRACTION = 0.5
# Kang et al. (ICLR 2020) re-train the classifier for 10 epochs; Alshammari et al. (CVPR 2022,
# official demo) fine-tune for 10 epochs with a cosine schedule.
SECOND_STAGE_EPOCHS = 10
# Alshammari et al. (CVPR 2022, official code): weight decay 5e-3 in stage 1 (grid-searched),
# 0.1 on the classifier in stage 2.
WEIGHT_BALANCING_STAGE1_DECAY = 5e-3
WEIGHT_BALANCING_STAGE2_DECAY = 0.1

# PaCo (Cui et al., ICCV 2021), official code github.com/dvlab-research/Parametric-Contrastive-
# Learning, PaCo/LT/sh/CIFAR100_train_imb0.01.sh: CIFAR-100-LT at imbalance factor 100, the
# small-scale setting with LT-NTU's imbalance factor (the ImageNet-LT and iNaturalist scripts
# use alpha 0.05, temperature 0.2 and 8192 keys).
PACO_ALPHA = 0.01  # --alpha: weight of the sample positives
PACO_BETA = 1.0  # --beta: weight of the class-centre positive
PACO_GAMMA = 1.0  # --gamma: weight of the samples in the denominator
PACO_TEMPERATURE = 0.05  # --moco-t
PACO_QUEUE_SIZE = 1024  # --moco-k
PACO_MOMENTUM = 0.999  # --moco-m (paco_cifar.py default, MoCo's)
# --moco-dim: the scripts' 32 suits ResNet-32's 64-wide features; the code's default 128 (MoCo's,
# used for ImageNet-LT) is kept for the GCNs' 256-wide ones.
PACO_DIM = 128
# BCL (Zhu et al., CVPR 2022), official code github.com/FlamieZhu/Balanced-Contrastive-Learning,
# main.py defaults (its ImageNet-LT and iNaturalist runs).
BCL_ALPHA = 1.0  # --alpha: weight of the logit-compensated cross entropy
BCL_BETA = 0.35  # --beta: weight of the balanced contrastive loss
BCL_TEMPERATURE = 0.07  # --temp
BCL_FEATURE_DIM = 1024  # --feat_dim: output width of the projection MLPs
BCL_COSINE_SCALE = 30  # --use_norm True: NormedLinear, cosine logits scaled by s = 30
# BRL (Liu et al., arXiv 2308.14024), the authors' code github.com/firework8/BRL: apis/own.py mixes
# ratio = 1/16 of each batch and gives the whole label to the tail class beyond im_k = 3 times
# fewer samples (its label share 0.64 = 16/25 joints is the layout's upper-body share, the
# config's default); configs/BRL scale each axis by 1 + U(-0.1, 0.1) (RandomScale) and swap
# left and right with p = 0.5 (Spatial_Flip); losses.py TwostageAALoss weights classes from
# epoch 19 of 24 with beta = 0.99 + 0.0099 x (count position between the rarest and largest class).
BRL_MIX_FRACTION = 1 / 16
BRL_KAPPA = 3.0
BRL_SCALE = 0.1
BRL_P_FLIP = 0.5
BRL_BETA_MIN = 0.99
BRL_BETA_SPAN = 0.0099
BRL_REWEIGHT_FRACTION = 19 / 24
# Zhou et al. (CVPR 2023, FR-Head main.py and its released configs): the refinement losses of
# the four levels weighted 0.1, 0.2, 0.5, 1 and their sum by 0.1 (the method's defaults in
# MethodConfig, named here so the preset states them).
FRHEAD_WEIGHT = 0.1
FRHEAD_LEVEL_WEIGHTS = "[0.1, 0.2, 0.5, 1.0]"
# Chu et al. (ECCV 2020) publish no code; the thresholds on the normalised activation maps and
# the synthesised features per tail sample are those of the unofficial implementation
# (SSRSGJYD/Feature-Space-Augmentation-for-Long-Tailed-Data: ts 0.8, tg 0.2, Na 3); the tail is
# LT-NTU's Medium and Few classes (at most 100 training samples, Liu et al. 2023).
FSA_SPECIFIC_THRESHOLD = 0.8
FSA_GENERIC_THRESHOLD = 0.2
FSA_SYNTHESISED_PER_SAMPLE = 3
FSA_TAIL_MAX_SAMPLES = 100
# RIDE (Wang et al., ICLR 2021), official code frank-xwang/RIDE-LongTailRecognition: 3 experts
# (the paper's main setting), LDAM with deferred re-weighting (RIDELoss: max_m 0.5, s 30,
# reweight_epoch 160 of 200, as DRW_START_FRACTION) on normalised classifiers (use_norm), whose
# cosine the model multiplies by s; the diversity factor of the CIFAR-100-LT config (the
# closest in size and schedule to the skeleton benchmarks: trained from scratch, 200 epochs);
# the router ("expert assignment") stage of its EA configs: 5 epochs of cosine decay from a
# learning rate 10x below the first stage's (0.01 vs 0.1), class-balanced sampling, pos_weight
# 100 (the method.ride_router_pos_weight default).
RIDE_EXPERTS = 3
RIDE_LOGIT_SCALE = 30.0
RIDE_MAX_MARGIN = 0.5
RIDE_DIVERSITY_FACTOR = -0.45
RIDE_ROUTER_EPOCHS = 5
RIDE_ROUTER_LR_FACTOR = 0.1
# Same model config in both stages (a second stage must use the first stage's model).  The model
# outputs s cos, so LDAM's scale is 1 and its margin is written in those units: s (cos - m) =
# s cos - s m.
RIDE_MODEL = (
    f"model.ride_experts={RIDE_EXPERTS}",
    "model.args.classifier=cosine",
    f"model.args.cosine_scale={RIDE_LOGIT_SCALE}",
)

SECOND_STAGE_SCHEDULE = (
    f"schedule.epochs={SECOND_STAGE_EPOCHS}",
    "schedule.warmup_epochs=0",
    "schedule.kind=cosine",
)


def _epoch_at(fraction: float, key: str) -> Callable[[Config], list[str]]:
    """An override putting ``key`` (a 0-based epoch) at ``fraction`` of the run's schedule."""

    def derive(config: Config) -> list[str]:
        return [f"{key}={int(fraction * config.schedule.epochs)}"]

    derive.__doc__ = f"{key} = {fraction} x schedule.epochs"
    return derive


def _scaled(key: str, factor: float) -> Callable[[Config], list[str]]:
    """An override setting the float ``key`` (``section.name``) to ``factor`` times its value."""
    section, name = key.split(".")

    def derive(config: Config) -> list[str]:
        return [f"{key}={factor * getattr(getattr(config, section), name):.10g}"]

    derive.__doc__ = f"{key} = {factor} x {key}"
    return derive


@dataclass(frozen=True)
class Preset:
    """One benchmarked method.

    Attributes:
        name: the ``--methods`` name.
        description: one line: what the method is.
        reference: the paper its hyper-parameters come from.
        stages: config overrides per stage (one tuple for one-stage methods, two for decoupled
            ones), applied on top of :data:`NEUTRAL`.
        derived: per stage, functions of the stage's config returning overrides that depend
            on it (schedule points), applied last (see :func:`preset_config`).
        resets: overrides every stage starts from: :data:`NEUTRAL` for a method, so that it
            inherits no method from the base config; empty for a variant of the base config
            (an experiment row such as "the base Shap-Mix run with method.tau=0.5").
    """

    name: str
    description: str
    reference: str
    stages: tuple[tuple[str, ...], ...]
    derived: tuple[tuple[Callable[[Config], list[str]], ...], ...] = field(default=())
    resets: tuple[str, ...] = NEUTRAL

    @property
    def two_stage(self) -> bool:
        return len(self.stages) == 2


def preset_config(
    preset: Preset,
    stage: int,
    source: str | Path | None,
    before: Sequence[str] = (),
    after: Sequence[str] = (),
) -> Config:
    """The validated config of ``preset``'s stage ``stage`` (0-based).

    Applied in order on top of the YAML ``source``: ``before`` (the user's overrides),
    :attr:`Preset.resets` (:data:`NEUTRAL` for a method), the preset's stage overrides,
    ``after`` (seed, checkpoint, second-stage overrides), then the preset's derived overrides
    computed from the config so far.
    """
    if not 0 <= stage < len(preset.stages):
        raise ValueError(f"preset {preset.name!r} has {len(preset.stages)} stage(s), no stage {stage}")
    fixed = [*before, *preset.resets, *preset.stages[stage], *after]
    config = load_config(source, fixed)
    derivations = preset.derived[stage] if stage < len(preset.derived) else ()
    derived = [item for derive in derivations for item in derive(config)]
    return load_config(source, fixed + derived) if derived else config


_PRESET_LIST = [
    Preset("ce", "cross entropy, instance-balanced sampling", "baseline", ((),)),
    Preset(
        "bs", "Balanced Softmax: cross entropy on logits + log prior", "Ren et al., NeurIPS 2020",
        (("loss.name=balanced_softmax",),),
    ),
    Preset("focal", "Focal loss", "Lin et al., ICCV 2017", (("loss.name=focal",),)),
    Preset(
        "cb", "Class-Balanced loss: weights from the effective number of samples",
        "Cui et al., CVPR 2019", (("loss.name=class_balanced",),),
    ),
    Preset(
        "ldam_drw", "LDAM margins on a cosine classifier, class re-weighting deferred to 80% of training",
        "Cao et al., NeurIPS 2019", (("loss.name=ldam", "model.args.classifier=cosine"),),
        ((_epoch_at(DRW_START_FRACTION, "loss.drw_epoch"),),),
    ),
    Preset(
        "ib", "Influence-Balanced loss from half of training",
        "Park et al., ICCV 2021", (("loss.name=influence_balanced",),),
        ((_epoch_at(IB_START_FRACTION, "loss.ib_start_epoch"),),),
    ),
    Preset("ros", "random over-sampling with cross entropy", "Van Hulse et al., ICML 2007", (("data.sampler=ros",),)),
    Preset(
        "cbs", "class-balanced sampling with cross entropy", "Kang et al., ICLR 2020",
        (("data.sampler=class_balanced",),),
    ),
    Preset("mixup", "Mixup with cross entropy", "Zhang et al., ICLR 2018", (("method.name=mixup",),)),
    Preset("cutmix", "CutMix with cross entropy", "Yun et al., ICCV 2019", (("method.name=cutmix",),)),
    Preset(
        "remix_drw", "Remix (tail-favouring labels), class re-weighting deferred to 80% of training",
        "Chou et al., ECCV Workshops 2020", (("method.name=remix",),),
        ((_epoch_at(DRW_START_FRACTION, "loss.drw_epoch"),),),
    ),
    Preset(
        "stmix", "ST-Mix (random body parts and temporal window) with Balanced Softmax",
        "Shap-Mix, Zhang et al., IJCAI 2024, Section 3.2",
        (("method.name=stmix", "loss.name=balanced_softmax"),),
    ),
    Preset(
        "shapmix", "Shap-Mix (Shapley-guided, tail-aware mixing, saliency every step) with Balanced Softmax",
        "Shap-Mix, Zhang et al., IJCAI 2024, Section 3.3",
        (("method.name=shapmix", "method.interval=1", "loss.name=balanced_softmax"),),
    ),
    Preset(
        "crt", "cross entropy, then the classifier re-initialised and re-trained with class-balanced sampling",
        "Kang et al., ICLR 2020",
        ((), ("finetune.kind=crt", "data.sampler=class_balanced", *SECOND_STAGE_SCHEDULE)),
    ),
    Preset(
        "bs_maxnorm", "cross entropy with strong weight decay, then the classifier fine-tuned with "
        "Balanced Softmax, weight decay and the MaxNorm constraint",
        "Alshammari et al., CVPR 2022",
        (
            (f"optim.weight_decay={WEIGHT_BALANCING_STAGE1_DECAY}",),
            (
                "finetune.kind=maxnorm",
                "loss.name=balanced_softmax",
                f"optim.weight_decay={WEIGHT_BALANCING_STAGE2_DECAY}",
                *SECOND_STAGE_SCHEDULE,
            ),
        ),
    ),
    Preset(
        "glmc", "GLMC: global and local mixture consistency with cumulative re-balancing",
        "Du et al., CVPR 2023", (("method.name=glmc",),),
    ),
    Preset(
        "paco", "PaCo: supervised contrast with a momentum queue and the classifier as learnable class centres",
        "Cui et al., ICCV 2021",
        ((
            "method.name=paco",
            f"method.paco_alpha={PACO_ALPHA}",
            f"method.paco_beta={PACO_BETA}",
            f"method.paco_gamma={PACO_GAMMA}",
            f"method.paco_temperature={PACO_TEMPERATURE}",
            f"method.paco_queue_size={PACO_QUEUE_SIZE}",
            f"method.paco_momentum={PACO_MOMENTUM}",
            f"method.paco_dim={PACO_DIM}",
        ),),
    ),
    Preset(
        "bcl", "BCL: logit-compensated cross entropy plus class-averaged, class-complemented contrast",
        "Zhu et al., CVPR 2022",
        ((
            "method.name=bcl",
            f"method.bcl_alpha={BCL_ALPHA}",
            f"method.bcl_beta={BCL_BETA}",
            f"method.bcl_temperature={BCL_TEMPERATURE}",
            f"method.bcl_feature_dim={BCL_FEATURE_DIM}",
            "model.args.classifier=cosine",
            f"model.args.cosine_scale={BCL_COSINE_SCALE}",
        ),),
    ),
    # The skeleton mixings of the paper's Table 7 (balanced NTU60, cross entropy for every row, which
    # the experiment file paper/table7-mixing sets).  On the long-tailed bench each takes the loss of
    # the ``stmix`` preset, Balanced Softmax, so that the mixing is the only difference from ST-Mix,
    # which is what Table 7 compares; their own papers train balanced data with cross entropy.
    # Hyper-parameters (the config defaults, named here): SkeleMix mixes 1/16 of each batch (Ta-CNN's
    # first author, hikvision-research/skelact#1); SkeleMixCLR cuts 2..3 parts in a clip of 7..11 of
    # 16 four-frame segments, drawn once per batch (czhaneva/SkeleMixCLR, swap_params [2, 3, 7, 11]).
    Preset(
        "skelemix", "SkeleMix: 1/16 of each batch made of one skeleton's lower body and another's upper "
        "body, labels by joint share, with Balanced Softmax",
        "Ta-CNN, Xu et al., AAAI 2022",
        ((
            "method.name=skelemix",
            f"method.skelemix_fraction={DEFAULT_SKELEMIX_FRACTION}",
            "loss.name=balanced_softmax",
        ),),
    ),
    Preset(
        "skelemixclr", "SkeleMixCLR's cut-and-paste of 2-3 body parts in a temporal clip, soft targets by "
        "pasted share, clean + mixed batch, with Balanced Softmax",
        "SkeleMixCLR, Chen et al., arXiv 2207.03065",
        ((
            "method.name=skelemixclr",
            f"method.skelemixclr_min_parts={DEFAULT_CLR_MIN_PARTS}",
            f"method.skelemixclr_max_parts={DEFAULT_CLR_MAX_PARTS}",
            f"method.skelemixclr_segment_frames={DEFAULT_CLR_SEGMENT_FRAMES}",
            "method.skelemixclr_clip_fraction=[{}, {}]".format(*DEFAULT_CLR_CLIP_FRACTION),
            f"method.skelemixclr_draw={DEFAULT_CLR_DRAW}",
            "loss.name=balanced_softmax",
        ),),
    ),
    Preset(
        "brl", "BRL: scale and left-right flip, rebalanced partial (lower-body) mixing, action-aware "
        "class weights from 79% of training",
        "Liu et al., arXiv 2308.14024, 2023",
        (
            (
                "method.name=brl",
                f"method.brl_mix_fraction={BRL_MIX_FRACTION}",
                f"method.brl_kappa={BRL_KAPPA}",
                f"method.brl_scale={BRL_SCALE}",
                f"method.brl_p_flip={BRL_P_FLIP}",
                f"method.brl_beta_min={BRL_BETA_MIN}",
                f"method.brl_beta_span={BRL_BETA_SPAN}",
            ),
        ),
        ((_epoch_at(BRL_REWEIGHT_FRACTION, "method.brl_reweight_epoch"),),),
    ),
    Preset(
        "frhead", "FR Head: contrastive refinement of multi-level spatial and temporal features, "
        "added to cross entropy in training (inference unchanged)",
        "Zhou et al., CVPR 2023",
        ((
            "method.name=frhead",
            f"method.frhead_weight={FRHEAD_WEIGHT}",
            f"method.frhead_level_weights={FRHEAD_LEVEL_WEIGHTS}",
        ),),
    ),
    Preset(
        "fsa", "cross entropy, then the classifier fine-tuned on real features and tail features synthesised "
        "from tail class-specific and head class-generic parts (split by activation maps)",
        "Chu et al., ECCV 2020",
        (
            (),
            (
                "finetune.kind=classifier",
                "method.name=fsa",
                f"method.fsa_specific_threshold={FSA_SPECIFIC_THRESHOLD}",
                f"method.fsa_generic_threshold={FSA_GENERIC_THRESHOLD}",
                f"method.fsa_synthesised_per_sample={FSA_SYNTHESISED_PER_SAMPLE}",
                f"method.fsa_tail_max_samples={FSA_TAIL_MAX_SAMPLES}",
                *SECOND_STAGE_SCHEDULE,
            ),
        ),
    ),
    Preset(
        "ride", "RIDE: 3 experts with LDAM-DRW and a distribution-aware diversity loss, then the router "
        "that decides per sample how many experts to use",
        "Wang et al., ICLR 2021",
        (
            (
                *RIDE_MODEL,
                "method.name=ride",
                f"method.ride_diversity_factor={RIDE_DIVERSITY_FACTOR}",
                "loss.name=ldam",
                "loss.ldam_scale=1",
                f"loss.ldam_max_margin={RIDE_MAX_MARGIN * RIDE_LOGIT_SCALE}",
            ),
            (
                *RIDE_MODEL,
                "method.name=ride",
                "finetune.kind=ride_router",
                "data.sampler=class_balanced",
                f"schedule.epochs={RIDE_ROUTER_EPOCHS}",
                "schedule.warmup_epochs=0",
                "schedule.kind=cosine",
            ),
        ),
        (
            (_epoch_at(DRW_START_FRACTION, "loss.drw_epoch"),),
            (_scaled("optim.lr", RIDE_ROUTER_LR_FACTOR),),
        ),
    ),
]

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _PRESET_LIST}


def get_presets(names: str | list[str]) -> list[Preset]:
    """Presets by name (a comma-separated string or a list); unknown names are an error."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    if not names:
        raise ValueError(f"no methods given; choose from: {', '.join(PRESETS)}")
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from: {', '.join(PRESETS)}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"method(s) {duplicates} listed more than once")
    return [PRESETS[name] for name in names]
