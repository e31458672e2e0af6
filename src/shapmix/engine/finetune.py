"""Second stage of decoupled long-tailed methods: train the classifier of a first-stage model.

A run with ``finetune.kind != none`` starts from ``finetune.checkpoint`` (a first-stage
``last.pt``), freezes the backbone and trains only the classifier, the module named ``fc``
(CTR-GCN's convention, and the original CTR-GCN code's; an ``nn.Linear``, or the cosine
classifier of an LDAM first stage), or the one a model's ``classifier_name`` names (InfoGCN's
``decoder``):

* ``crt`` -- classifier re-training (Kang et al., "Decoupling representation and classifier for
  long-tailed recognition", ICLR 2020): the classifier is re-initialised and trained alone,
  with class-balanced sampling (``data.sampler=class_balanced``), for a few epochs (10 in the
  paper).  "Re-initialised" means it keeps the weights the model was built with (the model's
  own initialisation, seeded by ``train.seed``): only the backbone is loaded from stage 1.
* ``maxnorm`` -- weight balancing's second stage (Alshammari et al., "Long-tailed recognition
  via weight balancing", CVPR 2022): the first-stage classifier is fine-tuned with a
  class-balanced loss and weight decay, and after every optimiser step each class's weight
  vector ``W[c]`` (a row of ``fc.weight``, shape ``(num_classes, features)``) is projected onto
  the L2 ball of radius ``r`` (projected gradient descent): ``W[c] <- W[c] * min(1, r / |W[c]|)``.
  As in the authors' code, ``r`` is set once from the first-stage classifier,
  ``r = min_c |W[c]| + maxnorm_threshold * (max_c |W[c]| - min_c |W[c]|)``, and the bias is
  not constrained.
* ``classifier`` -- the first-stage classifier fine-tuned as it is (not re-initialised, not
  constrained): the second stage of methods that train the classifier on something else than
  the plain batch, e.g. FSA (Chu et al., "Feature space augmentation for long-tailed data",
  ECCV 2020, ``method.name=fsa``), whose class activation maps need the trained classifier.

* ``ride_router`` -- RIDE's second stage (Wang et al., ICLR 2021): the first stage's experts are
  frozen and only the router of the :class:`~shapmix.models.ride.RIDEModel` trains (with
  ``method.name=ride``, whose loss is then the router's); the model is switched to routing, so
  the evaluation of this stage and of its checkpoints uses the routed ensemble.

The frozen backbone runs in eval mode during the second stage: batch normalisation uses (and
keeps) its first-stage running statistics, so the classifier is trained on the very features it
is tested on and the backbone's buffers stay bit-identical (a train-mode forward would update
them); dropout before the classifier is off as well.

The trainer calls :meth:`SecondStage.set_train_mode` after ``model.train()`` each epoch and
:meth:`SecondStage.after_step` after every optimiser step.  Resuming a second-stage run loads
the first stage again (for the checks and the MaxNorm radius), then the second stage's
``last.pt`` on top of it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..config import Config, config_to_dict
from ..models.ride import RIDEModel
from .checkpoint import load_checkpoint

__all__ = [
    "SecondStage",
    "ClassifierFinetuning",
    "ClassifierRetraining",
    "MaxNormFinetuning",
    "RouterTraining",
    "build_second_stage",
    "classifier_of",
]

LOGGER_NAME = "shapmix"


def classifier_of(model: nn.Module) -> nn.Module:
    """The model's classifier: its module ``fc`` (or the one its ``classifier_name`` names, e.g.
    InfoGCN's ``decoder``) with a ``(num_classes, features)`` ``weight`` (CTR-GCN's
    ``nn.Linear``, or its cosine classifier for LDAM)."""
    name = getattr(model, "classifier_name", "fc")
    classifier = getattr(model, name, None)
    weight = getattr(classifier, "weight", None)
    if not (isinstance(classifier, nn.Module) and isinstance(weight, nn.Parameter) and weight.ndim == 2):
        raise ValueError(
            "second-stage training (finetune.kind) needs the model's classifier as a module named "
            f"{name!r} with a (num_classes, features) weight, as CTR-GCN has; {type(model).__name__} has none"
        )
    return classifier


class SecondStage:
    """No second stage (``finetune.kind=none``): every parameter trains, steps are untouched."""

    def set_train_mode(self, model: nn.Module) -> None:
        """Called after ``model.train()`` at the start of every training epoch."""

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimiser step."""


class _FrozenBackbone(SecondStage):
    """Loads the first stage and leaves only the classifier trainable."""

    def __init__(self, model: nn.Module, first_stage: dict, reinitialise_classifier: bool) -> None:
        classifier = classifier_of(model)
        fresh = {name: value.detach().clone() for name, value in classifier.state_dict().items()}
        model.load_state_dict(first_stage["model"])
        if reinitialise_classifier:
            classifier.load_state_dict(fresh)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in classifier.parameters():
            parameter.requires_grad_(True)

    def set_train_mode(self, model: nn.Module) -> None:
        model.eval()
        classifier_of(model).train()


class ClassifierRetraining(_FrozenBackbone):
    """cRT (Kang et al., ICLR 2020): frozen backbone, re-initialised classifier trained alone."""

    def __init__(self, model: nn.Module, first_stage: dict) -> None:
        super().__init__(model, first_stage, reinitialise_classifier=True)


class ClassifierFinetuning(_FrozenBackbone):
    """Frozen backbone, the first-stage classifier fine-tuned from its weights, unconstrained."""

    def __init__(self, model: nn.Module, first_stage: dict) -> None:
        super().__init__(model, first_stage, reinitialise_classifier=False)


class MaxNormFinetuning(_FrozenBackbone):
    """Weight balancing's stage 2 (Alshammari et al., CVPR 2022): classifier fine-tuning with
    every class weight vector projected into the L2 ball of radius :attr:`radius` after each step.
    """

    def __init__(self, model: nn.Module, first_stage: dict, threshold: float) -> None:
        super().__init__(model, first_stage, reinitialise_classifier=False)
        norms = classifier_of(model).weight.detach().norm(dim=1)
        self.radius = float(norms.min() + threshold * (norms.max() - norms.min()))

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        weight = classifier_of(model).weight
        norms = weight.norm(dim=1, keepdim=True)
        weight.mul_((self.radius / norms.clamp_min(torch.finfo(weight.dtype).tiny)).clamp(max=1.0))


class RouterTraining(SecondStage):
    """RIDE's router stage: the first stage's experts frozen (in eval mode, as the original sets
    its frozen batch norms to eval), the router trainable, the model routed from now on."""

    def __init__(self, model: nn.Module, first_stage: dict) -> None:
        if not isinstance(model, RIDEModel):
            raise ValueError(
                f"finetune.kind=ride_router trains the router of RIDE's experts: set model.ride_experts to 2 "
                f"or more (as the first stage), not a plain {type(model).__name__}"
            )
        model.load_state_dict(first_stage["model"])
        model.requires_grad_(False)
        model.router.requires_grad_(True)
        model.routed = True

    def set_train_mode(self, model: nn.Module) -> None:
        model.eval()
        model.router.train()


def _load_first_stage(config: Config, class_names: Sequence[str], device: torch.device) -> dict:
    path = Path(str(config.finetune.checkpoint))
    if not path.exists():
        raise FileNotFoundError(
            f"finetune.checkpoint={path} does not exist: point it at the first stage's last.pt"
        )
    state = load_checkpoint(path, map_location=device)
    if "model" not in state or "config" not in state:
        raise ValueError(f"finetune.checkpoint={path} is not a shapmix training checkpoint (last.pt or best.pt)")
    first_model = state["config"].get("model")
    this_model = config_to_dict(config)["model"]
    if first_model != this_model:
        raise ValueError(
            f"finetune.checkpoint={path} was trained with model {first_model}, but this run configures "
            f"model {this_model}; the second stage must use the first stage's model config"
        )
    first_classes = list(state.get("class_names", []))
    if first_classes != list(class_names):
        raise ValueError(
            f"finetune.checkpoint={path} was trained on classes {first_classes[:5]}... "
            f"({len(first_classes)}), this run's dataset has {list(class_names)[:5]}... "
            f"({len(class_names)}): the second stage must use the first stage's dataset"
        )
    return state


def build_second_stage(
    config: Config, model: nn.Module, class_names: Sequence[str], device: torch.device
) -> SecondStage:
    """Set ``model`` up for ``config.finetune`` (load, freeze) and return the step hooks.

    Call before the optimiser and DDP wrapper are built: they must see only trainable parameters.
    """
    kind = config.finetune.kind
    if kind == "none":
        return SecondStage()
    first_stage = _load_first_stage(config, class_names, device)
    stage: SecondStage
    if kind == "crt":
        stage = ClassifierRetraining(model, first_stage)
        detail = "classifier re-initialised"
    elif kind == "classifier":
        stage = ClassifierFinetuning(model, first_stage)
        detail = "first-stage classifier fine-tuned"
    elif kind == "ride_router":
        stage = RouterTraining(model, first_stage)
        detail = "RIDE's experts frozen, router trained"
    else:
        maxnorm = MaxNormFinetuning(model, first_stage, config.finetune.maxnorm_threshold)
        stage, detail = maxnorm, f"MaxNorm radius {maxnorm.radius:.4g}"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logging.getLogger(LOGGER_NAME).info(
        f"second stage {kind} from {config.finetune.checkpoint} (epoch {int(first_stage['epoch']) + 1}): "
        f"backbone frozen in eval mode, {trainable} trainable parameters, {detail}"
    )
    return stage
